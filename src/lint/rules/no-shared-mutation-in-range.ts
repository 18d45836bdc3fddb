import { AST_NODE_TYPES, ASTUtils, ESLintUtils, TSESLint } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import { asMethodCall, canonicalText, enclosingFunction, isFunctionNode, rootIdentifier, unwrap, walk } from '../ast.ts';
import { createRule } from '../create-rule.ts';
import { asRangeCall } from '../range-callback.ts';
import { GOVERNED_MAP, typeMatchesAny, typeSpecifierSchema } from '../type-match.ts';
import type { TypeSpecifier } from '../type-match.ts';

export interface NoSharedMutationInRangeOptions {
  /** More map types whose `range(callback)` is held to the rule, and whose writes count as map writes. Default: none. */
  readonly mapTypes?: readonly TypeSpecifier[];
}

type MessageIds = 'writesOtherMap' | 'mutatesModuleState';

/** GovernedMap operations that write. */
const MAP_WRITES = new Set(['store', 'update', 'updateAsync', 'delete', 'loadOrStore', 'loadAndDelete', 'compareAndSwap', 'dispose']);

/** Mutating methods of the built-in collections, checked only on receivers of those types. */
const COLLECTION_WRITES: ReadonlyArray<readonly [TypeSpecifier, ReadonlySet<string>]> = [
  [{ from: 'lib', name: ['Map', 'WeakMap'] }, new Set(['set', 'delete', 'clear'])],
  [{ from: 'lib', name: ['Set', 'WeakSet'] }, new Set(['add', 'delete', 'clear'])],
  [{ from: 'lib', name: 'Array' }, new Set(['push', 'pop', 'shift', 'unshift', 'splice', 'sort', 'reverse', 'fill', 'copyWithin'])],
];

/**
 * The specification: callbacks of a range must not touch other shared state. A range walks a
 * snapshot of one map; a write to a second map from inside it interleaves two maps' histories
 * with no atomicity across them (a half-applied transfer when the walk throws), and writes to
 * module-level state make the walk's outcome depend on everything else using that state.
 *
 * Flags, inside a range callback's own body: a write to a map other than the one walked; an
 * assignment, `++`/`--`, `delete`, or mutating method call (Map/Set/Array) whose target is
 * rooted at a module-level or imported binding. Not flagged: locals of the enclosing function
 * (collecting into a local array is the recommended pattern), writes to the walked map itself
 * (the snapshot makes them safe), `this.*` state, and nested functions (they may run later).
 */
export const noSharedMutationInRange = createRule<[NoSharedMutationInRangeOptions], MessageIds>({
  name: 'no-shared-mutation-in-range',
  meta: {
    type: 'problem',
    docs: {
      description: 'Forbid writes to other maps and to module-level state from inside a GovernedMap range callback',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      writesOtherMap:
        'The range callback of {{map}} writes to another map ({{other}}.{{method}}): a range callback must not touch other shared state. Collect the changes during the walk and apply them after range() returns.',
      mutatesModuleState:
        'The range callback of {{map}} mutates module-level state `{{name}}`: a range callback must not touch other shared state. Collect into a local and publish it after range() returns.',
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: { mapTypes: { type: 'array', items: typeSpecifierSchema } },
      },
    ],
  },
  defaultOptions: [{}],
  create(context, [options]) {
    const services = ESLintUtils.getParserServices(context);
    const program = services.program;
    const mapTypes = [GOVERNED_MAP, ...(options.mapTypes ?? [])];
    const sourceCode = context.sourceCode;

    /**
     * The module-level (or imported) binding a write target is rooted at, or null. When the
     * walk itself runs in top-level code (module initialisation), the module's own bindings are
     * that code's locals; only imported ones are someone else's.
     */
    function moduleBinding(target: TSESTree.Node, topLevelWalk: boolean): TSESTree.Identifier | null {
      const root = rootIdentifier(target);
      if (root === null) return null;
      const variable = ASTUtils.findVariable(sourceCode.getScope(root), root);
      if (variable === null) return null;
      const imported = variable.defs.some((d) => d.type === TSESLint.Scope.DefinitionType.ImportBinding);
      if (imported) return root;
      const scope = variable.scope.type;
      const moduleLevel = scope === TSESLint.Scope.ScopeType.module || scope === TSESLint.Scope.ScopeType.global;
      return moduleLevel && !topLevelWalk ? root : null;
    }

    function checkCallback(map: string, mapText: string | null, body: TSESTree.Node, topLevelWalk: boolean): void {
      const reportModuleMutation = (node: TSESTree.Node, target: TSESTree.Node): void => {
        const t = unwrap(target);
        if (t.type === AST_NODE_TYPES.ArrayPattern || t.type === AST_NODE_TYPES.ObjectPattern) return;
        const binding = moduleBinding(t, topLevelWalk);
        if (binding !== null) context.report({ node, messageId: 'mutatesModuleState', data: { map, name: binding.name } });
      };
      walk(body, sourceCode.visitorKeys, (node) => {
        if (isFunctionNode(node)) return false;
        switch (node.type) {
          case AST_NODE_TYPES.CallExpression: {
            const call = asMethodCall(node);
            if (call === null) return true;
            const receiverType = services.getTypeAtLocation(call.receiver);
            if (MAP_WRITES.has(call.method) && typeMatchesAny(receiverType, mapTypes, program)) {
              // Only a provably different map is reported: two receivers whose identity the
              // rule cannot establish (calls, computed keys) might be the same map.
              const other = canonicalText(call.receiver, sourceCode);
              if (other !== null && mapText !== null && other !== mapText) {
                context.report({ node, messageId: 'writesOtherMap', data: { map, other: sourceCode.getText(call.receiver), method: call.method } });
              }
              return true;
            }
            const writes = COLLECTION_WRITES.find(([type, methods]) => methods.has(call.method) && typeMatchesAny(receiverType, [type], program));
            if (writes !== undefined) reportModuleMutation(node, call.receiver);
            return true;
          }
          case AST_NODE_TYPES.AssignmentExpression:
            reportModuleMutation(node, node.left);
            return true;
          case AST_NODE_TYPES.UpdateExpression:
            reportModuleMutation(node, node.argument);
            return true;
          case AST_NODE_TYPES.UnaryExpression:
            if (node.operator === 'delete') reportModuleMutation(node, node.argument);
            return true;
          default:
            return true;
        }
      });
    }

    return {
      CallExpression(node) {
        const range = asRangeCall(node, services, mapTypes, sourceCode);
        if (range?.callback == null) return;
        const topLevelWalk = enclosingFunction(node).type === AST_NODE_TYPES.Program;
        checkCallback(sourceCode.getText(range.receiver), canonicalText(range.receiver, sourceCode), range.callback.body, topLevelWalk);
      },
    };
  },
});
