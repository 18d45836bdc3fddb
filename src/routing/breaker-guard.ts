import type { BreakerGroup } from '../breaker/breaker-group.ts';
import { CallAbandonedError, CircuitOpenError } from '../breaker/errors.ts';
import type { RouteGuardFactory } from './guard.ts';

/**
 * Route guards from a BreakerGroup: route `r` runs under the group's breaker keyed `r.id`
 * (breaker id `<group>:<route id>`, etcd key `/govmap/circuit/<group>:<route id>/<instance>`
 * with a cluster sync). Every route has its own two-threshold breaker, with the group's options.
 * A route that stays in the table across edits keeps its breaker (same key).
 */
export function breakerGuards(group: BreakerGroup): RouteGuardFactory {
  return (route) => {
    const id = `${group.name}:${route.id}`;
    return {
      get state(): string {
        return group.peek(route.id)?.state ?? 'CLOSED';
      },
      execute: <T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> => {
        if (signal === undefined) return group.execute(route.id, fn);
        // A call that failed because its client hung up says nothing of the target: counted as a
        // failure, any client sending an org's tag and hanging up could open that org's breaker.
        return group
          .execute(route.id, async (timeout) => {
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
    };
  };
}
