import type { CompiledRoute } from './route-table.ts';

/**
 * What the router needs of a circuit breaker, and no more: run a call under it, and tell its
 * own refusal (circuit open) apart from the call's failure. Each route gets its own guard from
 * a RouteGuardFactory, so one org's failing downstream opens only that route's circuit.
 * `breakerGuards()` (breaker-guard.ts) adapts govmap's two-threshold breaker to this interface.
 */
export interface RouteGuard {
  /**
   * Runs `fn` under the guard. Rejects with the guard's own error, without calling `fn`, when
   * it refuses (see `isRejection`); otherwise settles as `fn` does (a timeout may reject first).
   */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** True when `error` is this guard refusing to call (circuit open), not the call failing. */
  isRejection(error: unknown): boolean;
  /** Shown at GET /routes: `CLOSED`, `OPEN`, `HALF_OPEN`, or `NONE` for no breaker. */
  readonly state: string;
  /** Releases timers and subscriptions when the route leaves the table or gets another guard. */
  dispose?(): void | Promise<void>;
}

/**
 * Called for each route a table brings, and again for a route id a reload gives another orgId,
 * txnType or target (the old guard is then disposed): a breaker follows the target it protects.
 */
export type RouteGuardFactory = (route: CompiledRoute) => RouteGuard;

/** No breaker: every call goes through. The router's default until a breaker factory is given. */
export const noGuard: RouteGuardFactory = () => ({
  state: 'NONE',
  execute: (fn, signal) => fn(signal ?? new AbortController().signal),
  isRejection: () => false,
});
