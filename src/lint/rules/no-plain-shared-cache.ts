import { AST_NODE_TYPES, ASTUtils, ESLintUtils, TSESLint } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import ts from 'typescript';
import { isFunctionNode, unwrap, walk } from '../ast.ts';
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
  /**
   * Class decorators that make a class's instance one per process (dependency-injection
   * singletons), by name. Default: DEFAULT_SINGLETON_DECORATORS (NestJS, TypeDI, tsyringe).
   */
  readonly singletonDecorators?: readonly string[];
}

/**
 * Decorators of a dependency-injection container whose default is one instance per process:
 * NestJS `@Injectable()`, `@Controller()`, `@Resolver()` (unless `scope: Scope.REQUEST` or
 * `Scope.TRANSIENT`), TypeDI `@Service()`, tsyringe `@singleton()`.
 */
export const DEFAULT_SINGLETON_DECORATORS: readonly string[] = ['Injectable', 'Controller', 'Resolver', 'Service', 'singleton'];

/** Lifecycle hooks a container calls once, at start-up or shutdown: a Map filled there is configuration. */
const LIFECYCLE_HOOKS = new Set(['onModuleInit', 'onApplicationBootstrap', 'onModuleDestroy', 'beforeApplicationShutdown', 'onApplicationShutdown']);

type MessageIds = 'plainSharedCache' | 'singletonFieldCache';
type Kind = 'Map' | 'dictionary object';

/** A collection found behind a property (`QuoteCache.quotes`, `NS.m`, `caches.sessions`, `globalThis.g`). */
interface SharedDeclaration {
  readonly kind: Kind;
  readonly declaration: ts.Declaration;
}

