/**
 * Runs `govmap scan` of the demo source off the service's thread, for GET /lint/report
 * (demo/lint.ts): the scan builds a TypeScript program, seconds of synchronous CPU that on the
 * event loop stopped every answer (and the dashboard's state stream) for as long. One scan per
 * worker: `{root}` in (workerData), the report's two bodies (JSON and SARIF) out, or the error's
 * message.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { failingFindings, formatJson, formatSarif, scan } from '../src/lint/index.ts';

/** What GET /lint/report answers, in both formats. */
export interface LintBodies {
  readonly json: {
    readonly filesScanned: number;
    readonly failing: number;
    readonly rules: ReadonlyArray<{ readonly id: string; readonly level: string }>;
    readonly findings: unknown;
  };
  readonly sarif: string;
}

export type LintAnswer = { readonly ok: true; readonly bodies: LintBodies } | { readonly ok: false; readonly error: string };

// Background work, as the audit verifier's (demo/spool-verify.worker.ts): at the lowest priority
// this thread takes CPU only when the request-serving threads leave some.
try {
  setPriority(0, 19);
} catch {
  // Not permitted or not supported here: scan at normal priority.
}

const { root } = workerData as { root: string };
let answer: LintAnswer;
try {
  const report = await scan({ cwd: root, paths: ['demo'], project: 'tsconfig.json' });
  answer = {
    ok: true,
    bodies: {
      json: {
        filesScanned: report.filesScanned,
        failing: failingFindings(report).length,
        rules: report.rules.map((r) => ({ id: r.id, level: r.level })),
        findings: JSON.parse(formatJson(report)) as unknown,
      },
      sarif: formatSarif(report),
    },
  };
} catch (error) {
  answer = { ok: false, error: error instanceof Error ? error.message : String(error) };
}
parentPort!.postMessage(answer);
