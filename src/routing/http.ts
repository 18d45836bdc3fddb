import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SwitchBoard } from '../switches/board.ts';
import type { SwitchView } from '../switches/snapshot.ts';
import { BIZ_TAG_HEADER, parseBizTag } from './biz-tag.ts';
import type { BizTag } from './biz-tag.ts';
import { currentBizContext, runWithBizContext } from './context.ts';
import type { BizContext } from './context.ts';
import { BizTagError } from './errors.ts';
import { BODYLESS_STATUSES } from './route-table.ts';
import type { DegradeReason, RouteOutcome, Router, UnavailableDetail } from './router.ts';
import { BizTagCache } from './tag-cache.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface BizTagMiddlewareOptions {
  readonly router: Router;
  /** Pin this board's snapshot for the request, with the tag's pairs as targeting context. */
  readonly switches?: SwitchBoard;
  /**
   * Sets `x-govmap-route: <route id>` on every response (with `res.setHeader`). Default true.
   * A service that writes its own headers in one `writeHead(status, {...})` may turn it off and
   * add the header there (`currentBizContext()?.decision.route.id`): once any header is set with
   * `setHeader`, Node merges and lowercases the `writeHead` headers into a dictionary-mode object
   * (measured on the reference service: ~1.4 KB more allocation per response).
   */
  readonly exposeRoute?: boolean;
}

/** Every key of BizTagMiddlewareOptions (the compiler checks the two stay the same): any other is refused. */
export const BIZ_TAG_MIDDLEWARE_OPTIONS = optionKeys<BizTagMiddlewareOptions>({
  router: true, switches: true, exposeRoute: true,
});

/** The middleware's preparation of one request: its BizContext and pinned switch view, or why it is refused. */
export type PreparedRequest =
  | { readonly ok: true; readonly context: BizContext; readonly view: SwitchView | null }
  | { readonly ok: false; readonly error: BizTagError };

/** Parsed tags and their switch views, per middleware (keyed by its options object). */
const caches = new WeakMap<BizTagMiddlewareOptions, BizTagCache>();

/**
 * Parses the request's X-Biz-Tag (absent: untagged; several: refused) and decides its route.
 * Shared by the node:http middleware and the Fastify plugin. Tags already seen come from a
 * bounded cache (see BizTagCache): the same answer, without parsing again.
 */
export function prepareRequest(req: IncomingMessage, options: BizTagMiddlewareOptions): PreparedRequest {
  let cache = caches.get(options);
  if (cache === undefined) {
    caches.set(options, (cache = new BizTagCache()));
    if (options.switches !== undefined) options.switches.carryPinIn(pinCarrierFor(options.switches));
  }
  const header = bizTagHeaderOf(req);
  const switches = options.switches;
  let tag: BizTag | null = null;
  let view: SwitchView | null = null;
  try {
    if (typeof header === 'string') {
      if (switches === undefined) tag = cache.tag(header);
      else ({ tag, view } = cache.tagAndView(header, switches));
    } else if (header !== undefined) tag = parseBizTag(header); // several headers: refused with MULTIPLE_HEADERS
  } catch (error) {
    if (!(error instanceof BizTagError)) throw error;
    options.router.recordRejectedTag(error);
    return { ok: false, error };
  }
  const decision = options.router.decide(tag);
  if (switches === undefined) return { ok: true, context: { tag, decision }, view: null };
  if (view === null) view = cache.untaggedView(switches);
  return { ok: true, context: { tag, decision, switches: { board: switches, view } }, view };
}

/** One carrier per board: reads the pin the middleware put in the request's BizContext. */
const pinCarriers = new WeakMap<SwitchBoard, () => SwitchView | undefined>();

function pinCarrierFor(board: SwitchBoard): () => SwitchView | undefined {
  let carrier = pinCarriers.get(board);
  if (carrier === undefined) {
    carrier = () => {
      const pinned = currentBizContext()?.switches;
      return pinned !== undefined && pinned.board === board ? pinned.view : undefined;
    };
    pinCarriers.set(board, carrier);
  }
  return carrier;
}

/**
 * The X-Biz-Tag value(s) of `req`: undefined when absent, the text when sent once, every value
 * when sent several times (`headers[]` would join them with ", " and hide the conflict). Read
 * from `rawHeaders`, which the parser fills anyway, rather than `headersDistinct`, which builds
 * a second object of every header on each request.
 */
function bizTagHeaderOf(req: IncomingMessage): string | string[] | undefined {
  const raw = req.rawHeaders as string[] | undefined;
  if (raw === undefined) {
    const value = req.headers[BIZ_TAG_HEADER];
    return value;
  }
  let found: string | undefined;
  let several: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== BIZ_TAG_HEADER.length || (name !== BIZ_TAG_HEADER && name.toLowerCase() !== BIZ_TAG_HEADER)) continue;
    const value = raw[i + 1]!;
    if (found === undefined) found = value;
    else (several ??= [found]).push(value);
  }
  return several ?? found;
}

