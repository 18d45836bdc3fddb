import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { takeAnchor, epochNanosString } from '../../src/audit/clock.ts';
import { ByteWriter, EncodeContext, encodeDirect, encodeIdentity, encodeRingEntry } from '../../src/audit/encoder.ts';
import type { DirectRecord } from '../../src/audit/encoder.ts';
import { parseSpoolLine } from '../../src/audit/event.ts';
import { createRing, CTRL_HEAD, CTRL_TAIL, OP_LOAD, OP_RANGE, RingProducer } from '../../src/audit/ring.ts';

/**
 * The two encoders (the drain worker's, from the shared ring, and the caller's thread's, for
 * writes) must write exactly what JSON.stringify writes for the same record: same field order,
 * same escapes, UTF-8. Any text can be a key: control characters, quotes, non-ASCII, lone
 * surrogates.
 */
const text = fc.string({ unit: 'binary', maxLength: 40 });
const anchor = takeAnchor();
const ctx = new EncodeContext(anchor, encodeIdentity('clearing/instance-1', 'host/pid-1'));
const decoder = new TextDecoder('utf-8', { fatal: true });

function expectedLine(fields: Record<string, unknown>): string {
  return `${JSON.stringify({
    v: 1,
    seq: fields.seq,
    op_type: fields.op,
    map: fields.map,
    resource_id: fields.key,
    trace_id: null,
    span_id: null,
    range_bounds: fields.bounds ?? null,
    timestamp: fields.timestamp,
    outcome: fields.outcome,
    reason: fields.reason,
    actor: 'clearing/instance-1',
    origin: 'host/pid-1',
    ...(fields.value === undefined ? {} : { value: fields.value }),
  })}\n`;
}

test('ring records encode exactly as JSON.stringify, for any key, map name, reason and bounds', () => {
  const ring = createRing(1 << 20);
  const producer = new RingProducer(ring);
  const trace = new Int32Array(6);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 40 }),
      text,
      text,
      fc.option(text, { nil: null }),
      fc.constantFrom('ok', 'miss', 'error'),
      fc.option(fc.record({ start: fc.option(text, { nil: null }), end: fc.option(text, { nil: null }), inclusive: fc.boolean(), prefix: fc.option(text, { nil: null }) }), { nil: null }),
      (seq, map, key, reason, outcome, bounds) => {
        const isRange = bounds !== null;
        producer.stamp();
        const at = Atomics.load(ring.ctrl, CTRL_HEAD);
        assert.ok(producer.tryPublish(seq, isRange ? OP_RANGE : OP_LOAD, ['ok', 'miss', 'rejected', 'error'].indexOf(outcome), map, isRange ? undefined : key, reason, bounds, false, trace));
        producer.publish();
        const w = new ByteWriter(64);
        w.ensure(1 << 16);
        // When the entry did not fit before the end it wrapped to word 0 (head is now below `at`).
        encodeRingEntry(w, ring, Atomics.load(ring.ctrl, CTRL_HEAD) < at ? 0 : at, ctx);
        Atomics.store(ring.ctrl, CTRL_TAIL, Atomics.load(ring.ctrl, CTRL_HEAD));
        const line = decoder.decode(w.buf.subarray(0, w.pos));
        const parsed = JSON.parse(line) as { timestamp: string };
        assert.equal(line, expectedLine({ seq, op: isRange ? 'RANGE' : 'LOAD', map, key: isRange ? null : key, bounds, timestamp: parsed.timestamp, outcome, reason }));
        assert.equal(parseSpoolLine(line.trimEnd()).kind, 'event');
      },
    ),
    { numRuns: 300 },
  );
});

test('ring records with a numeric key and an active span: resource_id is the number as text, trace and span ids in hex', () => {
  const ring = createRing(1 << 20);
  const producer = new RingProducer(ring);
  const hex = (words: Int32Array, from: number, n: number): string =>
    Buffer.from(words.buffer, words.byteOffset + from * 4, n * 4).toString('hex');
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: 6, maxLength: 6 }),
      fc.boolean(),
      // Names the table holds (short) and names that travel inline (longer than 64 units).
      fc.oneof(fc.string({ maxLength: 12 }), fc.string({ minLength: 65, maxLength: 90 })),
      (seq, key, traceWords, hasTrace, map) => {
        const trace = Int32Array.from(traceWords);
        producer.stamp();
        const at = Atomics.load(ring.ctrl, CTRL_HEAD);
        assert.ok(producer.tryPublish(seq, OP_LOAD, 0, map, key, null, null, hasTrace, trace));
        producer.publish();
        const w = new ByteWriter(64);
        w.ensure(1 << 16); // the worker ensures maxEncodedBytes before each entry
        encodeRingEntry(w, ring, Atomics.load(ring.ctrl, CTRL_HEAD) < at ? 0 : at, ctx);
        Atomics.store(ring.ctrl, CTRL_TAIL, Atomics.load(ring.ctrl, CTRL_HEAD));
        const event = JSON.parse(decoder.decode(w.buf.subarray(0, w.pos))) as Record<string, unknown>;
        assert.equal(event.seq, seq);
        assert.equal(event.map, map);
        assert.equal(event.resource_id, String(key));
        assert.equal(event.trace_id, hasTrace ? hex(trace, 0, 4) : null);
        assert.equal(event.span_id, hasTrace ? hex(trace, 4, 2) : null);
      },
    ),
    { numRuns: 300 },
  );
});

