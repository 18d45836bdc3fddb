import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { HttpError, sendJson, shown } from './http.ts';
import type { LintAnswer, LintBodies } from './lint.worker.ts';
import type { DemoContext } from './server.ts';

/** How far up from this file the govmap checkout's package.json can be (demo/ or dist/demo/). */
const MAX_LEVELS = 4;

/**
 * Static analysis in the demo: `GET /lint/report` runs `govmap scan` (recommended rules,
 * type-aware) over the demo's own source and answers its JSON findings (`?format=sarif` for the
 * SARIF log code scanning would receive). The scan runs on the first request, not at start-up
 * (it builds a TypeScript program: seconds of CPU the service should not spend unasked), in a
 * worker thread (demo/lint.worker.ts: on the event loop it stopped every answer for its whole
 * length), and its report is kept: the source does not change under a running service.
 */
export function installStaticAnalysis(context: DemoContext): void {
  const root = checkoutRoot();
  let report: Promise<LintBodies> | null = null;
  let running: Worker | null = null;
  context.onClose(async () => {
    await running?.terminate();
  });
  context.router.route('GET', /^\/lint\/report$/, async (req, res) => {
    // Checked before the scan (seconds on a first call): an unknown format is not answered as JSON.
    const format = new URL(req.url ?? '/', 'http://localhost').searchParams.get('format') ?? 'json';
    if (format !== 'json' && format !== 'sarif') throw new HttpError(400, 'FORMAT_UNKNOWN', `format ${shown(format)} is not one the report comes in: json (the default) or sarif`);
    if (root === null) {
      sendJson(res, 501, { error: { code: 'SOURCE_NOT_AVAILABLE', reason: 'the lint report scans the demo source, which needs a govmap source checkout with its tsconfig.json' } });
      return;
    }
    report ??= scanInWorker(root, (worker) => (running = worker));
    let done;
    try {
      done = await report;
    } catch (error) {
      report = null;
      throw error;
    }
    if (format === 'sarif') {
      // With its length declared: without it the body is chunked, or for an HTTP/1.0 client ends
      // where the connection does, and a report cut by a close (demo.close, SIGINT) read as whole.
      res.writeHead(200, { 'content-type': 'application/sarif+json', 'content-length': Buffer.byteLength(done.sarif) });
      res.end(done.sarif);
      return;
    }
    sendJson(res, 200, done.json);
  });
  context.announce('lint: GET /lint/report (govmap scan of the demo source; ?format=sarif for code scanning)');
}

/**
 * The scan of `root`'s demo source in a worker thread of its own (ended once it answers; it
 * does not keep the process alive). Rejects with the scan's error, or when the worker fails.
 */
function scanInWorker(root: string, started: (worker: Worker | null) => void): Promise<LintBodies> {
  const url = new URL(`./lint.worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
  const worker = new Worker(url, { name: 'govmap-lint-scan', workerData: { root } });
  worker.unref();
  started(worker);
  return new Promise<LintBodies>((resolve, reject) => {
    worker.once('message', (answer: LintAnswer) => {
      if (answer.ok) resolve(answer.bodies);
      else reject(new Error(answer.error));
    });
    worker.once('error', reject);
    // After an answer this changes nothing; without one, the scan is lost.
    worker.once('exit', (code) => {
      started(null);
      reject(new Error(`the lint scan worker exited (code ${code}) without a report`));
    });
  });
}

/** The govmap source checkout holding this file (package.json named govmap, with tsconfig.json), or null. */
function checkoutRoot(): string | null {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < MAX_LEVELS; i++) {
    const pkg = join(directory, 'package.json');
    if (existsSync(pkg) && existsSync(join(directory, 'tsconfig.json')) && existsSync(join(directory, 'demo'))) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'govmap') return directory;
      } catch {
        // unreadable package.json: not our checkout
      }
    }
    directory = dirname(directory);
  }
  return null;
}
