import { ESLintUtils } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import ts from 'typescript';
import { createRule } from '../create-rule.ts';
import { GOVERNED_MAP, resolveCallee, symbolMatches } from '../type-match.ts';

type MessageIds = 'acceptsEverything' | 'noVerdict' | 'emptyAllOf';

/** A property a spread the rule cannot see into may hold (see lastWritten). */
const UNKNOWN = Symbol('unknown');

/** How many `const v = w` / re-export hops are followed to find a validator's body. */
const MAX_HOPS = 4;

/** The verdict a validator function provably always gives, as far as its body shows. */
type Finding =
  | { readonly kind: 'acceptsEverything'; readonly why: string }
  | { readonly kind: 'noVerdict'; readonly why: string }
  | { readonly kind: 'emptyAllOf'; readonly why: string }
  | null;

/**
 * The specification forbids a bare, unvalidated store: GovernedMap requires a `validate`
 * option, but the type system cannot tell a business rule from `() => true`. This rule reads
 * the validator's body (inline, or a function/const of any file in the program, through
 * imports) and reports one that provably accepts every write (every return is `true`, and it
 * neither throws nor calls anything that could) or that returns no verdict at all (an empty
 * body, or no `return` of a value: GovernedMap then refuses every write with
 * VALIDATOR_RETURNED_NO_VERDICT). `allOf()` of validators that accept everything counts as
 * one; `allOf()` of none (also nested in another `allOf`) is reported for what it does: it throws
 * a ConfigurationError when the map is built. A validator whose verdict depends on anything is left alone.
 */
