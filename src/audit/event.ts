/**
 * The audit record (DESIGN.md "Audit event"), one JSON object per line in the spool and the
 * value of a Kafka message. Field order is fixed (the encoder writes it, verify expects it):
 *
 *   {"v":1,"seq":42,"op_type":"STORE","map":"balances","resource_id":"acct-000001",
 *    "trace_id":"<32 hex>|null","span_id":"<16 hex>|null","range_bounds":{...}|null,
 *    "timestamp":"<ns since epoch>","outcome":"ok","reason":null,"actor":"clearing/instance-1",
 *    "origin":"host-a/pid-4242", ["value":"1050",] ["value_error":"...",] ["gap":{...},] ["detail":"..."]}
 *
 * What PCI DSS v4 requirement 10.2.2 asks of an audit record, and where it is here: user /
 * actor identification (`actor`: the service instance acting), type of event (`op_type`), date
 * and time (`timestamp`, ns), success or failure (`outcome`, `reason`), origination (`origin`:
 * host and process; `trace_id`/`span_id`: the request), identity of the affected resource
 * (`map` + `resource_id`). `v` versions the schema; `seq` numbers records per actor, gap-free:
 * a record that could not be kept is named by an AUDIT_GAP record, never silently missing.
 *
 * Money in `value` is integer minor units as a decimal string, never a JSON number.
 */
export const AUDIT_SCHEMA_VERSION = 1;

export const MAP_OPS = ['LOAD', 'STORE', 'DELETE', 'RANGE'] as const;
export const LIFECYCLE_OPS = [
  'MAP_CREATED',
  'MAP_ATTACHED',
  'MAP_DETACHED',
  'MAP_DISPOSED',
  'AUDIT_STARTED',
  'AUDIT_STOPPED',
  'SINK_FAILED',
  'SINK_RECOVERED',
  'AUDIT_GAP',
] as const;
/**
 * Governance events of the other parts, written like lifecycle records (caller's thread, durable
 * in the OS before `recordGovernanceEvent` returns, chained and sealed): a breaker's state change,
 * a switch change, a leak suspect, the removal of old segments by a retention policy
 * (AUDIT_RETENTION: resource_id = the spool, detail = the segments removed and their seals).
 * `map` names the owner (breaker group, switch board, map), `resource_id` the thing (breaker key,
 * switch name, map name), `reason` why, and `detail` is a JSON object as a string: who asked
 * (`by`) and the before/after (docs/audit.md "Governance events").
 */
export const GOVERNANCE_OPS = ['BREAKER_TRANSITION', 'SWITCH_CHANGED', 'LEAK_SUSPECT', 'AUDIT_RETENTION'] as const;
export type MapOpType = (typeof MAP_OPS)[number];
export type LifecycleOpType = (typeof LIFECYCLE_OPS)[number];
export type GovernanceOpType = (typeof GOVERNANCE_OPS)[number];
export type AuditOpType = MapOpType | LifecycleOpType | GovernanceOpType;
export type AuditOutcome = 'ok' | 'miss' | 'rejected' | 'error';
export const OUTCOMES: readonly AuditOutcome[] = ['ok', 'miss', 'rejected', 'error'];

/**
 * Why seqs are missing. CRASH: the process died with read records still in the ring (named on
 * restart). RING_FULL: the ring stayed full past `maxWaitMs` and reads were dropped.
 * SPOOL_UNWRITABLE: the spool failed for longer than the in-memory backlog could hold.
 * DRAIN_WORKER_DIED: the drain worker thread died with reads it had taken off the ring not yet
 * written; named when the recorder restarts it in-process (the process lived on).
 */
export type GapCause = 'CRASH' | 'RING_FULL' | 'SPOOL_UNWRITABLE' | 'DRAIN_WORKER_DIED';

export interface AuditGap {
  /** First and last seq of the range; every seq in it that is absent from the log was lost. */
  readonly from: number;
  readonly to: number;
  readonly cause: GapCause;
  /** CRASH and DRAIN_WORKER_DIED: a partial last line the dead writer left behind, which verify then accepts. */
  readonly torn?: { readonly segment: number; readonly offset: number; readonly length: number } | null;
}

export interface AuditRangeBounds {
  readonly start: string | null;
  readonly end: string | null;
  readonly inclusive: boolean;
  readonly prefix: string | null;
}

