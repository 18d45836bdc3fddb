import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateProject } from '../test/lint/generate-project.ts';
import { medianOf, result, round } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * The cost of govmap's rules on a large project: a generated 500-file service (test/lint/
 * generate-project.ts: ~55 lines per file, GovernedMaps, updateAsync, range walks, cross-file
 * imports, one lost update per 10 files), scanned type-aware. Each measurement runs in its own
 * process (bench/scan-run.ts) so each builds its own TypeScript program; contenders alternate
 * in rounds so machine drift hits all alike.
 *
 * Ratios, same run: govmap_rules_vs_parse = (parse + govmap rules) / (parse alone), the rules'
 * own cost over the type-aware parse every linter pays (wall clock, per process);
 * govmap_vs_tseslint_type_checked = the same wall clock against typescript-eslint's
 * recommendedTypeChecked, a rule set teams already run in CI; and, less noisy on a shared
 * machine, govmap_rule_time_vs_tseslint_rule_time from ESLint's own per-rule statistics.
 * scan_files_per_s is govmap scan end to end (walk, batches, fingerprints).
 */
const FILES = 500;
const QUICK_FILES = 150;
/** scan-run next to this module: .js under dist/ (what an installed govmap runs), .ts in a checkout. */
const RUNNER = fileURLToPath(new URL(`./scan-run.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));

interface Measurement {
  readonly mode: string;
  readonly files: number;
  readonly ms: number;
  readonly ruleMs: number;
  readonly findings: number;
}

function measure(mode: string, root: string): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [RUNNER, mode, root], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`scan-run ${mode} failed: ${stderr || error.message}`));
      const last = stdout.trim().split('\n').pop() ?? '';
      resolve(JSON.parse(last) as Measurement);
    });
  });
}

const suite: Suite = async ({ progress, quick }) => {
  const count = quick ? QUICK_FILES : FILES;
  const rounds = quick ? 1 : 3;
  const root = mkdtempSync(join(tmpdir(), 'govmap-scan-bench-'));
  try {
    const project = generateProject(root, count);
    progress(`generated ${count} files under ${root}; ${project.planted.length} planted lost updates`);
    const modes = ['parse', 'govmap', 'tseslint', 'scan'] as const;
    const times: Record<(typeof modes)[number], number[]> = { parse: [], govmap: [], tseslint: [], scan: [] };
    const ruleMs: Record<'govmap' | 'tseslint', number[]> = { govmap: [], tseslint: [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of modes) {
        const m = await measure(mode, root);
        if (m.files !== count) throw new Error(`${mode} scanned ${m.files} files, expected ${count}`);
        if ((mode === 'govmap' || mode === 'scan') && m.findings !== project.planted.length) {
          throw new Error(`${mode} found ${m.findings} findings, expected the ${project.planted.length} planted ones`);
        }
        times[mode].push(m.ms);
        if (mode === 'govmap' || mode === 'tseslint') ruleMs[mode].push(m.ruleMs);
        progress(`round ${r + 1}/${rounds} ${mode}: ${m.ms.toFixed(0)} ms (${((count / m.ms) * 1000).toFixed(1)} files/s)${mode === 'govmap' || mode === 'tseslint' ? `, rules ${m.ruleMs.toFixed(0)} ms` : ''}`);
      }
    }
    const perFileNs = (mode: (typeof modes)[number]): number => (medianOf(times[mode]) * 1e6) / count;
    const results: BenchResult[] = [
      result('type-aware parse only (baseline), per file', perFileNs('parse')),
      result('parse + govmap recommended rules, per file', perFileNs('govmap')),
      result('parse + typescript-eslint recommendedTypeChecked, per file', perFileNs('tseslint')),
      result('govmap scan end to end, per file', perFileNs('scan')),
      result('govmap recommended rules alone (ESLint stats), per file', (medianOf(ruleMs.govmap) * 1e6) / count),
      result('typescript-eslint recommendedTypeChecked rules alone (ESLint stats), per file', (medianOf(ruleMs.tseslint) * 1e6) / count),
    ];
    return {
      suite: 'scan',
      results,
      ratios: {
        govmap_rules_vs_parse: round(perFileNs('govmap') / perFileNs('parse')),
        govmap_vs_tseslint_type_checked: round(perFileNs('govmap') / perFileNs('tseslint')),
        govmap_rule_time_vs_tseslint_rule_time: round(medianOf(ruleMs.govmap) / medianOf(ruleMs.tseslint)),
      },
      // govmap's rules must cost less than a type-aware rule set teams already run in CI, in
      // wall clock and in rule time. govmap_rules_vs_parse has no target: it is dominated by the
      // type checker's first use on each file, which any type-aware rule pays (each govmap rule
      // run alone costs about what all of them cost together).
      targets: { govmap_vs_tseslint_type_checked: '< 1', govmap_rule_time_vs_tseslint_rule_time: '< 1' },
      scan_files_per_s: round(1e9 / perFileNs('scan'), 1),
      files: count,
      notes: [
        `${count} generated files, median of ${rounds} round(s), each measurement a fresh process (program built from scratch)`,
        `scan_files_per_s = ${round(1e9 / perFileNs('scan'), 1)} (govmap scan end to end, recommended preset)`,
      ],
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
};

export default suite;
