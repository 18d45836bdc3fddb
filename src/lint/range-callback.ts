import { AST_NODE_TYPES, ASTUtils } from '@typescript-eslint/utils';
import type { ParserServicesWithTypeInformation, TSESLint, TSESTree } from '@typescript-eslint/utils';
import { asMethodCall, isFunctionNode, unwrap } from './ast.ts';
import type { FunctionNode } from './ast.ts';
import { typeMatchesAny } from './type-match.ts';
import type { TypeSpecifier } from './type-match.ts';

/**
 * A `map.range(callback)` call on a map type the rule watches. `callback` is the function the
 * walk runs when the rule can see its body: written inline, or a function (or const arrow) of
 * the same file passed by name. Functions from elsewhere are judged by their type only.
 */
export interface RangeCall {
  readonly call: TSESTree.CallExpression;
  readonly receiver: TSESTree.Expression;
  readonly argument: TSESTree.CallExpressionArgument;
  readonly callback: FunctionNode | null;
}

export function asRangeCall(
  node: TSESTree.CallExpression,
  services: ParserServicesWithTypeInformation,
  mapTypes: readonly TypeSpecifier[],
  sourceCode: Readonly<TSESLint.SourceCode>,
): RangeCall | null {
  const method = asMethodCall(node);
  if (method === null || method.method !== 'range') return null;
  const argument = node.arguments[0];
  if (argument === undefined || argument.type === AST_NODE_TYPES.SpreadElement) return null;
  if (!typeMatchesAny(services.getTypeAtLocation(method.receiver), mapTypes, services.program)) return null;
  return { call: node, receiver: method.receiver, argument, callback: sameFileFunction(argument, sourceCode) };
}

/** The function an argument denotes when its body is in this file, else null. */
export function sameFileFunction(argument: TSESTree.Node, sourceCode: Readonly<TSESLint.SourceCode>): FunctionNode | null {
  const n = unwrap(argument);
  if (isFunctionNode(n)) return n;
  if (n.type !== AST_NODE_TYPES.Identifier) return null;
  const variable = ASTUtils.findVariable(sourceCode.getScope(n), n);
  const definition = variable?.defs.length === 1 ? variable.defs[0] : undefined;
  if (definition === undefined) return null;
  if (definition.node.type === AST_NODE_TYPES.FunctionDeclaration) return definition.node;
  if (
    definition.node.type === AST_NODE_TYPES.VariableDeclarator &&
    definition.parent?.type === AST_NODE_TYPES.VariableDeclaration &&
    definition.parent.kind === 'const' &&
    definition.node.init !== null
  ) {
    const init = unwrap(definition.node.init);
    if (isFunctionNode(init)) return init;
  }
  return null;
}