/** How many aliases (`const m = cache; const n = m`) or member hops (`NS.Inner.m`) are followed. */
const MAX_HOPS = 3;

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
 * naming the first function that writes it. The same for the other collections a process holds
 * once: static fields of module-level classes, namespace variables, properties of module-level
 * object literals and project-declared globals (`globalThis.cacheG`), reported as `Class.field`,
 * `NS.m`, `obj.prop`. Writes through local aliases (`const m = cache`, `const { s } = caches`)
 * count, and the message names the alias. A Map only read by handlers (filled at start-up) is
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
      singletonFieldCache:
        '{{kind}} field `{{name}}` of `{{className}}` ({{why}}) is written by {{writer}}: one per process, a shared cache with no validator, metrics, audit or key lifecycle. Use a GovernedMap (validated writes, update/updateAsync for read-modify-write).',
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          scope: { type: 'string', enum: ['handlers', 'async'] },
          requestTypes: { type: 'array', items: typeSpecifierSchema },
          singletonDecorators: { type: 'array', items: { type: 'string', minLength: 1 } },
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

    function kindOf(declarator: TSESTree.VariableDeclarator): Kind | null {
      const init = declarator.init === null ? null : unwrap(declarator.init);
      return kindOfType(services.getTypeAtLocation(declarator.id), init !== null && isDictionaryInit(services.esTreeNodeToTSNodeMap.get(init)));
    }

    function kindOfType(type: ts.Type, objectLiteral: boolean): Kind | null {
      if (typeMatchesAny(type, [MAP_TYPE], program)) return 'Map';
      if (!objectLiteral) return null;
      const t = checker.getNonNullableType(type);
      const indexed = t.getStringIndexType() !== undefined || t.getNumberIndexType() !== undefined;
      return indexed ? 'dictionary object' : null;
    }

    /** The symbol a name denotes, through import aliases; undefined when the checker has none. */
    function symbolOf(node: TSESTree.Node): ts.Symbol | undefined {
      let symbol = checker.getSymbolAtLocation(services.esTreeNodeToTSNodeMap.get(node));
      if (symbol !== undefined && (symbol.flags & ts.SymbolFlags.Alias) !== 0) symbol = checker.getAliasedSymbol(symbol);
      return symbol;
    }

    /** Packages' and the standard library's state is not the project's. */
    function isProjectFile(file: ts.SourceFile): boolean {
      return !/[\\/]node_modules[\\/]/.test(file.fileName) && !program.isSourceFileDefaultLibrary(file);
    }

    /**
     * Is this declaration's container created once per process: a source file, a namespace (or
     * `declare global`) body at any depth, a module-level class (for its static fields), or an
     * object literal initialising one of those (`const caches = { sessions: new Map() }`)?
     */
    function isProcessWide(container: ts.Node, hops = 0): boolean {
      if (hops > MAX_HOPS) return false;
      if (ts.isSourceFile(container)) return true;
      if (ts.isModuleBlock(container)) return ts.isModuleDeclaration(container.parent) && isProcessWide(container.parent.parent, hops + 1);
      if (ts.isClassDeclaration(container)) return isProcessWide(container.parent, hops + 1);
      if (ts.isVariableDeclaration(container)) {
        const statement = container.parent.parent;
        return ts.isVariableStatement(statement) && isProcessWide(statement.parent, hops + 1);
      }
      if (ts.isPropertyDeclaration(container)) return isStatic(container) && isProcessWide(container.parent, hops + 1);
      if (ts.isPropertyAssignment(container)) return isProcessWide(container.parent, hops + 1);
      if (ts.isClassExpression(container) || ts.isObjectLiteralExpression(container)) {
        let parent = container.parent;
        while (ts.isParenthesizedExpression(parent) || ts.isAsExpression(parent) || ts.isSatisfiesExpression(parent)) parent = parent.parent;
        return (ts.isVariableDeclaration(parent) || ts.isPropertyDeclaration(parent) || ts.isPropertyAssignment(parent)) && isProcessWide(parent, hops + 1);
      }
      return false;
    }

    /**
     * The collection a symbol declares, when it is shared by the whole process: a module-level
     * variable of a project file, a variable of a namespace or of `declare global` (also a
     * global script's `var`), a static field of a module-level class, or a property of a
     * module-level object literal. Null for anything else (locals, instance fields, packages).
     */
    function sharedDeclaration(found: ts.Symbol | undefined): SharedDeclaration | null {
      const symbol = found !== undefined && (found.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(found) : found;
      const declaration = symbol?.valueDeclaration;
      if (symbol === undefined || declaration === undefined) return null;
      const file = declaration.getSourceFile();
      if (!isProjectFile(file)) return null;
      let initializer: ts.Expression | undefined;
      let global = false;
      if (ts.isVariableDeclaration(declaration)) {
        const statement = declaration.parent.parent;
        if (!ts.isVariableStatement(statement)) return null;
        const container = statement.parent;
        global =
          (ts.isSourceFile(container) && !ts.isExternalModule(container)) ||
          (ts.isModuleBlock(container) && (container.parent.flags & ts.NodeFlags.GlobalAugmentation) !== 0);
        // A .d.ts declares state that lives elsewhere, except the globals it adds.
        if ((file.isDeclarationFile && !global) || !isProcessWide(container)) return null;
        initializer = declaration.initializer;
      } else if (ts.isPropertyDeclaration(declaration)) {
        if (file.isDeclarationFile || !isStatic(declaration) || !isProcessWide(declaration.parent)) return null;
        initializer = declaration.initializer;
      } else if (ts.isPropertyAssignment(declaration) || ts.isShorthandPropertyAssignment(declaration)) {
        if (file.isDeclarationFile || !isProcessWide(declaration.parent)) return null;
        initializer = ts.isPropertyAssignment(declaration) ? declaration.initializer : undefined;
      } else {
        return null;
      }
      while (initializer !== undefined && (ts.isParenthesizedExpression(initializer) || ts.isAsExpression(initializer) || ts.isSatisfiesExpression(initializer) || ts.isNonNullExpression(initializer))) {
        initializer = initializer.expression;
      }
      // A declared global has no initialiser: its index signature is what makes it a dictionary.
      const objectLiteral = initializer === undefined ? global : isDictionaryInit(initializer);
      const kind = kindOfType(checker.getTypeOfSymbol(symbol), objectLiteral);
      return kind === null ? null : { kind, declaration };
    }

    /**
     * An imported binding that is a module-level variable of a project file (through aliases
     * and re-exports: `export { cache as sessions }`): the usual layout keeps the cache in its
     * own module and writes it from handlers elsewhere, where its declaration's file never sees
     * the write. Its kind, or null. Packages' state (node_modules, .d.ts) is not the project's.
     */
    function importedKind(identifier: TSESTree.Identifier): Kind | null {
      const symbol = symbolOf(identifier);
      const declaration = symbol?.valueDeclaration;
      if (declaration === undefined || !ts.isVariableDeclaration(declaration)) return null;
      const statement = declaration.parent.parent;
      if (!ts.isVariableStatement(statement) || !ts.isSourceFile(statement.parent)) return null;
      return sharedDeclaration(symbol)?.kind ?? null;
    }

    /**
     * Is this use of the collection (a reference to its variable, or `ns.cache` through a
     * namespace import) a write to it (not a read, not a reassignment of the variable)?
     */
    function isCollectionWrite(use: TSESTree.Node, kind: Kind): boolean {
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

    /** The write found: which function serving traffic makes it, and the alias it goes through. */
    interface Write {
      readonly writer: string;
      readonly via: string | null;
    }

    /**
     * A write to the collection from a function serving traffic, through this use of it or a
     * local alias it initialises (`const m = cache; m.set(k, v)`; `let m = cache` when no later
     * plain assignment replaces it before the write), or null.
     */
    function writeThrough(use: TSESTree.Node, kind: Kind, hops = 0, serves: (fn: FunctionNode) => string | null = servesTraffic): Write | null {
      if (isCollectionWrite(use, kind)) {
        const writer = writerOf(use, serves);
        return writer === null ? null : { writer, via: null };
      }
      if (hops >= MAX_HOPS) return null;
      const alias = aliasOf(use);
      return alias === null ? null : writeThroughAlias(alias.variable, alias.definition, kind, hops + 1, serves);
    }

    /** A write through the reads of `variable` that `definition` (which gave it the collection) reaches. */
    function writeThroughAlias(variable: TSESLint.Scope.Variable, definition: TSESTree.Node, kind: Kind, hops: number, serves: (fn: FunctionNode) => string | null = servesTraffic): Write | null {
      // A module-level alias of a Map is a module-level Map: reported under its own name.
      if (isModuleLevel(variable) && typeMatchesAny(services.getTypeAtLocation(variable.identifiers[0] ?? definition), [MAP_TYPE], program)) return null;
      for (const reference of variable.references) {
        if (reference.init === true || !reference.isRead() || !reaches(variable, definition, reference)) continue;
        const write = writeThrough(reference.identifier, kind, hops, serves);
        if (write !== null) return { writer: write.writer, via: write.via ?? variable.name };
      }
      return null;
    }

    function isModuleLevel(variable: TSESLint.Scope.Variable): boolean {
      const type = variable.scope.type;
      return type === TSESLint.Scope.ScopeType.module || type === TSESLint.Scope.ScopeType.global || type === TSESLint.Scope.ScopeType.tsModule;
    }

    /**
     * The local variable this use of the collection is stored in (`const m = cache`,
     * `m = cond ? cache : other`, `m ??= cache`), with the node that stores it; null if none.
     */
    function aliasOf(use: TSESTree.Node): { variable: TSESLint.Scope.Variable; definition: TSESTree.Node } | null {
      let value = use;
      for (let parent = value.parent; parent !== undefined; value = parent, parent = parent.parent) {
        if (isTypeWrapper(parent) && parent.expression === value) continue;
        if (parent.type === AST_NODE_TYPES.ConditionalExpression && parent.test !== value) continue;
        if (parent.type === AST_NODE_TYPES.LogicalExpression) continue;
        break;
      }
      const parent = value.parent;
      if (parent?.type === AST_NODE_TYPES.VariableDeclarator && parent.init === value && parent.id.type === AST_NODE_TYPES.Identifier) {
        const variable = sourceCode.getDeclaredVariables(parent)[0];
        return variable === undefined ? null : { variable, definition: parent };
      }
      if (parent?.type === AST_NODE_TYPES.AssignmentExpression && parent.right === value && parent.left.type === AST_NODE_TYPES.Identifier && ['=', '||=', '&&=', '??='].includes(parent.operator)) {
        const variable = ASTUtils.findVariable(sourceCode.getScope(parent), parent.left);
        return variable === null ? null : { variable, definition: parent };
      }
      return null;
    }

    /**
     * Does `definition` (a declarator or assignment of `variable`) reach this read? By source
     * order: the last plain `v = x` / declaration statement before the read in a block that holds
     * the read replaces the earlier ones; assignments in branches after it may or may not have run.
     * A read in a function nested in the variable's own may run after any assignment.
     */
    function reaches(variable: TSESLint.Scope.Variable, definition: TSESTree.Node, read: TSESLint.Scope.Reference): boolean {
      if (read.from.variableScope !== variable.scope.variableScope) return true;
      const at = read.identifier.range[0];
      if (definition.range[1] > at) return false;
      let last: TSESTree.Node | null = null;
      for (const reference of variable.references) {
        if (!reference.isWrite()) continue;
        const node = definingNode(reference.identifier);
        if (node === null || node.range[1] > at || !dominates(node, read.identifier)) continue;
        if (last === null || node.range[1] > last.range[1]) last = node;
      }
      return last === null || definition === last || definition.range[1] > last.range[1];
    }

    const singletonDecorators = new Set(options.singletonDecorators ?? DEFAULT_SINGLETON_DECORATORS);

    /**
     * Module-level classes of this file whose instance is one per process, with the reason: a
     * singleton decorator of a dependency-injection container, or a `new` of the class run at
     * module level (`export const ledger = new Ledger()`).
     */
    function singletonClasses(root: TSESTree.Program, moduleScope: TSESLint.Scope.Scope): Array<{ node: TSESTree.ClassDeclaration; why: string }> {
      const found: Array<{ node: TSESTree.ClassDeclaration; why: string }> = [];
      for (const statement of root.body) {
        const cls =
          statement.type === AST_NODE_TYPES.ClassDeclaration
            ? statement
            : (statement.type === AST_NODE_TYPES.ExportNamedDeclaration || statement.type === AST_NODE_TYPES.ExportDefaultDeclaration) && statement.declaration?.type === AST_NODE_TYPES.ClassDeclaration
              ? statement.declaration
              : null;
        if (cls === null || cls.id === null) continue;
        const decorator = cls.decorators.map(singletonDecorator).find((name) => name !== null);
        if (decorator !== undefined && decorator !== null) {
          found.push({ node: cls, why: `a singleton of its container, @${decorator}` });
          continue;
        }
        const variable = moduleScope.set.get(cls.id.name);
        const instance = variable?.references.find(({ identifier }) => identifier.parent?.type === AST_NODE_TYPES.NewExpression && identifier.parent.callee === identifier && enclosingFunction(identifier) === null);
        if (instance !== undefined) {
          const holder = instance.identifier.parent.parent;
          const named = holder?.type === AST_NODE_TYPES.VariableDeclarator && holder.id.type === AST_NODE_TYPES.Identifier ? ` as \`${holder.id.name}\`` : '';
          found.push({ node: cls, why: `instantiated once, at module level${named}` });
        }
      }
      return found;
    }

    /** The decorator's name when it is a singleton decorator, with no request or transient scope; else null. */
    function singletonDecorator(decorator: TSESTree.Decorator): string | null {
      const expression = decorator.expression;
      const callee = expression.type === AST_NODE_TYPES.CallExpression ? expression.callee : expression;
      const name = callee.type === AST_NODE_TYPES.Identifier ? callee.name : callee.type === AST_NODE_TYPES.MemberExpression && callee.property.type === AST_NODE_TYPES.Identifier ? callee.property.name : null;
      if (name === null || !singletonDecorators.has(name)) return null;
      // `@Injectable({ scope: Scope.REQUEST })`: one instance per request, not per process.
      const scoped = expression.type === AST_NODE_TYPES.CallExpression && /\bscope\s*:\s*[\w.]*(REQUEST|TRANSIENT)\b/.test(sourceCode.getText(expression));
      return scoped ? null : name;
    }

    /** Each Map or dictionary instance field of `cls` written by a method serving traffic, reported once. */
    function reportSingletonFields(cls: TSESTree.ClassDeclaration, why: string): void {
      const fields = new Map<string, { node: TSESTree.PropertyDefinition; kind: Kind }>();
      for (const member of cls.body.body) {
        if (member.type !== AST_NODE_TYPES.PropertyDefinition || member.static || member.declare || member.computed) continue;
        if (member.key.type !== AST_NODE_TYPES.Identifier && member.key.type !== AST_NODE_TYPES.PrivateIdentifier) continue;
        const init = member.value === null ? null : unwrap(member.value);
        const kind = kindOfType(services.getTypeAtLocation(member), init !== null && isDictionaryInit(services.esTreeNodeToTSNodeMap.get(init)));
        if (kind !== null) fields.set(fieldName(member.key), { node: member, kind });
      }
      if (fields.size === 0) return;
      const className = cls.id!.name;
      /** An async method of the class (not a container's start-up or shutdown hook), or what serves traffic anyway. */
      const serves = (fn: FunctionNode): string | null => {
        const method = fn.parent;
        const isMethod = ((method.type === AST_NODE_TYPES.MethodDefinition && method.kind === 'method') || (method.type === AST_NODE_TYPES.PropertyDefinition && method.value === fn)) && !method.static && method.parent.parent === cls;
        const name = isMethod && (method.key.type === AST_NODE_TYPES.Identifier || method.key.type === AST_NODE_TYPES.PrivateIdentifier) ? fieldName(method.key) : null;
        // Called once by the container, whatever the scope: filling the Map there is configuration.
        if (name !== null && LIFECYCLE_HOOKS.has(name)) return null;
        const general = servesTraffic(fn);
        if (general !== null) return general;
        return name !== null && fn.async ? `async method \`${name}\`` : null;
      };
      const done = new Set<string>();
      const visit = (node: TSESTree.Node): void => {
        if (node !== cls && (node.type === AST_NODE_TYPES.ClassDeclaration || node.type === AST_NODE_TYPES.ClassExpression)) return; // another class's `this`
        if (node.type === AST_NODE_TYPES.MemberExpression && node.object.type === AST_NODE_TYPES.ThisExpression && !node.computed && thisIsInstance(node.object, cls)) {
          const name = node.property.type === AST_NODE_TYPES.Identifier || node.property.type === AST_NODE_TYPES.PrivateIdentifier ? fieldName(node.property) : null;
          const field = name === null ? undefined : fields.get(name);
          if (field !== undefined && !done.has(name!)) {
            const write = writeThrough(node, field.kind, 0, serves);
            if (write !== null) {
              done.add(name!);
              const writer = write.via === null ? write.writer : `${write.writer} (through the alias \`${write.via}\`)`;
              context.report({ node: field.node.key, messageId: 'singletonFieldCache', data: { kind: field.kind, name: name!, className, why, writer } });
            }
          }
        }
        for (const key of sourceCode.visitorKeys[node.type] ?? []) {
          const child = (node as unknown as Record<string, unknown>)[key];
          if (Array.isArray(child)) {
            for (const c of child) if (isNode(c)) visit(c);
          } else if (isNode(child)) {
            visit(child);
          }
        }
      };
      visit(cls.body);
    }

    return {
      'Program:exit'(root: TSESTree.Program) {
        const globalScope = sourceCode.getScope(root);
        const moduleScope = globalScope.childScopes.find((s) => s.type === TSESLint.Scope.ScopeType.module) ?? globalScope;
        /** Declarations already reported: a collection is reported once per file. */
        const reported = new Set<unknown>();

        function report(key: unknown, node: TSESTree.Node, kind: Kind, name: string, write: Write): void {
          if (reported.has(key)) return;
          reported.add(key);
          const writer = write.via === null ? write.writer : `${write.writer} (through the alias \`${write.via}\`)`;
          context.report({ node, messageId: 'plainSharedCache', data: { kind, name, writer } });
        }

        /** Where to report a collection found behind a property: its declaration when it is in this file, else `fallback`. */
        function reportNode(declaration: ts.Declaration, fallback: TSESTree.Node): TSESTree.Node {
          if (declaration.getSourceFile() !== services.esTreeNodeToTSNodeMap.get(root)) return fallback;
          const node = services.tsNodeToESTreeNodeMap.get(declaration) as TSESTree.Node | undefined;
          if (node === undefined) return fallback;
          if (node.type === AST_NODE_TYPES.VariableDeclarator) return node.id;
          if (node.type === AST_NODE_TYPES.PropertyDefinition || node.type === AST_NODE_TYPES.Property) return node.key;
          return node;
        }

        /**
         * Collections behind members of a container (`QuoteCache.quotes`, `NS.m`,
         * `shared.sessionCache`, `caches.sessions`, `globalThis.cacheG`): each written one is
         * reported once, at its declaration when in this file, else at `fallback`.
         * `const { sessions } = caches` makes `sessions` an alias of `caches.sessions`.
         */
        function reportMemberWrites(uses: readonly TSESTree.Node[], prefix: string, fallback: TSESTree.Node | null): void {
          const cache = new Map<string, SharedDeclaration | null>();
          const lookup = (key: string, find: () => ts.Symbol | undefined): SharedDeclaration | null => {
            let found = cache.get(key);
            if (found === undefined) cache.set(key, (found = sharedDeclaration(find())));
            return found;
          };
          for (const use of uses) {
            let object: TSESTree.Node = use;
            let name = prefix;
            for (let hop = 0; hop < MAX_HOPS; hop++) {
              while (object.parent !== undefined && isTypeWrapper(object.parent) && object.parent.expression === object) object = object.parent;
              const parent = object.parent;
              if (hop === 0 && parent?.type === AST_NODE_TYPES.VariableDeclarator && parent.init === object && parent.id.type === AST_NODE_TYPES.ObjectPattern) {
                reportDestructured(parent, parent.id, object, name, lookup, fallback ?? use);
                break;
              }
              if (parent?.type !== AST_NODE_TYPES.MemberExpression || parent.object !== object || parent.computed) break;
              // `QuoteCache.#quotes`: a private static field is as much one per process as a public one.
              if (parent.property.type !== AST_NODE_TYPES.Identifier && parent.property.type !== AST_NODE_TYPES.PrivateIdentifier) break;
              name = `${name}.${fieldName(parent.property)}`;
              const property = parent.property;
              const found = lookup(name, () => symbolOf(property));
              if (found === null) {
                object = parent;
                continue;
              }
              if (!reported.has(found.declaration)) {
                const write = writeThrough(parent, found.kind);
                if (write !== null) report(found.declaration, reportNode(found.declaration, fallback ?? parent), found.kind, name, write);
              }
              break;
            }
          }
        }

        function reportDestructured(
          declarator: TSESTree.VariableDeclarator,
          pattern: TSESTree.ObjectPattern,
          container: TSESTree.Node,
          prefix: string,
          lookup: (key: string, find: () => ts.Symbol | undefined) => SharedDeclaration | null,
          fallback: TSESTree.Node,
        ): void {
          const type = services.getTypeAtLocation(container);
          const variables = sourceCode.getDeclaredVariables(declarator);
          for (const property of pattern.properties) {
            if (property.type !== AST_NODE_TYPES.Property || property.computed || property.key.type !== AST_NODE_TYPES.Identifier) continue;
            const value = property.value.type === AST_NODE_TYPES.AssignmentPattern ? property.value.left : property.value;
            if (value.type !== AST_NODE_TYPES.Identifier) continue;
            const key = property.key.name;
            const name = `${prefix}.${key}`;
            const found = lookup(name, () => checker.getPropertyOfType(type, key));
            const variable = variables.find((v) => v.name === value.name);
            if (found === null || variable === undefined || reported.has(found.declaration)) continue;
            const write = writeThroughAlias(variable, declarator, found.kind, 1);
            if (write !== null) report(found.declaration, reportNode(found.declaration, fallback), found.kind, name, write);
          }
        }

        /** Module-level variables, and those of namespaces at any depth, with the namespace path that names them outside. */
        const scopes: { scope: TSESLint.Scope.Scope; prefix: string }[] = [{ scope: moduleScope, prefix: '' }];
        for (let i = 0; i < scopes.length; i++) {
          const { scope, prefix } = scopes[i]!;
          for (const child of scope.childScopes) {
            const block = child.block;
            if (child.type !== TSESLint.Scope.ScopeType.tsModule || block.type !== AST_NODE_TYPES.TSModuleDeclaration) continue;
            scopes.push({ scope: child, prefix: block.kind === 'global' ? '' : `${prefix}${sourceCode.getText(block.id)}.` });
          }
        }

        for (const { scope, prefix } of scopes) {
          for (const variable of scope.variables) {
            const definition = variable.defs[0];
            if (definition === undefined) continue;
            const name = `${prefix}${variable.name}`;
            if (definition.type === TSESLint.Scope.DefinitionType.TSModuleName || definition.type === TSESLint.Scope.DefinitionType.ClassName) {
              // `NS.m`, `QuoteCache.quotes`: inside a class body its name is a binding of its own.
              const uses: TSESTree.Node[] = variable.references.map((r) => r.identifier);
              if (definition.type === TSESLint.Scope.DefinitionType.ClassName) {
                const inner = sourceCode.scopeManager?.acquire(definition.node)?.set.get(variable.name);
                if (inner !== undefined && inner !== variable) uses.push(...inner.references.map((r) => r.identifier));
                // In a static method `this` is the class: `this.#quotes.set(...)` writes `QuoteCache.#quotes`.
                if (definition.node.type === AST_NODE_TYPES.ClassDeclaration) uses.push(...staticThis(definition.node, sourceCode.visitorKeys));
              }
              reportMemberWrites(uses, name, null);
              continue;
            }
            if (variable.defs.length !== 1) continue;
            if (definition.type === TSESLint.Scope.DefinitionType.ImportBinding && definition.node.type === AST_NODE_TYPES.ImportNamespaceSpecifier) {
              reportMemberWrites(variable.references.map((r) => r.identifier), name, definition.name);
              continue;
            }
            let declared: TSESTree.Identifier;
            let kind: Kind | null;
            let key: unknown = variable;
            if (definition.type === TSESLint.Scope.DefinitionType.ImportBinding) {
              // Reported at the import: the declaration is in a file that never sees this write.
              declared = definition.name;
              kind = importedKind(declared);
            } else {
              if (definition.node.type !== AST_NODE_TYPES.VariableDeclarator || definition.node.id.type !== AST_NODE_TYPES.Identifier) continue;
              declared = definition.node.id;
              kind = kindOf(definition.node);
              key = services.esTreeNodeToTSNodeMap.get(definition.node);
            }
            if (kind === null) {
              // An object holding collections (`const caches = { sessions: new Map() }`), or an imported class.
              reportMemberWrites(variable.references.map((r) => r.identifier), name, definition.type === TSESLint.Scope.DefinitionType.ImportBinding ? declared : null);
              continue;
            }
            if (reported.has(key)) continue;
            for (const reference of variable.references) {
              const write = writeThrough(reference.identifier, kind);
              if (write === null) continue;
              report(key, declared, kind, name, write);
              break;
            }
          }
        }

        // Globals the project declares (`declare global { var cacheG: Map<K, V> }`), written
        // as `globalThis.cacheG` or by their bare name: one Map per process, like a module's.
        // Their references are unresolved, or resolve to a global ESLint was told of (no definition).
        const globals = new Map<string, (TSESTree.Identifier | TSESTree.JSXIdentifier)[]>();
        const declaredGlobals = globalScope.variables.filter((v) => v.defs.length === 0).flatMap((v) => v.references);
        for (const reference of [...globalScope.through, ...declaredGlobals]) {
          const list = globals.get(reference.identifier.name);
          if (list === undefined) globals.set(reference.identifier.name, [reference.identifier]);
          else list.push(reference.identifier);
        }
        for (const [name, uses] of globals) {
          if (name === 'globalThis' || name === 'global') {
            reportMemberWrites(uses, name, null);
            continue;
          }
          const found = sharedDeclaration(symbolOf(uses[0]!));
          if (found === null || reported.has(found.declaration)) continue;
          for (const use of uses) {
            const write = writeThrough(use, found.kind);
            if (write === null) continue;
            report(found.declaration, reportNode(found.declaration, use), found.kind, name, write);
            break;
          }
        }

        // Instance fields of a class whose instance is one per process: the service-class layout
        // (NestJS and the like) keeps its cache in `this.cache`, not in a module variable.
        for (const { node: cls, why } of singletonClasses(root, moduleScope)) reportSingletonFields(cls, why);
      },
    };
  },
});

