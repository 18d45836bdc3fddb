import { currentBizTag } from '../src/routing/index.ts';
import { FileSwitchSource, SwitchBoard, SwitchConfigError, SwitchMetrics, SwitchNameError, SwitchVersionConflictError, parseSwitchDefinition } from '../src/switches/index.ts';
import type { SwitchAuditEvent, SwitchAuditHook } from '../src/switches/index.ts';
import { HttpError, adminCheck, assertOnlyFields, readJsonObject, sendJson, shown } from './http.ts';
import { isMinorUnits } from './money.ts';
import type { DemoContext } from './server.ts';

export interface DemoSwitchOptions {
  /** A JSON/YAML switch file to load and watch (env GOVMAP_SWITCH_FILE). Default: the built-in set below. */
  readonly file?: string;
  /** Bearer token of POST /admin/switches. Default: the demo's one admin token (DemoOptions.adminToken, env GOVMAP_ADMIN_TOKEN). */
  readonly adminToken?: string;
  /** Also record every change here (the demo passes the audit recorder's `auditSwitchChanges`). Default: only the in-memory trail. */
  readonly audit?: SwitchAuditHook;
}

/**
 * The demo's switches. `routing.force-degrade` forces routes into degradation (target it at an
 * org or a transaction type); `payments.enabled` is the payments kill switch; `payments.limit`
 * is a per-payment limit in minor units (a decimal string, like every amount on the wire).
 */
export const DEMO_SWITCHES = {
  'routing.force-degrade': { enabled: false, description: 'force routes into their degradation: target orgs with allow' },
  'payments.enabled': { enabled: true, description: 'kill switch of POST /payments (kill: true stops every payment)' },
  'payments.limit': { enabled: true, value: '50000000', offValue: '0', description: 'largest payment in minor units; off = no payments above 0' },
  'payments.instant-confirm': { enabled: true, rollout: { percent: 50, by: 'orgId' }, description: 'half of the orgs get instant confirmation (stable per org)' },
};

export interface DemoSwitches {
  readonly board: SwitchBoard;
  readonly token: string;
}

/** How many change events GET /switches shows. */
const AUDIT_SHOWN = 20;

/**
 * Switches in the demo: GET /switches (the snapshot, and how each switch evaluates for the
 * caller's X-Biz-Tag), POST /admin/switches (bearer token) to change them. Every change is an
 * audit event (who, when, old and new version, why), kept for GET /switches and logged.
 */
