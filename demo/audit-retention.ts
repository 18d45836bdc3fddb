import { statSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import type { AuditRecorder } from '../src/audit/index.ts';
import { verifySpool } from '../src/audit/index.ts';
import { listSegments } from '../src/audit/spool.ts';

/** What one retention pass did. */
export interface RetentionPass {
  /** Segment files removed, oldest first. */
  readonly removed: readonly string[];
  readonly bytesRemoved: number;
  /** A segment that failed verify is kept (it is evidence) and named here; the pass stops at it. */
  readonly keptUnverified: string | null;
}

/**
 * Bounded retention for the demo's audit spool (the demo's background traffic writes ~230 MB an
 * hour). Keeps the newest `keepSegments` segment files (the one being written included) and
 * removes older ones, oldest first, one by one:
 *
 * - only a segment that is neither the current one nor still ahead of the Kafka forwarder's
 *   position (an unforwarded record is never deleted);
 * - only after it verifies on its own (a damaged segment is kept as evidence and the pass stops);
 * - each removal is followed by an AUDIT_RETENTION record naming the file, its bytes and the
 *   segment number, so the trail says what was removed, when and by whom (those records are
 *   pruned in turn when their own segment ages out; the newest one still names, in
 *   `absent_through`, every segment removed before it). `govmap audit verify`
 *   then checks the chain from the oldest remaining segment and notes the earlier ones as absent.
 *
 * Each segment is verified by `verify` (the demo passes a SpoolVerifier: a worker thread). On the
 * event loop, verifying a 16 MiB segment stalled every request for a large fraction of a second,
 * and a busy service fills a segment every few seconds. Unlinking and the record stay here.
 * `maxSegments` bounds one pass: the demo removes one segment a pass, every second, because a
 * pass a minute that verified everything due at once (~15 segments at 16,000 req/s, ~165 ms of
 * CPU each) took a core for seconds, and on a two-core host the requests' latency with it.
 */
export async function pruneAuditSpool(
  recorder: AuditRecorder,
  dir: string,
  keepSegments: number,
  verify: (path: string) => Promise<{ readonly ok: boolean; readonly records: number }> = (path) => Promise.resolve(verifySpool(path)),
  maxSegments = Number.POSITIVE_INFINITY,
): Promise<RetentionPass> {
  const current = recorder.stats().segment;
  const forwarded = recorder.forwarder?.stats().position.segment ?? Number.POSITIVE_INFINITY;
  const segments = listSegments(dir);
  const excess = segments.length - keepSegments;
  const removed: string[] = [];
  let bytesRemoved = 0;
  for (const seg of segments.slice(0, Math.max(0, Math.min(excess, maxSegments)))) {
    if (seg.segment >= current || seg.segment >= forwarded) break;
    const report = await verify(seg.path);
    // The recorder may have moved on (or stopped) while the worker read: re-check before removing.
    if (seg.segment >= recorder.stats().segment) break;
    if (!report.ok) return { removed, bytesRemoved, keptUnverified: seg.name };
    const bytes = statSync(seg.path).size;
    unlinkSync(seg.path);
    removed.push(seg.name);
    bytesRemoved += bytes;
    recorder.recordGovernanceEvent({
      op: 'AUDIT_RETENTION',
      owner: null,
      resource: resolve(dir).slice(-512),
      reason: `keep the newest ${keepSegments} segments`,
      // `absent_through`: every segment up to this one is gone (oldest first), so the newest such
      // record names the whole removed range even after older AUDIT_RETENTION records were pruned too.
      detail: { by: 'govmap-demo retention', segment: seg.segment, file: seg.name, bytes, records: report.records, absent_through: seg.segment },
    });
  }
  return { removed, bytesRemoved, keptUnverified: null };
}
