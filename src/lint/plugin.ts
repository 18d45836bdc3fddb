import type { TSESLint } from '@typescript-eslint/utils';
import { GOVMAP_VERSION } from './package-info.ts';
import { forbiddenCalls } from './rules/forbidden-calls.ts';
import { noAsyncRangeCallback } from './rules/no-async-range-callback.ts';
import { noPlainSharedCache } from './rules/no-plain-shared-cache.ts';
import { noRmwAcrossAwait } from './rules/no-rmw-across-await.ts';
import { noSharedMutationInRange } from './rules/no-shared-mutation-in-range.ts';
import { requireSuppressionReason } from './rules/require-suppression-reason.ts';
import { requireValidator } from './rules/require-validator.ts';

export const rules = {
  'no-rmw-across-await': noRmwAcrossAwait,
  'no-async-range-callback': noAsyncRangeCallback,
  'no-shared-mutation-in-range': noSharedMutationInRange,
  'require-validator': requireValidator,
  'no-plain-shared-cache': noPlainSharedCache,
  'forbidden-calls': forbiddenCalls,
  'require-suppression-reason': requireSuppressionReason,
} satisfies Record<string, TSESLint.RuleModule<string, readonly unknown[]>>;

export type GovmapRuleName = keyof typeof rules;

/** Files the presets apply to: the rules need TypeScript's type information. */
export const TYPESCRIPT_FILES = ['**/*.ts', '**/*.tsx', '**/*.mts', '**/*.cts'];

/** recommended: what is (almost) always a defect is an error; the cache heuristic warns. */
export const recommendedRules: TSESLint.FlatConfig.Rules = {
  'govmap/no-rmw-across-await': 'error',
  'govmap/no-async-range-callback': 'error',
  'govmap/no-shared-mutation-in-range': 'error',
  'govmap/require-validator': 'error',
  'govmap/no-plain-shared-cache': 'warn',
  'govmap/forbidden-calls': 'error',
  'govmap/require-suppression-reason': 'error',
};

/** strict: everything an error; plain caches written from any async function; blanket disables need a reason too. */
export const strictRules: TSESLint.FlatConfig.Rules = {
  ...recommendedRules,
  'govmap/no-plain-shared-cache': ['error', { scope: 'async' }],
  'govmap/require-suppression-reason': ['error', { blanket: true }],
};

interface GovmapPlugin {
  readonly meta: { readonly name: string; readonly version: string };
  readonly rules: typeof rules;
  readonly configs: { readonly recommended: TSESLint.FlatConfig.Config; readonly strict: TSESLint.FlatConfig.Config };
}

const configs = {} as { recommended: TSESLint.FlatConfig.Config; strict: TSESLint.FlatConfig.Config };

/**
 * The ESLint plugin (`govmap/eslint-plugin`). Its presets are flat configs; they name the
 * plugin and its rules but no parser, because the rules need the type-aware parser the project
 * already configures (typescript-eslint with `parserOptions.projectService`), and a second
 * parser instance would build a second TypeScript program:
 *
 *     import tseslint from 'typescript-eslint';
 *     import govmap from 'govmap/eslint-plugin';
 *     export default tseslint.config(
 *       ...tseslint.configs.recommendedTypeChecked,
 *       { languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } } },
 *       govmap.configs.recommended,
 *     );
 */
const plugin: GovmapPlugin = {
  meta: { name: 'govmap', version: GOVMAP_VERSION },
  rules,
  configs,
};

configs.recommended = {
  name: 'govmap/recommended',
  files: TYPESCRIPT_FILES,
  plugins: { govmap: plugin as unknown as TSESLint.FlatConfig.Plugin },
  rules: recommendedRules,
};
configs.strict = {
  name: 'govmap/strict',
  files: TYPESCRIPT_FILES,
  plugins: { govmap: plugin as unknown as TSESLint.FlatConfig.Plugin },
  rules: strictRules,
};

export default plugin;