export const requireValidator = createRule<[], MessageIds>({
  name: 'require-validator',
  meta: {
    type: 'problem',
    docs: {
      description: 'Require GovernedMap validators that can reject a write',
      recommended: 'recommended',
      requiresTypeChecking: true,
    },
    messages: {
      acceptsEverything:
        'The validator of GovernedMap {{map}} accepts every write ({{why}}): that is a bare, unvalidated store. Check the business rule (amount not negative, account active...) and return a reason code when it fails.',
      noVerdict:
        'The validator of GovernedMap {{map}} returns no verdict ({{why}}): GovernedMap refuses every write with VALIDATOR_RETURNED_NO_VERDICT. Return true to accept, or a reason code to refuse.',
      emptyAllOf:
        'The validator of GovernedMap {{map}} is {{why}}: allOf() throws a ConfigurationError ("needs at least one validator") when it is called, so building this map fails. Pass allOf the business-rule validators (amount not negative, account active...).',
    },
    schema: [],
  },
  defaultOptions: [],
  create(context) {
    const services = ESLintUtils.getParserServices(context);
    const program = services.program;
    const checker = program.getTypeChecker();

    /** Follows an expression to the object literal it denotes, through const variables. */
    function objectLiteralOf(expression: ts.Expression, hops = 0): ts.ObjectLiteralExpression | null {
      const e = skipOuter(expression);
      if (ts.isObjectLiteralExpression(e)) return e;
      if (ts.isIdentifier(e) && hops < MAX_HOPS) {
        const init = constInitialiser(e);
        return init === null ? null : objectLiteralOf(init, hops + 1);
      }
      return null;
    }

    /** The initialiser of the const (or function) an identifier refers to, through imports. */
    function constInitialiser(identifier: ts.Identifier): ts.Expression | null {
      const declaration = valueDeclarationOf(identifier);
      if (declaration === undefined || !ts.isVariableDeclaration(declaration) || declaration.initializer === undefined) return null;
      return isConst(declaration) ? declaration.initializer : null;
    }

    function valueDeclarationOf(identifier: ts.Identifier): ts.Declaration | undefined {
      let symbol = checker.getSymbolAtLocation(identifier);
      if (symbol !== undefined && (symbol.flags & ts.SymbolFlags.Alias) !== 0) symbol = checker.getAliasedSymbol(symbol);
      return symbol?.valueDeclaration;
    }

    /** What the `validate` value provably does. */
    function judge(value: ts.Expression | ts.Declaration, hops = 0): Finding {
      if (hops > MAX_HOPS) return null;
      if (ts.isFunctionDeclaration(value) || ts.isMethodDeclaration(value) || ts.isFunctionExpression(value) || ts.isArrowFunction(value)) {
        return judgeFunction(value);
      }
      if (!isExpression(value)) return null;
      const e = skipOuter(value);
      if (ts.isFunctionExpression(e) || ts.isArrowFunction(e)) return judgeFunction(e);
      if (ts.isIdentifier(e)) {
        const declaration = valueDeclarationOf(e);
        if (declaration === undefined) return null;
        if (ts.isFunctionDeclaration(declaration)) return judgeFunction(declaration);
        const init = constInitialiser(e);
        return init === null ? null : judge(init, hops + 1);
      }
      if (ts.isCallExpression(e)) {
        const callee = resolveCallee(e, program);
        if (callee?.name !== 'allOf' || callee.module !== 'govmap') return null;
        if (e.arguments.length === 0) return { kind: 'emptyAllOf', why: 'allOf() of no validators' };
        const parts = e.arguments.map((a) => judge(a, hops + 1));
        // `allOf(allOf(), v)`: the inner call throws before the outer one runs.
        if (parts.some((p) => p?.kind === 'emptyAllOf')) return { kind: 'emptyAllOf', why: 'allOf() containing allOf() of no validators' };
        if (parts.every((p) => p?.kind === 'acceptsEverything')) return { kind: 'acceptsEverything', why: 'allOf() of validators that accept everything' };
        return null;
      }
      return null;
    }

    return {
      NewExpression(node) {
        // GovernedMap itself, not a subclass: a subclass's constructor options are its own.
        const callee = services.esTreeNodeToTSNodeMap.get(node.callee);
        if (!symbolMatches(checker.getSymbolAtLocation(callee), GOVERNED_MAP, program)) return;
        const argument = node.arguments[0];
        if (argument === undefined) return;
        const tsArgument = services.esTreeNodeToTSNodeMap.get(argument) as ts.Expression;
        const options = objectLiteralOf(tsArgument);
        if (options === null) return;
        const property = lastProperty(options, 'validate');
        if (property === null) return;
        let finding: Finding = null;
        if (ts.isPropertyAssignment(property)) finding = judge(property.initializer);
        else if (ts.isMethodDeclaration(property)) finding = judgeFunction(property);
        else if (ts.isShorthandPropertyAssignment(property)) {
          // `{ validate }`: the name denotes the property; the value is the variable of that name.
          const declaration = checker.getShorthandAssignmentValueSymbol(property)?.valueDeclaration;
          if (declaration !== undefined && ts.isFunctionDeclaration(declaration)) finding = judge(declaration);
          else if (declaration !== undefined && ts.isVariableDeclaration(declaration) && declaration.initializer !== undefined && isConst(declaration)) {
            finding = judge(declaration.initializer);
          }
        }
        if (finding === null) return;
        const mapName = nameOption(options);
        // Report on the validator itself when it is written in this file, else on the options.
        const here = property.getSourceFile() === services.esTreeNodeToTSNodeMap.get(node).getSourceFile();
        const target = here ? (services.tsNodeToESTreeNodeMap.get(property) as TSESTree.Node | undefined) : undefined;
        context.report({ node: target ?? argument, messageId: finding.kind, data: { map: mapName, why: finding.why } });
      },
    };

    /**
     * The property that gives the options their `name` (or `validate`): the last one written,
     * spreads of known object literals (`{ ...defaults, name }`) included, as JavaScript does.
     * Null when there is none, or when a spread of something unknown comes after it (it may
     * hold its own).
     */
    function lastProperty(options: ts.ObjectLiteralExpression, name: string): ts.ObjectLiteralElementLike | null {
      const found = lastWritten(options, name, 0);
      return found === UNKNOWN ? null : found;
    }

    /**
     * As lastProperty, but telling "none" (null) from "a spread the rule cannot see into may hold
     * one" (UNKNOWN): a known spread that ends with an unknown one may replace what came before
     * it too (`{ validate: () => true, ...defaults }` with `defaults = { ...fromConfig }`).
     */
    function lastWritten(options: ts.ObjectLiteralExpression, name: string, hops: number): ts.ObjectLiteralElementLike | null | typeof UNKNOWN {
      let found: ts.ObjectLiteralElementLike | null | typeof UNKNOWN = null;
      for (const p of options.properties) {
        if (ts.isSpreadAssignment(p)) {
          const spread = hops < MAX_HOPS ? objectLiteralOf(p.expression, hops) : null;
          if (spread === null) found = UNKNOWN;
          else found = lastWritten(spread, name, hops + 1) ?? found;
        } else if (p.name !== undefined && propertyNameText(p.name) === name) found = p;
      }
      return found;
    }

    function nameOption(options: ts.ObjectLiteralExpression): string {
      const p = lastProperty(options, 'name');
      if (p !== null && ts.isPropertyAssignment(p) && ts.isStringLiteralLike(p.initializer)) return `"${p.initializer.text}"`;
      return '(unnamed)';
    }
  },
});

