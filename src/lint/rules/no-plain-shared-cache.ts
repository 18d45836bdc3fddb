import { AST_NODE_TYPES, ESLintUtils, TSESLint } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import ts from 'typescript';
import { isFunctionNode, unwrap } from '../ast.ts';
import type { FunctionNode } from '../ast.ts';
import { createRule } from '../create-rule.ts';
import { typeMatchesAny, typeSpecifierSchema } from '../type-match.ts';
import type { TypeSpecifier } from '../type-match.ts';

export interface NoPlainSharedCacheOptions {
  /**
   * Which functions count as serving shared traffic. `handlers` (default): request handlers
   * (a parameter of a request type) and exported async functions. `async`: also every other
   * async function and method (the strict preset).
   */
  readonly scope?: 'handlers' | 'async';
  /** More request types that mark a function as a request handler (Express, Fastify...). Default: none. */
  readonly requestTypes?: readonly TypeSpecifier[];
}

type MessageIds = 'plainSharedCache';

/** Request types of Node and the fetch API; a parameter of one of these makes a handler. */
const NODE_REQUEST_TYPES: readonly TypeSpecifier[] = [
  { from: 'package', package: 'http', name: ['IncomingMessage', 'ServerResponse'] },
  { from: 'package', package: 'http2', name: ['Http2ServerRequest', 'Http2ServerResponse', 'ServerHttp2Stream'] },
  { from: 'lib', name: 'Request' },
  // undici's fetch types, which @types/node declares as a package module.
  { from: 'package', package: 'undici-types', name: 'Request' },
];

const MAP_TYPE: TypeSpecifier = { from: 'lib', name: 'Map' };
const MAP_MUTATORS = new Set(['set', 'delete', 'clear']);

/**
 * A module-level `Map` (or `{}` used as a dictionary) that request handlers write to is a
 * shared cache with none of what the specification asks of one: no validator on writes, no
 * metrics, no audit, no key lifecycle (it grows until the process dies), no atomic
 * read-modify-write across `await`. Reported once per such variable, at its declaration,
 * naming the first function that writes it. A Map only read by handlers (filled at start-up) is
 * configuration, not a cache, and is left alone; so are WeakMaps, locals, and GovernedMaps.
 */
