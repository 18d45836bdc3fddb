import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Advisor, registerAdvisorMetrics } from '../src/advisor/index.ts';
import type { AdvisedMap } from '../src/advisor/index.ts';
import { GovernedMap } from '../src/map/index.ts';
import { makeDirectory } from '../src/map/make-directory.ts';
import { Sandbox, registerSandboxMetrics } from '../src/sandbox/index.ts';
import type { LeakSuspect } from '../src/sandbox/index.ts';
import { FileStateStore } from '../src/state/file-store.ts';
import { DemoEnvironmentError } from './environment.ts';
import { HttpError, adminCheck, assertOnlyFields, readJsonObject, sendJson } from './http.ts';
import type { DemoContext } from './server.ts';

export interface DemoSandboxOptions {
  /** Idle threshold of the sandbox, ms. Default 300,000 (the specification's 5 minutes). */
  readonly idleThresholdMs?: number;
  /** Sweep interval, ms. Default 30,000. */
  readonly sweepIntervalMs?: number;
  /** Advisor window, ms, also the GC trend's window. Default 300,000. */
  readonly advisorWindowMs?: number;
  /**
   * Directory of the file state store holding the advisor's weekly range counts; null keeps
   * them in memory. Default `$GOVMAP_DEMO_STATE_DIR`, else `<tmpdir>/govmap-demo/state`.
   */
  readonly stateDirectory?: string | null;
  /** Called when a leak suspect appears. Default: one line on stderr. */
  readonly onSuspect?: (suspect: LeakSuspect) => void;
}

/** The drill's deliberately leaked maps are capped: it demonstrates a leak, it must not be one. */
const MAX_DRILL_MAPS = 10_000;

/** Listeners added after the sandbox started (the audit trail starts after it: see server.ts). */
const suspectListeners = new WeakMap<Sandbox, Array<(suspect: LeakSuspect) => void>>();

/**
 * Starts the runtime audit sandbox. Called before the ledger is built, so that the balances
 * map's creation site is recorded like any other map's.
 */
export function startDemoSandbox(options: DemoSandboxOptions = {}): Sandbox {
  const listeners: Array<(suspect: LeakSuspect) => void> = [];
  const sandbox = new Sandbox({
    idleThresholdMs: options.idleThresholdMs,
    sweepIntervalMs: options.sweepIntervalMs,
    gc: { windowMs: options.advisorWindowMs },
    onSuspect: (s) => {
      (options.onSuspect ?? ((x) => console.warn(`govmap demo: leak suspect ${describeSuspect(x)}`)))(s);
      for (const listener of listeners) listener(s);
    },
  });
  suspectListeners.set(sandbox, listeners);
  return sandbox.start();
}

/** Also tells `listener` of every new leak suspect of a sandbox started by startDemoSandbox (the audit trail's adapter). */
export function onDemoSuspect(sandbox: Sandbox, listener: (suspect: LeakSuspect) => void): void {
  suspectListeners.get(sandbox)?.push(listener);
}

/**
 * Plugs the sandbox and the migration advisor into the demo:
 * - `GET /sandbox/report`: a fresh sweep's JSON report (what `govmap sandbox report` prints);
 * - `GET /advisor`: one recommendation per map with its signals and figures;
 * - `POST /sandbox/drill/leak {"maps": n}` creates n maps the way a per-request leak does and
 *   keeps them (at most 10,000); `DELETE /sandbox/drill/leak` lets them go. Both take the admin
 *   token: the maps show as leak suspects (and fail `govmap sandbox report --fail-on-suspects`);
 * - `govmap_sandbox_*`, `govmap_gc_*` and `govmap_advisor_*` on /metrics.
 */
/**
 * `advised`: the map the balances live in (the Redis one with --redis: the in-process ledger is
 * then an unused, empty copy, and advice on it would be advice on nothing).
 */
