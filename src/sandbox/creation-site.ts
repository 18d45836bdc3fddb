/**
 * Where a map was created, captured cheaply and formatted late.
 *
 * Capture: `Error.captureStackTrace(holder, constructor)` records the call frames (V8 keeps
 * them structured; nothing is turned into text yet) starting at the caller of `new X(...)`:
 * passing the map's constructor drops our own frames, the hook's and the constructor's,
 * subclasses included. Measured on this class of machine (Node 24): a capture of 4–8 frames
 * costs 3–5 µs, and turning it into text another 4–6 µs. A map creation without the sandbox
 * costs about 1 µs, so capturing every creation of a service that builds a map per request
 * would triple that cost. Hence a budget: at most `capturesPerSecond` captures per second of
 * wall time; creations beyond it are still tracked (name, age, activity, keys) but without
 * a site. A per-request leak at 1,000 requests/s still gets 100 sites a second, plenty to name
 * the line; a service that creates its maps at start-up gets every one of them.
 *
 * Formatting happens off the creating call, in a batch at the next turn of the event loop. Not
 * later: until V8 formats a captured stack it holds every frame's receiver and function, so a
 * map built in a constructor (`this.cache = new GovernedMap(...)`) would keep its owner, and
 * through it the map, alive until a sweep read the text, or for ever once the sandbox stopped.
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { monotonicNow } from './monotonic-clock.ts';

/** A creation site as reports show it. `key` groups instances created by the same call path. */
export interface CreationSite {
  /**
   * The synchronous frames joined by newlines: instances with equal keys came from the same
   * call path. `async` frames are left out of the key: the same line reached before and after
   * an `await` shows different async frames, and is still the same site.
   */
  readonly key: string;
  /** `functionName (file:line:column)` from the `new` call outwards; paths relative to the cwd. */
  readonly frames: readonly string[];
}

/** A captured, not yet formatted, stack: reading `.stack` formats it (once; V8 caches it). */
export type PendingSite = { stack?: string };

/** Marks a map whose creation site was not captured (budget spent, or `track` after the fact). */
export const SITE_NOT_CAPTURED = '(not captured)';

const ONE_SECOND_MS = 1000;

/** The class whose `new` call the capture starts at (its own frames are left out). */
export type ConstructorLike = abstract new (...args: never[]) => unknown;

export interface SiteCaptureOptions {
  /** Captures per second at most; 0 turns capture off. Default 100. */
  readonly capturesPerSecond?: number;
  /** Frames kept per site, from the `new` call outwards. Default 6. */
  readonly frames?: number;
  /** Milliseconds clock for the budget. Default: the monotonic clock (monotonic-clock.ts), so that a step of the host's clock is not taken for elapsed time. */
  readonly clock?: () => number;
}

/** Every key of SiteCaptureOptions (the compiler checks the two stay the same): any other is refused. */
const SITE_CAPTURE_OPTIONS = optionKeys<SiteCaptureOptions>({
  capturesPerSecond: true, frames: true, clock: true,
});

/**
 * Captures creation stacks within a per-second budget.
 *
 * Invariant: at most `capturesPerSecond` captures are taken in any aligned second
 * (`floor(clock() / 1000)`), so capture costs at most capturesPerSecond × ~5 µs per second.
 */
export class SiteCapture {
  readonly capturesPerSecond: number;
  readonly frames: number;
  readonly #clock: () => number;
  #second = -1;
  #usedThisSecond = 0;
  #skipped = 0;
  #captured = 0;
  /** Captured stacks not formatted yet (see releaseFrames). */
  readonly #unformatted: PendingSite[] = [];

  constructor(options: SiteCaptureOptions = {}) {
    refuseUnknownOptions(options, SITE_CAPTURE_OPTIONS, 'SiteCapture');
    this.capturesPerSecond = options.capturesPerSecond ?? 100;
    this.frames = options.frames ?? 6;
    this.#clock = options.clock ?? monotonicNow;
  }

  /**
   * Captures the stack of the code that called `new constructorOpt(...)`, or returns null when
   * this second's budget is spent. Cost: one clock read when over budget; one capture otherwise.
   */
  capture(constructorOpt: ConstructorLike): PendingSite | null {
    if (this.capturesPerSecond === 0) return null;
    const second = Math.floor(this.#clock() / ONE_SECOND_MS);
    if (second !== this.#second) {
      this.#second = second;
      this.#usedThisSecond = 0;
    }
    if (this.#usedThisSecond >= this.capturesPerSecond) {
      this.#skipped++;
      return null;
    }
    this.#usedThisSecond++;
    this.#captured++;
    const holder: PendingSite = {};
    const previousLimit = Error.stackTraceLimit;
    // Capture only what a report shows; frames beyond the limit are never walked.
    Error.stackTraceLimit = this.frames;
    try {
      Error.captureStackTrace(holder, constructorOpt);
    } finally {
      Error.stackTraceLimit = previousLimit;
    }
    this.#releaseFrames(holder);
    return holder;
  }

  /** Formats the captured stacks at the next turn: V8 then drops the frames' receivers and functions. */
  #releaseFrames(holder: PendingSite): void {
    this.#unformatted.push(holder);
    if (this.#unformatted.length > 1) return;
    setImmediate(() => {
      for (const pending of this.#unformatted) {
        try {
          void pending.stack;
        } catch {
          // The application's Error.prepareStackTrace threw; thrown from an immediate, it would end the process.
        }
      }
      this.#unformatted.length = 0;
    }).unref();
  }

  /** Creations whose site was skipped because the budget was spent. */
  get skipped(): number {
    return this.#skipped;
  }

  get captured(): number {
    return this.#captured;
  }
}

const FRAME_PREFIX = /^\s*at\s+/;
/** Frames of Node itself say nothing about the caller's code. */
const INTERNAL_FRAME = /\(node:|^node:|^async node:/;

/** Turns a captured stack into a site (the first time: V8 formats it here). */
export function formatSite(pending: PendingSite, cwd: string = process.cwd()): CreationSite {
  const text = pending.stack ?? '';
  const frames: string[] = [];
  // The first line is the holder's description ("Error" or "[object Object]"), not a frame.
  for (const line of text.split('\n').slice(1)) {
    const frame = line.replace(FRAME_PREFIX, '').trim();
    if (frame.length === 0 || INTERNAL_FRAME.test(frame)) continue;
    frames.push(shortenPaths(frame, cwd));
  }
  if (frames.length === 0) return { key: SITE_NOT_CAPTURED, frames: [] };
  return { key: frames.filter((frame) => !frame.startsWith('async ')).join('\n'), frames };
}

/**
 * `file:///work/app/src/x.ts:12:5` (an ES module) or `/work/app/src/x.js:12:5` (CommonJS writes
 * bare paths) -> `src/x.ts:12:5` when under the working directory.
 */
function shortenPaths(frame: string, cwd: string): string {
  const fromUrls = frame.replace(/file:\/\/[^\s):]+/g, (url) => {
    try {
      return relativeToCwd(fileURLToPath(url), cwd);
    } catch {
      return url;
    }
  });
  return fromUrls.replace(BARE_PATH_LOCATION, (_match, lead: string, path: string) => `${lead}${relativeToCwd(path, cwd)}`);
}

/** A frame's location as CommonJS writes it: an absolute path, then `:line:column`, at the end of the frame. */
const BARE_PATH_LOCATION = /(^|\()(\/[^():]+)(?=:\d+:\d+\)?$)/;

function relativeToCwd(path: string, cwd: string): string {
  try {
    const rel = relative(cwd, path);
    return rel.startsWith('..') ? path : rel;
  } catch {
    return path;
  }
}
