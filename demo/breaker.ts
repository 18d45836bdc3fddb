import { hostname } from 'node:os';
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { BreakerClusterSync, BreakerGroup, BreakerMetrics, CallTimeoutError } from '../src/breaker/index.ts';
import { EtcdStateStore, MemoryStateStore } from '../src/state/index.ts';
import type { StateStore } from '../src/state/index.ts';
import { HttpError, adminCheck, assertOnlyFields, readJsonObject, sendJson, shown } from './http.ts';
import { formatAmount } from './money.ts';
import type { DemoContext } from './server.ts';
import { SettlementBacklog } from './settlement-backlog.ts';
import type { PendingSettlement, SettlementBacklogStatus } from './settlement-backlog.ts';

export interface DemoSettlementOptions {
  /** etcd endpoints (`host:port,...`): share breaker state with other demo processes. Default: in-process memory. */
  readonly etcd?: string;
  /** This process's instance name in the cluster, stable across restarts. Default `<hostname>-<pid>`. */
  readonly instance?: string;
  /** Bearer token for POST /admin/faults. Default: the demo's one admin token (DemoOptions.adminToken). */
  readonly adminToken?: string;
  /** Initial share of gateway calls that fail (0..1). Default 0. */
  readonly failureRate?: number;
  /** Initial gateway latency, milliseconds. Default 5. */
  readonly latencyMs?: number;
  /** How often queued settlements are sent again, ms. Default 1,000. */
  readonly retryEveryMs?: number;
  /** Most queued settlements held. Default 100,000. */
  readonly maxPending?: number;
}

/** What a transfer's settlement came to: settled by the gateway, or queued for a later batch. */
export type SettlementOutcome =
  | { readonly status: 'settled'; readonly org: string; readonly reference: string }
  | { readonly status: 'queued'; readonly org: string; readonly reason: 'circuit_open' | 'timeout' | 'gateway_failed'; readonly retryAt?: string };

export interface TransferSettlement {
  settle(req: IncomingMessage, transfer: { from: string; to: string; amount: bigint }): Promise<SettlementOutcome>;
}

/** A fault setting: the share of calls that fail (0..1) and the latency, milliseconds. */
export interface GatewayFault {
  readonly failureRate: number;
  readonly latencyMs: number;
}

/** Orgs with their own fault at once: the admin endpoint cannot grow the gateway without bound. */
export const MAX_FAULTED_ORGS = 1000;

/**
 * The simulated settlement gateway: answers after `latencyMs` (abortable), and fails an exact
 * share `failureRate` of calls, spread evenly (an accumulator, not randomness, so a demo run
 * shows the same rates every time).
 *
 * Faults are per org: `failureRate`/`latencyMs` apply to every org without its own setting;
 * `setOrgFault` gives one org its own, so exactly that org's settlements fail or slow down (its
 * breaker opens, its traffic degrades) while every other org is served as before. Each org
 * keeps its own accumulator per kind of call, so one org's failures never shift another's.
 */
export class SettlementGateway {
  failureRate: number;
  latencyMs: number;
  calls = 0;
  readonly #orgFaults = new Map<string, GatewayFault>();
  /** Accumulators by `<kind>:<org>` (kind: settle, routed); the default's under `settle:*`. */
  readonly #accumulators = new Map<string, number>();

  constructor(failureRate = 0, latencyMs = 5) {
    this.failureRate = failureRate;
    this.latencyMs = latencyMs;
  }

  /** The fault `org` is under: its own, or the default. */
  faultOf(org: string): GatewayFault {
    return this.#orgFaults.get(org) ?? { failureRate: this.failureRate, latencyMs: this.latencyMs };
  }

