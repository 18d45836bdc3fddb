import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SwitchBoard } from '../switches/board.ts';
import type { SwitchView } from '../switches/snapshot.ts';
import { BIZ_TAG_HEADER, parseBizTag } from './biz-tag.ts';
import type { BizTag } from './biz-tag.ts';
import { runWithBizContext } from './context.ts';
import type { BizContext } from './context.ts';
import { BizTagError } from './errors.ts';
import type { RouteOutcome, Router } from './router.ts';

export interface BizTagMiddlewareOptions {
  readonly router: Router;
  /** Pin this board's snapshot for the request, with the tag's pairs as targeting context. */
  readonly switches?: SwitchBoard;
  /** Sets `x-govmap-route: <route id>` on every response. Default true. */
  readonly exposeRoute?: boolean;
}

/** The middleware's preparation of one request: its BizContext and pinned switch view, or why it is refused. */
export type PreparedRequest =
  | { readonly ok: true; readonly context: BizContext; readonly view: SwitchView | null }
  | { readonly ok: false; readonly error: BizTagError };

/**
 * Parses the request's X-Biz-Tag (absent: untagged; several: refused) and decides its route.
 * Shared by the node:http middleware and the Fastify plugin.
 */
export function prepareRequest(req: IncomingMessage, options: BizTagMiddlewareOptions): PreparedRequest {
  // headersDistinct keeps repeated headers apart; headers[] would join them with ", ".
  const values = req.headersDistinct?.[BIZ_TAG_HEADER] ?? (req.headers[BIZ_TAG_HEADER] === undefined ? undefined : [req.headers[BIZ_TAG_HEADER]]);
  let tag: BizTag | null = null;
  if (values !== undefined) {
    try {
      tag = parseBizTag(values);
    } catch (error) {
      if (!(error instanceof BizTagError)) throw error;
      options.router.recordRejectedTag(error);
      return { ok: false, error };
    }
  }
  const decision = options.router.decide(tag);
  const view = options.switches?.view(tag === null ? {} : tag.toRecord()) ?? null;
  return { ok: true, context: { tag, decision }, view };
}

/** The 400 body of a refused tag: `{error:{code, rule, reason}}`, the demo's error shape. */
export function bizTagErrorBody(error: BizTagError): { error: { code: string; rule: string; reason: string } } {
  return { error: { code: error.code, rule: error.rule, reason: error.message } };
}

/** Runs `fn` inside the prepared request's contexts (tag + route, OTel baggage, pinned switches). */
export function runPrepared<T>(prepared: Extract<PreparedRequest, { ok: true }>, options: BizTagMiddlewareOptions, fn: () => T): T {
  const inner = (): T => runWithBizContext(prepared.context, fn);
  return prepared.view !== null && options.switches !== undefined ? options.switches.runWith(prepared.view, inner) : inner();
}

export type BizTagMiddleware = (req: IncomingMessage, res: ServerResponse, next: () => unknown) => Promise<void>;

/**
 * node:http middleware: a malformed X-Biz-Tag gets 400 (the handler never runs); otherwise the
 * handler (`next`) runs with the tag and route in AsyncLocalStorage, the tag in OTel baggage and
 * the switch snapshot pinned. Requests without a tag go to the default route.
 *
 *   const tagged = createBizTagMiddleware({ router, switches });
 *   createServer((req, res) => void tagged(req, res, () => handle(req, res)));
 */
export function createBizTagMiddleware(options: BizTagMiddlewareOptions): BizTagMiddleware {
  const expose = options.exposeRoute ?? true;
  return async (req, res, next) => {
    const prepared = prepareRequest(req, options);
    if (!prepared.ok) {
      writeJson(res, 400, bizTagErrorBody(prepared.error));
      return;
    }
    if (expose) res.setHeader('x-govmap-route', prepared.context.decision.route.id);
    await runPrepared(prepared, options, next);
  };
}

/**
 * Writes a RouteOutcome: `live` and `cache` through `writeLive` (a cached answer is marked with
 * `x-govmap-degraded: cache` and an `age` header), `mock` as configured, `queued` as 202 with
 * the job token, `unavailable` as 503 with Retry-After. Every degraded answer carries
 * `x-govmap-degraded: <kind>; reason=<why>` so a client and a log can tell it from a live one.
 */
export function sendRouteOutcome<T>(res: ServerResponse, outcome: RouteOutcome<T>, writeLive: (value: T) => void, options: { readonly statusPath?: (token: string) => string } = {}): void {
  switch (outcome.kind) {
    case 'live':
      writeLive(outcome.value);
      return;
    case 'cache':
      res.setHeader('x-govmap-degraded', `cache; reason=${outcome.reason}`);
      res.setHeader('age', String(Math.floor(outcome.ageMs / 1000)));
      writeLive(outcome.value);
      return;
    case 'mock':
      for (const [name, value] of Object.entries(outcome.headers)) res.setHeader(name, value);
      res.setHeader('x-govmap-degraded', `mock; reason=${outcome.reason}`);
      writeJson(res, outcome.status, outcome.body);
      return;
    case 'queued': {
      res.setHeader('x-govmap-degraded', `async; reason=${outcome.reason}`);
      const statusUrl = options.statusPath?.(outcome.token);
      if (statusUrl !== undefined) res.setHeader('location', statusUrl);
      writeJson(res, 202, { status: 'ACCEPTED', token: outcome.token, route: outcome.route.id, ...(statusUrl === undefined ? {} : { statusUrl }) });
      return;
    }
    case 'unavailable':
      res.setHeader('x-govmap-degraded', `unavailable; reason=${outcome.reason}`);
      res.setHeader('retry-after', '5');
      writeJson(res, 503, {
        error: {
          code: 'ROUTE_DEGRADED',
          reason: `route "${outcome.route.id}" is degraded (${outcome.reason}) and has no degraded answer for this request (${outcome.detail})`,
        },
      });
      return;
  }
}

function writeJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
