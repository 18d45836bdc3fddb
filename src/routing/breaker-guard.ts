import { createHash } from 'node:crypto';
import type { BreakerGroup } from '../breaker/breaker-group.ts';
import { CallAbandonedError, CircuitOpenError } from '../breaker/errors.ts';
import type { RouteGuardFactory } from './guard.ts';
import type { CompiledRoute } from './route-table.ts';

/**
 * The breaker key of `route`: its id and a digest of what the breaker protects, its target and
 * the traffic sent there (orgId, txnType). The same id given to another org's rule or to another
 * target by a reload gets another breaker: the open circuit and the failures of org A's bank are
 * not org B's (nor the DR bank's an operator fails over to). Limits and degradation edits leave
 * the key as it is, so the route keeps its (open) breaker. The key is the same in every process
 * of the service for the same rule, which the cluster sync's shared state needs.
 */
export function routeBreakerKey(route: CompiledRoute): string {
  const digest = createHash('sha256').update(JSON.stringify([route.orgId, route.txnType, route.target])).digest('hex');
  return `${route.id}.${digest.slice(0, 8)}`;
}

/**
 * Route guards from a BreakerGroup: route `r` runs under the group's breaker keyed
 * `routeBreakerKey(r)` (`<route id>.<8 hex digits>`; breaker id `<group>:<key>`, etcd key
 * `/govmap/circuit/<group>:<key>/<instance>` with a cluster sync). Every route has its own
 * two-threshold breaker, with the group's options. A route that stays in the table across
 * reloads with the same orgId, txnType and target keeps its breaker (same key); a change of any
 * of the three gives it a fresh one (the router asks for a new guard).
 */
export function breakerGuards(group: BreakerGroup): RouteGuardFactory {
  return (route) => {
    const key = routeBreakerKey(route);
    const id = `${group.name}:${key}`;
    return {
      get state(): string {
        return group.peek(key)?.state ?? 'CLOSED';
      },
      execute: <T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> => {
        if (signal === undefined) return group.execute(key, fn);
        // A call that failed because its client hung up says nothing of the target: counted as a
        // failure, any client sending an org's tag and hanging up could open that org's breaker.
        return group
          .execute(key, async (timeout) => {
            try {
              return await fn(AbortSignal.any([timeout, signal]));
            } catch (error) {
              throw signal.aborted && !timeout.aborted ? new CallAbandonedError(id, error) : error;
            }
          })
          .catch((error: unknown) => {
            throw error instanceof CallAbandonedError && error.breaker === id ? error.cause : error;
          });
      },
      // Only this route's own breaker refusing is a rejection: a CircuitOpenError thrown by a
      // breaker deeper in the call (the downstream's own) is that call failing.
      isRejection: (error) => error instanceof CircuitOpenError && error.breaker === id,
      // The route left the table or its rule or target changed (the key changes with them): an
      // OPEN breaker no call reaches would never close, and stay on the board and in alerts.
      dispose: () => {
        group.remove(key);
      },
    };
  };
}
