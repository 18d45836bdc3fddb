import { AST_NODE_TYPES, ASTUtils } from '@typescript-eslint/utils';
import type { TSESLint, TSESTree } from '@typescript-eslint/utils';

/**
 * Small ESTree helpers shared by the rules. They deliberately understand only simple shapes
 * (identifiers, `a.b.c` chains, literals): the rules prefer missing a finding to guessing.
 */

export type FunctionNode = TSESTree.ArrowFunctionExpression | TSESTree.FunctionDeclaration | TSESTree.FunctionExpression;

export function isFunctionNode(node: TSESTree.Node): node is FunctionNode {
  return (
    node.type === AST_NODE_TYPES.ArrowFunctionExpression ||
    node.type === AST_NODE_TYPES.FunctionDeclaration ||
    node.type === AST_NODE_TYPES.FunctionExpression
  );
}

/** Strips what does not change the value: `x!`, `x as T`, `x satisfies T`, `<T>x`, `a?.b` wrappers. */
export function unwrap(node: TSESTree.Node): TSESTree.Node {
  let n = node;
  for (;;) {
    switch (n.type) {
      case AST_NODE_TYPES.TSNonNullExpression:
      case AST_NODE_TYPES.TSAsExpression:
      case AST_NODE_TYPES.TSSatisfiesExpression:
      case AST_NODE_TYPES.TSTypeAssertion:
        n = n.expression;
        continue;
      case AST_NODE_TYPES.ChainExpression:
        n = n.expression;
        continue;
      default:
        return n;
    }
  }
}

/** `receiver.method(...)` (also `receiver?.method(...)`, `receiver['method'](...)`). */
export interface MethodCall {
  readonly call: TSESTree.CallExpression;
  readonly receiver: TSESTree.Expression;
  readonly method: string;
}

export function asMethodCall(node: TSESTree.CallExpression): MethodCall | null {
  const callee = unwrap(node.callee);
  if (callee.type !== AST_NODE_TYPES.MemberExpression) return null;
  const method = propertyName(callee);
  if (method === null || callee.object.type === AST_NODE_TYPES.Super) return null;
  return { call: node, receiver: callee.object, method };
}

/** The static name of `a.b` / `a['b']`, or null when computed from a value. */
export function propertyName(member: TSESTree.MemberExpression): string | null {
  if (!member.computed) return member.property.type === AST_NODE_TYPES.Identifier ? member.property.name : null;
  const p = member.property;
  return p.type === AST_NODE_TYPES.Literal && typeof p.value === 'string' ? p.value : null;
}

/**
 * A canonical text for a "simple" expression: an identifier, `this`, a literal, or a chain of
 * non-computed members / literal-computed members over those (`this.ledger.balances`,
 * `this.#balances`, `req.params.id`, `` `acct:${id}` `` with simple parts). null for anything with calls or
 * operators: two such expressions are not provably the same value.
 */
export function simpleText(node: TSESTree.Node): string | null {
  const n = unwrap(node);
  switch (n.type) {
    case AST_NODE_TYPES.Identifier:
      return n.name;
    case AST_NODE_TYPES.ThisExpression:
      return 'this';
    case AST_NODE_TYPES.Literal:
      return n.value === null || n.value instanceof RegExp ? null : JSON.stringify(typeof n.value === 'bigint' ? `${n.value}n` : n.value);
    case AST_NODE_TYPES.TemplateLiteral: {
      let out = '`';
      for (let i = 0; i < n.quasis.length; i++) {
        out += n.quasis[i]!.value.cooked ?? '';
        const expression = n.expressions[i];
        if (expression !== undefined) {
          const inner = simpleText(expression);
          if (inner === null) return null;
          out += `\${${inner}}`;
        }
      }
      return `${out}\``;
    }
    case AST_NODE_TYPES.MemberExpression: {
      const object = simpleText(n.object);
      if (object === null) return null;
      if (!n.computed) {
        // `this.#balances`: a private field is as simple as a public one (and never the same as `this.balances`).
        if (n.property.type === AST_NODE_TYPES.PrivateIdentifier) return `${object}.#${n.property.name}`;
        return n.property.type === AST_NODE_TYPES.Identifier ? `${object}.${n.property.name}` : null;
      }
      const key = n.property.type === AST_NODE_TYPES.Literal ? simpleText(n.property) : n.property.type === AST_NODE_TYPES.Identifier ? n.property.name : null;
      return key === null ? null : `${object}[${key}]`;
    }
    default:
      return null;
  }
}

/** The identifier at the root of `a.b[c].d`, or null (`this`, calls...). */
export function rootIdentifier(node: TSESTree.Node): TSESTree.Identifier | null {
  let n = unwrap(node);
  while (n.type === AST_NODE_TYPES.MemberExpression) n = unwrap(n.object);
  return n.type === AST_NODE_TYPES.Identifier ? n : null;
}