/** The `this` expressions of `cls`'s static methods (arrow functions keep the method's `this`). */
function staticThis(cls: TSESTree.ClassDeclaration, visitorKeys: TSESLint.SourceCode.VisitorKeys): TSESTree.ThisExpression[] {
  const out: TSESTree.ThisExpression[] = [];
  for (const member of cls.body.body) {
    if (member.type !== AST_NODE_TYPES.MethodDefinition || !member.static) continue;
    walk(member.value.body ?? member.value, visitorKeys, (n) => {
      if (n.type === AST_NODE_TYPES.ThisExpression) out.push(n);
      return !(n.type === AST_NODE_TYPES.FunctionExpression || n.type === AST_NODE_TYPES.FunctionDeclaration || n.type === AST_NODE_TYPES.ClassDeclaration || n.type === AST_NODE_TYPES.ClassExpression);
    });
  }
  return out;
}

/**
 * Is this initialiser (type wrappers stripped) an object made to be a dictionary: a literal, or
 * `Object.create(null)`, the prototype-free dictionary security reviews ask for (no `__proto__`
 * key to poison)? On the TypeScript AST: the declaration may be in another file of the program.
 */
function isDictionaryInit(node: ts.Node): boolean {
  if (ts.isObjectLiteralExpression(node)) return true;
  return (
    ts.isCallExpression(node) &&
    node.arguments.length === 1 &&
    node.arguments[0]!.kind === ts.SyntaxKind.NullKeyword &&
    ts.isPropertyAccessExpression(node.expression) &&
    ts.isIdentifier(node.expression.expression) &&
    node.expression.expression.text === 'Object' &&
    node.expression.name.text === 'create'
  );
}

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