export const noPlainSharedCache = createRule<[NoPlainSharedCacheOptions], MessageIds>({
  name: 'no-plain-shared-cache',
  meta: {
    type: 'suggestion',
    docs: {
      description: 'Forbid module-level Maps and dictionaries written by request handlers; use a GovernedMap',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      plainSharedCache:
        'Module-level {{kind}} `{{name}}` is written by {{writer}}: a shared cache with no validator, metrics, audit or key lifecycle. Use a GovernedMap (validated writes, update/updateAsync for read-modify-write).',
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          scope: { type: 'string', enum: ['handlers', 'async'] },
          requestTypes: { type: 'array', items: typeSpecifierSchema },
        },
      },
    ],
  },
  defaultOptions: [{ scope: 'handlers' }],
  create(context, [options]) {
    const services = ESLintUtils.getParserServices(context);
    const program = services.program;
    const checker = program.getTypeChecker();
    const requestTypes = [...NODE_REQUEST_TYPES, ...(options.requestTypes ?? [])];
    const anyAsync = options.scope === 'async';
    const sourceCode = context.sourceCode;

    /** Why a function counts as serving traffic, e.g. "request handler `dispatch`", or null. */
    function servesTraffic(fn: FunctionNode): string | null {
      const name = functionName(fn);
      for (const param of fn.params) {
        const target = param.type === AST_NODE_TYPES.TSParameterProperty ? param.parameter : param;
        if (typeMatchesAny(services.getTypeAtLocation(target), requestTypes, program)) return `request handler ${name}`;
      }
      if (fn.async && isExported(fn, sourceCode)) return `exported async function ${name}`;
      if (fn.async && anyAsync) return `async function ${name}`;
      return null;
    }

    function kindOf(declarator: TSESTree.VariableDeclarator): 'Map' | 'dictionary object' | null {
      const init = declarator.init === null ? null : unwrap(declarator.init);
      return kindOfType(services.getTypeAtLocation(declarator.id), init?.type === AST_NODE_TYPES.ObjectExpression);
    }

    function kindOfType(type: ts.Type, objectLiteral: boolean): 'Map' | 'dictionary object' | null {
      if (typeMatchesAny(type, [MAP_TYPE], program)) return 'Map';
      if (!objectLiteral) return null;
      const t = checker.getNonNullableType(type);
      const indexed = t.getStringIndexType() !== undefined || t.getNumberIndexType() !== undefined;
      return indexed ? 'dictionary object' : null;
    }

    /**
     * An imported binding that is a module-level variable of a project file (through aliases
     * and re-exports: `export { cache as sessions }`): the usual layout keeps the cache in its
     * own module and writes it from handlers elsewhere, where its declaration's file never sees
     * the write. Its kind, or null. Packages' state (node_modules, .d.ts) is not the project's.
     */
    function importedKind(identifier: TSESTree.Identifier): 'Map' | 'dictionary object' | null {
      let symbol = checker.getSymbolAtLocation(services.esTreeNodeToTSNodeMap.get(identifier));
      if (symbol !== undefined && (symbol.flags & ts.SymbolFlags.Alias) !== 0) symbol = checker.getAliasedSymbol(symbol);
      const declaration = symbol?.valueDeclaration;
      if (declaration === undefined || !ts.isVariableDeclaration(declaration)) return null;
      const statement = declaration.parent.parent;
      if (!ts.isVariableStatement(statement) || !ts.isSourceFile(statement.parent)) return null;
      const file = statement.parent;
      if (file.isDeclarationFile || /[\\/]node_modules[\\/]/.test(file.fileName)) return null;
      let init = declaration.initializer;
      while (init !== undefined && (ts.isParenthesizedExpression(init) || ts.isAsExpression(init) || ts.isSatisfiesExpression(init) || ts.isNonNullExpression(init))) init = init.expression;
      return kindOfType(checker.getTypeOfSymbol(symbol!), init !== undefined && ts.isObjectLiteralExpression(init));
    }

    /**
     * Is this use of the collection (a reference to its variable, or `ns.cache` through a
     * namespace import) a write to it (not a read, not a reassignment of the variable)?
     */
    function isCollectionWrite(use: TSESTree.Node, kind: 'Map' | 'dictionary object'): boolean {
      // `(cache as Map<K, V>).set(...)`, `cache!.set(...)`: a cast writes the same collection.
      let id = use;
      while (id.parent !== undefined && isTypeWrapper(id.parent) && id.parent.expression === id) id = id.parent;
      const member = id.parent;
      if (member?.type !== AST_NODE_TYPES.MemberExpression || member.object !== id) return false;
      if (kind === 'Map') {
        const name = !member.computed && member.property.type === AST_NODE_TYPES.Identifier ? member.property.name : null;
        return name !== null && MAP_MUTATORS.has(name) && member.parent.type === AST_NODE_TYPES.CallExpression && member.parent.callee === member;
      }
      if (!member.computed) return false;
      const parent = member.parent;
      return (
        (parent.type === AST_NODE_TYPES.AssignmentExpression && parent.left === member) ||
        (parent.type === AST_NODE_TYPES.UpdateExpression && parent.argument === member) ||
        (parent.type === AST_NODE_TYPES.UnaryExpression && parent.operator === 'delete' && parent.argument === member)
      );
    }

    /**
     * `import * as shared from './caches'`, then `shared.sessions.set(...)`: each member that is
     * a module-level collection of a project file is judged as a named import of it would be,
     * and reported at the namespace import as `shared.sessions`.
     */
    function reportNamespaceWrites(variable: TSESLint.Scope.Variable, declared: TSESTree.Identifier): void {
      const kinds = new Map<string, 'Map' | 'dictionary object' | null>();
      const reported = new Set<string>();
      for (const reference of variable.references) {
        const member = reference.identifier.parent;
        if (member?.type !== AST_NODE_TYPES.MemberExpression || member.object !== reference.identifier) continue;
        if (member.computed || member.property.type !== AST_NODE_TYPES.Identifier) continue;
        const name = `${variable.name}.${member.property.name}`;
        if (reported.has(name)) continue;
        let kind = kinds.get(name);
        if (kind === undefined) kinds.set(name, (kind = importedKind(member.property)));
        if (kind === null || !isCollectionWrite(member, kind)) continue;
        const writer = writerOf(member, servesTraffic);
        if (writer === null) continue;
        context.report({ node: declared, messageId: 'plainSharedCache', data: { kind, name, writer } });
        reported.add(name);
      }
    }

    return {
      'Program:exit'(program: TSESTree.Program) {
        const moduleScope = sourceCode.getScope(program).childScopes.find((s) => s.type === TSESLint.Scope.ScopeType.module) ?? sourceCode.getScope(program);
        for (const variable of moduleScope.variables) {
          const definition = variable.defs[0];
          if (variable.defs.length !== 1 || definition === undefined) continue;
          let declared: TSESTree.Identifier;
          let kind: 'Map' | 'dictionary object' | null;
          if (definition.type === TSESLint.Scope.DefinitionType.ImportBinding && definition.node.type === AST_NODE_TYPES.ImportNamespaceSpecifier) {
            reportNamespaceWrites(variable, definition.name);
            continue;
          }
          if (definition.type === TSESLint.Scope.DefinitionType.ImportBinding) {
            // Reported at the import: the declaration is in a file that never sees this write.
            declared = definition.name;
            kind = importedKind(declared);
          } else {
            if (definition.node.type !== AST_NODE_TYPES.VariableDeclarator || definition.node.id.type !== AST_NODE_TYPES.Identifier) continue;
            declared = definition.node.id;
            kind = kindOf(definition.node);
          }
          if (kind === null) continue;
          for (const reference of variable.references) {
            if (!isCollectionWrite(reference.identifier, kind)) continue;
            const writer = writerOf(reference.identifier, servesTraffic);
            if (writer === null) continue;
            context.report({ node: declared, messageId: 'plainSharedCache', data: { kind, name: variable.name, writer } });
            break;
          }
        }
      },
    };
  },
});

