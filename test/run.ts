/**
 * `npm test`: starts the real services the adapter tests need (test/infra/, idempotent: a
 * running service is reused), then runs every test file with Node's test runner.
 *
 * Where the services cannot be started (no root, no apt: a laptop with only Node and npm), the
 * adapter tests skip with their reason and everything else runs; under CI (`CI` set) a service
 * that fails to start fails the run, and so does any adapter test that finds its service absent.
 * GOVMAP_INFRA=0 skips starting services (use what the environment variables point at).
 */
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const infra = (script: string): string => `${root}test/infra/${script}`;
/** Everything the adapter, advisor and browser tests talk to. */
const SERVICES = ['redis', 'etcd', 'kafka', 'prometheus', 'chromium'];
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

function startServices(): void {
  if (process.env.GOVMAP_INFRA === '0') return;
  if (!existsSync(infra('all.sh'))) return;
  const canInstall = process.getuid?.() === 0;
  if (!canInstall && !ci) {
    console.error('[test] not root: not installing services; adapter tests will skip unless GOVMAP_* variables point at running services');
    return;
  }
  console.error('[test] starting real services (test/infra/all.sh start)…');
  const started = spawnSync('bash', [infra('all.sh'), 'start', ...SERVICES], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (started.status !== 0) {
    console.error(`[test] test/infra/all.sh start failed (exit ${started.status})`);
    if (ci) process.exit(1);
  }
}

function serviceEnvironment(): Record<string, string> {
  if (!existsSync(infra('env.sh'))) return {};
  const out = spawnSync('bash', [infra('env.sh')], { encoding: 'utf8' });
  const env: Record<string, string> = {};
  for (const match of out.stdout.matchAll(/([A-Z_][A-Z0-9_]*)=("[^"]*"|'[^']*'|\S+)/g)) {
    if (process.env[match[1]!] === undefined) env[match[1]!] = match[2]!.replace(/^["']|["']$/g, '');
  }
  return env;
}

const files = process.argv.slice(2);
// Node's runner drops a file pattern that matches nothing when another one does: a mistyped
// path would pass as a green run of fewer tests. Options and globs are Node's to judge.
// (An argument after `--option` without `=` may be its value: `--test-name-pattern foo`.)
const missing = files.filter((f, i) => !f.startsWith('-') && !/^-[^=]*$/.test(files[i - 1] ?? '') && !/[*?[\]{}]/.test(f) && !existsSync(resolve(root, f)));
if (missing.length > 0) {
  for (const f of missing) console.error(`[test] ${f}: no such test file (paths are relative to ${root})`);
  process.exit(2);
}
startServices();
const child = spawn(
  process.execPath,
  ['--expose-gc', '--test', '--test-concurrency=1', '--test-timeout=600000', ...(files.length > 0 ? files : ['test/**/*.test.ts'])],
  { cwd: root, stdio: 'inherit', env: { ...process.env, ...serviceEnvironment() } },
);
child.on('close', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
