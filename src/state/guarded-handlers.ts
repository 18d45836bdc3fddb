import { StateArgumentError } from './errors.ts';
import type { StateEntry, StateEvent, StateWatchHandlers } from './store.ts';

/** The code of the process warning a throwing watch handler raises. */
export const WATCH_HANDLER_FAILED = 'GOVMAP_STATE_WATCH_HANDLER_FAILED';

/**
 * The consumer's watch handlers, each call kept from throwing into the store.
 *
 * Why: a handler runs inside the store's own machinery (an etcd3 event emitter, the file store's
 * poll, a microtask of the memory store). A throw there used to escape as an uncaught exception
 * or an unhandled rejection, which ends a Node process, or, in the file store, made a
 * compare-and-set that had succeeded reject. A bug in one consumer must not take down the
 * service or the watch that other consumers rely on: the throw is reported as a process warning
 * (code GOVMAP_STATE_WATCH_HANDLER_FAILED, naming the store, the prefix and the callback), the
 * change counts as delivered, and the watch goes on with the next one.
 *
 * @throws StateArgumentError when `handlers` lacks onEvent or onReset, at watch() and not at
 *   the first change
 */
export function guardHandlers(store: string, prefix: string, handlers: StateWatchHandlers): StateWatchHandlers {
  if (handlers === null || typeof handlers !== 'object' || typeof handlers.onEvent !== 'function' || typeof handlers.onReset !== 'function') {
    throw new StateArgumentError('watch', 'handlers', 'an object with onEvent and onReset functions (onStatus optional)', handlers);
  }
  const statusType = typeof handlers.onStatus;
  if (statusType !== 'undefined' && statusType !== 'function') {
    throw new StateArgumentError('watch', 'handlers.onStatus', 'a function, or absent', Reflect.get(handlers, 'onStatus'));
  }
  const report = (callback: string, error: unknown): void => {
    const reason = describeThrown(error);
    process.emitWarning(`state store "${store}": the watch of ${JSON.stringify(prefix)} went on after its ${callback} handler threw: ${reason}`, {
      code: WATCH_HANDLER_FAILED,
      detail: error instanceof Error ? error.stack : undefined,
    });
  };
  return {
    onEvent(event: StateEvent): void {
      try {
        settled(handlers.onEvent(event), (error) => report('onEvent', error));
      } catch (error) {
        report('onEvent', error);
      }
    },
    onReset(entries: readonly StateEntry[]): void {
      try {
        settled(handlers.onReset(entries), (error) => report('onReset', error));
      } catch (error) {
        report('onReset', error);
      }
    },
    ...(statusType === 'undefined'
      ? {}
      : {
          onStatus(status: 'connected' | 'disconnected', error?: unknown): void {
            try {
              settled(handlers.onStatus?.(status, error), (thrown) => report('onStatus', thrown));
            } catch (thrown) {
              report('onStatus', thrown);
            }
          },
        }),
  };
}

/**
 * What a handler returned, when it is a promise (an `async` handler, which `void` in the type
 * lets through): its rejection goes to `onRejected`. Why: otherwise an async handler's throw is
 * an unhandled rejection, which ends the process as surely as the synchronous throw caught here.
 */
function settled(returned: unknown, onRejected: (error: unknown) => void): void {
  if (returned !== null && (typeof returned === 'object' || typeof returned === 'function') && typeof (returned as { then?: unknown }).then === 'function') {
    (returned as PromiseLike<unknown>).then(undefined, onRejected);
  }
}

/**
 * The text of what a handler threw. Why not `String(error)` alone: a thrown object without a
 * prototype (or whose toString throws) cannot be converted, and that second throw, from inside
 * the catch, would escape into the store as the first one used to.
 */
function describeThrown(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : String(error);
  } catch {
    try {
      return `a value that cannot be shown as text (${Object.prototype.toString.call(error)})`;
    } catch {
      // A revoked Proxy refuses even that.
      return 'a value that cannot be shown as text';
    }
  }
}