export interface AuditEvent {
  readonly v: 1;
  readonly seq: number;
  readonly op_type: AuditOpType;
  readonly map: string | null;
  readonly resource_id: string | null;
  readonly trace_id: string | null;
  readonly span_id: string | null;
  readonly range_bounds: AuditRangeBounds | null;
  /** Nanoseconds since the Unix epoch, decimal string (a JSON number cannot hold it exactly). */
  readonly timestamp: string;
  readonly outcome: AuditOutcome;
  readonly reason: string | null;
  readonly actor: string;
  readonly origin: string;
  /** STORE: the value written or refused; DELETE: the value removed. Money as decimal minor units. */
  readonly value?: string | null;
  /** Set when the recorder's `recordValue` failed for this write (value is then null): `RECORD_VALUE_FAILED`. */
  readonly value_error?: string;
  /** A read key longer than the ring's limit was cut; this is its full length in UTF-16 units. */
  readonly resource_id_length?: number;
  readonly gap?: AuditGap;
  readonly detail?: string | null;
}

/**
 * The chain link written by the drain worker: SHA-256 (or HMAC-SHA256 with a key) over the
 * previous seal's hash followed by the file's bytes [from, to). Seals cover byte ranges, not
 * records, so two writers (the caller's thread for writes, the worker for reads) can append to
 * one file without a lock: each seal attests exactly the bytes the OS holds, in file order.
 */
export interface SealRecord {
  readonly v: 1;
  readonly type: 'SEAL';
  readonly seal: number;
  readonly segment: number;
  readonly from: number;
  readonly to: number;
  /** Every read-stream record with seq <= this lies in bytes before `to` (in this or earlier segments). */
  readonly reads_through: number;
  /** Every write-stream record with seq <= this lies in bytes before `to`. */
  readonly writes_through: number;
  readonly alg: ChainAlgorithm;
  readonly prev: string;
  readonly hash: string;
  /** Last seal of its segment; the chain continues in segment + 1. */
  readonly final: boolean;
}

/** First line of every segment file. */
export interface SegmentRecord {
  readonly v: 1;
  readonly type: 'SEGMENT';
  readonly segment: number;
  readonly actor: string;
  readonly origin: string;
  readonly timestamp: string;
}

export type ChainAlgorithm = 'sha256' | 'hmac-sha256';
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Which writer a record comes from. Read-stream records (LOAD, RANGE) are written by the drain
 * worker in seq order; everything else (writes, lifecycle, gaps) by the caller's thread, also in
 * seq order. The two streams interleave in the file, so seqs are ordered per stream.
 */
export function isReadStream(op: string): boolean {
  return op === 'LOAD' || op === 'RANGE';
}

const OP_SET: ReadonlySet<string> = new Set<string>([...MAP_OPS, ...LIFECYCLE_OPS, ...GOVERNANCE_OPS]);
const OUTCOME_SET: ReadonlySet<string> = new Set<string>(OUTCOMES);
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const DIGITS = /^[0-9]{1,30}$/;

export type SpoolLine =
  | { readonly kind: 'event'; readonly event: AuditEvent }
  | { readonly kind: 'seal'; readonly seal: SealRecord }
  | { readonly kind: 'segment'; readonly segment: SegmentRecord }
  | { readonly kind: 'invalid'; readonly problem: string };

/** Parses one spool line and checks it against the schema; says what is wrong when it is not a record. */
export function parseSpoolLine(text: string): SpoolLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'invalid', problem: 'not a JSON object (unparseable bytes)' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { kind: 'invalid', problem: 'not a JSON object' };
  const r = value as Record<string, unknown>;
  if (r.v !== AUDIT_SCHEMA_VERSION) return { kind: 'invalid', problem: `schema version ${JSON.stringify(r.v)} is not ${AUDIT_SCHEMA_VERSION}` };
  if (r.type === 'SEAL') return checkSeal(r);
  if (r.type === 'SEGMENT') {
    if (!isCount(r.segment) || typeof r.actor !== 'string' || typeof r.origin !== 'string' || typeof r.timestamp !== 'string') {
      return { kind: 'invalid', problem: 'malformed SEGMENT header' };
    }
    return { kind: 'segment', segment: r as unknown as SegmentRecord };
  }
  const problem = eventProblem(r);
  return problem === null ? { kind: 'event', event: r as unknown as AuditEvent } : { kind: 'invalid', problem };
}

