import { hostname } from 'node:os';
import { AuditConfigurationError, auditBreakerTransitions, auditLeakSuspects, auditSwitchChanges, createAuditRecorder, registerAuditMetrics } from '../src/audit/index.ts';
import { pruneAuditSpool } from './audit-retention.ts';
import { SpoolVerifier } from './spool-verifier.ts';
import type { BreakerGroup } from '../src/breaker/index.ts';
import type { Sandbox } from '../src/sandbox/index.ts';
import type { SwitchAuditHook } from '../src/switches/index.ts';
import { onDemoSuspect } from './sandbox.ts';
import type { AuditRecorder } from '../src/audit/index.ts';
import type { GovernedMap, MapObserver } from '../src/map/index.ts';
import type { BalanceBook } from './book.ts';
import type { DemoContext } from './server.ts';

/** How the demo audits its maps. */
export interface DemoAuditOptions {
  /** Spool directory. Default `./.govmap/audit`. */
  readonly dir?: string;
  /** Who acts in the records: default `govmap-demo/<hostname>` (stable across restarts, so seqs carry on). */
  readonly actor?: string;
  /** Forward the spool to Kafka at these brokers (`host:port`). Default: no Kafka. */
  readonly kafka?: readonly string[];
  /** Kafka topic. Default `govmap.audit`. */
  readonly topic?: string;
  /**
   * Retention: keep the newest this many segment files and remove older verified, forwarded ones
   * with an AUDIT_RETENTION record (demo/audit-retention.ts); null keeps everything. Default 8
   * (with 16 MiB segments: at most ~128 MiB on disk). Env GOVMAP_AUDIT_KEEP_SEGMENTS (0 = keep all).
   */
  readonly keepSegments?: number | null;
  /** Segment size in bytes (the spool rotates at it). Default 16 MiB in the demo (the library's default is 64 MiB). */
  readonly segmentBytes?: number;
  /** How often retention runs (it removes at most one segment a run), ms. Default 1,000. */
  readonly retentionIntervalMs?: number;
}

export interface DemoAudit {
  readonly recorder: AuditRecorder;
  readonly dir: string;
  readonly kafka: readonly string[];
  readonly keepSegments: number | null;
  readonly retentionIntervalMs: number;
}

/** The demo's retention default: 8 segments of 16 MiB. */
const DEMO_KEEP_SEGMENTS = 8;
const DEMO_SEGMENT_BYTES = 16 << 20;

function keepSegmentsFrom(options: DemoAuditOptions): number | null {
  if (options.keepSegments !== undefined) return options.keepSegments;
  const env = process.env.GOVMAP_AUDIT_KEEP_SEGMENTS;
  if (env === undefined || env === '') return DEMO_KEEP_SEGMENTS;
  // Digits only: Number() would read "0x10" as 16 and "1e1" as 10. The rule is checked here, not
  // as keepSegments below, so the message names the variable the operator set.
  const n = /^[0-9]+$/.test(env) ? Number(env) : NaN;
  if (!(n === 0 || (Number.isSafeInteger(n) && n >= 2))) {
    throw new AuditConfigurationError('GOVMAP_AUDIT_KEEP_SEGMENTS', 'a whole number of segments of at least 2 (the segment being written and one before it), or 0 to keep all', env);
  }
  return n === 0 ? null : n;
}

/**
 * Starts the demo's audit recorder. Called before the ledger is built, so the balances map is
 * audited from its creation (MAP_CREATED) and the opening balances are recorded as STOREs.
 */
export async function startDemoAudit(options: DemoAuditOptions = {}): Promise<DemoAudit> {
  const dir = options.dir ?? './.govmap/audit';
  const kafka = options.kafka ?? [];
  const keepSegments = keepSegmentsFrom(options);
  if (keepSegments !== null && (!Number.isSafeInteger(keepSegments) || keepSegments < 2)) {
    throw new AuditConfigurationError('keepSegments', 'at least 2 (the segment being written and one before it), or null to keep all', keepSegments);
  }
  const recorder = await createAuditRecorder({
    dir,
    actor: options.actor ?? `govmap-demo/${hostname()}`,
    maxSegmentBytes: options.segmentBytes ?? DEMO_SEGMENT_BYTES,
    ...(kafka.length > 0 ? { kafka: { brokers: kafka, topic: options.topic } } : {}),
  });
  return { recorder, dir, kafka, keepSegments, retentionIntervalMs: options.retentionIntervalMs ?? 1000 };
}

/**
 * Plugs the audit into the running demo: any other map the account routes use (the Redis one)
 * is attached too, its metrics join /metrics, it stops (sealed, AUDIT_STOPPED) on close, and the
 * CLI says where the spool is and how to check it.
 */
