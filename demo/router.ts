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

  route(method: string, pattern: RegExp, handler: Handler): void {
    this.#routes.push({ method, pattern, handler });
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

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    let pathMatched = false;
    for (const route of this.#routes) {
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

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'PATH_MALFORMED', 'the path has an invalid percent-encoding');
  }
}