test('direct (write) records encode exactly as JSON.stringify; money stays a decimal string', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 40 }), text, text, fc.option(text, { nil: null }), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), (seq, map, key, reason, amount) => {
      const perfMs = performance.now();
      const record: DirectRecord = { seq, op: 'STORE', map, key, traceId: null, spanId: null, bounds: null, perfMs, outcome: 2, reason, value: amount.toString(), gap: null, detail: null };
      const w = new ByteWriter(16);
      encodeDirect(w, record, ctx);
      const line = decoder.decode(w.buf.subarray(0, w.pos));
      assert.equal(line, expectedLine({ seq, op: 'STORE', map, key, timestamp: epochNanosString(anchor, perfMs), outcome: 'rejected', reason, value: amount.toString() }));
      assert.equal((JSON.parse(line) as { value: string }).value, amount.toString());
    }),
    { numRuns: 300 },
  );
});

test('a run of direct records through one context encodes each exactly as JSON.stringify (op, map, outcome, reason, value, trace, bounds, gap, detail)', () => {
  // The context keeps the last op and map's bytes and the no-reason tails: a sequence that
  // changes any of them from one record to the next must never reuse stale bytes.
  const hexId = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
  const record = fc.record({
    op: fc.constantFrom('STORE', 'DELETE', 'MAP_CREATED', 'SINK_FAILED', 'AUDIT_GAP'),
    map: fc.option(fc.oneof(fc.constantFrom('balances', 'limits'), text), { nil: null }),
    key: fc.option(text, { nil: null }),
    trace: fc.option(fc.tuple(hexId(32), hexId(16)), { nil: null }),
    bounds: fc.option(fc.record({ start: fc.option(text, { nil: null }), end: fc.option(text, { nil: null }), inclusive: fc.boolean(), prefix: fc.option(text, { nil: null }) }), { nil: null }),
    outcome: fc.integer({ min: 0, max: 3 }),
    reason: fc.option(text, { nil: null }),
    value: fc.oneof(fc.constant(undefined), fc.constant(null), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String)),
    gap: fc.option(fc.record({ from: fc.nat(2 ** 40), to: fc.nat(2 ** 40), torn: fc.option(fc.record({ segment: fc.nat(1000), offset: fc.nat(2 ** 40), length: fc.nat(1 << 20) }), { nil: null }) }), { nil: null }),
    detail: fc.option(text, { nil: null }),
  });
  const outcomes = ['ok', 'miss', 'rejected', 'error'];
  fc.assert(
    fc.property(fc.array(record, { minLength: 1, maxLength: 12 }), (records) => {
      const runCtx = new EncodeContext(anchor, encodeIdentity('clearing/instance-1', 'host/pid-1'));
      const w = new ByteWriter(16);
      records.forEach((f, i) => {
        const perfMs = performance.now();
        const gap = f.gap === null ? null : { ...f.gap, cause: 'RING_FULL' as const };
        const r: DirectRecord = { seq: i + 1, op: f.op, map: f.map, key: f.key ?? undefined, traceId: f.trace?.[0] ?? null, spanId: f.trace?.[1] ?? null, bounds: f.bounds, perfMs, outcome: f.outcome, reason: f.reason, value: f.value, gap, detail: f.detail };
        w.pos = 0;
        encodeDirect(w, r, runCtx);
        const expected = `${JSON.stringify({
          v: 1,
          seq: i + 1,
          op_type: f.op,
          map: f.map,
          resource_id: f.key,
          trace_id: f.trace?.[0] ?? null,
          span_id: f.trace?.[1] ?? null,
          range_bounds: f.bounds,
          timestamp: epochNanosString(anchor, perfMs),
          outcome: outcomes[f.outcome],
          reason: f.reason,
          actor: 'clearing/instance-1',
          origin: 'host/pid-1',
          ...(f.value === undefined ? {} : { value: f.value }),
          ...(gap === null ? {} : { gap: { from: gap.from, to: gap.to, cause: gap.cause, torn: gap.torn } }),
          ...(f.detail === null ? {} : { detail: f.detail }),
        })}\n`;
        assert.equal(decoder.decode(w.buf.subarray(0, w.pos)), expected, `record ${i + 1} of the run`);
      });
    }),
    { numRuns: 300 },
  );
});

test('timestamps are epoch nanoseconds that follow the monotonic clock', () => {
  const a = BigInt(epochNanosString(anchor, anchor.perfMs));
  const b = BigInt(epochNanosString(anchor, anchor.perfMs + 1.5));
  assert.equal(b - a, 1_500_000n);
  // The wall clock read between two monotonic readings: a pause of the process between the reads
  // (seen: 4 ms on a loaded machine) widens the bracket instead of failing the comparison.
  const before = BigInt(epochNanosString(anchor, performance.now()));
  const wall = BigInt(Date.now()) * 1_000_000n;
  const after = BigInt(epochNanosString(anchor, performance.now()));
  // 2 ms of slack: Date.now() has whole milliseconds, and the anchor itself was taken to within one.
  assert.ok(wall >= before - 2_000_000n && wall <= after + 2_000_000n, `wall ${wall} within [${before}, ${after}] ± 2 ms`);
});
