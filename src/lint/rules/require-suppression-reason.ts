import { AST_TOKEN_TYPES } from '@typescript-eslint/utils';
import type { TSESTree } from '@typescript-eslint/utils';
import { createRule } from '../create-rule.ts';

export interface RequireSuppressionReasonOptions {
  /** Also require a reason on blanket directives (`// eslint-disable-next-line` naming no rule), which silence govmap's rules too. Default false; true in strict. */
  readonly blanket?: boolean;
  /** Rule-name prefixes whose suppression needs a reason. Default `['govmap/']`. */
  readonly prefixes?: readonly string[];
}

type MessageIds = 'missingReason' | 'inlineConfigWithoutReason';

/** ESLint's own directive grammar: `eslint-disable[-line|-next-line] rule, rule -- reason`. */
const DIRECTIVE = /^\s*(eslint-disable(?:-next-line|-line)?)(?:\s+([\s\S]*))?$/;
/** ESLint's rule configuration comment, `/* eslint rule: severity, rule: [severity, options] -- reason *\/` (block comments only). */
const CONFIG_COMMENT = /^\s*eslint\s+([\s\S]*)$/;
/** A rule id as a key of a configuration comment (`rule:` or `"rule":`), as ESLint's own fallback parser finds them. */
const CONFIG_KEY = /(?<![-\w/@])(["']?)([-\w/@]+)\1\s*:/g;
const JUSTIFICATION_SEPARATOR = /\s-{2,}\s/;
/** A rule name as ESLint's directive parser unquotes it (plugin-kit's parseListConfig). */
const QUOTED_RULE = /^(['"]?)([\s\S]*)\1$/;

/**
 * A suppressed finding is a decision someone made; the reason is what the next reader (and
 * the SARIF `justification` a reviewer sees in code scanning) needs. ESLint's own syntax
 * carries it: `// eslint-disable-next-line govmap/no-rmw-across-await -- single writer: only
 * the nightly job touches this key`. A directive that silences a govmap rule without one is
 * reported (on the comment itself, which the directive does not cover), and so is a
 * configuration comment (`/* eslint govmap/...: off *\/`) that reconfigures one.
 */
export const requireSuppressionReason = createRule<[RequireSuppressionReasonOptions], MessageIds>({
  name: 'require-suppression-reason',
  meta: {
    type: 'suggestion',
    docs: {
      description: 'Require a `-- reason` on every eslint-disable directive that silences a govmap rule',
      recommended: 'recommended',
      requiresTypeChecking: false,
    },
    messages: {
      missingReason: 'This {{directive}} silences {{rules}} without a reason: add one after ` -- ` (e.g. `-- single writer: only the settlement job touches these keys`).',
      inlineConfigWithoutReason:
        'This /* eslint */ comment reconfigures {{rules}} for the whole file without a reason, and no report records what it hides: silence single findings with `// eslint-disable-next-line <rule> -- <reason>` instead, or add the reason after ` -- `.',
    },
    schema: [
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          blanket: { type: 'boolean' },
          prefixes: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
    ],
  },
  defaultOptions: [{ blanket: false, prefixes: ['govmap/'] }],
  create(context, [options]) {
    const prefixes = options.prefixes ?? ['govmap/'];
    return {
      Program() {
        for (const comment of context.sourceCode.getAllComments()) check(comment);
      },
    };

    function check(comment: TSESTree.Comment): void {
      const match = DIRECTIVE.exec(comment.value);
      if (match === null) {
        if (comment.type === AST_TOKEN_TYPES.Block) checkConfigComment(comment);
        return;
      }
      const label = match[1]!;
      // ESLint honours only the -line forms in line comments; a `// eslint-disable` does nothing.
      if (comment.type === AST_TOKEN_TYPES.Line && label === 'eslint-disable') return;
      const [rulesPart = '', ...justification] = (match[2] ?? '').split(JUSTIFICATION_SEPARATOR);
      if (justification.join(' ').trim().length > 0) return;
      // As ESLint reads the list: a name in quotes (`"govmap/x"`) silences the rule all the same.
      const rules = rulesPart
        .split(',')
        .map((r) => r.trim().replace(QUOTED_RULE, '$2'))
        .filter((r) => r.length > 0);
      const governed = rules.filter((r) => prefixes.some((p) => r.startsWith(p)));
      if (governed.length > 0) {
        context.report({ loc: comment.loc, messageId: 'missingReason', data: { directive: label, rules: governed.join(', ') } });
      } else if (rules.length === 0 && options.blanket === true) {
        context.report({ loc: comment.loc, messageId: 'missingReason', data: { directive: label, rules: 'every rule' } });
      }
    }

    /**
     * `/* eslint govmap/no-rmw-across-await: off *\/` switches a rule off (or weakens its options)
     * for the whole file: a suppression too, and a wider one, that leaves no suppressed finding
     * in any report. It needs its reason as much as an eslint-disable does.
     */
    function checkConfigComment(comment: TSESTree.Comment): void {
      const match = CONFIG_COMMENT.exec(comment.value);
      if (match === null) return;
      const [settings = '', ...justification] = match[1]!.split(JUSTIFICATION_SEPARATOR);
      if (justification.join(' ').trim().length > 0) return;
      const governed = [...settings.matchAll(CONFIG_KEY)].map((m) => m[2]!).filter((r) => prefixes.some((p) => r.startsWith(p)));
      if (governed.length > 0) context.report({ loc: comment.loc, messageId: 'inlineConfigWithoutReason', data: { rules: governed.join(', ') } });
    }
  },
});
