/**
 * Lets the sandbox learn of every GovernedMap created in this process without the map part
 * depending on the sandbox. Hooks must be cheap and must not keep the map alive (use WeakRef).
 */
type CreationHook = (map: object) => void;

const hooks = new Set<CreationHook>();

export function onMapCreated(hook: CreationHook): () => void {
  hooks.add(hook);
  return () => hooks.delete(hook);
}

export function notifyMapCreated(map: object): void {
  for (const hook of hooks) {
    try {
      hook(map);
    } catch {
      // A watcher's failure must never stop a map from being built.
    }
  }
}
