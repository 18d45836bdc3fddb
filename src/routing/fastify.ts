import type { IncomingMessage } from 'node:http';
import { BIZ_TAG_MIDDLEWARE_OPTIONS, bizTagErrorBody, prepareRequest, runPrepared } from './http.ts';
import { refuseUnknownOptions } from '../map/known-options.ts';
import type { BizTagMiddlewareOptions, PreparedRequest } from './http.ts';

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