function isTypeWrapper(node: TSESTree.Node): node is TSESTree.TSAsExpression | TSESTree.TSNonNullExpression | TSESTree.TSSatisfiesExpression | TSESTree.TSTypeAssertion {
  return (
    node.type === AST_NODE_TYPES.TSAsExpression ||
    node.type === AST_NODE_TYPES.TSNonNullExpression ||
    node.type === AST_NODE_TYPES.TSSatisfiesExpression ||
    node.type === AST_NODE_TYPES.TSTypeAssertion
  );
}

/** The innermost enclosing function that serves traffic, described; null when none does. */
function writerOf(node: TSESTree.Node, servesTraffic: (fn: FunctionNode) => string | null): string | null {
  for (let n = node.parent; n != null; n = n.parent) {
    if (isFunctionNode(n)) {
      const why = servesTraffic(n);
      if (why !== null) return why;
    }
  }
  return null;
}

function functionName(fn: FunctionNode): string {
  if (fn.id) return `\`${fn.id.name}\``;
  const parent = fn.parent;
  if (parent.type === AST_NODE_TYPES.VariableDeclarator && parent.id.type === AST_NODE_TYPES.Identifier) return `\`${parent.id.name}\``;
  if ((parent.type === AST_NODE_TYPES.Property || parent.type === AST_NODE_TYPES.MethodDefinition) && parent.key.type === AST_NODE_TYPES.Identifier) {
    return `\`${parent.key.name}\``;
  }
  return '(anonymous)';
}

/**
 * `export async function f`, `export default async function`, `export const f = async () =>`,
 * and a function declared first and exported by name later (`export { f }`, `export { f as g }`,
 * `export default f`): the same export, the usual shape of a route or Lambda handler module.
 */
function isExported(fn: FunctionNode, sourceCode: Readonly<TSESLint.SourceCode>): boolean {
  const parent = fn.parent;
  if (parent.type === AST_NODE_TYPES.ExportNamedDeclaration || parent.type === AST_NODE_TYPES.ExportDefaultDeclaration) return true;
  let declaration: TSESTree.FunctionDeclaration | TSESTree.VariableDeclarator;
  if (fn.type === AST_NODE_TYPES.FunctionDeclaration) {
    declaration = fn;
  } else if (parent.type === AST_NODE_TYPES.VariableDeclarator && parent.init === fn) {
    if (parent.parent.type === AST_NODE_TYPES.VariableDeclaration && parent.parent.parent.type === AST_NODE_TYPES.ExportNamedDeclaration) return true;
    declaration = parent;
  } else {
    return false;
  }
  return sourceCode.getDeclaredVariables(declaration).some((variable) =>
    variable.references.some(({ identifier }) => {
      const use = identifier.parent;
      // `export { f }` without `from` (a re-export's names are another module's), `export default f`.
      if (use?.type === AST_NODE_TYPES.ExportSpecifier) return use.local === identifier && use.parent.type === AST_NODE_TYPES.ExportNamedDeclaration && use.parent.source === null;
      return use?.type === AST_NODE_TYPES.ExportDefaultDeclaration && use.declaration === identifier;
    }),
  );
}
