/**
 * Verifies an audit spool (a directory, or one segment file) off the main thread, for the
 * dashboard's audit panel and the demo's retention: `verifySpool` reads and hashes synchronously
 * (a 16 MiB segment: a large fraction of a second; a whole spool: seconds), which must not stall
 * the service's event loop. One request at a time: `{dir, key}` in, a compact summary out.
 * Driven by SpoolVerifier (demo/spool-verifier.ts).
 */
import { parentPort } from 'node:worker_threads';
import { verifySpool } from '../src/audit/index.ts';

export interface VerifyRequest {
  readonly dir: string;
  readonly key: Uint8Array | null;
}

export interface VerifySummary {
  readonly ok: boolean;
  readonly records: number;
  readonly seals: number;
  readonly files: number;
  readonly lastSeq: number | null;
  readonly gaps: number;
  readonly unsealedRecords: number;
  readonly firstBad: { readonly file: string; readonly line: number; readonly seq: number | null; readonly problem: string } | null;
  readonly problems: number;
  readonly ms: number;
  readonly error: string | null;
}

parentPort!.on('message', (request: VerifyRequest) => {
  const started = performance.now();
  try {
    const report = verifySpool(request.dir, { key: request.key });
    const bad = report.firstBad;
    const summary: VerifySummary = {
      ok: report.ok,
      records: report.records,
      seals: report.seals,
      files: report.files.length,
      lastSeq: report.lastSeq,
      gaps: report.gaps.length,
      unsealedRecords: report.unsealedRecords,
      firstBad: bad === null ? null : { file: bad.file, line: bad.line, seq: bad.seq, problem: bad.problem },
      problems: report.problems.length,
      ms: Math.round(performance.now() - started),
      error: null,
    };
    parentPort!.postMessage(summary);
  } catch (error) {
    const summary: VerifySummary = {
      ok: false,
      records: 0,
      seals: 0,
      files: 0,
      lastSeq: null,
      gaps: 0,
      unsealedRecords: 0,
      firstBad: null,
      problems: 0,
      ms: Math.round(performance.now() - started),
      error: (error as Error).message,
    };
    parentPort!.postMessage(summary);
  }
});
