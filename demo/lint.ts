import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ScanReport } from '../src/lint/index.ts';
import { HttpError, sendJson, shown } from './http.ts';
import type { DemoContext } from './server.ts';

/** How far up from this file the govmap checkout's package.json can be (demo/ or dist/demo/). */
const MAX_LEVELS = 4;

/**
 * Static analysis in the demo: `GET /lint/report` runs `govmap scan` (recommended rules,
 * type-aware) over the demo's own source and answers its JSON findings (`?format=sarif` for the
 * SARIF log code scanning would receive). The scan runs on the first request, not at start-up
 * (it builds a TypeScript program: seconds of CPU the service should not spend unasked), and
 * its report is kept: the source does not change under a running service.
 */
export function installStaticAnalysis(context: DemoContext): void {
  const root = checkoutRoot();
  // Type-only import above: the lint engine itself loads on the first request.
  let report: Promise<ScanReport> | null = null;
  context.router.route('GET', /^\/lint\/report$/, async (req, res) => {
    // Checked before the scan (seconds on a first call): an unknown format is not answered as JSON.
    const format = new URL(req.url ?? '/', 'http://localhost').searchParams.get('format') ?? 'json';
    if (format !== 'json' && format !== 'sarif') throw new HttpError(400, 'FORMAT_UNKNOWN', `format ${shown(format)} is not one the report comes in: json (the default) or sarif`);
    if (root === null) {
      sendJson(res, 501, { error: { code: 'SOURCE_NOT_AVAILABLE', reason: 'the lint report scans the demo source, which needs a govmap source checkout with its tsconfig.json' } });
      return;
    }
    const lint = await import('../src/lint/index.ts');
    report ??= lint.scan({ cwd: root, paths: ['demo'], project: 'tsconfig.json' });
    let done;
    try {
      done = await report;
    } catch (error) {
      report = null;
      throw error;
    }
    if (format === 'sarif') {
      res.writeHead(200, { 'content-type': 'application/sarif+json' });
      res.end(lint.formatSarif(done));
      return;
    }
    sendJson(res, 200, {
      filesScanned: done.filesScanned,
      failing: lint.failingFindings(done).length,
      rules: done.rules.map((r) => ({ id: r.id, level: r.level })),
      findings: JSON.parse(lint.formatJson(done)) as unknown,
    });
  });
  context.announce('lint: GET /lint/report (govmap scan of the demo source; ?format=sarif for code scanning)');
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