export function installAudit(context: DemoContext, audit: DemoAudit, book: BalanceBook): void {
  const balances = book.balances as Partial<Pick<GovernedMap<string, bigint>, 'name' | 'observe'>>;
  if (book !== context.ledger && typeof balances.observe === 'function') {
    audit.recorder.attach({ name: balances.name!, observe: (observer: MapObserver<string>) => balances.observe!(observer) });
  }
  registerAuditMetrics(context.metrics.registry, audit.recorder);
  context.onClose(() => audit.recorder.stop());
  const keep = audit.keepSegments;
  if (keep !== null) {
    // Segments are verified in a worker thread: never a spool read on the event loop.
    const verifier = new SpoolVerifier();
    let running: Promise<void> | null = null;
    let closing = false;
    const pass = async (): Promise<void> => {
      try {
        const done = await pruneAuditSpool(audit.recorder, audit.dir, keep, async (path) => {
          if (closing) throw new Error('the demo is closing');
          return verifier.verify(path);
        }, 1);
        if (done.keptUnverified !== null) console.warn(`govmap demo: audit retention kept ${done.keptUnverified}: it does not verify (run govmap audit verify ${audit.dir})`);
      } catch (error) {
        if (!closing) console.warn('govmap demo: audit retention pass failed', error);
      } finally {
        running = null;
      }
    };
    const timer = setInterval(() => {
      running ??= pass(); // a pass still verifying is not overlapped by the next one
    }, audit.retentionIntervalMs).unref();
    // Registered after the recorder's stop: close hooks run in reverse, so no pass runs after AUDIT_STOPPED.
    context.onClose(async () => {
      closing = true;
      clearInterval(timer);
      await running;
      await verifier.close();
    });
    context.announce(`audit: retention keeps the newest ${keep} segments (GOVMAP_AUDIT_KEEP_SEGMENTS; 0 keeps all); removals are AUDIT_RETENTION records`);
  }
  context.announce(`audit: every LOAD/STORE/DELETE/RANGE of the balances -> ${audit.dir} (check: govmap audit verify ${audit.dir}; follow: govmap audit tail -f ${audit.dir})`);
  if (audit.kafka.length > 0) context.announce(`audit: forwarding to Kafka ${audit.kafka.join(',')} topic ${audit.recorder.forwarder?.topic ?? 'govmap.audit'} (lag: govmap_audit_kafka_lag_bytes on /metrics)`);
}

/** The switch board's audit hook when the demo audits (SWITCH_CHANGED records), else none. */
export function switchAudit(audit: DemoAudit | null): SwitchAuditHook | undefined {
  return audit === null ? undefined : auditSwitchChanges(audit.recorder);
}

/**
 * The other parts' governance events into the same spool as the balances: every settlement
 * breaker transition (BREAKER_TRANSITION) and every new leak suspect (LEAK_SUSPECT). Switch
 * changes come through `switchAudit`, given to the board when it is built.
 */
export function auditGovernance(context: DemoContext, audit: DemoAudit, parts: { readonly breakers: BreakerGroup; readonly sandbox: Sandbox }): void {
  const stop = parts.breakers.onTransition(auditBreakerTransitions(audit.recorder));
  context.onClose(stop);
  onDemoSuspect(parts.sandbox, auditLeakSuspects(audit.recorder));
  context.announce('audit: breaker transitions, switch changes and leak suspects -> the same spool (BREAKER_TRANSITION, SWITCH_CHANGED, LEAK_SUSPECT)');
}

/**
 * What the audit did this run, for the demo's closing lines: records, anything dropped or lost,
 * and, when forwarding, what Kafka acknowledged and why it is behind (a broker that was never
 * reachable must not go unnoticed when the run ends). Taken after close (the recorder stopped),
 * its count is every record this run added to the spool: what verify counts in a spool of one run.
 */
export function auditSummary(audit: DemoAudit): string[] {
  const s = audit.recorder.stats();
  const others = s.records - s.readsRecorded - s.writesRecorded;
  const lines = [
    `audit: ${s.records.toLocaleString('en-US')} records (${s.readsRecorded.toLocaleString('en-US')} reads, ${s.writesRecorded.toLocaleString('en-US')} writes, ${others.toLocaleString('en-US')} of the recorder and the governance parts) in ${audit.dir}; ` +
      `${s.readsDropped} reads dropped, ${s.writesLost} writes lost${s.healthy ? '' : '; the spool is failing'}${s.drainWorkerRestarts > 0 ? `; the drain thread was restarted ${s.drainWorkerRestarts} time(s) (its lost reads are AUDIT_GAP records)` : ''}; writes reached the OS ${s.writeJournal ? 'through the write journal' : 'by write(2)'} (check: govmap audit verify ${audit.dir})`,
  ];
  const forwarder = audit.recorder.forwarder;
  if (forwarder !== undefined) {
    const f = forwarder.stats();
    const behind = f.lagBytes > 0 ? `, ${f.lagBytes.toLocaleString('en-US')} bytes of spool not yet acknowledged` : ', caught up';
    const failing = f.healthy ? '' : `; failing: ${f.lastError ?? 'unknown error'} (it resumes from its checkpoint on the next start)`;
    lines.push(`audit -> Kafka ${audit.kafka.join(',')} topic ${f.topic}: ${f.sent.toLocaleString('en-US')} records acknowledged${behind}${failing}`);
  }
  return lines;
}
