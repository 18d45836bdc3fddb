import type { IncomingMessage, ServerResponse } from 'node:http';
import { GovMapError } from '../src/map/index.ts';
import { HttpError, sendError } from './http.ts';
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
    const path = pathOf(req.url ?? '/');
    let pathMatched = false;
    for (const route of this.#candidates(path)) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      await route.handler(req, res, match.slice(1).map(decodeSegment));
      return;
    }
    if (pathMatched) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed on ${path}`);
    throw new HttpError(404, 'NOT_FOUND', `no route for ${path}`);
  }

  #respondWithError(res: ServerResponse, error: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const mapper of this.#errorMappers) if (mapper(res, error)) return;
    if (error instanceof HttpError || error instanceof LedgerError) return sendError(res, error.status, error.code, error.message);
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

/**
 * The request target's path, dot segments resolved. A path is appended to a fixed origin rather
 * than resolved against it: `new URL('//accounts/x', base)` reads `accounts` as a host, which
 * answered `GET //accounts/x` with the page at `/` and an empty path with a 500. An absolute
 * target (a proxy's `GET http://host/path`) is parsed as given.
 */
function pathOf(target: string): string {
  try {
    return (target.startsWith('/') ? new URL(`http://localhost${target}`) : new URL(target)).pathname;
  } catch {
    throw new HttpError(400, 'REQUEST_TARGET_INVALID', 'the request target is not a path or an absolute URL');
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'PATH_MALFORMED', 'the path has an invalid percent-encoding');
  }
}
