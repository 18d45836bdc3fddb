import { Counter, Registry } from 'prom-client';
import { REGISTRY_RULE, isRegistry, registerStaged, scrapeTimeGauge } from '../metrics/scrape-time.ts';
import { AuditConfigurationError } from './errors.ts';
import type { KafkaForwarder } from './kafka-forwarder.ts';
import type { AuditRecorder } from './recorder.ts';

/**
 * Prometheus metrics of an audit recorder (and its Kafka forwarder), read from its counters at
 * scrape time: nothing here runs on the audited operations' path.
 *
 *   govmap_audit_records_total{stream}           records handed to the spool (read / write)
 *   govmap_audit_ring_full_total{action}          reads that found the ring full (waited / dropped)
 *   govmap_audit_lost_total{cause}                records named by AUDIT_GAP instead of kept
 *   govmap_audit_gaps_total                       AUDIT_GAP records written
 *   govmap_audit_ring_used_bytes / _capacity_bytes
 *   govmap_audit_journal_used_bytes / _capacity_bytes, govmap_audit_journal_full_total
 *   govmap_audit_unsynced_records                 recorded but not yet sealed and fsynced
 *   govmap_audit_spool_bytes_total, _seals_total, _fsyncs_total, _fsync_seconds_total, _rotations_total
 *   govmap_audit_spool_healthy                    0 while the spool cannot be written
 *   govmap_audit_drain_worker_restarts_total      drain workers that died and were replaced in-process
 *   govmap_audit_backlog_records                  write records waiting in memory for the spool
 *   govmap_audit_kafka_sent_total, _kafka_errors_total{kind}, _kafka_oversized_total, _kafka_skipped_total
 *   govmap_audit_kafka_lag_bytes, _kafka_healthy
 */
export function registerAuditMetrics(registry: Registry, recorder: AuditRecorder, prefix = 'govmap_audit_'): void {
  if (!isRegistry(registry)) throw new AuditConfigurationError('registry', REGISTRY_RULE, registry);
  // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
  const staging = new Registry();
  const registers = [staging];
  const counter = <L extends string>(name: string, help: string, labelNames: L[], fill: (set: (labels: Record<L, string>, value: number) => void) => void): void => {
    new Counter<L>({
      name: prefix + name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        fill((labels, value) => this.inc(labels as never, value));
      },
    });
  };
  // null: unknown right now (no Kafka forwarder), rendered as no sample rather than 0.
  const gauge = (name: string, help: string, read: () => number | null): void => {
    scrapeTimeGauge(registers, prefix + name, help, [], (set) => {
      const value = read();
      if (value !== null) set({}, value);
    });
  };
  const forwarder = (): KafkaForwarder | undefined => recorder.forwarder;

  counter('records_total', 'Audit records handed to the spool, by stream (read: LOAD/RANGE via the ring; write: everything else).', ['stream'], (set) => {
    const s = recorder.stats();
    set({ stream: 'read' }, s.readsRecorded);
    set({ stream: 'write' }, s.writesRecorded);
  });
  counter('ring_full_total', 'Reads that found the audit ring full: waited for space, or dropped (named by AUDIT_GAP).', ['action'], (set) => {
    const s = recorder.stats();
    set({ action: 'waited' }, s.ringFullWaits);
    set({ action: 'dropped' }, s.readsDropped);
  });
  counter('lost_total', 'Records not kept, each named by an AUDIT_GAP: reads dropped for a full ring, writes past the backlog while the spool failed.', ['cause'], (set) => {
    const s = recorder.stats();
    set({ cause: 'RING_FULL' }, s.readsDropped);
    set({ cause: 'SPOOL_UNWRITABLE' }, s.writesLost);
  });
  counter('gaps_total', 'AUDIT_GAP records written (crash recovery, dropped reads, lost writes).', [], (set) => set({}, recorder.stats().gapsRecorded));
  counter('spool_bytes_total', 'Bytes of read records and seals the drain worker appended.', [], (set) => set({}, recorder.stats().bytesWritten));
  counter('seals_total', 'SEAL records (chain links) written.', [], (set) => set({}, recorder.stats().seals));
  counter('fsyncs_total', 'Group-commit fsyncs of the spool.', [], (set) => set({}, recorder.stats().fsyncs));
  counter('fsync_seconds_total', 'Time spent in fsync of the spool.', [], (set) => set({}, recorder.stats().fsyncSeconds));
  counter('rotations_total', 'Segment rotations.', [], (set) => set({}, recorder.stats().rotations));
  gauge('ring_used_bytes', 'Bytes of read records waiting in the ring for the drain worker.', () => recorder.stats().ringUsedBytes);
  gauge('ring_capacity_bytes', 'Size of the read ring.', () => recorder.stats().ringCapacityBytes);
  gauge('journal_used_bytes', 'Bytes of write records in the write journal not yet moved into the spool (0 without a journal).', () => recorder.stats().journalUsedBytes);
  gauge('journal_capacity_bytes', 'Size of the write journal (0: writes go to write(2) one by one).', () => recorder.stats().journalCapacityBytes);
  counter('journal_full_total', 'Writes that found the write journal full and waited for the drain worker.', [], (set) => set({}, recorder.stats().journalFullWaits));
  gauge('unsynced_records', 'Records handed out (seqs) not yet covered by a fsynced seal, an upper bound.', () => recorder.stats().unsyncedRecords);
  counter('drain_worker_restarts_total', 'Times the audit drain worker thread died while the process lived and a new one was started and runs (SINK_RECOVERED DRAIN_WORKER_DIED).', [], (set) => set({}, recorder.stats().drainWorkerRestarts));
  gauge('spool_healthy', '1 while the spool is written normally, 0 while it fails (records wait in memory).', () => (recorder.healthy ? 1 : 0));
  gauge('backlog_records', 'Write records held in memory because the spool cannot be written.', () => recorder.stats().backlogRecords);
  counter('kafka_sent_total', 'Records acknowledged by Kafka (acks=all).', [], (set) => set({}, forwarder()?.stats().sent ?? 0));
  counter('kafka_errors_total', 'Failed Kafka sends, by kind (timeout: past the forwarder\'s own deadline).', ['kind'], (set) => {
    const s = forwarder()?.stats();
    set({ kind: 'timeout' }, s?.timeouts ?? 0);
    set({ kind: 'failed' }, (s?.errors ?? 0) - (s?.timeouts ?? 0));
  });
  counter('kafka_oversized_total', 'Records larger than the Kafka topic accepts, sent as a substitute naming them in the spool (size, SHA-256, segment, offset).', [], (set) => set({}, forwarder()?.stats().oversized ?? 0));
  counter('kafka_skipped_total', 'Records never sent to Kafka because their spool segment was removed before being forwarded (SINK_FAILED SPOOL_SEGMENT_MISSING), counted by seq.', [], (set) => set({}, forwarder()?.stats().skipped ?? 0));
  gauge('kafka_lag_bytes', 'Bytes of the spool not yet acknowledged by Kafka (absent without a Kafka forwarder).', () => forwarder()?.stats().lagBytes ?? null);
  gauge('kafka_healthy', '1 while Kafka acknowledges sends, 0 from a failed send until the next acknowledged one, after skipped segments until caught up, while waiting for a compressed segment to be decompressed, and while a request has waited longer than half the send deadline (absent without a Kafka forwarder).', () => {
    const f = forwarder();
    return f === undefined ? null : f.stats().healthy ? 1 : 0;
  });
  registerStaged(staging, registry, 'registerAuditMetrics', prefix);
}
