import { AST_NODE_TYPES, ASTUtils, ESLintUtils } from '@typescript-eslint/utils';
import type { TSESLint, TSESTree } from '@typescript-eslint/utils';
import { asMethodCall, canonicalText, contains, enclosingFunction, isFunctionNode, rootIdentifier, unwrap, valueIdentifiers, walk } from '../ast.ts';
import type { FunctionNode } from '../ast.ts';
import { createRule } from '../create-rule.ts';
import { BUILTIN_MAP, GOVERNED_MAP, typeMatchesAny, typeSpecifierSchema } from '../type-match.ts';
import type { TypeSpecifier } from '../type-match.ts';

/** A map-like type: how to recognise it, which of its methods read a key, which write one. */
export interface WatchedMapType {
  readonly type: TypeSpecifier;
  /** Methods `(key, ...) => value` that read the key. */
  readonly read: readonly string[];
  /** Methods `(key, value, ...)` that write the key. */
  readonly write: readonly string[];
}

export interface NoRmwAcrossAwaitOptions {
  /** More map types to watch (a Redis-backed cache, a repository...). Default: none. */
  readonly maps?: readonly WatchedMapType[];
  /** Also watch the built-in Map (`get` / `set`). Default true. */
  readonly builtinMap?: boolean;
}

type MessageIds = 'lostUpdate' | 'lostUpdateFromSnapshot' | 'lostUpdateInUpdateFn' | 'staleInUpdateAsync';

const GOVERNED: WatchedMapType = { type: GOVERNED_MAP, read: ['load', 'loadOrStore', 'loadAndDelete'], write: ['store'] };
/**
 * The Redis-backed map: every call is a round trip, so the `await` of the read itself is the gap
 * in which another machine writes the key. Its `update` is the compare-and-set fix.
 */
const REMOTE: WatchedMapType = { type: { from: 'package', package: 'govmap', name: 'RemoteGovernedMap' }, read: ['load', 'loadCached', 'loadOrStore', 'loadAndDelete'], write: ['store'] };
/** GovernedMap methods that read every key at once: `entries()` returns the snapshot, `range()` hands it to its callback. */
const SNAPSHOT_READS: ReadonlySet<string> = new Set(['entries', 'range']);
/** Methods that put a value into a local collection (`snap.set(k, v)`, `out.push(v)`): it then holds that value. */
const COLLECTION_WRITES: ReadonlySet<string> = new Set(['set', 'push', 'unshift', 'add']);
const BUILTIN: WatchedMapType = { type: BUILTIN_MAP, read: ['get'], write: ['set'] };

/** A variable holds (something computed from) the value `map.read(key)` returned at `readEnd`. */
interface Taint {
  readonly map: string;
  /**
   * null: a snapshot of the whole map (`entries()`, `range()`). It names a key, and so can be
   * reported, once a value is taken out of it by key: `snap.get(k)`, `snap[k]`, or `v` of
   * `for (const [k, v] of snap)`. A total of all its values is stale, but writing it loses no
   * other request's write of that key, so it is not reported.
   */
  readonly key: string | null;
  readonly kind: WatchedMapType;
  readonly read: TSESTree.CallExpression;
  readonly method: string;
  /** Taken from a whole-map snapshot (`entries()`, `range()`), not a read of one key. */
  readonly snapshot?: true;
}

interface Access {
  readonly map: string;
  readonly key: string;
  readonly kind: WatchedMapType;
  readonly method: string;
  readonly keyNode: TSESTree.Node;
}

/**
 * The lost update: a value read from a map for key k, an `await` (where any other request can
 * write k), then a write of k computed from the stale value, which silently discards whatever
 * was written in between. With money in the map, that is money created or destroyed.
 *
 * ESLint's require-atomic-updates left the recommended set in 2019 after floods of false
 * positives; this rule trades recall for precision. It fires only when all of these hold:
 * - the receiver is, by the type checker, a GovernedMap (or RemoteGovernedMap, or Map, or a
 *   type named in options), and read and write name the same receiver and the same key (same simple expression, simple
 *   `const` aliases followed, the key variable not reassigned in between);
 * - the written value is derived from the read through variables (`const next = v + amount`,
 *   `v -= amount`, destructuring), or is the read itself;
 * - an `await` (or `for await`, or a `.then` callback's start) of a function that contains the
 *   write lies after the read and before the write (or after it in a loop the read precedes), and
 *   is not in a branch that returns or throws before reaching the write;
 * - the key is not read again on that map after the last such `await` in a way that deals with
 *   concurrent writers: a re-read the write is computed from, or one a condition uses (a
 *   compare-before-write guard). A re-read only logged leaves the write as stale as it was.
 * Writes through `compareAndSwap` are never reported: a stale expected value makes them fail.
 */
