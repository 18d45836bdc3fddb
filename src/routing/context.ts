import { AsyncLocalStorage } from 'node:async_hooks';
import { context as otelContext, propagation } from '@opentelemetry/api';
import type { Baggage, Context } from '@opentelemetry/api';
import { BIZ_TAG_HEADER, parseBizTag } from './biz-tag.ts';
import type { BizTag } from './biz-tag.ts';
import type { RouteDecision } from './route-table.ts';
import type { SwitchBoard } from '../switches/board.ts';
import type { SwitchView } from '../switches/snapshot.ts';

/**
 * How the tag travels with a request.
 *
 * In this process: an AsyncLocalStorage holding the request's BizContext (its tag and its
 * route decision), set by the middleware and visible to everything the request starts, across
 * every `await`.
 *
 * To downstream services: the `X-Biz-Tag` header itself, and an OpenTelemetry baggage entry
 * `govmap.biz_tag` holding the same header text, so the tag also crosses services that forward
 * only W3C baggage. The receiving side parses the entry with the same strict parser: baggage is
 * untrusted input like any header.
 */
export interface BizContext {
  /** The request's tag; null when the request carried none. */
  readonly tag: BizTag | null;
  readonly decision: RouteDecision;
  /**
   * The switch view pinned for the request, carried here rather than in the board's own async
   * context (one frame per request instead of two; see SwitchBoard.carryPinIn).
   */
  readonly switches?: { readonly board: SwitchBoard; readonly view: SwitchView };
}

/** The baggage entry that carries the tag: its header text. */
export const BIZ_TAG_BAGGAGE_KEY = 'govmap.biz_tag';

const storage = new AsyncLocalStorage<BizContext>();

/**
 * Where @opentelemetry/api v1 keeps what was registered globally (its cross-copy contract: every
 * copy of the API in a process finds the others there). `context` is set by
 * `context.setGlobalContextManager` and removed by `context.disable()`.
 */
const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/**
 * Whether an OTel context manager is registered. Without one, `context.with()` only calls its
 * function and `context.active()` is always the root context: baggage set for the request could
 * never be read back, so building it (two OTel context objects and a baggage per request) is
 * skipped. Read on each call, so a manager registered later takes effect at the next request.
 */
function otelContextManagerRegistered(): boolean {
  const registry = (globalThis as Record<symbol, { context?: unknown } | undefined>)[OTEL_GLOBAL];
  return registry?.context !== undefined;
}

/** Runs `fn` with `bizContext` as the current one (and the tag in the active OTel baggage). */
export function runWithBizContext<T>(bizContext: BizContext, fn: () => T): T {
  const tag = bizContext.tag;
  if (tag === null || !otelContextManagerRegistered()) return storage.run(bizContext, fn);
  const active = otelContext.active();
  return storage.run(bizContext, () => otelContext.with(withBizTagBaggage(active, tag), fn));
}

/** The current request's BizContext, or undefined outside a tagged request. */
export function currentBizContext(): BizContext | undefined {
  return storage.getStore();
}

/** The current request's tag, or null. */
export function currentBizTag(): BizTag | null {
  return storage.getStore()?.tag ?? null;
}

/** `baggage` (or a new one) with the tag's entry set. */
export function bizTagToBaggage(tag: BizTag, baggage: Baggage = propagation.createBaggage()): Baggage {
  return baggage.setEntry(BIZ_TAG_BAGGAGE_KEY, { value: tag.header });
}

/** An OTel context whose baggage carries the tag (other entries kept). */
export function withBizTagBaggage(ctx: Context, tag: BizTag): Context {
  return propagation.setBaggage(ctx, bizTagToBaggage(tag, propagation.getBaggage(ctx) ?? propagation.createBaggage()));
}

/**
 * The tag carried in `baggage`, or null when it carries none.
 * @throws BizTagError when the entry is there but malformed
 */
export function bizTagFromBaggage(baggage: Baggage | undefined): BizTag | null {
  const entry = baggage?.getEntry(BIZ_TAG_BAGGAGE_KEY);
  return entry === undefined ? null : parseBizTag(entry.value);
}

/**
 * Headers for a downstream call made inside the request: `x-biz-tag`, plus whatever the
 * registered OpenTelemetry propagators write for the active context (with the W3C baggage
 * propagator registered: `baggage: govmap.biz_tag=...`).
 */
export function outgoingBizHeaders(tag: BizTag | null = currentBizTag()): Record<string, string> {
  const headers: Record<string, string> = {};
  if (tag === null) return headers;
  propagation.inject(withBizTagBaggage(otelContext.active(), tag), headers);
  headers[BIZ_TAG_HEADER] = tag.header;
  return headers;
}
