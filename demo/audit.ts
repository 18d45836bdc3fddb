import { hostname } from 'node:os';
import { auditBreakerTransitions, auditLeakSuspects, auditSwitchChanges, createAuditRecorder, registerAuditMetrics } from '../src/audit/index.ts';
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
}

export interface DemoAudit {
  readonly recorder: AuditRecorder;
  readonly dir: string;
  readonly kafka: readonly string[];
}

/**
 * Starts the demo's audit recorder. Called before the ledger is built, so the balances map is
 * audited from its creation (MAP_CREATED) and the opening balances are recorded as STOREs.
 */
export async function startDemoAudit(options: DemoAuditOptions = {}): Promise<DemoAudit> {
  const dir = options.dir ?? './.govmap/audit';
  const kafka = options.kafka ?? [];
  const recorder = await createAuditRecorder({
    dir,
    actor: options.actor ?? `govmap-demo/${hostname()}`,
    ...(kafka.length > 0 ? { kafka: { brokers: kafka, topic: options.topic } } : {}),
  });
  return { recorder, dir, kafka };
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