export const noRmwAcrossAwait = createRule<[NoRmwAcrossAwaitOptions], MessageIds>({
  name: 'no-rmw-across-await',
  meta: {
    type: 'problem',
    docs: {
      description: 'Forbid writing a map key from a value read before an await (the lost update); use update/updateAsync',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      lostUpdate:
        '{{map}}.{{write}}({{key}}, ...) writes a value computed from {{map}}.{{read}}({{key}}), read before an await: a write to {{key}} by another request during the await is lost. {{fix}}',
      lostUpdateFromSnapshot:
        '{{map}}.{{write}}({{key}}, ...) writes a value computed from a {{map}}.{{read}}() snapshot, taken before an await: a write to {{key}} by another request during the await is lost. {{fix}}',
      lostUpdateInUpdateFn:
        "The update function of {{map}}.{{write}}({{key}}, ...) ignores its argument and uses {{map}}.{{read}}({{key}}), read before an await: a write to {{key}} during the await is lost. Compute from the update function's argument.",
      staleInUpdateAsync:
        "The update function of {{map}}.updateAsync({{key}}, ...) ignores its argument and uses {{map}}.{{read}}({{key}}), read before the call: updateAsync runs the function only after the key's pending updates commit (and again if the key changes while it awaits), so a write to {{key}} in between is lost. Compute from the update function's argument.",
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          builtinMap: { type: 'boolean' },
          maps: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['type', 'read', 'write'],
              properties: {
                type: typeSpecifierSchema,
                read: { type: 'array', items: { type: 'string', minLength: 1 } },
                write: { type: 'array', items: { type: 'string', minLength: 1 } },
              },
            },
          },
        },
      },
    ],
  },
  defaultOptions: [{ builtinMap: true }],
  create(context, [options]) {
    const services = ESLintUtils.getParserServices(context);
    const program = services.program;
    const sourceCode = context.sourceCode;
    const kinds: WatchedMapType[] = [GOVERNED, REMOTE, ...(options.builtinMap === false ? [] : [BUILTIN]), ...(options.maps ?? [])];
    const readNames = new Set(kinds.flatMap((k) => k.read));
    const writeNames = new Set([...kinds.flatMap((k) => k.write), 'update', 'updateAsync']);

    /** Suspension points in source order: where an async function may let other code run. */
    const suspensions: Array<{ readonly node: TSESTree.Node; readonly at: number; readonly fn: TSESTree.Node }> = [];
    /** Every recognised read, by call node. */
    const reads = new Map<TSESTree.CallExpression, Access>();
    /** Every `entries()` of a GovernedMap, by call node: a read of every key. */
    const snapshots = new Map<TSESTree.CallExpression, Omit<Access, 'key' | 'keyNode'>>();
    /**
     * Expressions whose value decides what runs (tests, comparisons): a re-read used in one
     * guards the write (`if (balances.load(id) !== b) throw ...`).
     */
    const conditions: TSESTree.Node[] = [];
    /** `map.update(k, applyFee)`: checked at the end, when the function's body has been seen wherever it is. */
    const namedUpdates: Array<{ readonly node: TSESTree.CallExpression; readonly write: Access; readonly fn: FunctionNode }> = [];
    const taints = new Map<TSESLint.Scope.Variable, Taint[]>();
    /** Writes from a read with no await before them: an await after them in a loop may still come first. */
    const laterInLoop: Array<{ readonly node: TSESTree.CallExpression; readonly write: Access; readonly flowing: readonly Taint[] }> = [];

    /** `receiver.method(key, ...)` on a watched map type, with receiver and key both simple. */
    function access(node: TSESTree.CallExpression, names: ReadonlySet<string>, role: 'read' | 'write'): Access | null {
      const call = asMethodCall(node);
      if (call === null || !names.has(call.method)) return null;
      const keyNode = node.arguments[0];
      if (keyNode === undefined || keyNode.type === AST_NODE_TYPES.SpreadElement) return null;
      const type = services.getTypeAtLocation(call.receiver);
      const kind = kinds.find((k) => {
        const methods = role === 'read' ? k.read : k === GOVERNED ? [...k.write, 'update', 'updateAsync'] : k === REMOTE ? [...k.write, 'update'] : k.write;
        return methods.includes(call.method) && typeMatchesAny(type, [k.type], program);
      });
      if (kind === undefined) return null;
      const map = canonicalText(call.receiver, sourceCode);
      const key = canonicalText(keyNode, sourceCode);
      if (map === null || key === null) return null;
      return { map, key, kind, method: call.method, keyNode };
    }

    /** Records `node` if it reads a watched map (one key, or a GovernedMap's `entries()` snapshot). */
    function registerRead(node: TSESTree.CallExpression): void {
      if (reads.has(node) || snapshots.has(node)) return;
      const read = access(node, readNames, 'read');
      if (read !== null) {
        reads.set(node, read);
        return;
      }
      const snapshot = snapshotOf(node, 'entries');
      if (snapshot !== null) snapshots.set(node, snapshot);
    }

    /** `receiver.method(...)` on a GovernedMap, `method` a whole-map read; with the receiver simple. */
    function snapshotOf(node: TSESTree.CallExpression, method: string): Omit<Access, 'key' | 'keyNode'> | null {
      const call = asMethodCall(node);
      if (call === null || call.method !== method || !SNAPSHOT_READS.has(method)) return null;
      if (!typeMatchesAny(services.getTypeAtLocation(call.receiver), [GOVERNED.type], program)) return null;
      const map = canonicalText(call.receiver, sourceCode);
      return map === null ? null : { map, kind: GOVERNED, method };
    }

    /** Taints flowing out of an expression: reads inside it, and tainted variables it uses. */
    function taintsOf(expression: TSESTree.Node): Taint[] {
      const out: Taint[] = [];
      walk(expression, sourceCode.visitorKeys, (n) => {
        if (n !== expression && isFunctionNode(n)) return false;
        if (n.type === AST_NODE_TYPES.CallExpression) {
          const read = reads.get(n);
          if (read !== undefined) out.push({ map: read.map, key: read.key, kind: read.kind, read: n, method: read.method });
          const snapshot = snapshots.get(n);
          if (snapshot !== undefined) out.push({ ...snapshot, key: null, read: n, snapshot: true });
        }
        return true;
      });
      for (const id of valueIdentifiers(expression, sourceCode.visitorKeys)) {
        const variable = ASTUtils.findVariable(sourceCode.getScope(id), id);
        const inherited = variable === null ? undefined : taints.get(variable);
        if (inherited === undefined) continue;
        const key = lookupKey(id);
        out.push(...(key === null ? inherited : inherited.map((t) => (t.key === null ? { ...t, key } : t))));
      }
      return out;
    }

    /** The key of `id.get(key)` or `id[key]`: the one value of a snapshot that this takes out. */
    function lookupKey(id: TSESTree.Identifier): string | null {
      const member = id.parent;
      if (member?.type !== AST_NODE_TYPES.MemberExpression || member.object !== id) return null;
      if (member.computed) return canonicalText(member.property, sourceCode);
      const call = member.parent;
      if (member.property.type !== AST_NODE_TYPES.Identifier || member.property.name !== 'get' || call?.type !== AST_NODE_TYPES.CallExpression || call.callee !== member) return null;
      const key = call.arguments[0];
      return key === undefined || key.type === AST_NODE_TYPES.SpreadElement ? null : canonicalText(key, sourceCode);
    }

    /**
     * Is `suspension` on a path that reaches `write` with `read`'s value, as far as returns,
     * throws, breaks and continues show?
     */
    function reaches(suspension: TSESTree.Node, write: TSESTree.Node, read: TSESTree.Node): boolean {
      let child: TSESTree.Node = suspension;
      let n = suspension.parent;
      for (; n != null && !contains(n, write); child = n, n = n.parent) {
        if ((child.type === AST_NODE_TYPES.ReturnStatement || child.type === AST_NODE_TYPES.ThrowStatement) && !landsOn(child, write)) return false;
        const list = statementList(n);
        if (list === null) continue;
        const index = list.indexOf(child);
        for (let i = index + 1; i < list.length; i++) if (leavesBefore(list[i]!, write, read)) return false;
      }
      // n is the innermost node holding both: the two must not sit in exclusive branches of it.
      if (n == null) return true;
      if (n.type === AST_NODE_TYPES.IfStatement || n.type === AST_NODE_TYPES.ConditionalExpression) {
        return !((child === n.consequent && n.alternate !== null && contains(n.alternate, write)) || (child === n.alternate && contains(n.consequent, write)));
      }
      return true;
    }

    /**
     * The stale taint a write uses, or null when the write is safe as far as the rule can prove.
     * `runsAt`: where the written value is computed when that is not the write call itself (an
     * updateAsync function, queued behind the key's pending updates: a suspension of its own).
     */
    function staleTaint(write: TSESTree.CallExpression, target: Access, flowing: readonly Taint[], runsAt?: number, body?: TSESTree.Node): Taint | null {
      for (const taint of flowing) {
        if (!sameKey(taint, target)) continue;
        // Read by the update function itself (passed by name, declared before the call): fresh when it runs.
        if (body !== undefined && contains(body, taint.read)) continue;
        const readEnd = taint.read.range[1];
        let lastSuspension = runsAt !== undefined && runsAt > readEnd ? runsAt : -1;
        for (const s of suspensions) {
          if (s.at <= readEnd || s.at > (runsAt ?? write.range[1])) continue;
          if (!contains(s.fn, write) || !reaches(s.node, write, taint.read)) continue;
          lastSuspension = Math.max(lastSuspension, s.at);
        }
        if (lastSuspension < 0) continue;
        if (keyReassigned(target.keyNode, readEnd, write.range[0])) continue;
        const after = (node: TSESTree.Node): boolean => (node.range[0] >= lastSuspension && node.range[1] <= write.range[1]) || (body !== undefined && contains(body, node));
        if (rereads(taint, target, flowing, after)) continue;
        return taint;
      }
      return null;
    }

    /**
     * The lost update across iterations: read before a loop, written in it, an `await` after the
     * write in the same iteration: the next iteration writes the stale value after that await.
     * As for the straight-line case, a read of the key in the loop used by the write, or in a
     * condition, counts as a re-read.
     */
    function aroundLoop(taint: Taint, target: Access, write: TSESTree.CallExpression, flowing: readonly Taint[]): boolean {
      if (!sameKey(taint, target)) return false;
      const readEnd = taint.read.range[1];
      const fn = enclosingFunction(write);
      for (const s of suspensions) {
        if (s.fn !== fn || s.at <= write.range[1]) continue;
        const loop = backEdge(s.node, write, taint.read);
        if (loop === null || keyReassigned(target.keyNode, readEnd, loop.range[1])) continue;
        if (!rereads(taint, target, flowing, (node) => contains(loop, node))) return true;
      }
      return false;
    }

    function sameKey(taint: Taint, target: Access): boolean {
      return taint.map === target.map && taint.key === target.key && taint.kind === target.kind;
    }

    /**
     * Is the key read again where `where` says (after the last await), in a way that deals with
     * concurrent writers: the write is computed from the fresh value (which replaced the stale
     * one, or is combined with it), or a condition (a compare-before-write guard) uses it? A
     * re-read only logged (`console.log(balances.load(id))`) changes nothing that is written.
     */
    function rereads(taint: Taint, target: Access, flowing: readonly Taint[], where: (node: TSESTree.Node) => boolean): boolean {
      for (const [node, r] of reads) {
        if (node === taint.read || r.map !== target.map || r.key !== target.key || !where(node)) continue;
        if (flowing.some((t) => t.read === node)) return true;
        if (conditions.some((c) => c.range[1] >= node.range[1] && taintsOf(c).some((t) => t.read === node))) return true;
      }
      return false;
    }

    function keyReassigned(keyNode: TSESTree.Node, from: number, to: number): boolean {
      const root = rootIdentifier(keyNode);
      if (root === null) return false;
      const variable = ASTUtils.findVariable(sourceCode.getScope(root), root);
      return variable?.references.some((r) => r.isWrite() && r.identifier.range[0] > from && r.identifier.range[0] < to) ?? false;
    }

    function report(node: TSESTree.Node, write: Access, stale: Taint): void {
      context.report({
        node,
        messageId: stale.snapshot === true ? 'lostUpdateFromSnapshot' : 'lostUpdate',
        data: { map: write.map, key: write.key, write: write.method, read: stale.method, fix: fixFor(write) },
      });
    }

    function fixFor(target: Access): string {
      if (target.kind === REMOTE) {
        return `Use ${target.map}.update(${target.key}, async (current) => ...) (a compare-and-set, retried when another machine wrote the key meanwhile), or ${target.map}.add(${target.key}, delta) for an int64 counter.`;
      }
      return target.kind === GOVERNED
        ? `Use ${target.map}.updateAsync(${target.key}, async (current) => ...) so the computation sees the current value, or re-read after the await.`
        : 'Keep this state in a GovernedMap and use updateAsync, or re-read the key after the await.';
    }

    function setTaints(variable: TSESLint.Scope.Variable | null, value: Taint[], replace: boolean): void {
      if (variable === null) return;
      const previous = replace ? [] : (taints.get(variable) ?? []);
      const next = [...previous, ...value];
      if (next.length === 0) taints.delete(variable);
      else taints.set(variable, next);
    }

    return {
      AwaitExpression(node) {
        suspensions.push({ node, at: node.range[1], fn: enclosingFunction(node) });
      },
      ForOfStatement(node) {
        // Each iteration of `for await` suspends before the body runs. Registered on entry: a
        // write inside the body is checked (on its exit) before the loop's own exit.
        if (node.await) suspensions.push({ node: node.right, at: node.right.range[1], fn: enclosingFunction(node) });
        // `for (const [k, v] of balances.entries())`: k and v hold the snapshot's values from the
        // body's first statement on, so the reads in `right` are recorded now, not on their exit.
        walk(node.right, sourceCode.visitorKeys, (n) => {
          if (n.type === AST_NODE_TYPES.CallExpression) registerRead(n);
          return !isFunctionNode(n);
        });
        const flowing = taintsOf(node.right);
        const left = node.left.type === AST_NODE_TYPES.VariableDeclaration ? node.left.declarations.map((d) => d.id) : [node.left];
        for (const target of left) {
          // `[k, v]` of a snapshot: v is the snapshot's value of key k.
          const entryKey = target.type === AST_NODE_TYPES.ArrayPattern && target.elements[0]?.type === AST_NODE_TYPES.Identifier ? target.elements[0].name : null;
          const value = target.type === AST_NODE_TYPES.ArrayPattern ? target.elements[1] : undefined;
          for (const id of patternTargets(target)) {
            const keyed = entryKey !== null && value != null && contains(value, id) ? flowing.map((t) => (t.key === null ? { ...t, key: entryKey } : t)) : flowing;
            setTaints(ASTUtils.findVariable(sourceCode.getScope(id), id), keyed, true);
          }
        }
      },
      IfStatement(node) {
        conditions.push(node.test);
      },
      ConditionalExpression(node) {
        conditions.push(node.test);
      },
      'WhileStatement, DoWhileStatement, ForStatement'(node: TSESTree.WhileStatement | TSESTree.DoWhileStatement | TSESTree.ForStatement) {
        if (node.test !== null) conditions.push(node.test);
      },
      SwitchStatement(node) {
        conditions.push(node.discriminant);
      },
      LogicalExpression(node) {
        // Only `&&` decides: `??` and `||` supply a default (`balances.load(id) ?? 0n`), whatever is done with it.
        if (node.operator === '&&') conditions.push(node.left);
      },
      BinaryExpression(node) {
        // `assert(balances.load(id) === b)` guards as an `if` does.
        if (COMPARISONS.has(node.operator)) conditions.push(node);
      },
      VariableDeclaration(node) {
        // `await using r = ...` suspends where its block ends, awaiting r's disposal.
        if (node.kind !== 'await using' || node.parent == null) return;
        suspensions.push({ node, at: node.parent.range[1], fn: enclosingFunction(node) });
      },
      CallExpression(node) {
        // `assert.equal(balances.load(id), b)`, `invariant(...)`: a guard that throws, as an `if` would.
        if (isAssertion(node.callee)) conditions.push(...node.arguments);
        // `balances.range((k, v) => ...)`: the callback's value parameter holds the snapshot's values.
        const snapshot = snapshotOf(node, 'range');
        const callback = node.arguments[0] === undefined ? undefined : unwrap(node.arguments[0]);
        if (snapshot !== null && callback !== undefined && isFunctionNode(callback) && callback.params[1] !== undefined) {
          for (const id of patternTargets(callback.params[1])) setTaints(ASTUtils.findVariable(sourceCode.getScope(id), id), [{ ...snapshot, key: null, read: node, snapshot: true }], true);
        }
        // `p.then(() => map.set(k, stale + 1))`: the callback runs after p settles, as the code
        // after an `await p` would. Registered on entry: the write inside is checked on its exit.
        const call = asMethodCall(node);
        if (call === null || !PROMISE_CALLBACKS.has(call.method)) return;
        const receiver = services.getTypeAtLocation(call.receiver);
        if (program.getTypeChecker().getNonNullableType(receiver).getProperty('then') === undefined) return;
        for (const argument of node.arguments) {
          const callback = unwrap(argument);
          if (isFunctionNode(callback)) suspensions.push({ node: callback, at: callback.range[0], fn: callback });
        }
      },
      YieldExpression(node) {
        suspensions.push({ node, at: node.range[1], fn: enclosingFunction(node) });
      },
      'CallExpression:exit'(node: TSESTree.CallExpression) {
        registerRead(node);
        taintCollection(node);
        const write = access(node, writeNames, 'write');
        if (write === null || unshared(node)) return;
        if (write.method === 'update' || write.method === 'updateAsync') {
          const named = namedFunction(node.arguments[1]);
          if (named !== null) namedUpdates.push({ node, write, fn: named });
          else checkUpdateFunction(node, write);
          return;
        }
        const value = node.arguments[1];
        if (value === undefined) return;
        const flowing = taintsOf(value);
        const stale = staleTaint(node, write, flowing);
        if (stale !== null) {
          report(node, write, stale);
        } else if (flowing.length > 0) {
          laterInLoop.push({ node, write, flowing });
        }
      },
      'Program:exit'() {
        // The awaits later in a loop's body, and the reads around them, are all known only now.
        for (const { node, write, flowing } of laterInLoop) {
          // What the written expression's variables hold by the loop's end: a re-read assigned to
          // one of them later in the loop (`b = balances.load(id)`) is what the next iteration writes.
          const current = [...flowing, ...taintsOf(node.arguments[1]!)];
          const stale = flowing.find((taint) => aroundLoop(taint, write, node, current));
          if (stale !== undefined) report(node, write, stale);
        }
        for (const { node, write, fn } of namedUpdates) checkUpdateFunction(node, write, fn);
      },
      'VariableDeclarator:exit'(node: TSESTree.VariableDeclarator) {
        if (node.init === null) return;
        const flowing = taintsOf(node.init);
        for (const variable of sourceCode.getDeclaredVariables(node)) setTaints(variable, flowing, true);
      },
      'AssignmentExpression:exit'(node: TSESTree.AssignmentExpression) {
        const left = unwrap(node.left);
        if (left.type === AST_NODE_TYPES.ObjectPattern || left.type === AST_NODE_TYPES.ArrayPattern) {
          // `({ balance } = accounts.load(id)!)`: every name the pattern assigns holds part of the value.
          const flowing = taintsOf(node.right);
          for (const id of patternTargets(left)) setTaints(ASTUtils.findVariable(sourceCode.getScope(id), id), flowing, true);
          return;
        }
        if (left.type !== AST_NODE_TYPES.Identifier) return;
        const variable = ASTUtils.findVariable(sourceCode.getScope(left), left);
        // `v = fresh` replaces what v holds; `v += x` keeps it and adds x's.
        setTaints(variable, taintsOf(node.right), node.operator === '=');
      },
    };

    /** `map.update(k, () => stale + 1)`: the function ignores its argument and uses the stale read. */
    function checkUpdateFunction(node: TSESTree.CallExpression, write: Access, named?: FunctionNode): void {
      const fnArgument = node.arguments[1];
      if (fnArgument === undefined) return;
      const fn = named ?? unwrap(fnArgument);
      if (!isFunctionNode(fn)) return;
      if (usesFirstParameter(fn)) return;
      const queued = write.method === 'updateAsync' && write.kind === GOVERNED;
      // The messages name one key's read; a snapshot's value in an update function is not reported.
      const flowing = taintsOf(fn.body).filter((t) => t.snapshot !== true);
      // A function passed by name runs where it is passed; its own re-reads of the key count.
      const stale = staleTaint(node, write, flowing, queued ? fnArgument.range[0] : undefined, named === undefined ? undefined : fn.body);
      if (stale !== null) {
        context.report({ node: named === undefined ? fn : fnArgument, messageId: queued ? 'staleInUpdateAsync' : 'lostUpdateInUpdateFn', data: { map: write.map, key: write.key, write: write.method, read: stale.method } });
      }
    }

    /**
     * Is the written map a `const m = new Map()` of the very function that writes it, used there
     * only as `m.method(...)`, `m.size`, `for (... of m)` or `return m`? Then no other request or
     * callback can write it during an await: one call's scratch map, as a batch total is. Handed
     * to anything (an argument, an alias, a closure that may run meanwhile), it may be shared.
     */
    function unshared(call: TSESTree.CallExpression): boolean {
      const receiver = asMethodCall(call)?.receiver;
      if (receiver === undefined) return false;
      const id = unwrap(receiver);
      if (id.type !== AST_NODE_TYPES.Identifier) return false;
      const variable = ASTUtils.findVariable(sourceCode.getScope(id), id);
      const definition = variable?.defs.length === 1 ? variable.defs[0] : undefined;
      if (
        variable == null ||
        definition?.node.type !== AST_NODE_TYPES.VariableDeclarator ||
        definition.parent?.type !== AST_NODE_TYPES.VariableDeclaration ||
        definition.parent.kind !== 'const' ||
        definition.node.id.type !== AST_NODE_TYPES.Identifier ||
        definition.node.init === null ||
        unwrap(definition.node.init).type !== AST_NODE_TYPES.NewExpression
      ) {
        return false;
      }
      const declared = definition.node.id;
      const owner = enclosingFunction(definition.node);
      if (owner.type === AST_NODE_TYPES.Program || enclosingFunction(call) !== owner) return false;
      return variable.references.every((reference) => {
        const use = reference.identifier;
        if (use === declared) return true;
        if (enclosingFunction(use) !== owner) return false;
        const parent = use.parent;
        return (
          (parent?.type === AST_NODE_TYPES.MemberExpression && parent.object === use) ||
          (parent?.type === AST_NODE_TYPES.ReturnStatement && parent.argument === use) ||
          (parent?.type === AST_NODE_TYPES.ForOfStatement && parent.right === use)
        );
      });
    }

    /**
     * The function an update passes by name, when the name plainly means one function of this
     * file: a function declaration, or a `const` holding an arrow or function expression.
     * Imported and declared-only (`declare function`) functions are not guessed at.
     */
    function namedFunction(argument: TSESTree.Node | undefined): FunctionNode | null {
      if (argument === undefined) return null;
      const id = unwrap(argument);
      if (id.type !== AST_NODE_TYPES.Identifier) return null;
      const variable = ASTUtils.findVariable(sourceCode.getScope(id), id);
      if (variable == null || variable.defs.length !== 1) return null;
      const definition = variable.defs[0]!.node;
      if (definition.type === AST_NODE_TYPES.FunctionDeclaration) return definition;
      if (
        definition.type !== AST_NODE_TYPES.VariableDeclarator ||
        definition.parent.kind !== 'const' ||
        definition.id.type !== AST_NODE_TYPES.Identifier ||
        definition.init === null
      ) {
        return null;
      }
      const init = unwrap(definition.init);
      return isFunctionNode(init) ? init : null;
    }

    /** Records what a local collection holds after `snap.set(k, v)`, `out.push(v)`... */
    function taintCollection(node: TSESTree.CallExpression): void {
      const call = asMethodCall(node);
      if (call === null || !COLLECTION_WRITES.has(call.method)) return;
      const receiver = unwrap(call.receiver);
      if (receiver.type !== AST_NODE_TYPES.Identifier) return;
      // A map's own values written back into it do not make the map itself a stale value.
      const flowing = node.arguments.flatMap((a) => taintsOf(a)).filter((t) => t.map !== receiver.name);
      if (flowing.length > 0) setTaints(ASTUtils.findVariable(sourceCode.getScope(receiver), receiver), flowing, false);
    }

    function usesFirstParameter(fn: FunctionNode): boolean {
      const param = fn.params[0];
      if (param === undefined) return false;
      // `(current = 0n) => ...` names its argument as plainly as `(current) => ...` does.
      const first = param.type === AST_NODE_TYPES.AssignmentPattern ? param.left : param;
      if (first.type !== AST_NODE_TYPES.Identifier) return true;
      const variable = sourceCode.getDeclaredVariables(fn).find((v) => v.name === first.name);
      return variable === undefined || variable.references.some((r) => r.isRead());
    }
  },
});