function checkSeal(r: Record<string, unknown>): SpoolLine {
  const ok =
    isCount(r.seal) &&
    isCount(r.segment) &&
    isCount(r.from) &&
    isCount(r.to) &&
    (r.to) >= (r.from) &&
    isCountOrZero(r.reads_through) &&
    isCountOrZero(r.writes_through) &&
    (r.alg === 'sha256' || r.alg === 'hmac-sha256') &&
    typeof r.prev === 'string' &&
    /^[0-9a-f]{64}$/.test(r.prev) &&
    typeof r.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(r.hash) &&
    typeof r.final === 'boolean';
  return ok ? { kind: 'seal', seal: r as unknown as SealRecord } : { kind: 'invalid', problem: 'malformed SEAL record' };
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
function isCountOrZero(x: unknown): x is number {
  return isCount(x);
}
function nullableString(x: unknown): boolean {
  return x === null || typeof x === 'string';
}

function eventProblem(r: Record<string, unknown>): string | null {
  if (!isCount(r.seq) || r.seq === 0) return 'seq is not a positive integer';
  if (typeof r.op_type !== 'string' || !OP_SET.has(r.op_type)) return `unknown op_type ${JSON.stringify(r.op_type)}`;
  if (!nullableString(r.map) || !nullableString(r.resource_id)) return 'map and resource_id must be strings or null';
  if (!(r.trace_id === null || (typeof r.trace_id === 'string' && HEX32.test(r.trace_id)))) return 'trace_id is not 32 lowercase hex digits or null';
  if (!(r.span_id === null || (typeof r.span_id === 'string' && HEX16.test(r.span_id)))) return 'span_id is not 16 lowercase hex digits or null';
  if (r.range_bounds !== null) {
    const b = r.range_bounds as Record<string, unknown> | undefined;
    if (r.op_type !== 'RANGE' || b === undefined || typeof b !== 'object' || !nullableString(b.start) || !nullableString(b.end) || typeof b.inclusive !== 'boolean' || !nullableString(b.prefix)) {
      return 'range_bounds is malformed, or present on an op other than RANGE';
    }
  }
  if (typeof r.timestamp !== 'string' || !DIGITS.test(r.timestamp)) return 'timestamp is not a decimal string of nanoseconds';
  if (typeof r.outcome !== 'string' || !OUTCOME_SET.has(r.outcome)) return `unknown outcome ${JSON.stringify(r.outcome)}`;
  if (!nullableString(r.reason)) return 'reason must be a string or null';
  if (typeof r.actor !== 'string' || typeof r.origin !== 'string') return 'actor and origin must be strings';
  if ('value' in r && !(r.value === null || (typeof r.value === 'string'))) return 'value must be a string (money: decimal minor units) or null, never a number';
  if (r.op_type === 'AUDIT_GAP') {
    const g = r.gap as Record<string, unknown> | undefined;
    if (g === undefined || typeof g !== 'object' || g === null || !isCount(g.from) || !isCount(g.to) || (g.to) < (g.from)) return 'AUDIT_GAP without a valid gap range';
    if (g.cause !== 'CRASH' && g.cause !== 'RING_FULL' && g.cause !== 'SPOOL_UNWRITABLE' && g.cause !== 'DRAIN_WORKER_DIED') return `unknown gap cause ${JSON.stringify(g.cause)}`;
  }
  if ((GOVERNANCE_OPS as readonly string[]).includes(r.op_type)) {
    if (typeof r.resource_id !== 'string') return `${r.op_type} without a resource_id`;
    if (typeof r.detail !== 'string' || !isJsonObjectText(r.detail)) return `${r.op_type} detail is not a JSON object`;
  }
  return null;
}

function isJsonObjectText(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  } catch {
    return false;
  }
}

/**
 * A map key as `resource_id`. Strings as they are; numbers and bigints in decimal; other keys
 * (objects) as JSON when they have one. Only string and number keys are recorded without
 * allocating (docs/audit.md).
 */
export function renderKey(key: unknown): string {
  switch (typeof key) {
    case 'string':
      return key;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(key);
    case 'symbol':
      return key.toString();
    default: {
      try {
        const json = JSON.stringify(key) as string | undefined;
        if (json !== undefined) return json;
      } catch {
        // Cyclic or bigint-holding objects fall through to their tag.
      }
      return Object.prototype.toString.call(key);
    }
  }
}
