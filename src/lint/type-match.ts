import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { JSONSchema } from '@typescript-eslint/utils';
import ts from 'typescript';

/**
 * Where a type or a function comes from, the way the rules decide that a receiver "really is"
 * govmap's GovernedMap and that a call "really is" `fs.rmSync`, and not a same-named thing
 * declared elsewhere. The shape follows typescript-eslint's TypeOrValueSpecifier, which users
 * of type-aware rules already know:
 *
 * - `{ from: 'package', package: 'govmap', name: 'GovernedMap' }`: declared in that npm package
 *   (its files, found through the nearest package.json, or its `declare module 'pkg'` block;
 *   `node:fs` and `fs` are one module; `@types/foo` is `foo`).
 * - `{ from: 'lib', name: 'Map' }`: declared in TypeScript's default library (`lib.*.d.ts`).
 * - `{ from: 'file', name: 'Cache', path: 'src/cache.ts' }`: declared in the project's own
 *   file (path relative to the tsconfig directory; without it, any file outside node_modules).
 *
 * Resolution goes through the type checker's symbols and declarations, never through names in
 * the source text, so an import alias, a re-export or a subclass resolve to the right place.
 */
export type TypeSpecifier =
  | { readonly from: 'package'; readonly package: string; readonly name: string | readonly string[] }
  | { readonly from: 'lib'; readonly name: string | readonly string[] }
  | { readonly from: 'file'; readonly name: string | readonly string[]; readonly path?: string };

/** JSON schema of one TypeSpecifier, for rule option schemas. */
const NAME_SCHEMA: JSONSchema.JSONSchema4 = {
  oneOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }],
};

export const typeSpecifierSchema: JSONSchema.JSONSchema4 = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'package', 'name'],
      properties: {
        from: { type: 'string', enum: ['package'] },
        package: { type: 'string', minLength: 1 },
        name: NAME_SCHEMA,
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'name'],
      properties: {
        from: { type: 'string', enum: ['lib'] },
        name: NAME_SCHEMA,
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'name'],
      properties: {
        from: { type: 'string', enum: ['file'] },
        name: NAME_SCHEMA,
        path: { type: 'string', minLength: 1 },
      },
    },
  ],
};

export const GOVERNED_MAP: TypeSpecifier = { from: 'package', package: 'govmap', name: 'GovernedMap' };
export const BUILTIN_MAP: TypeSpecifier = { from: 'lib', name: 'Map' };

/** How far up a class hierarchy a subclass is followed (`class Ledger extends GovernedMap`). */
const MAX_BASE_DEPTH = 8;

/** Nearest package.json name per directory; a lint run asks for the same few directories many times. */
const packageNameByDirectory = new Map<string, string | null>();

/** The `name` of the package.json nearest above `fileName`, or null. */
export function packageNameOfFile(fileName: string): string | null {
  const start = dirname(fileName);
  const visited: string[] = [];
  let directory = start;
  let found: string | null = null;
  for (;;) {
    const cached = packageNameByDirectory.get(directory);
    if (cached !== undefined) {
      found = cached;
      break;
    }
    visited.push(directory);
    const name = readPackageName(join(directory, 'package.json'));
    if (name !== undefined) {
      found = name;
      break;
    }
    const parent = dirname(directory);
    if (parent === directory) break;
    directory = parent;
  }
  for (const d of visited) packageNameByDirectory.set(d, found);
  return found;
}

/** undefined: no package.json here (keep walking up); null: one without a usable name. */
function readPackageName(path: string): string | null | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as { name?: unknown };
    return typeof parsed.name === 'string' ? parsed.name : null;
  } catch {
    return null;
  }
}

/** `node:fs` -> `fs`, `@types/node` -> `node`, `@types/scope__pkg` -> `@scope/pkg`. */
export function normaliseModuleName(name: string): string {
  let n = name.startsWith('node:') ? name.slice(5) : name;
  if (n.startsWith('@types/')) {
    n = n.slice(7);
    if (n.includes('__')) n = `@${n.replace('__', '/')}`;
  }
  return n;
}

