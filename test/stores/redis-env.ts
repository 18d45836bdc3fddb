import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
 * A private CA (`ca.crt`, one no system trust store holds, as a bank's internal CA), a server
 * certificate it signed (`node.crt`, `node.key`) for 127.0.0.1 and ::1, and a client certificate
 * it signed (`client.crt`, `client.key`) for servers that require one (`--tls-auth-clients yes`),
 * written into `dir`.
 */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]): void => {
    const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`openssl ${args[0]} failed: ${run.stderr}`);
  };
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=govmap-test-ca');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,IP:::1\n');
  openssl('x509', '-req', '-in', 'node.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.crt', '-days', '2', '-extfile', 'san.ext');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=govmap-test-client');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2', '-extfile', 'client.ext');
}

/**
 * The folder a private server (or cluster) of a test keeps its files in, and the TLS material
 * makeCertificates puts there for TLS servers.
 */
abstract class PrivateServerFiles {
  protected readonly dir: string;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** The CA that signed the server's certificate (TLS servers). */
  get caFile(): string {
    return join(this.dir, 'ca.crt');
  }

  /** A client certificate (and its key) the server's CA signed (TLS servers). */
  get certFile(): string {
    return join(this.dir, 'client.crt');
  }

  get keyFile(): string {
    return join(this.dir, 'client.key');
  }
}

/**
 * A redis-server of the test's own, on its own port, so that killing it breaks nothing another
 * engineer or test relies on. Uses the same Debian redis-server binary test/infra/redis.sh
 * installs.
 */
export class PrivateRedis extends PrivateServerFiles {
  readonly port: number;
  readonly url: string;
  #process: ChildProcess | null = null;
  /** TLS only (no plain port), with a CA of its own (`caFile`). */
  readonly #tls: boolean;
  /** TLS clients must present a certificate its CA signed (`--tls-auth-clients yes`): `certFile`, `keyFile`. */
  readonly #clientAuth: boolean;

  constructor(port: number, options: { tls?: boolean; clientAuth?: boolean } = {}) {
    super('govmap-redis-');
    this.port = port;
    this.#tls = options.tls === true || options.clientAuth === true;
    this.#clientAuth = options.clientAuth === true;
    this.url = `${this.#tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`;
  }

  static available(): boolean {
    return spawnSync('redis-server', ['--version']).status === 0;
  }