function isStatic(declaration: ts.PropertyDeclaration): boolean {
  return (ts.getCombinedModifierFlags(declaration) & ts.ModifierFlags.Static) !== 0;
}

/** The declarator or assignment that gives a variable a value at this reference, or null (`for (v of ...)`, `v++`). */
function definingNode(identifier: TSESTree.Node): TSESTree.Node | null {
  for (let n = identifier.parent; n !== undefined; n = n.parent) {
    if (n.type === AST_NODE_TYPES.VariableDeclarator || n.type === AST_NODE_TYPES.AssignmentExpression) return n;
    if (n.type !== AST_NODE_TYPES.Property && n.type !== AST_NODE_TYPES.ObjectPattern && n.type !== AST_NODE_TYPES.ArrayPattern && n.type !== AST_NODE_TYPES.AssignmentPattern && n.type !== AST_NODE_TYPES.RestElement) return null;
  }
  return null;
}

/**
 * Has `definition` surely run when `read` runs (given it comes first in the source)? A
 * declaration statement, or a plain `v = x;` statement, in a block that holds the read.
 */
function dominates(definition: TSESTree.Node, read: TSESTree.Node): boolean {
  let statement: TSESTree.Node;
  if (definition.type === AST_NODE_TYPES.VariableDeclarator) statement = definition.parent;
  else if (definition.type === AST_NODE_TYPES.AssignmentExpression && definition.operator === '=' && definition.parent.type === AST_NODE_TYPES.ExpressionStatement) statement = definition.parent;
  else return false;
  const block = statement.parent;
  if (
    block === undefined ||
    (block.type !== AST_NODE_TYPES.BlockStatement && block.type !== AST_NODE_TYPES.Program && block.type !== AST_NODE_TYPES.StaticBlock && block.type !== AST_NODE_TYPES.TSModuleBlock)
  ) {
    return false;
  }
  return block.range[0] <= read.range[0] && read.range[1] <= block.range[1];
}

