import { AST_NODE_TYPES, ASTUtils, ESLintUtils, TSESLint } from '@typescript-eslint/utils';
import type { JSONSchema, TSESTree } from '@typescript-eslint/utils';
import ts from 'typescript';
import { unwrap } from '../ast.ts';
import { createRule } from '../create-rule.ts';
import { normaliseModuleName, resolveCallee, typeMatchesAny, typeSpecifierSchema } from '../type-match.ts';
import type { ResolvedCallee, TypeSpecifier } from '../type-match.ts';

/**
 * One forbidden function, named by the module that declares it and its export name
 * (`rmSync`), or `Class.method` for a method of an exported class or interface
 * (`MapStore.set`). `when` narrows it to calls whose argument object literally sets a
 * property to a value (`{ recursive: true }`); a value the rule cannot see (a variable whose
 * type is not that literal) does not match: the rule reports only what it can prove.
 */
export interface ForbiddenCall {
  /** Module or package that declares it: `fs` (= `node:fs`), `child_process`, `govmap`, `lodash`. */
  readonly module: string;
  /** Export name(s), or `Class.method`. */
  readonly name: string | readonly string[];
  /** Why it is forbidden and what to do instead; shown in the report. */
  readonly reason: string;
  readonly when?: {
    /** Zero-based argument index. */
    readonly argument: number;
    readonly property: string;
    readonly equals: boolean | number | string;
  };
  /**
   * Classes allowed to make the call: a call inside a class that is, extends or implements
   * one of these types is not reported (the owner of a store may write it). Default: none.
   */
  readonly allowIn?: readonly TypeSpecifier[];
}

export interface ForbiddenCallsOptions {
  /** Replaces the default list (DEFAULT_FORBIDDEN_CALLS); spread the default in to extend it. */
  readonly calls?: readonly ForbiddenCall[];
  /**
   * Added to `calls` (to the defaults when `calls` is not given). A `govmap scan` config file
   * (YAML or JSON) cannot spread DEFAULT_FORBIDDEN_CALLS into `calls`; this keeps the default
   * checks without copying them, so a later release's new defaults still apply.
   */
  readonly additionalCalls?: readonly ForbiddenCall[];
}

type MessageIds = 'forbidden';

/** What a clearing service should never ship; each entry says why. */
export const DEFAULT_FORBIDDEN_CALLS: readonly ForbiddenCall[] = [
  {
    module: 'fs',
    name: ['rmSync', 'rm'],
    when: { argument: 1, property: 'recursive', equals: true },
    reason: 'a recursive delete of a path computed at run time can wipe ledger, audit or state files; delete the known files one by one',
  },
  {
    module: 'fs/promises',
    name: 'rm',
    when: { argument: 1, property: 'recursive', equals: true },
    reason: 'a recursive delete of a path computed at run time can wipe ledger, audit or state files; delete the known files one by one',
  },
  {
    module: 'child_process',
    name: ['exec', 'execSync'],
    reason: 'it runs a command line through a shell (command injection); use execFile or spawn with an argument array',
  },
  {
    module: 'govmap',
    // A method is named by the class that declares it: the shared-memory stores inherit their
    // writes from SharedMemoryStore, and SharedInt64Store adds its own raw `add`. The atomic
    // compareAndSwap / compareAndDelete (what GovernedMap uses on a shared store) write just as
    // raw: they are what a worker would reach for to write a shared store "safely".
    name: [
      'MapStore.set',
      'MapStore.delete',
      'MapStore.clear',
      'MapStore.compareAndSwap',
      'MapStore.compareAndDelete',
      'InProcessStore.set',
      'InProcessStore.delete',
      'InProcessStore.clear',
      'SharedMemoryStore.set',
      'SharedMemoryStore.delete',
      'SharedMemoryStore.clear',
      'SharedMemoryStore.compareAndSwap',
      'SharedMemoryStore.compareAndDelete',
      'SharedInt64Store.add',
    ],
    reason: 'writing to a map store directly bypasses the validator, metrics and audit; write through the GovernedMap that owns the store',
    // GovernedMap is the validated path; a store may delegate to another store beneath it.
    allowIn: [
      { from: 'package', package: 'govmap', name: 'GovernedMap' },
      { from: 'package', package: 'govmap', name: 'MapStore' },
    ],
  },
];