export async function installSandboxAndAdvisor(context: DemoContext, sandbox: Sandbox, options: DemoSandboxOptions = {}, advised: AdvisedMap = context.ledger.balances): Promise<Advisor> {
  context.onClose(() => sandbox.stop());
  const fromEnvironment = options.stateDirectory === undefined ? process.env.GOVMAP_DEMO_STATE_DIR : undefined;
  if (fromEnvironment !== undefined) await assertStateDirectory(fromEnvironment);
  const directory = options.stateDirectory === undefined ? (fromEnvironment ?? DEFAULT_STATE_DIRECTORY) : options.stateDirectory;
  const stateStore = directory === null ? null : new FileStateStore({ directory });
  const advisor = new Advisor({ gc: sandbox.gc, stateStore, service: 'clearing-demo', windowMs: options.advisorWindowMs });
  advisor.track(advised);
  await advisor.start();
  context.onClose(async () => {
    await advisor.stop();
    await stateStore?.close();
  });

  const registry = context.metrics.registry;
  registerSandboxMetrics(sandbox, registry);
  registerAdvisorMetrics(advisor, registry);

  const drill: GovernedMap<string, string>[] = [];
  const authorise = adminCheck(context.admin.token);
  context.router.route('GET', /^\/sandbox\/report$/, (_req, res) => {
    sandbox.sweep();
    sendJson(res, 200, sandbox.report());
  });
  context.router.route('GET', /^\/advisor$/, (_req, res) => {
    sendJson(res, 200, {
      generatedAt: new Date().toISOString(),
      windowMs: advisor.windowMs,
      stateStore: stateStore === null ? null : { kind: stateStore.kind, directory },
      advice: advisor.advise(),
    });
  });
  context.router.route('POST', /^\/sandbox\/drill\/leak$/, async (req, res) => {
    authorise(req);
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['maps']);
    const n = body.maps;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1000) {
      throw new HttpError(400, 'DRILL_MAPS_INVALID', '"maps" must be a whole number from 1 to 1000');
    }
    if (drill.length + n > MAX_DRILL_MAPS) throw new HttpError(409, 'DRILL_FULL', `the drill holds ${drill.length} maps; at most ${MAX_DRILL_MAPS}: DELETE /sandbox/drill/leak first`);
    for (let i = 0; i < n; i++) drill.push(leakOneMap(drill.length));
    // When the report will name them: a report taken at once rightly says "no leak suspects".
    sendJson(res, 200, { created: n, held: drill.length, idleSuspectsAfterMs: sandbox.idleThresholdMs });
  });
  context.router.route('DELETE', /^\/sandbox\/drill\/leak$/, (req, res) => {
    authorise(req);
    const released = drill.length;
    drill.length = 0;
    sendJson(res, 200, { released });
  });
  context.announce('sandbox: GET /sandbox/report (govmap sandbox report --url <service>); advisor: GET /advisor (govmap advise --url <service>/metrics)');
  return advisor;
}

const DEFAULT_STATE_DIRECTORY = join(tmpdir(), 'govmap-demo', 'state');

/**
 * Refuses a GOVMAP_DEMO_STATE_DIR the file state store could never use. The store creates its
 * directory lazily and reports a failure only as "unavailable" on each use: a file given there
 * (`/etc/passwd`) was taken silently, and the advisor's weekly counts were never kept.
 */
async function assertStateDirectory(value: string): Promise<void> {
  const variable = 'GOVMAP_DEMO_STATE_DIR';
  if (value === '') throw new DemoEnvironmentError(variable, value, `give a directory for the advisor's weekly range counts, or unset it for ${DEFAULT_STATE_DIRECTORY}`);
  try {
    await makeDirectory(resolve(value));
    await access(value, constants.W_OK);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const code = typeof e.code === 'string' ? e.code : 'ERROR';
    const at = typeof e.path === 'string' ? ` on ${e.path}` : '';
    const rule =
      code === 'EEXIST' || code === 'ENOTDIR'
        ? `a file is in the way (${code}${at}); the state store needs a directory`
        : code === 'EACCES' || code === 'EPERM'
          ? `permission denied (${code}${at}); give a directory this user can write`
          : `cannot create or write it (${code}): ${e.message}`;
    throw new DemoEnvironmentError(variable, value, rule, code, error);
  }
}

/** The shape of the leak the drill demonstrates: a map per request, parked where nobody reads it. */
function leakOneMap(requestNo: number): GovernedMap<string, string> {
  // The leak is the point of the drill; the validator is still a real one (a quote is a pair and a price).
  const perRequest = new GovernedMap<string, string>({ name: 'drill_quote_cache', validate: (_key, quote) => /^[A-Z]{6} [0-9]+\.[0-9]+$/.test(quote) || 'QUOTE_MALFORMED' });
  perRequest.store(`quote:${requestNo}`, 'EURUSD 1.0842');
  return perRequest;
}

export function describeSuspect(s: LeakSuspect): string {
  switch (s.kind) {
    case 'IDLE':
      return `IDLE: ${s.instances} "${s.map}" map(s) idle >= ${Math.round(s.idleForMs.min / 1000)}s, created at ${s.site?.frames[0] ?? '(site not captured)'}`;
    case 'SITE_GROWTH':
      return `SITE_GROWTH: ${s.live} live "${s.maps.join(', ')}" maps (from ${s.grewFrom}) created at ${s.site.frames[0] ?? '?'}`;
    case 'KEY_GROWTH':
      return `KEY_GROWTH: "${s.map}" #${s.instance} grew from ${s.grewFrom} to ${s.keys} keys without shrinking`;
  }
}