/** The `declare module 'x'` block a declaration sits in, if any. */
export function ambientModuleOf(node: ts.Node): string | null {
  for (let n: ts.Node | undefined = node.parent; n !== undefined; n = n.parent) {
    if (ts.isModuleDeclaration(n) && ts.isStringLiteral(n.name)) return normaliseModuleName(n.name.text);
  }
  return null;
}

/** The module a declaration belongs to: its ambient module, else its file's package; null for lib. */
export function moduleOfDeclaration(declaration: ts.Node, program: ts.Program): string | null {
  const ambient = ambientModuleOf(declaration);
  if (ambient !== null) return ambient;
  const file = declaration.getSourceFile();
  if (program.isSourceFileDefaultLibrary(file)) return null;
  const pkg = packageNameOfFile(file.fileName);
  return pkg === null ? null : normaliseModuleName(pkg);
}

function namesOf(specifier: TypeSpecifier): readonly string[] {
  return typeof specifier.name === 'string' ? [specifier.name] : specifier.name;
}

function isInNodeModules(fileName: string): boolean {
  return /[\\/]node_modules[\\/]/.test(fileName);
}

/** Does this declaration come from where the specifier says (ignoring the name)? */
export function declarationMatchesSource(declaration: ts.Node, specifier: TypeSpecifier, program: ts.Program): boolean {
  const file = declaration.getSourceFile();
  switch (specifier.from) {
    case 'lib':
      return program.isSourceFileDefaultLibrary(file);
    case 'package':
      return moduleOfDeclaration(declaration, program) === normaliseModuleName(specifier.package);
    case 'file': {
      if (program.isSourceFileDefaultLibrary(file) || isInNodeModules(file.fileName)) return false;
      if (specifier.path === undefined) return true;
      const root = program.getCurrentDirectory();
      const wanted = isAbsolute(specifier.path) ? specifier.path : resolve(root, specifier.path);
      return resolve(file.fileName) === wanted;
    }
  }
}

/** Is `symbol` named as the specifier says and declared where it says? Aliases are followed. */
export function symbolMatches(symbol: ts.Symbol | undefined, specifier: TypeSpecifier, program: ts.Program): boolean {
  if (symbol === undefined) return false;
  let s = symbol;
  if ((s.flags & ts.SymbolFlags.Alias) !== 0) s = program.getTypeChecker().getAliasedSymbol(s);
  if (!namesOf(specifier).includes(s.getName())) return false;
  return (s.getDeclarations() ?? []).some((d) => declarationMatchesSource(d, specifier, program));
}

/**
 * Is a value of `type` one of the specified types? `T | undefined` counts as T (an optional
 * map is still that map); a union counts only when every other member does; an intersection
 * when one member does; a subclass counts as its base (up to MAX_BASE_DEPTH levels).
 */
export function typeMatchesAny(type: ts.Type, specifiers: readonly TypeSpecifier[], program: ts.Program): boolean {
  if (specifiers.length === 0) return false;
  const checker = program.getTypeChecker();
  const t = checker.getNonNullableType(type);
  // `this` inside a subclass's methods has the polymorphic this type, and a generic helper's
  // `M extends GovernedMap<...>` is a type parameter: both are a value of their constraint.
  // (A flag test, not isTypeParameter(): that guard would narrow `t` to never below.)
  if ((t.flags & ts.TypeFlags.TypeParameter) !== 0) {
    const constraint = checker.getBaseConstraintOfType(t);
    return constraint !== undefined && constraint !== t && typeMatchesAny(constraint, specifiers, program);
  }
  if (t.isUnion()) return t.types.length > 0 && t.types.every((part) => typeMatchesAny(part, specifiers, program));
  if (t.isIntersection()) return t.types.some((part) => typeMatchesAny(part, specifiers, program));
  return classOrBaseMatches(t, specifiers, program, 0);
}