/**
 * Does `statement`, run after the suspension, leave before `write` can run with `read`'s value?
 * `return` and `throw` always do. `break` does when the loop or switch it leaves holds the write
 * (the write is behind it: in a later case, or the rest of the loop). `continue` does when the
 * loop it restarts holds both the write and the read: the next iteration reads again before it
 * writes; with the read before the loop, the next iteration writes the stale value, reported.
 */
function leavesBefore(statement: TSESTree.Node, write: TSESTree.Node, read: TSESTree.Node): boolean {
  switch (statement.type) {
    case AST_NODE_TYPES.ReturnStatement:
    case AST_NODE_TYPES.ThrowStatement:
      return !landsOn(statement, write);
    case AST_NODE_TYPES.BreakStatement: {
      const target = jumpTarget(statement, true);
      return target !== null && contains(target, write);
    }
    case AST_NODE_TYPES.ContinueStatement: {
      const target = jumpTarget(statement, false);
      return target !== null && contains(target, write) && contains(target, read);
    }
    default:
      return false;
  }
}

/**
 * The loop that takes `suspension` back round to `write` with `read`'s value: the innermost loop
 * holding both, not the read (read before the loop), when nothing after the suspension leaves
 * that loop or its iteration's function first (a `return`, a `throw`, a `break` out of it, a
 * `continue` of a loop around it). Null otherwise.
 */
