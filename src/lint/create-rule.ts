import { ESLintUtils } from '@typescript-eslint/utils';

/** What every govmap rule says about itself, beyond ESLint's own docs fields. */
export interface GovmapRuleDocs {
  readonly description: string;
  /** The lowest preset that turns the rule on. */
  readonly recommended: 'recommended' | 'strict';
  /** Resolves names through the type checker (all but require-suppression-reason). */
  readonly requiresTypeChecking: boolean;
}

/**
 * Each rule's documentation is its section of docs/lint.md; the anchor is the rule name. The
 * link is repository-relative because the package has no published documentation site yet.
 */
export const createRule = ESLintUtils.RuleCreator<GovmapRuleDocs>((name) => `docs/lint.md#${name}`);