function classOrBaseMatches(type: ts.Type, specifiers: readonly TypeSpecifier[], program: ts.Program, depth: number): boolean {
  const symbol = type.getSymbol() ?? type.aliasSymbol;
  if (specifiers.some((s) => symbolMatches(symbol, s, program))) return true;
  if (depth >= MAX_BASE_DEPTH) return false;
  const target = (type as ts.TypeReference).target ?? type;
  if (!target.isClassOrInterface()) return false;
  const bases = program.getTypeChecker().getBaseTypes(target);
  return bases.some((base) => classOrBaseMatches(base, specifiers, program, depth + 1));
}

/** Is the type something you can `await` (has a callable `then`)? Any part of a union counts. */
export function isThenable(type: ts.Type, checker: ts.TypeChecker): boolean {
  if (type.isUnion()) return type.types.some((part) => isThenable(part, checker));
  if ((type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) !== 0) return false;
  const then = type.getProperty('then');
  if (then === undefined) return false;
  const declaration = then.valueDeclaration ?? then.getDeclarations()?.[0];
  if (declaration === undefined) return false;
  const thenType = checker.getTypeOfSymbolAtLocation(then, declaration);
  return thenType.getCallSignatures().length > 0;
}

/**
 * What a call resolves to: the declaration of the function or method the checker picked, the
 * module that declares it, its exported name, and the class/interface holding it (for methods).
 * `null` when the callee is not statically known (an `any`, a computed callee).
 */
export interface ResolvedCallee {
  readonly declaration: ts.Declaration;
  readonly module: string | null;
  readonly name: string;
  readonly container: string | null;
  readonly fromLib: boolean;
}

export function resolveCallee(call: ts.CallExpression | ts.NewExpression, program: ts.Program): ResolvedCallee | null {
  const checker = program.getTypeChecker();
  let declaration: ts.Declaration | undefined;
  try {
    declaration = checker.getResolvedSignature(call)?.declaration;
  } catch {
    declaration = undefined;
  }
  if (declaration === undefined || ts.isJSDocSignature(declaration)) {
    const calleeNode = ts.isPropertyAccessExpression(call.expression) ? call.expression.name : call.expression;
    let symbol = checker.getSymbolAtLocation(calleeNode);
    if (symbol !== undefined && (symbol.flags & ts.SymbolFlags.Alias) !== 0) symbol = checker.getAliasedSymbol(symbol);
    declaration = symbol?.valueDeclaration ?? symbol?.getDeclarations()?.[0];
  }
  if (declaration === undefined || ts.isJSDocSignature(declaration)) return null;
  let name = declarationName(declaration);
  if (name === null) return null;
  let parent = declaration.parent as ts.Node | undefined;
  // `promisify(exec)` is typed by `namespace exec { function __promisify__ }` (Node's custom
  // promisified form): calling it runs exec.
  if (name === '__promisify__' && parent !== undefined && ts.isModuleBlock(parent) && ts.isIdentifier(parent.parent.name)) {
    name = parent.parent.name.text;
    parent = parent.parent.parent;
  }
  let container: string | null = null;
  if (parent !== undefined && (ts.isClassDeclaration(parent) || ts.isInterfaceDeclaration(parent)) && parent.name !== undefined) {
    container = parent.name.text;
  }
  const file = declaration.getSourceFile();
  return { declaration, module: moduleOfDeclaration(declaration, program), name, container, fromLib: program.isSourceFileDefaultLibrary(file) };
}

function declarationName(declaration: ts.Declaration): string | null {
  const named = declaration as { name?: ts.Node };
  if (named.name !== undefined && (ts.isIdentifier(named.name) || ts.isStringLiteral(named.name) || ts.isPrivateIdentifier(named.name))) {
    return named.name.text;
  }
  // `const rmSync = ...` style declarations and constructors have their names one level up.
  if (ts.isConstructorDeclaration(declaration) || ts.isConstructSignatureDeclaration(declaration)) {
    const owner = declaration.parent as { name?: ts.Node } | undefined;
    return owner?.name !== undefined && ts.isIdentifier(owner.name) ? owner.name.text : null;
  }
  return null;
}