/** The 400 body of a refused tag: `{error:{code, rule, reason}}`, the demo's error shape. */
export function bizTagErrorBody(error: BizTagError): { error: { code: string; rule: string; reason: string } } {
  return { error: { code: error.code, rule: error.rule, reason: error.message } };
}

/** Runs `fn` inside the prepared request's contexts (tag + route, OTel baggage, pinned switches). */
export function runPrepared<T>(prepared: Extract<PreparedRequest, { ok: true }>, options: BizTagMiddlewareOptions, fn: () => T): T {
  const switches = options.switches;
  const view = prepared.view;
  // The usual case: the BizContext carries the pin itself (one async-context frame).
  if (view === null || switches === undefined || prepared.context.switches?.view === view) return runWithBizContext(prepared.context, fn);
  // A PreparedRequest built by hand, without the pin inside: pin it on the board.
  return switches.runWith(view, () => runWithBizContext(prepared.context, fn));
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
  refuseUnknownOptions(options, BIZ_TAG_MIDDLEWARE_OPTIONS, 'createBizTagMiddleware');
  const expose = options.exposeRoute ?? true;
  // Not an async function: it hands back the handler's own promise rather than a new one
  // awaiting it (one promise and one microtask fewer per request); a synchronous throw still
  // becomes a rejection, as from an async function.
  return (req, res, next) => {
    try {
      const prepared = prepareRequest(req, options);
      if (!prepared.ok) {
        writeJson(res, 400, bizTagErrorBody(prepared.error));
        return RESOLVED;
      }
      if (expose) res.setHeader('x-govmap-route', prepared.context.decision.route.id);
      const result = runPrepared(prepared, options, next);
      return result instanceof Promise ? (result as Promise<void>) : RESOLVED;
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Writes a RouteOutcome: `live` and `cache` through `writeLive` (a cached answer is marked with
 * `x-govmap-degraded: cache` and an `age` header), `mock` as configured, `queued` as 202 with
 * the job token, `unavailable` as 503 with Retry-After. Every degraded answer carries
 * `x-govmap-degraded: <kind>; reason=<why>` so a client and a log can tell it from a live one,
 * and `x-govmap-route: <route id>` naming the route that degraded (even with the middleware's
 * `exposeRoute` off: a degraded answer is rare and must say whose it is).
 */
export function sendRouteOutcome<T>(res: ServerResponse, outcome: RouteOutcome<T>, writeLive: (value: T) => void, options: { readonly statusPath?: (token: string) => string } = {}): void {
  // The middleware named the route decided on arrival; a reload meanwhile may have decided the
  // request again (router.execute): the answer names the route it ran on.
  // A handler that flushed its headers before a live answer's body must not get a throw here.
  if (outcome.kind !== 'live' || (res.hasHeader('x-govmap-route') && !res.headersSent)) res.setHeader('x-govmap-route', outcome.route.id);
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
      writeJson(res, 503, routeDegradedBody(outcome));
      return;
  }
}

/** The body of a 503 `ROUTE_DEGRADED` answer, as its fields are documented in docs/routing.md. */
export interface RouteDegradedBody {
  readonly error: {
    readonly code: 'ROUTE_DEGRADED';
    readonly route: string;
    /** Why the route degraded: what a client or gateway branches on (stable codes, unlike `reason`). */
    readonly degradeReason: DegradeReason;
    /** Why no degraded answer could be given either. */
    readonly detail: UnavailableDetail;
    /** The same, in words, for a person or a log. */
    readonly reason: string;
  };
}

/**
 * The 503 body of an `unavailable` outcome, shared by sendRouteOutcome and the Fastify plugin's
 * sendRouteOutcomeReply so both answer alike. `reason` is human text everywhere in govmap's error
 * bodies, so the codes get fields of their own rather than taking its place.
 */
export function routeDegradedBody(outcome: Extract<RouteOutcome<unknown>, { kind: 'unavailable' }>): RouteDegradedBody {
  return {
    error: {
      code: 'ROUTE_DEGRADED',
      route: outcome.route.id,
      degradeReason: outcome.reason,
      detail: outcome.detail,
      reason: `route "${outcome.route.id}" is degraded (${outcome.reason}) and has no degraded answer for this request (${outcome.detail})`,
    },
  };
}

/** A body as the answers write it: JSON, bigint (money in minor units) as a decimal string. */
export function jsonText(body: unknown): string {
  return JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

function writeJson(res: ServerResponse, status: number, body: unknown): void {
  if (BODYLESS_STATUSES.has(status)) {
    // Node drops the body of these itself but still sends a content-length set by hand, which a
    // 204 must not carry and which misleads a proxy that reads it.
    res.writeHead(status, { 'cache-control': 'no-store' });
    res.end();
    return;
  }
  const text = jsonText(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