  /** Orgs with their own fault. */
  orgFaults(): Record<string, GatewayFault> {
    return Object.fromEntries(this.#orgFaults);
  }

  /**
   * Whether `org` has its own fault. Asked of the map, never with `in` on orgFaults(): that
   * record inherits `toString`, `constructor`, `valueOf`..., which then read as faulted orgs.
   */
  hasOrgFault(org: string): boolean {
    return this.#orgFaults.has(org);
  }

  /** How many orgs have their own fault. */
  get faultedOrgs(): number {
    return this.#orgFaults.size;
  }

  /** Gives `org` its own fault (unset fields keep the org's current setting). */
  setOrgFault(org: string, patch: { readonly failureRate?: number; readonly latencyMs?: number }): GatewayFault {
    const current = this.faultOf(org);
    const next = { failureRate: patch.failureRate ?? current.failureRate, latencyMs: patch.latencyMs ?? current.latencyMs };
    this.#orgFaults.set(org, next);
    return next;
  }

  /** Puts `org` back under the default fault. */
  clearOrgFault(org: string): void {
    this.#orgFaults.delete(org);
    for (const kind of ['settle', 'routed']) this.#accumulators.delete(`${kind}:${org}`);
  }

  /** Settles `amount` for `org`; the reference comes from `reference()` once the gateway has said yes. */
  async settle(org: string, amount: bigint, signal: AbortSignal, reference: () => string): Promise<string> {
    this.calls++;
    const own = this.#orgFaults.get(org);
    await this.#apply(`settle:${own === undefined ? '*' : org}`, own ?? this.faultOf(org), signal, () => `settlement gateway: 503 for ${org} (${formatAmount(amount)})`);
    return reference();
  }

  /**
   * Another call made on behalf of `org` (a routed payment's downstream): slowed down and failed
   * by the org's own fault; orgs without one pass at once (their route's target has its own knobs).
   */
  async disturb(org: string | undefined, signal: AbortSignal): Promise<void> {
    const own = org === undefined ? undefined : this.#orgFaults.get(org);
    if (own === undefined) return;
    await this.#apply(`routed:${org!}`, own, signal, () => `settlement gateway: 503 for ${org!}`);
  }

  async #apply(accumulator: string, fault: GatewayFault, signal: AbortSignal, message: () => string): Promise<void> {
    if (fault.latencyMs > 0) await sleep(fault.latencyMs, undefined, { signal });
    const sum = (this.#accumulators.get(accumulator) ?? 0) + fault.failureRate;
    if (sum >= 1 - 1e-9) {
      this.#accumulators.set(accumulator, sum - 1);
      throw new Error(message());
    }
    this.#accumulators.set(accumulator, sum);
  }
}

const ORG_TAG = /(?:^|\|)orgId:([A-Za-z0-9_.-]{1,64})(?:\||$)/;
/** An orgId as X-Biz-Tag values are written (DESIGN.md). */
const ORG_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Settlement as the rest of the demo sees it: transfers settle through it; the dashboard reads its state. */
export interface DemoSettlement extends TransferSettlement {
  readonly gateway: SettlementGateway;
  /** One breaker per org ("settlement:<org>"). */
  readonly breakers: BreakerGroup;
  /** What GET /breakers answers. */
  status(): SettlementStatus;
}

export interface SettlementStatus {
  readonly instance: string;
  readonly store: string;
  readonly connected: boolean;
  readonly gateway: GatewayFault & { readonly calls: number; readonly orgs: Record<string, GatewayFault> };
  readonly settlementsQueued: number;
  /** Queued settlements not yet settled, and what the later batches did. */
  readonly backlog: SettlementBacklogStatus;
  readonly breakers: ReadonlyArray<Record<string, unknown>>;
}

/**
 * Settlement of transfers through a per-org breaker group ("settlement", one breaker per
 * orgId of the X-Biz-Tag header, "default" without one). A transfer is booked first; its
 * settlement is then sent to the gateway through the org's breaker. When the breaker refuses
 * (OPEN) or the gateway fails or times out, the settlement is queued for a later batch: the
 * booking stands, and a failing gateway is not hammered.
 *
 * Routes: GET /breakers (states, cluster view, gateway faults); POST /admin/faults (the demo's
 * admin token) to make the gateway fail or slow down, for every org or for one
 * (`{"org":"2002","failureRate":1}`; `{"org":"2002","reset":true}` puts it back). Metrics go to
 * the demo's /metrics.
 */
export async function installSettlement(context: DemoContext, options: DemoSettlementOptions = {}): Promise<DemoSettlement> {
  const gateway = new SettlementGateway(options.failureRate ?? 0, options.latencyMs ?? 5);
  // minimumCalls 1: the demo's background traffic settles about one transfer per org a second,
  // so a window of one org rarely holds the default 10 calls; three consecutive breached
  // windows (the specification's rule) still decide, so one failure alone never trips a breaker.
  const group = new BreakerGroup({ name: 'settlement', maxBreakers: 10_000, idleEvictionMs: 600_000, openDurationMs: 10_000, minimumCalls: 1 });
  const metrics = new BreakerMetrics({ registry: context.metrics.registry }).trackGroup(group);
  const store: StateStore = options.etcd !== undefined ? new EtcdStateStore({ endpoints: options.etcd }) : new MemoryStateStore();
  const sync = new BreakerClusterSync({ store, instance: options.instance ?? `${hostname()}-${process.pid}`, leaseTtlSeconds: 30 });
  await sync.start();
  sync.attachGroup(group);
  metrics.trackSync(sync);
  const token = options.adminToken ?? context.admin.token;
  const shownToken = options.adminToken === undefined ? context.admin.shown : '$GOVMAP_ADMIN_TOKEN';
  let queued = 0;
  const backlog = new SettlementBacklog({
    retryEveryMs: options.retryEveryMs,
    maxPending: options.maxPending,
    // Through the org's breaker, as a live settlement: an open breaker refuses at once.
    retry: async (pending: PendingSettlement) => {
      try {
        return await group.execute(
          pending.org,
          async (signal) => {
            await gateway.settle(pending.org, pending.amount, signal, context.nextReference);
            return 'settled' as const;
          },
          () => 'refused' as const,
        );
      } catch {
        return 'failed';
      }
    },
  });
  const queue = (org: string, transfer: { from: string; to: string; amount: bigint }): void => {
    queued++;
    backlog.add({ org, from: transfer.from, to: transfer.to, amount: transfer.amount, queuedAt: Date.now() });
  };

  context.onClose(async () => {
    await backlog.close();
    // The backlog lives in memory only: what the gateway never got goes to the log, whole, so the
    // booked transfers it belongs to can be reconciled rather than left apart from the gateway unseen.
    const unsent = backlog.pendingSettlements();
    if (unsent.length > 0) {
      console.error(`govmap demo: ${unsent.length} settlement(s) of booked transfers not sent to the gateway (the backlog is not kept across restarts; reconcile them):`);
      for (const s of unsent) console.error(JSON.stringify({ org: s.org, from: s.from, to: s.to, amount: formatAmount(s.amount), queuedAt: new Date(s.queuedAt).toISOString() }));
    }
    await sync.close();
    group.dispose();
    await store.close();
  });
  context.announce(`settlement: transfers settle through per-org breakers (state store: ${store.kind}${options.etcd !== undefined ? ` ${options.etcd}` : ''}, instance ${sync.instance}); see GET /breakers`);
  context.announce(`faults: curl -X POST <url>/admin/faults -H 'authorization: Bearer ${shownToken}' -H 'content-type: application/json' -d '{"org":"2002","failureRate":1}'`);

  const status = (): SettlementStatus => ({
    instance: sync.instance,
    store: store.kind,
    connected: sync.connected,
    gateway: { failureRate: gateway.failureRate, latencyMs: gateway.latencyMs, calls: gateway.calls, orgs: gateway.orgFaults() },
    settlementsQueued: queued,
    backlog: backlog.status(),
    breakers: [...group.breakers()].map((b) => ({
      key: b.key,
      breaker: b.id,
      ...b.snapshot(),
      openUntil: b.openUntil === null ? null : new Date(b.openUntil).toISOString(),
      awaitingProbeRight: b.awaitingProbeRight,
      calls: { ...b.counters },
      cluster: Object.fromEntries(sync.reports(b.id)),
    })),
  });
  context.router.route('GET', /^\/breakers$/, (_req, res) => sendJson(res, 200, status()));

  const authorise = adminCheck(token);
  context.router.route('POST', /^\/admin\/faults$/, async (req, res) => {
    authorise(req);
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['org', 'failureRate', 'latencyMs', 'reset']);
    const { org, failureRate, latencyMs, reset } = body;
    if (org !== undefined && (typeof org !== 'string' || !ORG_ID.test(org))) {
      throw new HttpError(400, 'FAULT_ORG_INVALID', `"org" is an orgId as in X-Biz-Tag: 1 to 64 of [A-Za-z0-9_.-] (got ${shown(org)})`);
    }
    if (failureRate !== undefined && (typeof failureRate !== 'number' || !(failureRate >= 0 && failureRate <= 1))) {
      throw new HttpError(400, 'FAULT_RATE_INVALID', `"failureRate" is a number from 0 to 1 (got ${shown(failureRate)})`);
    }
    if (latencyMs !== undefined && (typeof latencyMs !== 'number' || !Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 60_000)) {
      throw new HttpError(400, 'FAULT_LATENCY_INVALID', `"latencyMs" is a whole number of milliseconds from 0 to 60000 (got ${shown(latencyMs)})`);
    }
    if (reset !== undefined && reset !== true) throw new HttpError(400, 'FAULT_RESET_INVALID', `"reset" is true (put the org back under the default fault) or absent (got ${shown(reset)})`);
    if (reset === true && (org === undefined || failureRate !== undefined || latencyMs !== undefined)) {
      throw new HttpError(400, 'FAULT_RESET_INVALID', '"reset" takes an "org" and no "failureRate" or "latencyMs"');
    }
    if (typeof org === 'string') {
      if (reset === true) gateway.clearOrgFault(org);
      else {
        if (!gateway.hasOrgFault(org) && gateway.faultedOrgs >= MAX_FAULTED_ORGS) {
          throw new HttpError(409, 'FAULT_ORGS_FULL', `at most ${MAX_FAULTED_ORGS} orgs have their own fault; reset one first`);
        }
        gateway.setOrgFault(org, { failureRate, latencyMs });
      }
      sendJson(res, 200, { org, own: gateway.hasOrgFault(org), ...gateway.faultOf(org) });
      return;
    }
    if (failureRate !== undefined) gateway.failureRate = failureRate;
    if (latencyMs !== undefined) gateway.latencyMs = latencyMs;
    sendJson(res, 200, { failureRate: gateway.failureRate, latencyMs: gateway.latencyMs });
  });

  return {
    gateway,
    breakers: group,
    status,
    async settle(req, transfer): Promise<SettlementOutcome> {
      const tag = req.headers['x-biz-tag'];
      const org = (typeof tag === 'string' ? ORG_TAG.exec(tag)?.[1] : undefined) ?? 'default';
      try {
        return await group.execute<SettlementOutcome>(
          org,
          async (signal) => ({ status: 'settled' as const, org, reference: await gateway.settle(org, transfer.amount, signal, context.nextReference) }),
          (refusal) => {
            queue(org, transfer);
            return { status: 'queued' as const, org, reason: 'circuit_open' as const, retryAt: refusal.retryAt === null ? undefined : new Date(refusal.retryAt).toISOString() };
          },
        );
      } catch (error) {
        queue(org, transfer);
        return { status: 'queued', org, reason: error instanceof CallTimeoutError ? 'timeout' : 'gateway_failed' };
      }
    },
  };
}
