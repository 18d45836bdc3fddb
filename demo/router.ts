import type { IncomingMessage, ServerResponse } from 'node:http';
import { GovMapError } from '../src/map/index.ts';
import { HttpError, sendError, shown } from './http.ts';
import { LedgerError } from './ledger.ts';
import { AmountError } from './money.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse, params: string[]) => Promise<void> | void;

/** Runs around every request (tagging, routing, timing); calls `next()` to continue. */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: () => Promise<void>) => Promise<void>;

/** Turns an error a part raised into a 4xx, or returns false to leave it to the next mapper. */
export type ErrorMapper = (res: ServerResponse, error: unknown) => boolean;

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: Handler;
}

/**
 * The demo's router: exact-method routes on anchored patterns, a middleware chain, and error
 * mapping where every known refusal becomes a 4xx `{error:{code, reason}}`; only a genuine
 * defect becomes a 500 (and is logged).
 *
 * Methods as RFC 9110 has them: HEAD is served by the path's GET route (§9.3.2; Node's
 * ServerResponse sends no body for HEAD by itself), OPTIONS is answered 204 with `Allow`
 * (§9.3.7), and a 405 says in `Allow` which methods the path has (§15.5.6).
 */
export class Router {
  readonly #routes: Route[] = [];
  readonly #middleware: Middleware[] = [];
  readonly #errorMappers: ErrorMapper[] = [];
  /**
   * The routes a path can match, by its first segment (see literalFirstSegment), in registration
   * order; rebuilt after a route is added. Why: the demo has ~30 routes, and trying every pattern
   * in turn cost its hottest one (GET /accounts/:id, registered after a dozen) ~0.4 µs a request.
   */
  #bySegment: Map<string, Route[]> | null = null;
  /** The routes without a literal first segment: tried for every path. */
  #anySegment: Route[] = [];

  route(method: string, pattern: RegExp, handler: Handler): void {
    this.#routes.push({ method, pattern, handler });
    this.#bySegment = null;
  }

  use(middleware: Middleware): void {
    this.#middleware.push(middleware);
  }

  mapErrors(mapper: ErrorMapper): void {
    this.#errorMappers.push(mapper);
  }

