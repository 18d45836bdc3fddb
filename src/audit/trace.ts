import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import type { SpanContext } from '@opentelemetry/api';

/** Where @opentelemetry/api 1.x registers its globals (context manager, tracer provider). */
const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/**
 * The span active on the calling thread (OpenTelemetry context), captured for every record.
 * The ids are parsed from hex into six words once per span and reused while the same span
 * stays active (an identity check), so a read under a span copies six integers.
 */
export class ActiveTrace {
  /** Trace id (16 bytes) then span id (8 bytes), little-endian words: what the ring stores. */
  readonly words = new Int32Array(6);
  traceId: string | null = null;
  spanId: string | null = null;
  #last: SpanContext | undefined;
  #lastValid = false;

  /** Reads the active span; true when there is a valid one (its ids are then in `words`). */
  capture(): boolean {
    // No context manager registered (the API's own global registry, shared by every copy of
    // @opentelemetry/api 1.x, holds none): context.active() is ROOT_CONTEXT, which holds no span.
    // Checked per call (one property load) because a manager may be registered at any time; it
    // saves the API's lookup chain (~10 ns) on every read of a service without tracing.
    const api = (globalThis as Record<symbol, { context?: unknown } | undefined>)[OTEL_GLOBAL];
    if (api === undefined || api.context === undefined) return false;
    const span = trace.getSpan(context.active());
    if (span === undefined) return false;
    const sc = span.spanContext();
    if (sc === this.#last) return this.#lastValid;
    this.#last = sc;
    this.#lastValid = isSpanContextValid(sc);
    if (this.#lastValid) {
      this.traceId = sc.traceId;
      this.spanId = sc.spanId;
      packHex(sc.traceId, this.words, 0, 4);
      packHex(sc.spanId, this.words, 4, 2);
    }
    return this.#lastValid;
  }
}

function nibble(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}

/** `n` words from 8n hex digits; byte b of word i is hex pair 4i + b (Int32Array is little-endian). */
function packHex(hex: string, out: Int32Array, at: number, n: number): void {
  for (let i = 0; i < n; i++) {
    let w = 0;
    for (let b = 0; b < 4; b++) {
      const k = (i * 4 + b) * 2;
      w |= ((nibble(hex.charCodeAt(k)) << 4) | nibble(hex.charCodeAt(k + 1))) << (b * 8);
    }
    out[at + i] = w;
  }
}