const forbiddenCallSchema: JSONSchema.JSONSchema4 = {
  type: 'object',
  additionalProperties: false,
  required: ['module', 'name', 'reason'],
  properties: {
    module: { type: 'string', minLength: 1 },
    name: { oneOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }] },
    reason: { type: 'string', minLength: 1 },
    when: {
      type: 'object',
      additionalProperties: false,
      required: ['argument', 'property', 'equals'],
      properties: {
        argument: { type: 'integer', minimum: 0 },
        property: { type: 'string', minLength: 1 },
        equals: { type: ['boolean', 'number', 'string'] },
      },
    },
    allowIn: { type: 'array', items: typeSpecifierSchema },
  },
};

/**
 * The specification's "static scanning intercepts forbidden calls before they ship", as Go's
 * analysis framework does it: every call is resolved by the type checker to the declaration it
 * invokes, and only a declaration in the named module matches. A local `function rmSync()`,
 * a method `rmSync` of some other object, or a same-named export of another package is not
 * reported; an import alias (`import { rmSync as nuke }`), a namespace import, a destructured
 * const and `node:`-prefixed specifiers are.
 */
export const forbiddenCalls = createRule<[ForbiddenCallsOptions], MessageIds>({
  name: 'forbidden-calls',
  meta: {
    type: 'problem',
    docs: {
      description: 'Forbid calls to functions named by module and export, resolved through types and imports',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      forbidden: '{{callee}} is forbidden{{condition}}: {{reason}}.',
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          calls: { type: 'array', items: forbiddenCallSchema },
          additionalCalls: { type: 'array', items: forbiddenCallSchema },
        },
      },
    ],
  },
  defaultOptions: [{ calls: DEFAULT_FORBIDDEN_CALLS }],
  create(context, [options]) {
    const services = ESLintUtils.getParserServices(context);
    const program = services.program;
    const checker = program.getTypeChecker();
    const calls = [...(options.calls ?? DEFAULT_FORBIDDEN_CALLS), ...(options.additionalCalls ?? [])];
    // Cheap syntactic prefilter: resolving a signature costs type-checker work, so only calls
    // whose callee name (or import/const alias target) is one of the forbidden names are resolved.
    const names = new Set<string>();
    for (const entry of calls) {
      for (const n of typeof entry.name === 'string' ? [entry.name] : entry.name) names.add(n.includes('.') ? n.slice(n.lastIndexOf('.') + 1) : n);
    }
    if (names.size === 0) return {};

    function candidateName(callee: TSESTree.Node): boolean {
      const c = unwrap(callee);
      if (c.type === AST_NODE_TYPES.MemberExpression) {
        return !c.computed && c.property.type === AST_NODE_TYPES.Identifier ? names.has(c.property.name) : c.computed;
      }
      // `promisify(exec)(cmd)`: resolved below to exec's own promisified signature.
      if (c.type === AST_NODE_TYPES.CallExpression) return wrapsCandidate(c);
      if (c.type !== AST_NODE_TYPES.Identifier) return false;
      if (names.has(c.name)) return true;
      const variable = ASTUtils.findVariable(context.sourceCode.getScope(c), c);
      const definition = variable?.defs[0];
      if (definition === undefined) return false;
      if (definition.type === TSESLint.Scope.DefinitionType.ImportBinding && definition.node.type === AST_NODE_TYPES.ImportSpecifier) {
        const imported = definition.node.imported;
        return names.has(imported.type === AST_NODE_TYPES.Identifier ? imported.name : imported.value);
      }
      if (definition.node.type === AST_NODE_TYPES.VariableDeclarator && definition.node.init !== null) {
        // `const { rmSync: nuke } = fs`: the name that matters is the property destructured.
        if (definition.node.id.type === AST_NODE_TYPES.ObjectPattern) return destructuredFrom(definition.node.id, c);
        const init = unwrap(definition.node.init);
        if (init.type === AST_NODE_TYPES.CallExpression) return wrapsCandidate(init);
        return init.type === AST_NODE_TYPES.MemberExpression && !init.computed && init.property.type === AST_NODE_TYPES.Identifier && names.has(init.property.name);
      }
      return false;
    }

    /** `promisify(exec)`, `util.promisify(cp.exec)`: a call whose first argument names a forbidden function. */
    function wrapsCandidate(call: TSESTree.CallExpression): boolean {
      const first = call.arguments[0];
      return first !== undefined && first.type !== AST_NODE_TYPES.SpreadElement && unwrap(first).type !== AST_NODE_TYPES.CallExpression && candidateName(first);
    }

    /** Is `local` bound by `pattern` to a property named like a forbidden function? */
    function destructuredFrom(pattern: TSESTree.ObjectPattern, local: TSESTree.Identifier): boolean {
      for (const p of pattern.properties) {
        if (p.type !== AST_NODE_TYPES.Property || p.computed) continue;
        const value = p.value.type === AST_NODE_TYPES.AssignmentPattern ? p.value.left : p.value;
        if (value.type !== AST_NODE_TYPES.Identifier || value.name !== local.name) continue;
        const key = p.key.type === AST_NODE_TYPES.Identifier ? p.key.name : p.key.type === AST_NODE_TYPES.Literal ? String(p.key.value) : null;
        return key !== null && names.has(key);
      }
      return false;
    }

    function check(node: TSESTree.CallExpression | TSESTree.NewExpression): void {
      if (!candidateName(node.callee)) return;
      const callee = resolveCallee(services.esTreeNodeToTSNodeMap.get(node), program);
      if (callee === null) return;
      for (const entry of calls) {
        if (!entryMatches(entry, callee)) continue;
        if (entry.when !== undefined && !argumentSets(node, entry.when)) continue;
        if (entry.allowIn !== undefined && insideAllowedClass(node, entry.allowIn)) continue;
        const shown = callee.container === null ? `${normaliseModuleName(entry.module)}.${callee.name}` : `${callee.container}.${callee.name} (${entry.module})`;
        const condition = entry.when === undefined ? '' : ` with ${entry.when.property}: ${JSON.stringify(entry.when.equals)}`;
        context.report({ node, messageId: 'forbidden', data: { callee: shown, condition, reason: entry.reason } });
        return;
      }
    }

    /** Does argument `when.argument` set `when.property` to `when.equals`, provably? */
    function argumentSets(node: TSESTree.CallExpression | TSESTree.NewExpression, when: NonNullable<ForbiddenCall['when']>): boolean {
      const argument = node.arguments[when.argument];
      if (argument === undefined || argument.type === AST_NODE_TYPES.SpreadElement) return false;
      const a = unwrap(argument);
      if (a.type === AST_NODE_TYPES.ObjectExpression) {
        for (const p of a.properties) {
          if (p.type !== AST_NODE_TYPES.Property || p.computed) continue;
          const key = p.key.type === AST_NODE_TYPES.Identifier ? p.key.name : p.key.type === AST_NODE_TYPES.Literal ? String(p.key.value) : null;
          if (key !== when.property) continue;
          const value = unwrap(p.value);
          if (value.type === AST_NODE_TYPES.Literal) return value.value === when.equals;
          return literalTypeEquals(services.getTypeAtLocation(value), when.equals);
        }
      }
      // Not an object literal (or the property is spread in): trust only a literal type.
      const property = services.getTypeAtLocation(argument).getProperty(when.property);
      const declaration = property?.valueDeclaration ?? property?.getDeclarations()?.[0];
      if (property === undefined || declaration === undefined) return false;
      return literalTypeEquals(checker.getTypeOfSymbolAtLocation(property, declaration), when.equals);
    }

    /** Is the call inside a class that is, extends or implements one of `allowed`? */
    function insideAllowedClass(node: TSESTree.Node, allowed: readonly TypeSpecifier[]): boolean {
      for (let n = node.parent; n != null; n = n.parent) {
        if (n.type !== AST_NODE_TYPES.ClassDeclaration && n.type !== AST_NODE_TYPES.ClassExpression) continue;
        const classNode = services.esTreeNodeToTSNodeMap.get(n);
        const symbol = classNode.name === undefined ? undefined : checker.getSymbolAtLocation(classNode.name);
        if (symbol !== undefined && typeMatchesAny(checker.getDeclaredTypeOfSymbol(symbol), allowed, program)) return true;
        for (const implemented of n.implements) {
          if (typeMatchesAny(services.getTypeAtLocation(implemented.expression), allowed, program)) return true;
        }
      }
      return false;
    }

    function literalTypeEquals(type: ts.Type, expected: boolean | number | string): boolean {
      if (typeof expected === 'boolean') {
        const intrinsic = (type as { intrinsicName?: string }).intrinsicName;
        return (type.flags & ts.TypeFlags.BooleanLiteral) !== 0 && intrinsic === String(expected);
      }
      return type.isLiteral() && type.value === expected;
    }

    return {
      CallExpression: check,
      NewExpression: check,
    };
  },
});

function entryMatches(entry: ForbiddenCall, callee: ResolvedCallee): boolean {
  if (callee.module === null || callee.module !== normaliseModuleName(entry.module)) return false;
  const qualified = callee.container === null ? callee.name : `${callee.container}.${callee.name}`;
  const wanted = typeof entry.name === 'string' ? [entry.name] : entry.name;
  return wanted.includes(qualified);
}
