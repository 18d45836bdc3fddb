import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full, forced collection, also when the test runner was started without --expose-gc
 * (`npx node --test`): the flag can be set at run time, and a new context then sees `gc`.
 */
export const fullGc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  })();

/** Lets the current job end (WeakRefs made or deref'd in it hold their targets until then). */
export const nextTurn = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
