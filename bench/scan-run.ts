/**
 * One measurement of the scan suite, run in a fresh process so that every contender builds
 * its own TypeScript program (typescript-eslint caches programs per process). Prints one JSON
 * line: {"mode", "files", "ms", "ruleMs", "findings"}; `ruleMs` is the time ESLint's own
 * per-rule statistics (`stats: true`) attribute to the rules, the least noisy figure here.
 *
 * Modes, all over the same files with the same type-aware parser settings:
 *   parse     ESLint + typescript-eslint parser with type information, no rules (the floor)
 *   govmap    + govmap's recommended rules
 *   tseslint  + typescript-eslint's recommendedTypeChecked rules (a familiar yardstick)
 *   scan      govmap's scan() end to end (file walk, batches, fingerprints)
 */
import { ESLint } from 'eslint';
import type { Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import * as parser from '@typescript-eslint/parser';
import plugin, { recommendedRules } from '../src/lint/plugin.ts';
import { scan } from '../src/lint/index.ts';

const [mode, root] = process.argv.slice(2);
if (root === undefined || !['parse', 'govmap', 'tseslint', 'scan'].includes(mode ?? '')) {
  console.error('usage: node bench/scan-run.ts <parse|govmap|tseslint|scan> <project root>');
  process.exit(2);
}

const started = process.hrtime.bigint();
let files = 0;
let findings = 0;
let ruleMs = 0;
if (mode === 'scan') {
  const report = await scan({ cwd: root });
  files = report.filesScanned;
  findings = report.findings.length;
} else {
  const tseslintRules: Linter.RulesRecord = {};
  for (const config of tseslint.configs.recommendedTypeChecked) Object.assign(tseslintRules, config.rules ?? {});
  const eslint = new ESLint({
    cwd: root,
    stats: true,
    overrideConfigFile: true,
    overrideConfig: [
      {
        files: ['**/*.ts'],
        languageOptions: { parser: parser as unknown as Linter.Parser, parserOptions: { projectService: true, tsconfigRootDir: root } },
        plugins: { govmap: plugin as unknown as ESLint.Plugin, '@typescript-eslint': tseslint.plugin as unknown as ESLint.Plugin },
        rules: mode === 'govmap' ? recommendedRules : mode === 'tseslint' ? tseslintRules : {},
      },
    ],
  });
  const results = await eslint.lintFiles(['src']);
  files = results.length;
  for (const r of results) {
    if (r.fatalErrorCount > 0) throw new Error(`${r.filePath}: ${r.messages[0]?.message ?? 'fatal'}`);
    findings += r.messages.length;
    for (const pass of r.stats?.times.passes ?? []) {
      for (const rule of Object.values(pass.rules ?? {})) ruleMs += rule.total;
    }
  }
}
const ms = Number(process.hrtime.bigint() - started) / 1e6;
console.log(JSON.stringify({ mode, files, ms, ruleMs, findings }));