/** Identifiers used as values inside `node` (not property names, not inside nested functions). */
export function valueIdentifiers(node: TSESTree.Node, visitorKeys: TSESLint.SourceCode.VisitorKeys): TSESTree.Identifier[] {
  const out: TSESTree.Identifier[] = [];
  walk(node, visitorKeys, (n, parent) => {
    if (n !== node && isFunctionNode(n)) return false;
    if (n.type === AST_NODE_TYPES.Identifier) {
      const isPropertyName =
        parent !== null &&
        ((parent.type === AST_NODE_TYPES.MemberExpression && parent.property === n && !parent.computed) ||
          (parent.type === AST_NODE_TYPES.Property && parent.key === n && !parent.computed && !parent.shorthand));
      if (!isPropertyName) out.push(n);
    }
    return true;
  });
  return out;
}

/**
 * Depth-first walk in source order. `enter` returns false to skip a node's children. Only
 * child keys ESLint knows are followed (so `parent` back-links are never walked).
 */
export function walk(
  node: TSESTree.Node,
  visitorKeys: TSESLint.SourceCode.VisitorKeys,
  enter: (node: TSESTree.Node, parent: TSESTree.Node | null) => boolean,
  parent: TSESTree.Node | null = null,
): void {
  if (!enter(node, parent)) return;
  const keys = visitorKeys[node.type] ?? [];
  for (const key of keys) {
    const child = (node as unknown as Record<string, unknown>)[key];
    if (Array.isArray(child)) {
      for (const c of child) if (isNode(c)) walk(c, visitorKeys, enter, node);
    } else if (isNode(child)) {
      walk(child, visitorKeys, enter, node);
    }
  }
}

function isNode(value: unknown): value is TSESTree.Node {
  return value !== null && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string';
}

/**
 * The nearest enclosing function (or the Program, for top-level code and top-level await).
 * Loops over `.parent` test `!= null`: the Program's parent is null at run time, though typed optional.
 */
export function enclosingFunction(node: TSESTree.Node): FunctionNode | TSESTree.Program {
  for (let n = node.parent; n != null; n = n.parent) {
    if (isFunctionNode(n) || n.type === AST_NODE_TYPES.Program) return n;
  }
  throw new Error('node outside a Program');
}

export function contains(outer: TSESTree.Node, inner: TSESTree.Node): boolean {
  return outer.range[0] <= inner.range[0] && inner.range[1] <= outer.range[1];
}

/** How many `const a = b` hops canonicalText follows; aliases of aliases are rare beyond that. */
const MAX_ALIAS_HOPS = 4;

/**
 * simpleText with simple aliases followed: when the expression is rooted at a `const` whose
 * initialiser is itself simple (`const m = this.balances`), the root is replaced by that
 * initialiser, so `m.store` and `this.balances.store` are recognised as the same map.
 */
export function canonicalText(node: TSESTree.Node, sourceCode: Readonly<TSESLint.SourceCode>): string | null {
  let text = simpleText(node);
  if (text === null) return null;
  let root = rootIdentifier(node);
  for (let hop = 0; hop < MAX_ALIAS_HOPS && root !== null; hop++) {
    const variable = ASTUtils.findVariable(sourceCode.getScope(root), root);
    const definition = variable?.defs.length === 1 ? variable.defs[0] : undefined;
    if (
      definition?.node.type !== AST_NODE_TYPES.VariableDeclarator ||
      definition.parent?.type !== AST_NODE_TYPES.VariableDeclaration ||
      definition.parent.kind !== 'const' ||
      definition.node.init === null
    ) {
      break;
    }
    const init = simpleText(definition.node.init);
    if (init === null) break;
    let replacement: string;
    if (definition.node.id.type === AST_NODE_TYPES.Identifier) {
      replacement = init;
    } else {
      // `const { balances } = this` and `const { balances: b } = ledger` alias `this.balances`
      // and `ledger.balances` just as `const b = ledger.balances` does.
      const key = destructuredKey(definition.node.id, root);
      if (key === null) break;
      replacement = `${init}.${key}`;
    }
    text = replacement + text.slice(root.name.length);
    root = rootIdentifier(definition.node.init);
  }
  return text;
}

/**
 * The property a `const { key: local } = ...` pattern binds `local` to, when the pattern is that
 * simple (a top-level, non-computed key, no default: a default may replace the value); else null.
 */
function destructuredKey(pattern: TSESTree.Node, local: TSESTree.Identifier): string | null {
  if (pattern.type !== AST_NODE_TYPES.ObjectPattern) return null;
  for (const p of pattern.properties) {
    if (p.type !== AST_NODE_TYPES.Property || p.computed || p.key.type !== AST_NODE_TYPES.Identifier) continue;
    if (p.value.type === AST_NODE_TYPES.Identifier && p.value.name === local.name) return p.key.name;
  }
  return null;
}
