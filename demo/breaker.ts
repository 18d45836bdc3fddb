import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname } from 'node:os';
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { BreakerClusterSync, BreakerGroup, BreakerMetrics, CallTimeoutError } from '../src/breaker/index.ts';
import { EtcdStateStore, MemoryStateStore } from '../src/state/index.ts';
import type { StateStore } from '../src/state/index.ts';
import { HttpError, assertOnlyFields, readJsonObject, sendJson } from './http.ts';
import { formatAmount } from './money.ts';
import type { DemoContext } from './server.ts';

export interface DemoSettlementOptions {
  /** etcd endpoints (`host:port,...`): share breaker state with other demo processes. Default: in-process memory. */
  readonly etcd?: string;
  /** This process's instance name in the cluster, stable across restarts. Default `<hostname>-<pid>`. */
  readonly instance?: string;
  /** Bearer token for POST /admin/faults. Default: random, announced at start. */
  readonly adminToken?: string;
  /** Initial share of gateway calls that fail (0..1). Default 0. */
  readonly failureRate?: number;
  /** Initial gateway latency, milliseconds. Default 5. */
  readonly latencyMs?: number;
}

/** What a transfer's settlement came to: settled by the gateway, or queued for a later batch. */
export type SettlementOutcome =
  | { readonly status: 'settled'; readonly org: string; readonly reference: string }
  | { readonly status: 'queued'; readonly org: string; readonly reason: 'circuit_open' | 'timeout' | 'gateway_failed'; readonly retryAt?: string };

export interface TransferSettlement {
  settle(req: IncomingMessage, transfer: { from: string; to: string; amount: bigint }): Promise<SettlementOutcome>;
}

/**
 * The simulated settlement gateway: answers after `latencyMs` (abortable), and fails an exact
 * share `failureRate` of calls, spread evenly (an accumulator, not randomness, so a demo run
 * shows the same rates every time).
 */
export class SettlementGateway {
  failureRate: number;
  latencyMs: number;
  calls = 0;
  #accumulator = 0;

  constructor(failureRate = 0, latencyMs = 5) {
    this.failureRate = failureRate;
    this.latencyMs = latencyMs;
  }

  async settle(org: string, amount: bigint, signal: AbortSignal): Promise<string> {
    const n = ++this.calls;
    if (this.latencyMs > 0) await sleep(this.latencyMs, undefined, { signal });
    this.#accumulator += this.failureRate;
    if (this.#accumulator >= 1 - 1e-9) {
      this.#accumulator -= 1;
      throw new Error(`settlement gateway: 503 for ${org} (${formatAmount(amount)})`);
    }
    return `stl-${n}`;
  }
}

const ORG_TAG = /(?:^|\|)orgId:([A-Za-z0-9_.-]{1,64})(?:\||$)/;

/**
 * Settlement of transfers through a per-org breaker group ("settlement", one breaker per
 * orgId of the X-Biz-Tag header, "default" without one). A transfer is booked first; its
 * settlement is then sent to the gateway through the org's breaker. When the breaker refuses
 * (OPEN) or the gateway fails or times out, the settlement is queued for a later batch: the
 * booking stands, and a failing gateway is not hammered.
 *
 * Routes: GET /breakers (states, cluster view, gateway faults); POST /admin/faults (bearer
 * token) to make the gateway fail or slow down. Metrics go to the demo's /metrics.
 */
export async function installSettlement(context: DemoContext, options: DemoSettlementOptions = {}): Promise<TransferSettlement> {
  const gateway = new SettlementGateway(options.failureRate ?? 0, options.latencyMs ?? 5);
  const group = new BreakerGroup({ name: 'settlement', maxBreakers: 10_000, idleEvictionMs: 600_000, openDurationMs: 10_000 });
  const metrics = new BreakerMetrics({ registry: context.metrics.registry }).trackGroup(group);
  const store: StateStore = options.etcd !== undefined ? new EtcdStateStore({ endpoints: options.etcd }) : new MemoryStateStore();
  const sync = new BreakerClusterSync({ store, instance: options.instance ?? `${hostname()}-${process.pid}`, leaseTtlSeconds: 30 });
  await sync.start();
  sync.attachGroup(group);
  metrics.trackSync(sync);
  const token = options.adminToken ?? randomBytes(12).toString('hex');
  let queued = 0;

  context.onClose(async () => {
    await sync.close();
    group.dispose();
    await store.close();
  });
  context.announce(`settlement: transfers settle through per-org breakers (state store: ${store.kind}${options.etcd !== undefined ? ` ${options.etcd}` : ''}, instance ${sync.instance}); see GET /breakers`);
  context.announce(`faults: curl -X POST <url>/admin/faults -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"failureRate":0.8,"latencyMs":300}'`);

  context.router.route('GET', /^\/breakers$/, (_req, res) => {
    const breakers = [...group.breakers()].map((b) => ({
      key: b.key,
      breaker: b.id,
      ...b.snapshot(),
      openUntil: b.openUntil === null ? null : new Date(b.openUntil).toISOString(),
      awaitingProbeRight: b.awaitingProbeRight,
      calls: { ...b.counters },
      cluster: Object.fromEntries(sync.reports(b.id)),
    }));
    sendJson(res, 200, {
      instance: sync.instance,
      store: store.kind,
      connected: sync.connected,
      gateway: { failureRate: gateway.failureRate, latencyMs: gateway.latencyMs, calls: gateway.calls },
      settlementsQueued: queued,
      breakers,
    });
  });

  context.router.route('POST', /^\/admin\/faults$/, async (req, res) => {
    const given = Buffer.from(String(req.headers.authorization ?? ''));
    const expected = Buffer.from(`Bearer ${token}`);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new HttpError(401, 'ADMIN_TOKEN_REQUIRED', 'send the admin token announced at start as "authorization: Bearer <token>"');
    }
    const body = await readJsonObject(req);
    assertOnlyFields(body, ['failureRate', 'latencyMs']);
    const { failureRate, latencyMs } = body;
    if (failureRate !== undefined && (typeof failureRate !== 'number' || !(failureRate >= 0 && failureRate <= 1))) {
      throw new HttpError(400, 'FAULT_RATE_INVALID', '"failureRate" is a number from 0 to 1');
    }
    if (latencyMs !== undefined && (typeof latencyMs !== 'number' || !Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 60_000)) {
      throw new HttpError(400, 'FAULT_LATENCY_INVALID', '"latencyMs" is a whole number of milliseconds from 0 to 60000');
    }
    if (failureRate !== undefined) gateway.failureRate = failureRate;
    if (latencyMs !== undefined) gateway.latencyMs = latencyMs;
    sendJson(res, 200, { failureRate: gateway.failureRate, latencyMs: gateway.latencyMs });
  });

  return {
    async settle(req, transfer): Promise<SettlementOutcome> {
      const tag = req.headers['x-biz-tag'];
      const org = (typeof tag === 'string' ? ORG_TAG.exec(tag)?.[1] : undefined) ?? 'default';
      try {
        return await group.execute<SettlementOutcome>(
          org,
          async (signal) => ({ status: 'settled' as const, org, reference: await gateway.settle(org, transfer.amount, signal) }),
          (refusal) => {
            queued++;
            return { status: 'queued' as const, org, reason: 'circuit_open' as const, retryAt: refusal.retryAt === null ? undefined : new Date(refusal.retryAt).toISOString() };
          },
        );
      } catch (error) {
        queued++;
        return { status: 'queued', org, reason: error instanceof CallTimeoutError ? 'timeout' : 'gateway_failed' };
      }
    },
  };
}