function isNode(value: unknown): value is TSESTree.Node {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

function fieldName(key: TSESTree.Identifier | TSESTree.PrivateIdentifier): string {
  return key.type === AST_NODE_TYPES.PrivateIdentifier ? `#${key.name}` : key.name;
}

/** The innermost function around `node`, or null at module level. */
function enclosingFunction(node: TSESTree.Node): FunctionNode | null {
  for (let n = node.parent; n != null; n = n.parent) if (isFunctionNode(n)) return n;
  return null;
}

/**
 * Does this `this` denote an instance of `cls`: inside a method, accessor or field initialiser
 * of `cls` (arrow functions keep the method's `this`), not a function of its own?
 */
function thisIsInstance(node: TSESTree.ThisExpression, cls: TSESTree.ClassDeclaration): boolean {
  for (let n: TSESTree.Node | undefined = node.parent; n != null; n = n.parent) {
    if (n.type === AST_NODE_TYPES.ArrowFunctionExpression) continue;
    if (n.type === AST_NODE_TYPES.FunctionExpression || n.type === AST_NODE_TYPES.FunctionDeclaration) {
      const owner = n.parent;
      return owner?.type === AST_NODE_TYPES.MethodDefinition && !owner.static && owner.parent.parent === cls;
    }
    if (n.type === AST_NODE_TYPES.PropertyDefinition) return !n.static && n.parent.parent === cls;
    if (n === cls) return false;
  }
  return false;
}
