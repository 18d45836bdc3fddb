/**
 * Plain objects and arrays holding other objects that freezeValue has frozen through. Frozen
 * alone does not say so: a caller's `Object.freeze({ limits: { daily } })` is frozen at its own
 * level only, and what it holds could still change the map behind its validator. Only holders of
 * objects are kept (a flat record has nothing further down to vouch for), and weakly.
 */
const frozenThrough = new WeakSet<object>();

/**
 * Freezes a value a map is about to hold, so it cannot change behind the map's back: the object
 * itself, and what it holds through plain objects and arrays (a record's nested limits, a list
 * of holds), also inside objects the caller froze at their own level only. Class instances
 * inside are frozen at their own level only: their internals (private fields, a Map's entries)
 * are theirs, and freezing cannot reach them anyway.
 *
 * Left alone: primitives (immutable already), functions, and typed arrays and DataViews, which
 * `Object.freeze` refuses when they have elements. Cycles end at objects already walked.
 */
export function freezeValue(value: unknown): void {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return;
  if (!isPlainContainer(value)) {
    if (!Object.isFrozen(value)) Object.freeze(value);
    return;
  }
  if (frozenThrough.has(value)) return;
  Object.freeze(value);
  let marked = false;
  try {
    // Own enumerable keys, read directly: a plain object's accessor runs here (once per store),
    // as it does in the validator. Reading descriptors instead (to skip getters) allocates one per
    // property and made storing a three-field record about 12x a shallow freeze, against about 2x.
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) marked = freezeHeld(value, value[i] as unknown, marked);
    } else {
      const keys = Object.keys(value);
      for (let i = 0; i < keys.length; i++) marked = freezeHeld(value, (value as Record<string, unknown>)[keys[i]!], marked);
    }
  } catch (error) {
    // Not frozen through after all (an object inside refused): walked again next time.
    frozenThrough.delete(value);
    throw error;
  }
}

/** Freezes `held` (a value inside `holder`) through; marks `holder` first, so a cycle back to it ends. */
function freezeHeld(holder: object, held: unknown, marked: boolean): boolean {
  if (held === null || typeof held !== 'object') return marked;
  if (!marked) frozenThrough.add(holder);
  freezeValue(held);
  return true;
}

function isPlainContainer(value: object): boolean {
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
