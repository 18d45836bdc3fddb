import type { IncomingMessage } from 'node:http';
import { BIZ_TAG_MIDDLEWARE_OPTIONS, bizTagErrorBody, jsonText, prepareRequest, routeDegradedBody, runPrepared } from './http.ts';
import { refuseUnknownOptions } from '../map/known-options.ts';
import type { BizTagMiddlewareOptions, PreparedRequest } from './http.ts';
import { BODYLESS_STATUSES } from './route-table.ts';
import type { RouteOutcome } from './router.ts';

/*
 * Fastify is an optional peer dependency: this file never imports it, at run time or for types.
 * The shapes below are the few members of Fastify's request, reply and instance the plugin uses,
 * so a service without Fastify loads nothing and type-checks without it.
 */
interface FastifyRequestLike {
  readonly raw: IncomingMessage;
}
interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  hasHeader(name: string): boolean;
  send(payload?: unknown): FastifyReplyLike;
}
type HookDone = (error?: Error) => void;
interface FastifyInstanceLike {
  addHook(name: 'onRequest' | 'preHandler', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: HookDone) => void): unknown;
}

export type GovmapFastifyPlugin = ((instance: FastifyInstanceLike, options: unknown, done: (error?: Error) => void) => void) & {
  readonly [key: symbol]: unknown;
};

/**
 * The X-Biz-Tag middleware as a Fastify plugin, applied to the whole instance (not
 * encapsulated): `app.register(govmapBizTag({ router, switches }))`.
 *
 * `onRequest` parses the tag (400 for a malformed one, before any body is read), decides the
 * route and pins the switches. Fastify reads the body in callbacks of the request stream, which
 * run outside the `onRequest` continuation, so `preHandler` re-enters the same contexts (the
 * same pinned view: a switch change between the two hooks does not split the request).
 */
export function govmapBizTag(options: BizTagMiddlewareOptions): GovmapFastifyPlugin {
  refuseUnknownOptions(options, BIZ_TAG_MIDDLEWARE_OPTIONS, 'govmapBizTag');
  const expose = options.exposeRoute ?? true;
  const prepared = new WeakMap<FastifyRequestLike, Extract<PreparedRequest, { ok: true }>>();
  const plugin = (instance: FastifyInstanceLike, _options: unknown, done: (error?: Error) => void): void => {
    instance.addHook('onRequest', (request, reply, next) => {
      const result = prepareRequest(request.raw, options);
      if (!result.ok) {
        // Answering from a callback hook: the reply ends the request; `next` must not be called.
        // no-store, as the node:http middleware answers: a shared cache must not serve one client's refusal to others.
        reply.code(400).header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(bizTagErrorBody(result.error));
        return;
      }
      prepared.set(request, result);
      if (expose) reply.header('x-govmap-route', result.context.decision.route.id);
      runPrepared(result, options, () => next());
    });
    instance.addHook('preHandler', (request, _reply, next) => {
      const result = prepared.get(request);
      if (result === undefined) return next();
      runPrepared(result, options, () => next());
    });
    done();
  };
  // What fastify-plugin sets: do not encapsulate (hooks apply to every route), and a name for errors.
  return Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'govmap-biz-tag' });
}

/**
 * sendRouteOutcome for a Fastify reply: the same statuses, headers and bodies (the 503
 * `ROUTE_DEGRADED` body included), so a client or gateway reads a degraded answer the same way
 * whichever server framework the service runs on. `live` and `cache` go through `writeLive`.
 */
export function sendRouteOutcomeReply<T>(reply: FastifyReplyLike, outcome: RouteOutcome<T>, writeLive: (value: T) => unknown, options: { readonly statusPath?: (token: string) => string } = {}): void {
  // As sendRouteOutcome: the route the request ran on, which a reload may have changed since arrival.
  if (outcome.kind !== 'live' || reply.hasHeader('x-govmap-route')) reply.header('x-govmap-route', outcome.route.id);
  switch (outcome.kind) {
    case 'live':
      writeLive(outcome.value);
      return;
    case 'cache':
      reply.header('x-govmap-degraded', `cache; reason=${outcome.reason}`).header('age', String(Math.floor(outcome.ageMs / 1000)));
      writeLive(outcome.value);
      return;
    case 'mock':
      for (const [name, value] of Object.entries(outcome.headers)) reply.header(name, value);
      reply.header('x-govmap-degraded', `mock; reason=${outcome.reason}`);
      sendJson(reply, outcome.status, outcome.body);
      return;
    case 'queued': {
      reply.header('x-govmap-degraded', `async; reason=${outcome.reason}`);
      const statusUrl = options.statusPath?.(outcome.token);
      if (statusUrl !== undefined) reply.header('location', statusUrl);
      sendJson(reply, 202, { status: 'ACCEPTED', token: outcome.token, route: outcome.route.id, ...(statusUrl === undefined ? {} : { statusUrl }) });
      return;
    }
    case 'unavailable':
      reply.header('x-govmap-degraded', `unavailable; reason=${outcome.reason}`).header('retry-after', '5');
      sendJson(reply, 503, routeDegradedBody(outcome));
      return;
  }
}

function sendJson(reply: FastifyReplyLike, status: number, body: unknown): void {
  reply.code(status).header('cache-control', 'no-store');
  // Serialized here, not by Fastify: its JSON.stringify throws on a bigint (money in minor units).
  if (BODYLESS_STATUSES.has(status)) reply.send();
  else reply.header('content-type', 'application/json; charset=utf-8').send(jsonText(body));
}
