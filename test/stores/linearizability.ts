/**
 * A linearizability checker for histories of a key-value map recorded from several threads.
 *
 * Linearizability is local (Herlihy & Wing 1990): a history of a map is linearizable iff the
 * sub-history of every key is, so each key is checked on its own against a one-register model.
 * The search is Wing & Gong's (1993): repeatedly pick an operation that could take effect next
 * (its call precedes every pending return), apply it to the model, and backtrack when the model
 * disagrees with what the operation returned; with Lowe's (2017) memoisation of (set of
 * operations linearized, model state), which visits each configuration once. This is the
 * algorithm of porcupine (Go) and Knossos's "linear" checker.
 *
 * Times are any totally ordered stamps such that an operation's call stamp is taken before it
 * starts and its return stamp after it ends (here: a shared atomic counter). An operation that
 * never returned (its thread was killed) has `ret: Infinity` and any output: it may or may not
 * have taken effect.
 */

/** The register's value: an int64 balance, a record rendered as a string, or absent (null). */
export type Value = bigint | string | null;

export type Operation =
  | { readonly kind: 'get'; readonly output: Value }
  | { readonly kind: 'set'; readonly value: Exclude<Value, null> }
  | { readonly kind: 'add'; readonly delta: bigint; readonly output: bigint | null }
  | { readonly kind: 'cas'; readonly expected: Value; readonly next: Exclude<Value, null>; readonly output: boolean }
  | { readonly kind: 'delete'; readonly output: boolean }
  | { readonly kind: 'cad'; readonly expected: Exclude<Value, null>; readonly output: boolean };

export interface Event {
  readonly key: string;
  readonly op: Operation;
  /** Stamp taken just before the call. */
  readonly call: number;
  /** Stamp taken just after the return; Infinity if the call never returned. */
  readonly ret: number;
  /** Which thread ran it (for messages). */
  readonly thread: number;
}

export interface CheckResult {
  readonly ok: boolean;
  /** On failure: the key whose history has no linearization, and that history in call order. */
  readonly key?: string;
  readonly history?: readonly Event[];
  /** Search configurations visited, summed over keys (for the test's report). */
  readonly steps: number;
}

/**
 * The sequential specification: applies `op` to `state`; `ok` is whether the output `op`
 * reported is the one the sequential map would have returned. A pending op's output is unknown,
 * so any output is accepted.
 */
export function step(state: Value, op: Operation, pending: boolean): { ok: boolean; next: Value } {
  switch (op.kind) {
    case 'get':
      return { ok: pending || op.output === state, next: state };
    case 'set':
      return { ok: true, next: op.value };
    case 'add': {
      if (state === null) return { ok: pending || op.output === null, next: null };
      const next = (state as bigint) + op.delta;
      return { ok: pending || op.output === next, next };
    }
    case 'cas': {
      const matches = state === op.expected;
      return { ok: pending || op.output === matches, next: matches ? op.next : state };
    }
    case 'delete':
      return { ok: pending || op.output === (state !== null), next: null };
    case 'cad': {
      const matches = state !== null && state === op.expected;
      return { ok: pending || op.output === matches, next: matches ? null : state };
    }
  }
}

/** Checks every key's sub-history; stops at the first key with none. Initial state: absent. */
export function checkHistory(events: readonly Event[], maxSteps = 5_000_000): CheckResult {
  const byKey = new Map<string, Event[]>();
  for (const event of events) {
    let list = byKey.get(event.key);
    if (list === undefined) byKey.set(event.key, (list = []));
    list.push(event);
  }
  let steps = 0;
  for (const [key, history] of byKey) {
    const result = checkKey(history, maxSteps - steps);
    steps += result.steps;
    if (!result.ok) return { ok: false, key, history: [...history].sort((a, b) => a.call - b.call), steps };
  }
  return { ok: true, steps };
}

interface Node {
  readonly kind: 'call' | 'return';
  readonly index: number; // operation index in the key's history
  readonly time: number;
  match: Node | null; // call -> its return
  prev: Node | null;
  next: Node | null;
}

function checkKey(history: readonly Event[], budget: number): { ok: boolean; steps: number } {
  if (history.length > 1000) throw new RangeError(`a key's history of ${history.length} operations is too long to search; use more keys`);
  // Doubly linked list of call and return nodes in time order, with a sentinel head.
  const nodes: Node[] = [];
  for (let i = 0; i < history.length; i++) {
    const event = history[i]!;
    if (!(event.call < event.ret)) throw new RangeError(`operation ${i} returns (${event.ret}) before it is called (${event.call})`);
    const call: Node = { kind: 'call', index: i, time: event.call, match: null, prev: null, next: null };
    const ret: Node = { kind: 'return', index: i, time: event.ret, match: null, prev: null, next: null };
    call.match = ret;
    nodes.push(call, ret);
  }
  nodes.sort((a, b) => a.time - b.time || (a.kind === b.kind ? 0 : a.kind === 'call' ? -1 : 1));
  const head: Node = { kind: 'call', index: -1, time: -Infinity, match: null, prev: null, next: null };
  let tail = head;
  for (const node of nodes) {
    tail.next = node;
    node.prev = tail;
    tail = node;
  }

  const lift = (call: Node): void => {
    call.prev!.next = call.next;
    if (call.next !== null) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next !== null) ret.next.prev = ret.prev;
  };
  const unlift = (call: Node): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next !== null) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next !== null) call.next.prev = call;
  };

  const seen = new Set<string>();
  const stack: Array<{ call: Node; state: Value }> = [];
  let linearized = 0n;
  let state: Value = null;
  let steps = 0;
  let entry = head.next;
  while (head.next !== null) {
    if (++steps > budget) throw new RangeError(`linearizability search exceeded its budget of ${budget} steps`);
    if (entry === null) return { ok: false, steps }; // unreachable: a return node always ends the list
    if (entry.kind === 'call') {
      const event = history[entry.index]!;
      const { ok, next } = step(state, event.op, event.ret === Infinity);
      if (ok) {
        const bits = linearized | (1n << BigInt(entry.index));
        const memo = `${bits.toString(36)}|${typeof next === 'bigint' ? `${next}n` : String(next)}`;
        if (!seen.has(memo)) {
          seen.add(memo);
          stack.push({ call: entry, state });
          state = next;
          linearized = bits;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return reached with its call not linearized: undo the last choice and try the next.
      const top = stack.pop();
      if (top === undefined) return { ok: false, steps };
      state = top.state;
      linearized &= ~(1n << BigInt(top.call.index));
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return { ok: true, steps };
}

/** One line per event, for failure messages. */
export function describeHistory(history: readonly Event[]): string {
  return history
    .map((e) => {
      const op = e.op;
      const args =
        op.kind === 'set' ? String(op.value) : op.kind === 'add' ? String(op.delta) : op.kind === 'cas' ? `${String(op.expected)} -> ${String(op.next)}` : op.kind === 'cad' ? String(op.expected) : '';
      const output = 'output' in op ? String(op.output) : '';
      return `  thread ${e.thread} [${e.call}, ${e.ret}] ${op.kind}(${args}) => ${output}`;
    })
    .join('\n');
}