function backEdge(suspension: TSESTree.Node, write: TSESTree.Node, read: TSESTree.Node): TSESTree.Node | null {
  let loop: TSESTree.Node | null = null;
  for (let n: TSESTree.Node | undefined = suspension.parent; n != null && !isFunctionNode(n); n = n.parent) {
    if (LOOPS.has(n.type) && contains(n, write)) {
      loop = n;
      break;
    }
  }
  if (loop === null || contains(loop, read)) return null;
  const leaves = (jump: TSESTree.Node): boolean => {
    switch (jump.type) {
      case AST_NODE_TYPES.ReturnStatement:
      case AST_NODE_TYPES.ThrowStatement:
        return true;
      case AST_NODE_TYPES.BreakStatement:
      case AST_NODE_TYPES.ContinueStatement: {
        const target = jumpTarget(jump, jump.type === AST_NODE_TYPES.BreakStatement);
        // A `break` of the loop (or one around it) leaves; a `continue` only of a loop around it.
        return target === null || (contains(target, loop) && (jump.type === AST_NODE_TYPES.BreakStatement || target !== loop));
      }
      default:
        return false;
    }
  };
  let child: TSESTree.Node = suspension;
  for (let n = suspension.parent; n != null && n !== loop; child = n, n = n.parent) {
    if (leaves(child)) return null;
    const list = statementList(n);
    if (list === null) continue;
    for (let i = list.indexOf(child) + 1; i < list.length; i++) if (leaves(list[i]!)) return null;
  }
  return loop;
}