  /** `extra`: more redis-server arguments (`--requirepass x`). */
  async start(extra: readonly string[] = []): Promise<void> {
    let listen = ['--port', String(this.port)];
    let cli: string[] = [];
    if (this.#tls) {
      makeCertificates(this.dir);
      const files = ['--tls-cert-file', join(this.dir, 'node.crt'), '--tls-key-file', join(this.dir, 'node.key'), '--tls-ca-cert-file', this.caFile];
      listen = ['--port', '0', '--tls-port', String(this.port), '--tls-auth-clients', this.#clientAuth ? 'yes' : 'no', ...files];
      cli = ['--tls', '--cacert', this.caFile, ...(this.#clientAuth ? ['--cert', this.certFile, '--key', this.keyFile] : [])];
    }
    const child = spawn('redis-server', ['--bind', '127.0.0.1', ...listen, '--save', '', '--appendonly', 'no', '--dir', this.dir, '--protected-mode', 'no', ...extra], { stdio: 'ignore' });
    this.#process = child;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      // NOAUTH: up, and asking for the password it was started with (--requirepass).
      if (/^(PONG|NOAUTH)/.test(spawnSync('redis-cli', [...cli, '-p', String(this.port), 'PING'], { encoding: 'utf8' }).stdout.trim())) return;
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
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A free port whose cluster bus port (port + 10000) is free too. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10000 > 65535 || taken.has(port) || taken.has(port + 10000)) continue;
    const bus = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port + 10000, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (bus) {
      taken.add(port);
      taken.add(port + 10000);
      return port;
    }
  }
}

/**
 * A Redis Cluster of the test's own: three masters, the first with one replica, on ports of its
 * own, with a short node timeout so a killed master fails over in a couple of seconds. Never the
 * shared cluster of test/infra/redis.sh.
 */
export class PrivateCluster extends PrivateServerFiles {
  readonly ports: number[] = [];
  readonly #processes = new Map<number, ChildProcess>();
  /** `requirepass` (and `masterauth`) of every node, as a production cluster has; none by default. */
  readonly #password: string | undefined;
  /** TLS only (no plain port), cluster bus included, with a CA of its own (`caFile`). */
  readonly #tls: boolean;
  /** TLS clients must present a certificate the CA signed (`--tls-auth-clients yes`): `certFile`, `keyFile`. */
  readonly #clientAuth: boolean;

  /** Addresses every node listens on; ::1 too lets a test give IPv6 seeds. Default 127.0.0.1. */
  readonly #bind: readonly string[];

  constructor(options: { password?: string; tls?: boolean; clientAuth?: boolean; bind?: readonly string[] } = {}) {
    super('govmap-cluster-');
    this.#password = options.password;
    this.#tls = options.tls === true || options.clientAuth === true;
    this.#clientAuth = options.clientAuth === true;
    this.#bind = options.bind ?? ['127.0.0.1'];
  }

  /** redis-cli arguments reaching this cluster's nodes: password, TLS. */
  #cliFlags(): string[] {
    return [...(this.#password === undefined ? [] : ['--no-auth-warning', '-a', this.#password]), ...(this.#tls ? ['--tls', '--cacert', this.caFile] : []), ...(this.#clientAuth ? ['--cert', this.certFile, '--key', this.keyFile] : [])];
  }

  /** Seeds for connectRedis (the masters that stay up: not the first). */
  get seeds(): string[] {
    return this.ports.slice(1, 3).map((port) => `127.0.0.1:${port}`);
  }

  async start(): Promise<void> {
    const taken = new Set<number>();
    for (let i = 0; i < 4; i++) this.ports.push(await freeClusterPort(taken));
    if (this.#tls) makeCertificates(this.dir);
    for (const port of this.ports) {
      const dir = join(this.dir, String(port));
      mkdirSync(dir);
      const tls = ['--port', '0', '--tls-port', String(port), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--tls-auth-clients', this.#clientAuth ? 'yes' : 'no'];
      const files = ['--tls-cert-file', join(this.dir, 'node.crt'), '--tls-key-file', join(this.dir, 'node.key'), '--tls-ca-cert-file', this.caFile];
      const args = ['--bind', ...this.#bind, ...(this.#tls ? [...tls, ...files] : ['--port', String(port)]), '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000'];
      if (this.#password !== undefined) args.push('--requirepass', this.#password, '--masterauth', this.#password);
      this.#processes.set(port, spawn('redis-server', [...args, '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'], { stdio: 'ignore' }));
    }
    const auth = this.#cliFlags();
    const cli = (port: number, ...args: string[]): string => redisCli(port, auth, ...args);
    for (const port of this.ports) await until(() => cli(port, 'PING') === 'PONG', `redis-server on ${port} answering`);
    const [first, ...rest] = this.ports.map((port) => `127.0.0.1:${port}`);
    const created = spawnSync('redis-cli', [...auth, '--cluster', 'create', first!, rest[0]!, rest[1]!, '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    const masterId = cli(this.ports[0]!, 'CLUSTER', 'MYID');
    const added = spawnSync('redis-cli', [...auth, '--cluster', 'add-node', rest[2]!, first!, '--cluster-slave', '--cluster-master-id', masterId], { encoding: 'utf8', timeout: 30_000 });
    if (added.status !== 0) throw new Error(`redis-cli --cluster add-node failed: ${added.stdout}${added.stderr}`);
    await until(() => this.ports.every((port) => /cluster_state:ok/.test(cli(port, 'CLUSTER', 'INFO'))), 'cluster_state:ok on every node');
    await until(() => /master_link_status:up/.test(cli(this.ports[3]!, 'INFO', 'replication')), 'the replica in sync');
  }

  /** SIGKILL of the first master: its replica takes over its slots after the node timeout. */
  async killFirstMaster(): Promise<void> {
    const child = this.#processes.get(this.ports[0]!);
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    for (const child of this.#processes.values()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function redisCli(port: number, flags: readonly string[], ...args: string[]): string {
  return spawnSync('redis-cli', [...flags, '-p', String(port), ...args], { encoding: 'utf8', timeout: 5000 }).stdout?.trim() ?? '';
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
