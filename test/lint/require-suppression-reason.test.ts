import { requireSuppressionReason } from '../../src/lint/rules/require-suppression-reason.ts';
import plugin from '../../src/lint/plugin.ts';
import { typedRuleTester } from './rule-tester.ts';

// The directives name real rules: ESLint reports a directive naming an unknown rule. Unused
// directives are not this rule's business (ESLint's reportUnusedDisableDirectives is).
const tester = typedRuleTester({
  plugins: { govmap: plugin },
  linterOptions: { reportUnusedDisableDirectives: 'off' },
});

tester.run('require-suppression-reason', requireSuppressionReason, {
  valid: [
    { name: 'next-line with a reason', code: `// eslint-disable-next-line govmap/no-rmw-across-await -- single writer: only the nightly job touches this key\nexport const a = 1;` },
    { name: 'block disable with a reason', code: `/* eslint-disable govmap/no-plain-shared-cache -- read-only after start-up */\nexport const a = 1;` },
    { name: 'another plugin\'s rule needs no reason here', code: `// eslint-disable-next-line no-console\nconsole.log(1);` },
    { name: 'a blanket directive passes unless blanket is set', code: `// eslint-disable-next-line\nexport const a = 1;` },
    { name: 'a line-comment eslint-disable is not a directive (ESLint ignores it)', code: `// eslint-disable govmap/require-validator\nexport const a = 1;` },
    { name: 'a configuration comment with a reason', code: `/* eslint govmap/no-plain-shared-cache: off -- generated client: its caches are per process and read-only */\nexport const a = 1;` },
    { name: 'a configuration comment of another plugin\'s rules', code: `/* eslint no-console: off, eqeqeq: [error, smart] */\nexport const a = 1;` },
    { name: 'a line comment is never a configuration comment', code: `// eslint govmap/no-rmw-across-await: off\nexport const a = 1;` },
    { name: 'ordinary comments mentioning eslint-disable', code: `// we never use eslint-disable govmap/x here\nexport const a = 1;` },
  ],
  invalid: [
    {
      name: 'next-line without a reason',
      code: `// eslint-disable-next-line govmap/no-rmw-across-await\nexport const a = 1;`,
      errors: [{ messageId: 'missingReason', line: 1, column: 1, endColumn: 55, data: { directive: 'eslint-disable-next-line', rules: 'govmap/no-rmw-across-await' } }],
    },
    {
      name: 'an empty reason',
      code: `export const a = 1; // eslint-disable-line govmap/forbidden-calls --   `,
      errors: [{ messageId: 'missingReason', data: { directive: 'eslint-disable-line', rules: 'govmap/forbidden-calls' } }],
    },
    {
      name: 'a block disable of several rules, one of them govmap',
      code: `/* eslint-disable no-console, govmap/require-validator */\nexport const a = 1;`,
      errors: [{ messageId: 'missingReason', data: { directive: 'eslint-disable', rules: 'govmap/require-validator' } }],
    },
    {
      name: 'a configuration comment switching a govmap rule off for the file, without a reason',
      code: `/* eslint govmap/no-rmw-across-await: off */\nexport const a = 1;`,
      errors: [{ messageId: 'inlineConfigWithoutReason', line: 1, column: 1, endColumn: 45, data: { rules: 'govmap/no-rmw-across-await' } }],
    },
    {
      name: 'a configuration comment weakening a govmap rule\'s options, among other rules',
      code: `/* eslint eqeqeq: off, "govmap/forbidden-calls": ["error", { "calls": [] }], govmap/require-validator: 0 */\nexport const a = 1;`,
      errors: [{ messageId: 'inlineConfigWithoutReason', data: { rules: 'govmap/forbidden-calls, govmap/require-validator' } }],
    },
    {
      // ESLint strips the quotes from a directive's rule names, so the quoted name silences the rule.
      name: 'a quoted rule name without a reason',
      code: `// eslint-disable-next-line "govmap/no-rmw-across-await", 'govmap/forbidden-calls'\nexport const a = 1;`,
      errors: [{ messageId: 'missingReason', data: { directive: 'eslint-disable-next-line', rules: 'govmap/no-rmw-across-await, govmap/forbidden-calls' } }],
    },
    {
      name: 'a blanket directive with blanket: true',
      code: `// eslint-disable-next-line\nexport const a = 1;`,
      options: [{ blanket: true }],
      errors: [{ messageId: 'missingReason', data: { directive: 'eslint-disable-next-line', rules: 'every rule' } }],
    },
  ],
});
