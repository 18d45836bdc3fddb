import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RuleTester } from '@typescript-eslint/rule-tester';
import type { RuleTesterConfig } from '@typescript-eslint/rule-tester';

// RuleTester drives node:test directly: each case is one `it`, failures name the case.
// node:test's describe/it return promises the runner tracks itself; RuleTester's hooks are typed void.
RuleTester.afterAll = after;
RuleTester.describe = (text, fn) => void describe(text, fn);
RuleTester.it = (text, fn) => void it(text, fn);
RuleTester.itOnly = (text, fn) => void it.only(text, fn);

/** The fixture project: its tsconfig gives the rules type information. */
export const fixtureDir = fileURLToPath(new URL('./fixture/', import.meta.url));

/** Test cases import govmap the way this fixture file would: by its source path. */
export const GOVMAP = '../../../src/index.ts';

export function typedRuleTester(extra: Omit<RuleTesterConfig, 'languageOptions'> = {}): RuleTester {
  return new RuleTester({
    ...extra,
    languageOptions: {
      parserOptions: {
        project: './tsconfig.json',
        tsconfigRootDir: fixtureDir,
      },
    },
    defaultFilenames: { ts: 'file.ts', tsx: 'file.tsx' },
  });
}
