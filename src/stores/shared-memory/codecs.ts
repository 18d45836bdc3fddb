import { ConfigurationError } from '../../map/errors.ts';
import { SharedValueError } from './errors.ts';

/**
 * How a value sits in an entry's value words. Every field takes one 8-byte slot (two words) so
 * int64 fields are aligned for BigInt64Array and a record's layout is a plain list.
 *
 * `read` may run during a concurrent write of the same entry only for a reader holding a stale
 * reference; the table's seqlock check discards what it returns then, so `read` must not throw
 * on any bit pattern. It uses plain loads (an Atomics call costs ~10 of them): a reachable
 * record never changes, and an int64 is one aligned 64-bit load that cannot tear on 64-bit CPUs
 * (on 32-bit ones it is an Atomics load, see PLAIN_INT64_LOADS_ARE_SINGLE); what the SEQ check
 * validates is the whole read.
 */
export interface ValueCodec<V> {
  /** Words per value: 2 per field. */
  readonly words: number;
  /** Identifies the layout in the buffer header; `attach` refuses a handle whose layout differs. */
  readonly layoutId: number;
  /** The layout as the handle carries it. */
  readonly layout: ValueLayout;
  /** Whether a new value may overwrite the old in place (one atomic word) instead of a new copy. */
  readonly inPlace: boolean;
  /** Throws SharedValueError naming the key and the broken rule. */
  check(key: string, value: V): void;
  read(i32: Int32Array, i64: BigInt64Array, base: number): V;
  write(i32: Int32Array, i64: BigInt64Array, base: number, value: V): void;
  /** Whether the value stored at `base` equals `value` (field by field). */
  equals(i32: Int32Array, i64: BigInt64Array, base: number, value: V): boolean;
  same(a: V, b: V): boolean;
  /**
   * A value the caller may keep and change, from one a read cache holds: the same bigint (it is
   * immutable, so a cache hit allocates nothing), a new object for a record (a caller that
   * changed a shared object would change what other reads of this thread return).
   */
  handOut(value: V): V;
}

export type FieldType = 'int64' | 'int32' | 'uint32' | 'bool';
/** Field name -> type. Names are identifiers; at most MAX_RECORD_FIELDS fields. */
export type RecordLayout = Readonly<Record<string, FieldType>>;
export type FieldValue<T extends FieldType> = T extends 'int64' ? bigint : T extends 'bool' ? boolean : number;
export type RecordOf<L extends RecordLayout> = { readonly [F in keyof L]: FieldValue<L[F]> };

/** What a handle says about values: `'int64'` or `{ record: layout }`. */
export type ValueLayout = 'int64' | { readonly record: RecordLayout };

/**
 * Whether a plain BigInt64Array load is one 64-bit load. On 64-bit CPUs V8 loads an int64
 * element with one aligned 64-bit instruction, which a concurrent 64-bit store cannot tear. On
 * 32-bit CPUs (ia32, arm) it is two 32-bit loads that could pair the halves of two different
 * writes — and an int64 overwritten in place does not move the bucket's SEQ, so the seqlock
 * would not catch it. There a reader loads int64 values with Atomics.load (never torn).
 */
export const PLAIN_INT64_LOADS_ARE_SINGLE = ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(process.arch);

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
/** 16 fields = 128 bytes of value: "small fixed-layout records". Larger values belong elsewhere. */
export const MAX_RECORD_FIELDS = 16;
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const FIELD_TYPES: readonly FieldType[] = ['int64', 'int32', 'uint32', 'bool'];

/** int64 balances in minor units: one word pair, overwritten in place with one atomic store. */
export class Int64Codec implements ValueCodec<bigint> {
  readonly words = 2;
  readonly layoutId = layoutHash('int64');
  readonly layout = 'int64' as const;
  readonly inPlace = true;