  /** The routes, for an index page. */
  list(): Array<{ method: string; path: string }> {
    return this.#routes.map((r) => ({ method: r.method, path: r.pattern.source }));
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      let index = 0;
      // Not async itself: each layer already returns its own promise, and wrapping it in one
      // more (per layer, per request) was a measurable share of what a request allocated.
      const next = (): Promise<void> => {
        const middleware = this.#middleware[index++];
        return middleware !== undefined ? middleware(req, res, next) : this.#dispatch(req, res);
      };
      await next();
    } catch (error) {
      this.#respondWithError(res, error);
    }
  }

  /** The routes that can match `path`, in registration order. */
  #candidates(path: string): Route[] {
    if (this.#bySegment === null) {
      const bySegment = new Map<string, Route[]>();
      const anySegment: Route[] = [];
      for (const route of this.#routes) {
        const segment = literalFirstSegment(route.pattern);
        if (segment === null) {
          anySegment.push(route);
          for (const list of bySegment.values()) list.push(route);
        } else {
          let list = bySegment.get(segment);
          if (list === undefined) bySegment.set(segment, (list = [...anySegment]));
          list.push(route);
        }
      }
      this.#bySegment = bySegment;
      this.#anySegment = anySegment;
    }
    const end = path.indexOf('/', 1);
    return this.#bySegment.get(end === -1 ? path.slice(1) : path.slice(1, end)) ?? this.#anySegment;
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? '';
    const target = req.url ?? '/';
    if (target === '*' && method === 'OPTIONS') return answerOptions(res, this.#allowed(null));
    const path = pathOf(target);
    const head = method === 'HEAD';
    let pathMatched = false;
    for (const route of this.#candidates(path)) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      pathMatched = true;
      if (route.method !== method && !(head && route.method === 'GET')) continue;
      await route.handler(req, res, match.slice(1).map(decodeSegment));
      return;
    }
    if (!pathMatched) throw new HttpError(404, 'NOT_FOUND', `no route for ${path}`);
    // Off the hot path from here: the path exists, but not with this method.
    const allow = this.#allowed(path);
    if (method === 'OPTIONS') return answerOptions(res, allow);
    res.setHeader('allow', allow);
    throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${shown(method, 20)} is not allowed on ${path}; allowed: ${allow}`);
  }

  /** The `Allow` value of `path` (null: the whole server, for `OPTIONS *`): its routes' methods, HEAD with GET, and OPTIONS. */
  #allowed(path: string | null): string {
    const methods = new Set<string>();
    for (const route of path === null ? this.#routes : this.#candidates(path)) {
      if (path === null || route.pattern.test(path)) methods.add(route.method);
    }
    if (methods.has('GET')) methods.add('HEAD');
    methods.add('OPTIONS');
    return [...methods].join(', ');
  }

  #respondWithError(res: ServerResponse, error: unknown): void {
    // The client went away (closed the connection mid-body, reset it): no one is left to answer,
    // and nothing here failed. A reset of a downstream (Redis) while the client still waits is
    // not this case: its socket is alive, and that error still becomes a logged 500.
    if (res.destroyed || (isDisconnect(error) && res.socket?.destroyed === true)) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const mapper of this.#errorMappers) if (mapper(res, error)) return;
    if (error instanceof HttpError) return sendError(res, error.status, error.code, error.message, error.headers);
    if (error instanceof LedgerError) return sendError(res, error.status, error.code, error.message);
    if (error instanceof AmountError) return sendError(res, 400, error.code, error.message);
    if (error instanceof GovMapError) {
      const reason = typeof error.details.reason === 'string' ? error.details.reason : error.code;
      return sendError(res, error.code === 'GOVMAP_VALIDATION_REJECTED' ? 422 : 409, reason, error.message);
    }
    console.error('govmap demo: unexpected error', error);
    sendError(res, 500, 'INTERNAL', 'unexpected error; see the service log');
  }
}

/**
 * The first path segment every path `pattern` matches must have, when the pattern spells it out
 * (`/^\/accounts\/([^/]+)$/` -> `accounts`, `/^\/app\.js$/` -> `app.js`); null when it does not
 * (no anchor, a class or group in the segment, flags that change matching), and the route is
 * then tried for every path.
 */
export function literalFirstSegment(pattern: RegExp): string | null {
  if (pattern.ignoreCase || pattern.multiline) return null;
  const source = pattern.source;
  if (!source.startsWith('^\\/')) return null;
  let segment = '';
  for (let i = 3; i < source.length; i++) {
    const c = source[i]!;
    if (c === '$') return i === source.length - 1 ? segment : null;
    if (c === '\\') {
      const next = source[i + 1];
      if (next === '/') return segment;
      if (next === '.' || next === '-') {
        segment += next;
        i++;
        continue;
      }
      return null;
    }
    if (/[A-Za-z0-9_~-]/.test(c)) segment += c;
    else return null;
  }
  return null;
}

/** OPTIONS: no body, only what the path (or the server) allows. */
function answerOptions(res: ServerResponse, allow: string): void {
  res.writeHead(204, { allow, 'cache-control': 'no-store' });
  res.end();
}

/** The errors a request's stream fails with when its client disconnects. */
function isDisconnect(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || error.message === 'aborted';
}

/**
 * The request target's path. A target with a dot segment is refused (see hasDotSegment), so the
 * URL parser never resolves one. A path is appended to a fixed origin rather than resolved
 * against it: `new URL('//accounts/x', base)` reads `accounts` as a host, which answered
 * `GET //accounts/x` with the page at `/` and an empty path with a 500. An absolute target (a
 * proxy's `GET http://host/path`) is parsed as given.
 */
function pathOf(target: string): string {
  if (hasDotSegment(target)) {
    throw new HttpError(400, 'PATH_DOT_SEGMENT', `the request target ${shown(target)} has a "." or ".." segment (as written or percent-encoded); dot segments are refused, not resolved: send the path itself`);
  }
  try {
    return (target.startsWith('/') ? new URL(`http://localhost${target}`) : new URL(target)).pathname;
  } catch {
    throw new HttpError(400, 'REQUEST_TARGET_INVALID', 'the request target is not a path or an absolute URL');
  }
}

/**
 * Whether the path of request target `target` has a `.` or `..` segment, as written or
 * percent-encoded in any case (`%2e`, `.%2E`): the URL parser resolves those, so
 * `/accounts/%2e%2e/admin/faults` reached the admin endpoint past a proxy that forwards only
 * `/accounts/*`. Refusing them keeps the path a proxy checked the path that is served. A `\`
 * separates segments too (the URL parser reads it as `/` in http URLs); the query and fragment
 * are not looked at. Most targets have neither `.` nor `%` and cost two indexOf scans.
 */
export function hasDotSegment(target: string): boolean {
  if (target.indexOf('.') === -1 && target.indexOf('%') === -1) return false;
  let start = 0;
  for (let i = 0; i <= target.length; i++) {
    const c = i === target.length ? END : target.charCodeAt(i);
    if (c !== SLASH && c !== BACKSLASH && c !== QUESTION && c !== HASH && c !== END) continue;
    // The longest spelling of a dot segment is `%2e%2e`: six characters.
    if (i - start <= 6 && isDotSegment(target.slice(start, i))) return true;
    if (c === QUESTION || c === HASH) return false;
    start = i + 1;
  }
  return false;
}

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const QUESTION = 0x3f;
const HASH = 0x23;
const END = -1;

function isDotSegment(segment: string): boolean {
  const dots = segment.toLowerCase().replaceAll('%2e', '.');
  return dots === '.' || dots === '..';
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'PATH_MALFORMED', 'the path has an invalid percent-encoding');
  }
}
