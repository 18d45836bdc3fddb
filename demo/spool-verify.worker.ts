/**
 * Verifies an audit spool (a directory, or one segment file) off the main thread, for the
 * dashboard's audit panel and the demo's retention: `verifySpool` reads and hashes synchronously
 * (a 16 MiB segment: a large fraction of a second; a whole spool: seconds), which must not stall
 * the service's event loop. One request at a time: `{dir, key}` in, a compact summary out.
 * Driven by SpoolVerifier (demo/spool-verifier.ts).
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { verifySpool } from '../src/audit/index.ts';

// Background work: at the lowest priority (nice 19) this thread takes CPU only when the
// request-serving threads leave some. On Linux the nice value is per thread and pid 0 means the
// calling thread, so the service keeps its own priority. Verifying a 16 MiB segment is ~170 ms
// of CPU; at normal priority, under load, each one showed as a bump in the requests' p99.
try {
  setPriority(0, 19);
} catch {
  // Not permitted or not supported here: verify at normal priority.
}

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
