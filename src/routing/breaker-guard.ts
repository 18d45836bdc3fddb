import type { BreakerGroup } from '../breaker/breaker-group.ts';
import { CircuitOpenError } from '../breaker/errors.ts';
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
      execute: <T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> =>
        group.execute(route.id, (timeout) => fn(signal === undefined ? timeout : AbortSignal.any([timeout, signal]))),
      // Only this route's own breaker refusing is a rejection: a CircuitOpenError thrown by a
      // breaker deeper in the call (the downstream's own) is that call failing.
      isRejection: (error) => error instanceof CircuitOpenError && error.breaker === id,
    };
  };
}