/**
 * Does this `return` or `throw` still run `write` on its way out: a `finally` holding the write
 * of a `try` it leaves (`try { return await work(); } finally { inflight.set(k, n); }`), or, for
 * a `throw` in a `try` block, the `catch` holding it?
 */
function landsOn(exit: TSESTree.ReturnStatement | TSESTree.ThrowStatement, write: TSESTree.Node): boolean {
  let child: TSESTree.Node = exit;
  for (let n: TSESTree.Node | undefined = exit.parent; n != null && !isFunctionNode(n); child = n, n = n.parent) {
    if (n.type !== AST_NODE_TYPES.TryStatement || child === n.finalizer) continue;
    if (n.finalizer !== null && contains(n.finalizer, write)) return true;
    if (exit.type === AST_NODE_TYPES.ThrowStatement && child === n.block && n.handler !== null && contains(n.handler, write)) return true;
  }
  return false;
}

/** The statement a `break` (loop or switch) or `continue` (loop) leaves, or null when the rule cannot tell. */
function jumpTarget(jump: TSESTree.BreakStatement | TSESTree.ContinueStatement, isBreak: boolean): TSESTree.Node | null {
  for (let n: TSESTree.Node | undefined = jump.parent; n != null; n = n.parent) {
    if (isFunctionNode(n) || n.type === AST_NODE_TYPES.StaticBlock) return null;
    if (jump.label !== null) {
      if (n.type === AST_NODE_TYPES.LabeledStatement && n.label.name === jump.label.name) return n.body;
      continue;
    }
    if (LOOPS.has(n.type) || (isBreak && n.type === AST_NODE_TYPES.SwitchStatement)) return n;
  }
  return null;
}

