import { AST_NODE_TYPES, ASTUtils, ESLintUtils, TSESLint } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import { isFunctionNode, unwrap, walk } from '../ast.ts';
import { createRule } from '../create-rule.ts';
import { asRangeCall } from '../range-callback.ts';
import { GOVERNED_MAP, isThenable, resolveCallee, typeSpecifierSchema } from '../type-match.ts';
import type { ResolvedCallee, TypeSpecifier } from '../type-match.ts';

export interface NoAsyncRangeCallbackOptions {
  /** More map types whose `range(callback)` is held to the same rule. Default: none (GovernedMap only). */
  readonly mapTypes?: readonly TypeSpecifier[];
}

type MessageIds = 'asyncCallback' | 'promiseReturningCallback' | 'promiseInCallback' | 'blockingCall';

/**
 * Modules whose `*Sync` exports block the event loop on file I/O or a child process. Not
 * zlib or crypto: their `*Sync` calls are CPU-bound and often tiny (`randomFillSync`), and a
 * rule that cries wolf gets switched off.
 */
const BLOCKING_SYNC_MODULES = new Set(['fs', 'child_process']);

/**
 * A range callback runs while the walk holds its snapshot, once per entry: it must neither
 * suspend (an async callback returns at its first `await`, so the walk goes on and the rest
 * runs later, outside it) nor block the event loop (every other request waits for the walk).
 * GovernedMap throws AsyncRangeCallbackError at run time on a returned promise; this rule
 * finds it before it ships, and also finds what no run-time check can: blocking calls.
 *
 * Only the callback's own body is examined, not functions nested in it (they may run later).
 */
export const noAsyncRangeCallback = createRule<[NoAsyncRangeCallbackOptions], MessageIds>({
  name: 'no-async-range-callback',
  meta: {
    type: 'problem',
    docs: {
      description: 'Forbid async callbacks, promise-returning calls and blocking calls in GovernedMap range callbacks',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      asyncCallback:
        'The range callback of {{map}} is async: the walk does not wait for it and GovernedMap throws GOVMAP_ASYNC_RANGE_CALLBACK. Collect the entries in the callback, then do the async work after range() returns.',
      promiseReturningCallback:
        'The range callback of {{map}} returns a promise ({{type}}): range callbacks must be synchronous. Collect the entries, then do the async work after range() returns.',
      promiseInCallback:
        'This call returns a promise inside the range callback of {{map}}: async work started here outlives the walk and its snapshot. Collect what you need and start it after range() returns.',
      blockingCall:
        '{{callee}} blocks the event loop inside the range callback of {{map}}: every other request waits for the whole walk. Collect the entries, then do the I/O after range() returns, asynchronously.',
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
    const checker = services.program.getTypeChecker();
    const mapTypes = [GOVERNED_MAP, ...(options.mapTypes ?? [])];
    const sourceCode = context.sourceCode;

    function blockingName(node: TSESTree.CallExpression): string | null {
      // Resolving a signature is the costly part: only names that can be blocking get that far.
      if (!mayBeBlocking(node.callee)) return null;
      const callee = resolveCallee(services.esTreeNodeToTSNodeMap.get(node), services.program);
      return callee !== null && isBlocking(callee) ? describeCallee(callee) : null;
    }

    /** `xSync(...)`, `fs.xSync(...)`, `Atomics.wait(...)`, or an import alias of such a name. */
    function mayBeBlocking(callee: TSESTree.Node): boolean {
      const c = unwrap(callee);
      const blockingName = (name: string): boolean => name.endsWith('Sync') || name === 'wait';
      if (c.type === AST_NODE_TYPES.MemberExpression) return c.computed || (c.property.type === AST_NODE_TYPES.Identifier && blockingName(c.property.name));
      if (c.type !== AST_NODE_TYPES.Identifier) return false;
      if (blockingName(c.name)) return true;
      const definition = ASTUtils.findVariable(sourceCode.getScope(c), c)?.defs[0];
      if (definition?.type === TSESLint.Scope.DefinitionType.ImportBinding && definition.node.type === AST_NODE_TYPES.ImportSpecifier) {
        const imported = definition.node.imported;
        return blockingName(imported.type === AST_NODE_TYPES.Identifier ? imported.name : imported.value);
      }
      // A const alias (`const read = fs.readFileSync`) or a destructured name: let the checker decide.
      return definition?.type === TSESLint.Scope.DefinitionType.Variable;
    }

    return {
      CallExpression(node) {
        const range = asRangeCall(node, services, mapTypes, sourceCode);
        if (range === null) return;
        const map = sourceCode.getText(range.receiver);
        const fn = range.callback;
        if (fn?.async === true) {
          // Inline: the function itself; passed by name: the argument, where the misuse is.
          const inline = range.argument.range[0] <= fn.range[0] && fn.range[1] <= range.argument.range[1];
          context.report({ node: inline ? fn : range.argument, messageId: 'asyncCallback', data: { map } });
        } else if (fn === null) {
          const signatures = services.getTypeAtLocation(range.argument).getCallSignatures();
          const promising = signatures.find((s) => isThenable(s.getReturnType(), checker));
          if (promising !== undefined) {
            context.report({ node: range.argument, messageId: 'promiseReturningCallback', data: { map, type: checker.typeToString(promising.getReturnType()) } });
          }
        }
        if (fn === null) return;
        walk(fn.body, sourceCode.visitorKeys, (inner) => {
          if (isFunctionNode(inner)) return false;
          if (inner.type !== AST_NODE_TYPES.CallExpression) return true;
          const blocking = blockingName(inner);
          if (blocking !== null) {
            context.report({ node: inner, messageId: 'blockingCall', data: { map, callee: blocking } });
          } else if (!fn.async && isThenable(services.getTypeAtLocation(inner), checker)) {
            context.report({ node: inner, messageId: 'promiseInCallback', data: { map } });
          }
          return true;
        });
      },
    };
  },
});

/** `fs.readFileSync`, `child_process.execSync`, `Atomics.wait`. */
function isBlocking(callee: ResolvedCallee): boolean {
  if (callee.fromLib) return callee.container === 'Atomics' && callee.name === 'wait';
  return callee.module !== null && BLOCKING_SYNC_MODULES.has(callee.module) && callee.container === null && callee.name.endsWith('Sync');
}

function describeCallee(callee: ResolvedCallee): string {
  if (callee.fromLib) return `${callee.container ?? ''}.${callee.name}`;
  return `${callee.module ?? '?'}.${callee.name}`;
}