  check(key: string, value: bigint): void {
    if (typeof value !== 'bigint') throw new SharedValueError(key, `must be a bigint (integer minor units), got ${typeof value}`);
    if (value < INT64_MIN || value > INT64_MAX) throw new SharedValueError(key, `must fit in int64 (${INT64_MIN} ..= ${INT64_MAX}), got ${value}`);
  }

  read(_i32: Int32Array, i64: BigInt64Array, base: number): bigint {
    return PLAIN_INT64_LOADS_ARE_SINGLE ? i64[base >> 1]! : Atomics.load(i64, base >> 1);
  }

  write(_i32: Int32Array, i64: BigInt64Array, base: number, value: bigint): void {
    Atomics.store(i64, base >> 1, value);
  }

  equals(_i32: Int32Array, i64: BigInt64Array, base: number, value: bigint): boolean {
    return Atomics.load(i64, base >> 1) === value;
  }

  same(a: bigint, b: bigint): boolean {
    return a === b;
  }

  handOut(value: bigint): bigint {
    return value;
  }
}

/**
 * A small record, e.g. `{ balance: 'int64', limit: 'int64', status: 'int32' }`. Records are
 * written copy-on-write (a new entry swapped in with one atomic store), so a reader always sees
 * every field from the same write and a writer that dies midway leaves the old record whole.
 */
export class RecordCodec<L extends RecordLayout> implements ValueCodec<RecordOf<L>> {
  readonly words: number;
  readonly layoutId: number;
  readonly layout: { readonly record: L };
  readonly inPlace = false;
  readonly #names: string[];
  readonly #types: FieldType[];

  constructor(layout: L) {
    if (layout === null || typeof layout !== 'object') throw new ConfigurationError('layout', 'must be an object of field name -> type');
    const names = Object.keys(layout);
    if (names.length === 0 || names.length > MAX_RECORD_FIELDS) {
      throw new ConfigurationError('layout', `must have 1 ..= ${MAX_RECORD_FIELDS} fields`, names.length);
    }
    for (const name of names) {
      if (!FIELD_NAME.test(name)) throw new ConfigurationError(`layout.${name}`, 'field names must match [A-Za-z_][A-Za-z0-9_]{0,63}');
      // Matches the pattern, but `record.__proto__ = v` sets the prototype of the record `read`
      // builds: the field would vanish from every value read back (a layout from JSON can have it).
      if (name === '__proto__') throw new ConfigurationError(`layout.${name}`, 'is not a usable field name (assigning it sets an object\'s prototype)');
      if (!FIELD_TYPES.includes(layout[name]!)) {
        throw new ConfigurationError(`layout.${name}`, `field type must be one of ${FIELD_TYPES.join(', ')}`, layout[name]);
      }
    }
    this.#names = names;
    this.#types = names.map((n) => layout[n]!);
    this.words = 2 * names.length;
    this.layout = { record: Object.freeze({ ...layout }) };
    this.layoutId = layoutHash(names.map((n, i) => `${n}:${this.#types[i]}`).join(','));
  }

