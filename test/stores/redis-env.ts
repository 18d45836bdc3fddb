import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where the real Redis of the tests is (test/infra/redis.sh starts it; test/infra/env.sh prints
 * the variables). Absent: the tests skip with the reason locally, and fail under CI, which
 * always starts the services.
 */
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

export interface Service {
  readonly value: string | undefined;
  /** Reason to skip, or false. Under CI never a reason: the tests run and fail on the absence. */
  readonly skip: string | false;
}

export function service(variable: string): Service {
  const value = process.env[variable];
  if (value !== undefined && value !== '') return { value, skip: false };
  if (ci) return { value: undefined, skip: false };
  return { value: undefined, skip: `${variable} is not set (start Redis: bash test/infra/redis.sh start; eval "$(bash test/infra/env.sh)")` };
}

/** The variable's value, or a failure naming what CI must start. */
export function required(s: Service, variable: string): string {
  if (s.value === undefined) throw new Error(`${variable} is not set but CI is: CI must start Redis first (bash test/infra/redis.sh start)`);
  return s.value;
}

/** A prefix no other test run shares, so tests never see or clobber each other's keys. */
export function uniquePrefix(label: string): string {
  return `govmap-test:${label}:${process.pid}:${Date.now().toString(36)}:`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server of the test's own, on its own port, so that killing it breaks nothing another
 * engineer or test relies on. Uses the same Debian redis-server binary test/infra/redis.sh
 * installs.
 */
export class PrivateRedis {
  readonly port: number;
  readonly url: string;
  readonly #dir: string;
  #process: ChildProcess | null = null;

  constructor(port: number) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.#dir = mkdtempSync(join(tmpdir(), 'govmap-redis-'));
  }

  static available(): boolean {
    return spawnSync('redis-server', ['--version']).status === 0;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'no', '--dir', this.#dir, '--protected-mode', 'no'], { stdio: 'ignore' });
    this.#process = child;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (spawnSync('redis-cli', ['-p', String(this.port), 'PING'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return;
      if (child.exitCode !== null) throw new Error(`redis-server on ${this.port} exited with ${child.exitCode}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server on ${this.port} did not answer PING within 10 s`);
  }

  /** SIGSTOP: the server stops answering but its sockets stay open, as on a hung or partitioned host. */
  pause(): void {
    this.#process?.kill('SIGSTOP');
  }

  resume(): void {
    this.#process?.kill('SIGCONT');
  }

  /** SIGKILL: the server vanishes mid-conversation, as a crashed host would. */
  async kill(): Promise<void> {
    const child = this.#process;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.#process = null;
  }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
