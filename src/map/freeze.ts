/**
 * Freezes a value a map is about to hold, so it cannot change behind the map's back: the object
 * itself, and what it holds through plain objects and arrays (a record's nested limits, a list
 * of holds). Class instances inside are frozen at their own level only: their internals (private
 * fields, a Map's entries) are theirs, and freezing cannot reach them anyway.
 *
 * Left alone: primitives (immutable already), functions, and typed arrays and DataViews, which
 * `Object.freeze` refuses when they have elements. Cycles end at objects already frozen.
 */
export function freezeValue(value: unknown): void {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value) || ArrayBuffer.isView(value)) return;
  Object.freeze(value);
  if (!isPlainContainer(value)) return;
  for (const key of Reflect.ownKeys(value)) {
    const descriptor = Reflect.getOwnPropertyDescriptor(value, key);
    // Data properties only: a getter is code, not held state, and is not called here.
    if (descriptor !== undefined && 'value' in descriptor) freezeValue(descriptor.value);
  }
}

function isPlainContainer(value: object): boolean {
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