  check(key: string, value: RecordOf<L>): void {
    if (value === null || typeof value !== 'object') throw new SharedValueError(key, `must be a record object, got ${value === null ? 'null' : typeof value}`);
    const names = this.#names;
    for (const field of Object.keys(value)) {
      if (!names.includes(field)) throw new SharedValueError(key, `has field "${field}", which is not in the layout (${names.join(', ')})`);
    }
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const field = (value as Record<string, unknown>)[name];
      switch (this.#types[i]) {
        case 'int64':
          if (typeof field !== 'bigint' || field < INT64_MIN || field > INT64_MAX) {
            throw new SharedValueError(key, `field "${name}" must be an int64 bigint (${INT64_MIN} ..= ${INT64_MAX})${got(field)}`);
          }
          break;
        case 'int32':
          if (!Number.isInteger(field) || (field as number) < -(2 ** 31) || (field as number) >= 2 ** 31) {
            throw new SharedValueError(key, `field "${name}" must be an integer in int32 range (${-(2 ** 31)} ..= ${2 ** 31 - 1})${got(field)}`);
          }
          break;
        case 'uint32':
          if (!Number.isInteger(field) || (field as number) < 0 || (field as number) >= 2 ** 32) {
            throw new SharedValueError(key, `field "${name}" must be an integer in uint32 range (0 ..= ${2 ** 32 - 1})${got(field)}`);
          }
          break;
        default:
          if (typeof field !== 'boolean') throw new SharedValueError(key, `field "${name}" must be a boolean${got(field)}`);
      }
    }
  }

  read(i32: Int32Array, i64: BigInt64Array, base: number): RecordOf<L> {
    const out: Record<string, bigint | number | boolean> = {};
    const names = this.#names;
    const types = this.#types;
    for (let i = 0; i < names.length; i++) {
      const at = base + 2 * i;
      const type = types[i];
      out[names[i]!] = type === 'int64' ? i64[at >> 1]! : type === 'int32' ? i32[at]! : type === 'uint32' ? i32[at]! >>> 0 : i32[at] !== 0;
    }
    return out as RecordOf<L>;
  }

  write(i32: Int32Array, i64: BigInt64Array, base: number, value: RecordOf<L>): void {
    const names = this.#names;
    const types = this.#types;
    for (let i = 0; i < names.length; i++) {
      const at = base + 2 * i;
      const field = (value as Record<string, unknown>)[names[i]!];
      if (types[i] === 'int64') Atomics.store(i64, at >> 1, field as bigint);
      else Atomics.store(i32, at, types[i] === 'bool' ? (field ? 1 : 0) : (field as number) | 0);
    }
  }

  equals(i32: Int32Array, i64: BigInt64Array, base: number, value: RecordOf<L>): boolean {
    const names = this.#names;
    const types = this.#types;
    for (let i = 0; i < names.length; i++) {
      const at = base + 2 * i;
      const field = (value as Record<string, unknown>)[names[i]!];
      const type = types[i];
      if (type === 'int64') {
        if (Atomics.load(i64, at >> 1) !== field) return false;
      } else if (type === 'bool') {
        if (Atomics.load(i32, at) !== 0 !== field) return false;
      } else {
        // The field as `read` returns it, compared as `same` does: `expected | 0` would match 1.5
        // to 1 and 2^32 - 1 to -1, so a compare-and-swap took a record sameValue calls different.
        const stored = Atomics.load(i32, at);
        if ((type === 'uint32' ? stored >>> 0 : stored) !== field) return false;
      }
    }
    return true;
  }

  handOut(value: RecordOf<L>): RecordOf<L> {
    return { ...value };
  }

  same(a: RecordOf<L>, b: RecordOf<L>): boolean {
    if (a === b) return true;
    for (const name of this.#names) {
      if ((a as Record<string, unknown>)[name] !== (b as Record<string, unknown>)[name]) return false;
    }
    return true;
  }
}

export function codecFor(layout: ValueLayout): ValueCodec<unknown> {
  if (layout === 'int64') return new Int64Codec();
  if (layout !== null && typeof layout === 'object' && 'record' in layout) return new RecordCodec(layout.record);
  throw new ConfigurationError('value', 'must be "int64" or { record: { field: type, ... } }', layout);
}

/**
 * What a refused field held, for the message: a bigint out of range or a number is the value
 * itself (an amount one past int64 is still a bigint, so the type alone does not explain the
 * refusal); anything else only its type, so a string or object from a request is not echoed.
 */
function got(field: unknown): string {
  if (field === undefined) return ', but it is missing';
  if (typeof field === 'bigint') return `, got ${field}`;
  if (typeof field === 'number') return `, got number ${field}`;
  return `, got ${field === null ? 'null' : typeof field}`;
}

/** FNV-1a of the layout description: identifies a layout, not a security boundary. */
function layoutHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h | 0;
}
