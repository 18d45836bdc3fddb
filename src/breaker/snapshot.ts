import { z } from 'zod';

export type BreakerState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';
export const BREAKER_STATES: readonly BreakerState[] = Object.freeze(['CLOSED', 'OPEN', 'HALF_OPEN']);

/**
 * What a breaker publishes about itself (DESIGN.md, etcd keys), the value at
 * `/govmap/circuit/<service>/<instance>`:
 * `{"state","failures","timeouts","total","breachedWindows","since","version"}`.
 * - CLOSED: the counts of the window being sampled; `breachedWindows` the current streak.
 * - OPEN: the counts of the window that tripped it (zeros when adopted from the cluster).
 * - HALF_OPEN: the counts of the probe calls so far.
 * `since` is when the state was entered; `version` grows by one at every transition of this
 * breaker, across restarts (a restarted process continues from its snapshot's version).
 */
export interface BreakerSnapshot {
  readonly state: BreakerState;
  readonly failures: number;
  readonly timeouts: number;
  readonly total: number;
  readonly breachedWindows: number;
  /** ISO-8601 UTC time the state was entered. */
  readonly since: string;
  readonly version: number;
}

const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const snapshotSchema = z.object({
  state: z.enum(['CLOSED', 'OPEN', 'HALF_OPEN']),
  failures: count,
  timeouts: count,
  total: count,
  breachedWindows: count,
  since: z.iso.datetime({ offset: true }),
  version: count,
});

export type DecodedSnapshot = { readonly ok: true; readonly snapshot: BreakerSnapshot } | { readonly ok: false; readonly reason: string };

/**
 * Reads a snapshot from JSON text written by any process (or by hand): never throws. A value
 * that is not JSON, not an object, has an unknown state, a wrong type or inconsistent counts
 * is refused with a short reason the caller logs and counts.
 */
export function decodeSnapshot(text: string): DecodedSnapshot {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'malformed_json' };
  }
  const result = snapshotSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    return { ok: false, reason: field === 'state' ? 'unknown_state' : `invalid_${field === '' ? 'shape' : field}` };
  }
  const s = result.data;
  if (s.failures + s.timeouts > s.total) return { ok: false, reason: 'counts_exceed_total' };
  return { ok: true, snapshot: { state: s.state, failures: s.failures, timeouts: s.timeouts, total: s.total, breachedWindows: s.breachedWindows, since: new Date(s.since).toISOString(), version: s.version } };
}

/** The JSON text of a snapshot, fields in the contract's order. */
export function encodeSnapshot(s: BreakerSnapshot): string {
  return JSON.stringify({ state: s.state, failures: s.failures, timeouts: s.timeouts, total: s.total, breachedWindows: s.breachedWindows, since: s.since, version: s.version });
}
