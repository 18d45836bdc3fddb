import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OptionalPart } from '../../demo/parts.ts';
import type { RuntimeSample } from '../../demo/runtime-probe.ts';

/**
 * The reference service in a process of its own (`govmap demo` on a free loopback port, or
 * `govmap demo --bare`), as the load and cost suites drive it.
 */
/**
 * Services still running. If the bench itself ends early (Ctrl-C, its output piped into `head`,
 * an exception), they are killed on the way out: a benchmark must never leave two busy demo
 * services behind on a shared machine.
 */
const running = new Set<ServiceProcess>();
let exitHooked = false;
function killOnExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const service of running) service.kill();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const service of running) service.kill();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

export class ServiceProcess {
  readonly child: ChildProcess;
  readonly url: Promise<string>;
  readonly workDir: string;

  /**
   * `without`: parts of governance the governed service leaves out (`govmap demo --without`,
   * demo/parts.ts), for `govmap bench cost`.
   */
  constructor(mode: 'governed' | 'bare', accounts: number, without: readonly OptionalPart[] = []) {
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const cli = fileURLToPath(new URL(`../../src/cli/main.${ext}`, import.meta.url));
    // Its own working directory: the governed demo writes its audit spool under ./.govmap.
    this.workDir = mkdtempSync(join(tmpdir(), `govmap-load-${mode}-`));
    // --no-traffic: the demo's background traffic would add to the load being measured.
    // --gateway-latency 0: the governed demo settles each transfer through a simulated gateway
    // that answers after 5 ms by default; the bare baseline has no settlement step, so that
    // simulated downstream time (transfers are 1 in 63 requests: more than the 1% a p99 looks
    // at) would be measured as if governance cost it. The breaker still runs on every transfer.
    const args = [cli, 'demo', '--port', '0', '--accounts', String(accounts), '--no-traffic', ...(mode === 'bare' ? ['--bare'] : ['--gateway-latency', '0']), ...(without.length > 0 ? ['--without', without.join(',')] : [])];
    this.child = spawn(process.execPath, args, { cwd: this.workDir, stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit();
    running.add(this);
    this.child.once('exit', () => running.delete(this));
    let output = '';
    this.url = new Promise((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error(`the ${mode} service did not start in 30 s:\n${output}`)), 30_000);
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        const match = / on (http:\/\/[0-9.]+:[0-9]+)/.exec(output);
        if (match !== null) {
          clearTimeout(timer);
          resolveUrl(match[1]!);
        }
      };
      this.child.stdout!.on('data', onData);
      this.child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      this.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the ${mode} service exited (${code}) before listening:\n${output}`));
      });
    });
  }

  /** Synchronous last resort (process exit): SIGKILL and remove the working directory. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    rmSync(this.workDir, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    running.delete(this);
    // A child ended by a signal (OOM-killed, crashed) has a signalCode and no exitCode: waiting
    // for its 'exit' again would never end, and the bench would stop at an unsettled await.
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.workDir, { recursive: true, force: true });
  }
}


export async function runtimeSample(url: string): Promise<RuntimeSample | null> {
  try {
    const response = await fetch(`${url}/internal/runtime`, { signal: AbortSignal.timeout(5000) });
    return response.ok ? ((await response.json()) as RuntimeSample) : null;
  } catch {
    return null;
  }
}