const PROMISE_CALLBACKS: ReadonlySet<string> = new Set(['then', 'catch', 'finally']);

/** `assert(...)`, `assert.equal(...)`, `assertUnchanged(...)`, `invariant(...)`. */
function isAssertion(callee: TSESTree.Node): boolean {
  const c = unwrap(callee);
  const names: string[] = [];
  if (c.type === AST_NODE_TYPES.Identifier) names.push(c.name);
  if (c.type === AST_NODE_TYPES.MemberExpression) {
    const root = rootIdentifier(c);
    if (root !== null) names.push(root.name);
    if (!c.computed && c.property.type === AST_NODE_TYPES.Identifier) names.push(c.property.name);
  }
  return names.some((n) => /^assert/i.test(n) || n === 'invariant');
}

const COMPARISONS: ReadonlySet<string> = new Set(['===', '!==', '==', '!=', '<', '<=', '>', '>=']);

const LOOPS: ReadonlySet<string> = new Set([
  AST_NODE_TYPES.ForStatement,
  AST_NODE_TYPES.ForInStatement,
  AST_NODE_TYPES.ForOfStatement,
  AST_NODE_TYPES.WhileStatement,
  AST_NODE_TYPES.DoWhileStatement,
]);

/** The variables a destructuring assignment writes (member targets such as `obj.x` are not variables). */
function patternTargets(pattern: TSESTree.Node): TSESTree.Identifier[] {
  const out: TSESTree.Identifier[] = [];
  const visit = (n: TSESTree.Node | null): void => {
    if (n === null) return;
    switch (n.type) {
      case AST_NODE_TYPES.Identifier:
        out.push(n);
        return;
      case AST_NODE_TYPES.ObjectPattern:
        for (const p of n.properties) visit(p.type === AST_NODE_TYPES.RestElement ? p.argument : p.value);
        return;
      case AST_NODE_TYPES.ArrayPattern:
        for (const element of n.elements) visit(element);
        return;
      case AST_NODE_TYPES.AssignmentPattern:
        visit(n.left);
        return;
      case AST_NODE_TYPES.RestElement:
        visit(n.argument);
        return;
      default:
        return;
    }
  };
  visit(pattern);
  return out;
}

function statementList(node: TSESTree.Node): readonly TSESTree.Node[] | null {
  switch (node.type) {
    case AST_NODE_TYPES.BlockStatement:
    case AST_NODE_TYPES.Program:
    case AST_NODE_TYPES.StaticBlock:
      return node.body;
    case AST_NODE_TYPES.SwitchCase:
      return node.consequent;
    default:
      return null;
  }
}