function isConst(declaration: ts.VariableDeclaration): boolean {
  const list = declaration.parent;
  return ts.isVariableDeclarationList(list) && (list.flags & ts.NodeFlags.Const) !== 0;
}

function isExpression(node: ts.Node): node is ts.Expression {
  return !ts.isFunctionDeclaration(node) && !ts.isMethodDeclaration(node) && !ts.isVariableDeclaration(node);
}

function propertyNameText(name: ts.PropertyName): string | null {
  if (ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isNumericLiteral(name)) return name.text;
  return null;
}

/** Parentheses, `as`, `satisfies`, `!`. */
function skipOuter(expression: ts.Expression): ts.Expression {
  let e = expression;
  while (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isSatisfiesExpression(e) || ts.isNonNullExpression(e) || ts.isTypeAssertionExpression(e)) {
    e = e.expression;
  }
  return e;
}

/** `true`, also in disguise: `!` of a falsy literal (`!!1`, `!0`, `!''`) is `true` just the same. */
function isTrueLiteral(expression: ts.Expression): boolean {
  const e = skipOuter(expression);
  // A truthy `1` or `'x'` is not the verdict `true` (a string names a refusal); `!` gives a boolean.
  if (e.kind === ts.SyntaxKind.TrueKeyword) return true;
  return ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.ExclamationToken && literalTruthiness(e) === true;
}

/**
 * The truthiness of a literal, folded through `!`; null when the expression is not one (it
 * depends on something, `!!v`). Only literals: `!!check(v)` may throw, which refuses.
 */
function literalTruthiness(expression: ts.Expression): boolean | null {
  const e = skipOuter(expression);
  if (e.kind === ts.SyntaxKind.TrueKeyword) return true;
  if (e.kind === ts.SyntaxKind.FalseKeyword || e.kind === ts.SyntaxKind.NullKeyword) return false;
  if (ts.isStringLiteralLike(e)) return e.text.length > 0;
  if (ts.isNumericLiteral(e) || ts.isBigIntLiteral(e)) {
    // The checker's text drops separators and normalises radix (`0x0` is "0"); NaN: not sure.
    const n = Number(ts.isBigIntLiteral(e) ? e.text.slice(0, -1) : e.text);
    return Number.isNaN(n) ? null : n !== 0;
  }
  if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.ExclamationToken) {
    const operand = literalTruthiness(e.operand);
    return operand === null ? null : !operand;
  }
  return null;
}

/**
 * A function's verdict as its body shows it. Returns, throws and calls inside nested functions
 * do not count (they are other functions' verdicts). A validator refuses a write by returning a
 * reason or by throwing (GovernedMap fails closed: VALIDATOR_FAILED), so a `throw` anywhere, or
 * a call that may throw (`AccountSchema.parse(v)`, `assertActive(v)`), means it can refuse.
 * Returning no value refuses every write that gets that far (VALIDATOR_RETURNED_NO_VERDICT),
 * whatever the body checks first.
 */
function judgeFunction(fn: ts.FunctionLikeDeclaration): Finding {
  const body = fn.body;
  if (body === undefined) return null;
  if (!ts.isBlock(body)) return isTrueLiteral(body) ? { kind: 'acceptsEverything', why: 'it always returns true' } : null;
  const returns: ts.ReturnStatement[] = [];
  let throws = false;
  let calls = false;
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) || ts.isClassLike(node)) return;
    if (ts.isReturnStatement(node)) returns.push(node);
    else if (ts.isThrowStatement(node)) throws = true;
    else if (ts.isCallExpression(node) || ts.isNewExpression(node) || ts.isTaggedTemplateExpression(node)) calls = true;
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(body, visit);
  if (body.statements.length === 0) return { kind: 'noVerdict', why: 'its body is empty' };
  // A body that ends in an unconditional throw refuses every write on purpose (a read-only map).
  const alwaysThrows = ts.isThrowStatement(body.statements[body.statements.length - 1]!);
  if (!alwaysThrows && returns.every((r) => r.expression === undefined)) return { kind: 'noVerdict', why: 'it never returns a value' };
  if (throws || calls) return null;
  if (returns.length > 0 && returns.every((r) => r.expression !== undefined && isTrueLiteral(r.expression))) {
    return { kind: 'acceptsEverything', why: 'every return is true' };
  }
  return null;
}
