import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RuleTester } from '@typescript-eslint/rule-tester';

// RuleTester drives node:test directly: each case is one `it`, failures name the case.
RuleTester.afterAll = after;
RuleTester.describe = describe;
RuleTester.it = it;
RuleTester.itOnly = it.only;

/** The fixture project: its tsconfig gives the rules type information. */
export const fixtureDir = fileURLToPath(new URL('./fixture/', import.meta.url));

/** Test cases import govmap the way this fixture file would: by its source path. */
export const GOVMAP = '../../../src/index.ts';

export function typedRuleTester(): RuleTester {
  return new RuleTester({
    languageOptions: {
      parserOptions: {
        project: './tsconfig.json',
        tsconfigRootDir: fixtureDir,
      },
    },
    defaultFilenames: { ts: 'file.ts', tsx: 'file.tsx' },
  });
}
