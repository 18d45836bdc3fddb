import { definitionToJson, deepFreeze } from './definition.ts';
import type { JsonValue, SwitchDefinition } from './definition.ts';
import { decide, isStatic } from './targeting.ts';
import type { SwitchContext, SwitchEvaluation } from './targeting.ts';

/** Where a snapshot came from: shown at GET /switches, in audit events and in logs. */
export interface SnapshotMeta {
  /** Monotonic within a board (and across the worker threads that follow it). */
  readonly version: number;
  /** ISO-8601 time the snapshot was made. */
  readonly updatedAt: string;
  /** Who made the change: `admin:<token id>`, `file:/etc/govmap/switches.yaml`, `etcd`, ... */
  readonly actor: string;
  readonly reason: string;
  /** `initial`, `file`, `etcd`, `admin`, `replica`, ... */
  readonly source: string;
}

let staticTableOf: (snapshot: SwitchSnapshot) => Readonly<Record<string, boolean>>;

/**
 * One version of a switch set: immutable and frozen all the way down, replaced whole (the Go
 * specification's atomic.Value pattern). Whoever holds a snapshot holds a consistent set: no
 * change can reach into it, so a reader never sees half of an update.
 *
 * Switches whose answer does not depend on the request (plain on/off, killed, disabled) are
 * decided once here, into a plain object read by property access: reading one inside a request
 * costs a property load, not an evaluation (see bench `switch_read_vs_property`).
 */
export class SwitchSnapshot implements SnapshotMeta {
  readonly version: number;
  readonly updatedAt: string;
  readonly actor: string;
  readonly reason: string;
  readonly source: string;
  readonly #definitions: ReadonlyMap<string, SwitchDefinition>;
  /** name -> on, for static switches only; a plain (fast-properties) object, never a Map. */
  readonly #static: Record<string, boolean>;
  readonly #staticEvaluations: ReadonlyMap<string, SwitchEvaluation>;

  static {
    staticTableOf = (snapshot) => snapshot.#static;
  }

  /** `definitions` must already be validated (parseSwitchSet); they are frozen here. */
  constructor(definitions: ReadonlyMap<string, SwitchDefinition>, meta: SnapshotMeta) {
    this.version = meta.version;
    this.updatedAt = meta.updatedAt;
    this.actor = meta.actor;
    this.reason = meta.reason;
    this.source = meta.source;
    const sorted = new Map([...definitions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    for (const definition of sorted.values()) deepFreeze(definition);
    this.#definitions = sorted;
    const table: Record<string, boolean> = {};
    const evaluations = new Map<string, SwitchEvaluation>();
    for (const [name, definition] of sorted) {
      if (!isStatic(definition)) continue;
      const { on, reason } = decide(definition, {});
      table[name] = on;
      evaluations.set(name, Object.freeze({ name, on, value: on ? definition.value : definition.offValue, reason, version: meta.version }));
    }
    this.#static = Object.freeze(table);
    this.#staticEvaluations = evaluations;
    Object.freeze(this);
  }

  /** Switch names, sorted. */
  names(): string[] {
    return [...this.#definitions.keys()];
  }

  get size(): number {
    return this.#definitions.size;
  }

  has(name: string): boolean {
    return this.#definitions.has(name);
  }

  /** The frozen definition of `name`, or undefined. */
  get(name: string): SwitchDefinition | undefined {
    return this.#definitions.get(name);
  }

  /** Never throws: an unknown switch is off with reason UNKNOWN_SWITCH. */
  evaluate(name: string, context: SwitchContext = {}): SwitchEvaluation {
    const fixed = this.#staticEvaluations.get(name);
    if (fixed !== undefined) return fixed;
    const definition = this.#definitions.get(name);
    if (definition === undefined) return { name, on: false, value: false, reason: 'UNKNOWN_SWITCH', version: this.version };
    const { on, reason } = decide(definition, context);
    return { name, on, value: on ? definition.value : definition.offValue, reason, version: this.version };
  }

  isOn(name: string, context: SwitchContext = {}): boolean {
    const fixed = this.#static[name];
    if (fixed === true || fixed === false) return fixed;
    return this.evaluate(name, context).on;
  }

  /** The set in its file form, with its metadata: what GET /switches shows. */
  toJSON(): SnapshotMeta & { switches: Record<string, Record<string, JsonValue>> } {
    const switches: Record<string, Record<string, JsonValue>> = {};
    for (const [name, definition] of this.#definitions) switches[name] = definitionToJson(definition);
    return { version: this.version, updatedAt: this.updatedAt, actor: this.actor, reason: this.reason, source: this.source, switches };
  }
}

/**
 * A snapshot seen through one request's context: what code inside a pinned request reads.
 * Answers are memoised for the view's life, so a request that asks twice gets the same answer
 * at the cost of one evaluation (the answer could not differ anyway: snapshot and context are fixed).
 */
export class SwitchView {
  readonly snapshot: SwitchSnapshot;
  readonly context: SwitchContext;
  readonly #static: Readonly<Record<string, boolean>>;
  #memo: Map<string, SwitchEvaluation> | undefined;

  constructor(snapshot: SwitchSnapshot, context: SwitchContext = {}) {
    this.snapshot = snapshot;
    this.context = context;
    this.#static = staticTableOf(snapshot);
  }

  get version(): number {
    return this.snapshot.version;
  }

  /** Whether `name` is on for this request. Static switches: one property load. */
  isOn(name: string): boolean {
    const fixed = this.#static[name];
    if (fixed === true || fixed === false) return fixed;
    return this.evaluate(name).on;
  }

  /** The full answer (value, reason, version). Never throws. */
  evaluate(name: string): SwitchEvaluation {
    let memo = this.#memo;
    const known = memo?.get(name);
    if (known !== undefined) return known;
    const evaluation = this.snapshot.evaluate(name, this.context);
    if (memo === undefined) memo = this.#memo = new Map();
    memo.set(name, evaluation);
    return evaluation;
  }

  /** The served value of `name`: its `value` when on, `offValue` when off, `fallback` if unknown. */
  value<T extends JsonValue>(name: string, fallback: T): JsonValue {
    const evaluation = this.evaluate(name);
    return evaluation.reason === 'UNKNOWN_SWITCH' ? fallback : evaluation.value;
  }
}