export async function installSwitches(context: DemoContext, options: DemoSwitchOptions = {}): Promise<DemoSwitches> {
  const trail: SwitchAuditEvent[] = [];
  const board = new SwitchBoard({
    name: 'demo',
    initial: options.file === undefined ? DEMO_SWITCHES : {},
    audit: {
      record: (event) => {
        trail.push(event);
        if (trail.length > AUDIT_SHOWN) trail.shift();
        return options.audit?.record(event);
      },
    },
  });
  const source = options.file === undefined ? null : new FileSwitchSource({ path: options.file, board });
  if (source !== null) {
    await source.start();
    context.onClose(() => source.close());
  }
  new SwitchMetrics({ registry: context.metrics.registry }).track(board, source === null ? [] : [source]);
  const token = options.adminToken ?? context.admin.token;
  const authorise = adminCheck(token);
  context.announce(`switches: board v${board.snapshot.version} from ${source === null ? 'the built-in set' : source.path}; GET /switches`);
  context.announce(
    `admin: curl -X POST <url>/admin/switches -H 'authorization: Bearer ${options.adminToken === undefined ? context.admin.shown : '$GOVMAP_ADMIN_TOKEN'}' -H 'content-type: application/json' -d '{"set":{"routing.force-degrade":{"enabled":true,"allow":[{"orgIds":["1001*"]}]}},"reason":"drill"}'`,
  );

  context.router.route('GET', /^\/switches$/, (_req, res) => {
    // Inside the request the middleware pinned a snapshot with the caller's tag as context.
    const view = board.view();
    const evaluated = Object.fromEntries(view.snapshot.names().map((name) => [name, view.evaluate(name)]));
    sendJson(res, 200, {
      ...view.snapshot.toJSON(),
      context: currentBizTag()?.toRecord() ?? {},
      evaluated,
      feed: source === null ? { kind: 'built-in' } : { kind: 'file', ...source.status() },
      audit: [...trail].reverse(),
    });
  });

  context.router.route('POST', /^\/admin\/switches$/, async (req, res) => {
    authorise(req);
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['set', 'remove', 'reason', 'actor', 'expectedVersion']);
    if (typeof body.reason !== 'string' || body.reason.trim() === '') throw new HttpError(400, 'SWITCH_REASON_REQUIRED', 'say why: "reason" is a non-empty string (it goes into the audit trail)');
    if (body.set !== undefined && (body.set === null || typeof body.set !== 'object' || Array.isArray(body.set))) throw new HttpError(400, 'SWITCH_SET_INVALID', '"set" is an object of switch name -> definition');
    if (body.remove !== undefined && !Array.isArray(body.remove)) throw new HttpError(400, 'SWITCH_REMOVE_INVALID', '"remove" is an array of switch names');
    if (body.expectedVersion !== undefined && !Number.isSafeInteger(body.expectedVersion)) throw new HttpError(400, 'SWITCH_VERSION_INVALID', '"expectedVersion" is a whole number');
    if (body.actor !== undefined && (typeof body.actor !== 'string' || !/^[A-Za-z0-9_.@-]{1,64}$/.test(body.actor))) {
      throw new HttpError(400, 'SWITCH_ACTOR_INVALID', '"actor" is [A-Za-z0-9_.@-]{1,64}');
    }
    const set = body.set as Record<string, unknown> | undefined;
    if (set !== undefined && Object.hasOwn(set, PAYMENT_LIMIT)) assertPaymentLimit(set[PAYMENT_LIMIT]);
    try {
      const previous = board.snapshot.version;
      const next = board.update(
        { set, remove: body.remove as string[] | undefined },
        {
          actor: `admin:${(body.actor) ?? 'anonymous'}`,
          reason: body.reason,
          source: 'admin',
          expectedVersion: body.expectedVersion as number | undefined,
        },
      );
      sendJson(res, 200, { changed: next !== null, previousVersion: previous, version: board.snapshot.version, changes: next === null ? [] : (trail.at(-1)?.changed ?? []) });
    } catch (error) {
      if (error instanceof SwitchConfigError) {
        sendJson(res, 400, { error: { code: error.code, reason: error.message, issues: error.issues } });
        return;
      }
      if (error instanceof SwitchNameError) throw new HttpError(400, error.code, error.message);
      if (error instanceof SwitchVersionConflictError) throw new HttpError(409, error.code, error.message);
      throw error;
    }
  });

  return { board, token };
}

const PAYMENT_LIMIT = 'payments.limit';

/**
 * Refuses a `payments.limit` definition whose served values are not minor units: POST /payments
 * reads the value when the switch is on and `offValue` when off (targeting may serve either), so
 * both must be decimal strings ("1000", not 1000 or "1,000"). POST /payments fails closed on
 * such a value anyway (a switch file is not checked here); refusing it at the door says so to
 * the operator who typed it, instead of to every payer. A definition that is not a switch
 * definition at all is left to the board, which names every problem in it.
 */
function assertPaymentLimit(definition: unknown): void {
  let parsed;
  try {
    parsed = parseSwitchDefinition(PAYMENT_LIMIT, definition, 'admin');
  } catch (error) {
    if (error instanceof SwitchConfigError) return;
    throw error;
  }
  for (const [field, value] of [['value', parsed.value], ['offValue', parsed.offValue]] as const) {
    if (!isMinorUnits(value)) {
      throw new HttpError(
        400,
        'PAYMENT_LIMIT_INVALID',
        `switch ${PAYMENT_LIMIT}: "${field}" is a decimal string of minor units (digits, no sign, separator or leading zero, e.g. "50000000"), not ${shown(value, 40)}; payments compare their amount with it`,
      );
    }
  }
}
