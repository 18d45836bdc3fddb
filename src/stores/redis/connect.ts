import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ConfigurationError } from '../../map/errors.ts';
import { NULL_OPTION_RULE, findNullOption, findUnknownOption, optionKeys } from '../../map/known-options.ts';
import { RedisUnavailableError } from './errors.ts';
import { LinkFailure, MAX_TIMER_MS } from './link.ts';
import { answersPlainRedis } from './plain-probe.ts';
import type { LinkListener, RedisLink } from './link.ts';
import type { LuaScript } from './lua.ts';
import type * as Redis from 'redis';

/**
 * `connectRedis`: a RedisLink over node-redis (the `redis` package, loaded here lazily so that a
 * service that never configures Redis never loads it), for one server (`url`) or a cluster
 * (`clusterNodes`).
 *
 * Every connection speaks RESP3 with client tracking ON (node-redis `emitInvalidate`), so the
 * server pushes an invalidation on the same connection after any write of a key it served us.
 * Commands are never queued while disconnected (`disableOfflineQueue`): a write either reaches
 * Redis now or fails now with a typed error, never applies minutes later behind the caller's back.
 */
export interface RedisConnectionOptions {
  /** One server: `redis://[user:pass@]host:port[/db]` (`rediss://` for TLS). */
  readonly url?: string;
  /**
   * A cluster: seed nodes as `host:port` or `redis://host:port` (an IPv6 address in brackets:
   * `[fd00::5]:7001`); the rest are discovered.
   */
  readonly clusterNodes?: readonly string[];
  /**
   * TLS settings of a `rediss://` connection (every node of a cluster, discovered ones included).
   * `ca` (PEM text) or `caFile` (a PEM file): the CA(s) that signed the servers' certificates, a
   * bank's internal CA, trusted by this connection only, in place of Node's default CAs.
   * `certFile` + `keyFile` (or `cert` + `key`): the client certificate a server with
   * `tls-auth-clients yes` (mutual TLS) requires.
   */
  readonly tls?: RedisTlsOptions;
  /** Give up the first connection after this many ms. Default 5,000. */
  readonly connectTimeoutMs?: number;
  /**
   * A command without a reply after this many ms fails (TIMEOUT; a write's outcome is then
   * unknown). Default 1,000.
   */
  readonly commandTimeoutMs?: number;
  /**
   * A PING on every connection this often (ms). A PING that fails marks the link down, which
   * bounds how long a silently dead connection (no RST, no invalidations) can go unnoticed to
   * heartbeatMs + commandTimeoutMs. Default 1,000; 0 disables (then only socket errors count).
   */
  readonly heartbeatMs?: number;
  /** Longest pause (ms) between reconnection attempts; they back off from 50 ms. Default 2,000. */
  readonly reconnectMaxDelayMs?: number;
  /** CLIENT SETNAME of each connection (shows in CLIENT LIST). Default `govmap`. */
  readonly clientName?: string;
}

export interface RedisTlsOptions {
  /** PEM certificate(s) of the CA(s) to trust. Give this or `caFile`. */
  readonly ca?: string | Buffer;
  /** Path of a PEM file of the CA certificate(s) to trust, read once at connect. */
  readonly caFile?: string;
  /** PEM client certificate (then any intermediates) to present. Give this or `certFile`, with its key. */
  readonly cert?: string | Buffer;
  /** Path of a PEM file of the client certificate (then any intermediates), read once at connect. */
  readonly certFile?: string;
  /** PEM unencrypted private key of the client certificate. Give this or `keyFile`. */
  readonly key?: string | Buffer;
  /** Path of a PEM file of the client certificate's unencrypted private key, read once at connect. */
  readonly keyFile?: string;
}

const TLS_OPTIONS = optionKeys<RedisTlsOptions>({ ca: true, caFile: true, cert: true, certFile: true, key: true, keyFile: true });

/** What `tls` adds to every node-redis socket: PEM text, checked. */
interface TlsSettings {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** Every key of RedisConnectionOptions (the compiler checks the two stay the same): any other is refused. */
const CONNECTION_OPTIONS = optionKeys<RedisConnectionOptions>({
  url: true, clusterNodes: true, tls: true, connectTimeoutMs: true, commandTimeoutMs: true, heartbeatMs: true, reconnectMaxDelayMs: true, clientName: true,
});

// The slice of node-redis this file uses, typed structurally: node-redis' own generics
// (modules, scripts, RESP version, type mapping) add nothing here.
interface NodeClient {
  get(key: string): Promise<string | null>;
  evalSha(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  scan(cursor: string, options: { MATCH: string; COUNT: number }): Promise<{ cursor: string; keys: string[] }>;
  ping(): Promise<unknown>;
  info(section: string): Promise<unknown>;
  on(event: string, listener: (...args: never[]) => void): unknown;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
  readonly isReady: boolean;
}
interface ShardNode {
  readonly host: string;
  readonly port: number;
  readonly client?: NodeClient;
}
interface NodeCluster extends Omit<NodeClient, 'scan' | 'ping' | 'isReady'> {
  readonly masters: readonly ShardNode[];
  readonly replicas: readonly ShardNode[];
  nodeClient(node: ShardNode): Promise<NodeClient>;
}
type RedisModule = typeof Redis;

const DEFAULTS = Object.freeze({ connectTimeoutMs: 5000, commandTimeoutMs: 1000, heartbeatMs: 1000, reconnectMaxDelayMs: 2000 });
const RECONNECT_BASE_MS = 50;
// Replies meaning "not now" from a server that did not run the command.
const NOT_READY = /^(CLUSTERDOWN|LOADING|MASTERDOWN|TRYAGAIN|READONLY|BUSY)\b/;
/**
 * node-redis' handling of maintenance pushes (Redis Enterprise / Cloud: MOVING, MIGRATING...),
 * "auto" by default on RESP3, is switched off on every connection. Acting on MOVING it swaps a
 * connection's socket for a new one with no disconnect or ready event: the server then owes the
 * old socket the invalidations of every key read on it, the new socket tracks nothing, and near
 * caches would keep values other machines changed, for good. During maintenance it also fails
 * commands already sent with a TimeoutError (a relaxed socket timeout), which `classify` reads as
 * never sent: a caller retrying that `add` could apply it twice. Without it a moved endpoint
 * closes the socket: 'reconnecting' marks the link down (the near cache is distrusted, writes in
 * flight are `unknown`) and 'ready' brings it back.
 */
const MAINT_NOTIFICATIONS = 'disabled';

export async function connectRedis(options: RedisConnectionOptions): Promise<RedisLink> {
  const settings = checkOptions(options);
  let redis: RedisModule;
  try {
    redis = await import('redis');
  } catch (cause) {
    throw new ConfigurationError('redis', `the "redis" package (node-redis) could not be loaded: ${(cause as Error).message}; install it with npm install redis`);
  }
  const link = settings.clusterNodes !== undefined ? new ClusterLink(redis, settings) : new StandaloneLink(redis, settings);
  try {
    await link.open();
  } catch (error) {
    await link.close().catch(() => undefined);
    if (error instanceof ConfigurationError) throw error;
    if (untrustedCertificate(error)) {
      throw new ConfigurationError('redis.tls', `the server's TLS certificate is not trusted (${String((error as { code?: unknown }).code)}: ${error.message.slice(0, 200)}): give the CA that signed it as redis.tls.caFile or redis.tls.ca${settings.tls?.ca === undefined ? '' : ' (the CA given did not sign it)'}, and connect by a name or address the certificate lists`);
    }
    const refusal = clientCertificateRefusal(error);
    if (refusal !== null) throw new ConfigurationError('redis.tls', refusal);
    const failure = link.classify(error);
    if (failure.kind === 'REFUSED') {
      // The server answered the handshake with an error (WRONGPASS, NOAUTH, NOPERM, an invalid
      // database index): a setting is wrong, and retrying will not cure it. "Redis unavailable
      // (OFFLINE)" sent callers (and the demo's 503) to wait for a server that was up all along.
      // The reply names the rule; the URL is not echoed (it may hold the password).
      const option = settings.url !== undefined ? 'redis.url' : 'redis.clusterNodes';
      throw new ConfigurationError(option, `Redis refused the connection: ${failure.message.split('\n')[0]!.slice(0, 200)} (check the user, password, ACL and database of the URL)`);
    }
    if (settings.url?.startsWith('rediss://') === true && (await answersPlainRedis(settings.url))) {
      throw new ConfigurationError('redis.url', `asks for TLS (rediss://), but the server answers plain Redis and never completed a TLS handshake: use redis://, or enable TLS on the server (tls-port)`);
    }
    throw new RedisUnavailableError(null, 'connectRedis', undefined, failure.kind === 'WRONGTYPE' ? 'OFFLINE' : failure.kind, 'none', error);
  }
  return link;
}

interface Settings {
  readonly url: string | undefined;
  readonly clusterNodes: readonly string[] | undefined;
  /** The CA(s) to trust instead of Node's defaults, and the client certificate and key (`tls`). */
  readonly tls: TlsSettings | undefined;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly heartbeatMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly clientName: string;
}

function checkOptions(options: RedisConnectionOptions): Settings {
  if (options === null || typeof options !== 'object') throw new ConfigurationError('redis', 'connectRedis needs { url } or { clusterNodes }');
  const unknown = findUnknownOption(options, CONNECTION_OPTIONS, 'the Redis connection (RedisConnectionOptions)');
  if (unknown !== undefined) throw new ConfigurationError(`redis.${unknown.option}`, unknown.rule);
  const nullKey = findNullOption(options);
  if (nullKey !== undefined) throw new ConfigurationError(`redis.${nullKey}`, NULL_OPTION_RULE, null);
  const { url, clusterNodes } = options;
  if ((url === undefined) === (clusterNodes === undefined)) throw new ConfigurationError('redis', 'give exactly one of url (one server) and clusterNodes (a cluster)');
  if (url !== undefined) {
    if (typeof url !== 'string' || !/^rediss?:\/\/[^\s]+$/.test(url)) throw new ConfigurationError('redis.url', 'must be redis://host:port or rediss://host:port', typeof url === 'string' ? redactUrl(url) : url);
    // node-redis parses the URL only inside connect(), where a bad port or database became
    // "Redis unavailable (CONNECTION_LOST)": an outage to page someone for, not a typo to fix.
    const problem = urlProblem(url);
    if (problem !== null) throw new ConfigurationError('redis.url', `${problem} (expected redis://[user:pass@]host:port[/db])`, redactUrl(url));
  }
  if (clusterNodes !== undefined) {
    if (!Array.isArray(clusterNodes) || clusterNodes.length === 0) throw new ConfigurationError('redis.clusterNodes', 'must be a non-empty list of host:port');
    for (const node of clusterNodes) {
      // An IPv6 address only in brackets: in "::1:7001" no rule tells the port from the address.
      if (typeof node !== 'string' || !/^(rediss?:\/\/([^\s/@]*@)?)?([^\s/:@[\]]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/.test(node)) {
        throw new ConfigurationError('redis.clusterNodes', 'each node must be host:port (or redis://[user:pass@]host:port), an IPv6 address in brackets with its port ([::1]:7001)', typeof node === 'string' ? redactUrl(node) : node);
      }
      if (node.includes('[') && !isIpv6Literal(node)) throw new ConfigurationError('redis.clusterNodes', 'holds no IPv6 address in its brackets (expected e.g. [::1]:7001)', redactUrl(node));
      const port = Number(node.slice(node.lastIndexOf(':') + 1));
      if (port < 1 || port > 65535) throw new ConfigurationError('redis.clusterNodes', 'each node\'s port must be 1-65535 (expected e.g. 10.0.0.5:7001 or [::1]:7001)', redactUrl(node));
    }
    // node-redis takes TLS for every node from one setting: a list mixing both kinds would dial
    // some seeds in the wrong protocol (or fail with a bare TypeError), whichever kind was meant.
    const seeds: readonly string[] = clusterNodes;
    const first = seeds[0]!;
    const tls = (node: string): boolean => node.startsWith('rediss://');
    const odd = seeds.find((node) => tls(node) !== tls(first));
    if (odd !== undefined) {
      const kind = (node: string): string => (tls(node) ? 'TLS (rediss://)' : 'plain');
      throw new ConfigurationError('redis.clusterNodes', `mixes TLS (rediss://) and plain seeds: this one is ${kind(odd)}, the first (${redactUrl(first)}) is ${kind(first)}; give every seed as rediss://host:port for a TLS cluster, or none`, redactUrl(odd));
    }
  }
  const ms = (name: keyof typeof DEFAULTS, min: number): number => {
    const value = options[name] ?? DEFAULTS[name];
    // Past MAX_TIMER_MS Node runs a timer after 1 ms (TimeoutOverflowWarning): a "3e9 ms" command
    // timeout would fail every command at once, a heartbeat would PING a thousand times a second.
    if (!(Number.isFinite(value) && value >= min && value <= MAX_TIMER_MS)) throw new ConfigurationError(`redis.${name}`, `must be a number of milliseconds from ${min} to ${MAX_TIMER_MS}`, value);
    return value;
  };
  const clientName = options.clientName ?? 'govmap';
  if (typeof clientName !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(clientName)) throw new ConfigurationError('redis.clientName', 'must be 1-64 characters of letters, digits and _.:-', clientName);
  return {
    url,
    clusterNodes,
    tls: options.tls === undefined ? undefined : checkTls(options.tls, url !== undefined ? [url] : clusterNodes!),
    connectTimeoutMs: ms('connectTimeoutMs', 1),
    commandTimeoutMs: ms('commandTimeoutMs', 1),
    heartbeatMs: ms('heartbeatMs', 0),
    reconnectMaxDelayMs: ms('reconnectMaxDelayMs', RECONNECT_BASE_MS),
    clientName,
  };
}

/** Whether the bracketed host of a seed is an IPv6 address WHATWG URL (and so node-redis) accepts. */
function isIpv6Literal(node: string): boolean {
  try {
    return new URL(node.includes('://') ? node : `redis://${node}`).hostname.startsWith('[');
  } catch {
    return false;
  }
}

/**
 * The PEM of `tls`, checked before connecting: the CA(s) readable certificates, the client
 * certificate and its key given together, parseable, and a pair (a mismatch fails only at the
 * handshake, as an opaque OpenSSL error on every connection attempt).
 */
function checkTls(tls: RedisTlsOptions, targets: readonly string[]): TlsSettings {
  if (tls === null || typeof tls !== 'object') throw new ConfigurationError('redis.tls', 'must be { caFile } and/or { certFile, keyFile } (or the PEM forms ca, cert, key)', tls);
  const unknown = findUnknownOption(tls, TLS_OPTIONS, 'redis.tls (RedisTlsOptions)');
  if (unknown !== undefined) throw new ConfigurationError(`redis.tls.${unknown.option}`, unknown.rule);
  const nullKey = findNullOption(tls);
  if (nullKey !== undefined) throw new ConfigurationError(`redis.tls.${nullKey}`, NULL_OPTION_RULE, null);
  // A CA given for a redis:// connection would be ignored: the data would cross the network in
  // clear while the configuration reads as TLS.
  if (!targets.every((target) => target.startsWith('rediss://'))) {
    throw new ConfigurationError('redis.tls', 'applies to TLS connections only: give the url as rediss://host:port, or every cluster node as rediss://host:port');
  }
  const hasCa = tls.ca !== undefined || tls.caFile !== undefined;
  const hasCert = tls.cert !== undefined || tls.certFile !== undefined;
  const hasKey = tls.key !== undefined || tls.keyFile !== undefined;
  if (!hasCa && !hasCert && !hasKey) throw new ConfigurationError('redis.tls', 'give ca or caFile (the CA that signed the servers\' certificates) and/or certFile and keyFile (a client certificate)');
  if (hasCert !== hasKey) throw new ConfigurationError('redis.tls', `a client certificate and its private key go together: ${hasCert ? 'certFile (or cert) was given without keyFile (or key)' : 'keyFile (or key) was given without certFile (or cert)'}`);
  const result: { ca?: string; cert?: string; key?: string } = {};
  if (hasCa) result.ca = certificates(readPem(tls, 'ca', 'caFile'), 'give the CA certificate, not a key or a DER file').join('\n');
  if (hasCert) {
    const certPem = readPem(tls, 'cert', 'certFile');
    const keyPem = readPem(tls, 'key', 'keyFile');
    const chain = certificates(certPem, 'give the client certificate, not its key or a DER file');
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem.pem);
    } catch (cause) {
      const encrypted = (cause as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE';
      // The key's own text is never echoed: only the file's path.
      throw new ConfigurationError(keyPem.option, encrypted ? 'is an encrypted private key: give it unencrypted (no passphrase option; protect the file by its permissions)' : `is not a private key in PEM (${(cause as Error).message})`, keyPem.file);
    }
    let matches: boolean;
    try {
      matches = new X509Certificate(chain[0]!).checkPrivateKey(key);
    } catch {
      matches = false;
    }
    if (!matches) throw new ConfigurationError(keyPem.option, `does not match the certificate of ${certPem.option} (the first certificate there must be the one this key signs for)`, keyPem.file);
    result.cert = chain.join('\n');
    result.key = keyPem.pem;
  }
  return result;
}

/** The PEM text of one `tls` item given as text (`ca`) or as a file path (`caFile`): at most one. */
function readPem(tls: RedisTlsOptions, text: 'ca' | 'cert' | 'key', path: 'caFile' | 'certFile' | 'keyFile'): { pem: string; option: string; file: string | undefined } {
  const file = tls[path];
  const value = tls[text];
  if (file !== undefined && value !== undefined) throw new ConfigurationError('redis.tls', `give one of ${text} (PEM text) and ${path} (a PEM file path), not both`);
  if (file !== undefined) {
    const option = `redis.tls.${path}`;
    if (typeof file !== 'string' || file === '') throw new ConfigurationError(option, 'must be the path of a PEM file', file);
    try {
      return { pem: readFileSync(file, 'utf8'), option, file };
    } catch (cause) {
      throw new ConfigurationError(option, `cannot be read (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`, file);
    }
  }
  const option = `redis.tls.${text}`;
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) throw new ConfigurationError(option, 'must be PEM text (a string or Buffer)', typeof value);
  return { pem: value.toString('utf8'), option, file: undefined };
}

/** The PEM certificate blocks of `source`, each a valid X.509 certificate. */
function certificates(source: { pem: string; option: string; file: string | undefined }, hint: string): string[] {
  const { pem, option, file } = source;
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (blocks === null) throw new ConfigurationError(option, `holds no PEM certificate (-----BEGIN CERTIFICATE-----): ${hint}`, file);
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (cause) {
      throw new ConfigurationError(option, `certificate ${index + 1} of ${blocks.length} is not a valid X.509 certificate (${(cause as Error).message})`, file);
    }
  }
  return blocks;
}

/**
 * Whether a connection failed because the server's certificate was not trusted (unknown CA,
 * expired, wrong host name): a setting to fix (`redis.tls`), which retrying will not cure.
 */
function untrustedCertificate(error: unknown): error is Error {
  const code = (error as { code?: unknown } | null)?.code;
  // ERR_SSL_* are alerts the server sent (a client certificate it requires...), not our verdict on its certificate.
  return error instanceof Error && typeof code === 'string' && !code.startsWith('ERR_SSL_') && /CERT|SELF_SIGNED|UNABLE_TO_(GET_ISSUER|VERIFY|DECRYPT)|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME_INVALID/.test(code);
}

/**
 * Why the server refused us at the TLS layer for want of an acceptable client certificate
 * (mutual TLS, `tls-auth-clients yes`), or null: a setting to fix (`redis.tls`), which retrying
 * will not cure. These are alerts the server sent, so they are about our certificate.
 */
function clientCertificateRefusal(error: unknown): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (!(error instanceof Error) || typeof code !== 'string') return null;
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') return 'the server requires a client certificate (tls-auth-clients yes) and none was given: give it as redis.tls.certFile and redis.tls.keyFile (or cert and key)';
  if (/^ERR_SSL_(SSLV3|TLSV1)_ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)$/.test(code)) {
    return `the server refused the client certificate (${code}): give one signed by a CA the server trusts (its tls-ca-cert-file), valid now, as redis.tls.certFile and redis.tls.keyFile`;
  }
  return null;
}

/** Why node-redis would fail to parse `url` (port, database, malformed), or null. */
function urlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a well-formed URL';
  }
  if (parsed.hostname === '') return 'has no host';
  // WHATWG URL refuses ports past 65535 itself; port 0 it accepts, and no server listens there.
  if (parsed.port === '0') return 'has port 0; the port must be 1-65535';
  if (parsed.pathname.length > 1 && !/^\/[0-9]+$/.test(parsed.pathname)) return 'has a path that is not a database number (/0, /1...)';
  // node-redis ignores them: "?db=2" (another client's syntax) would silently use database 0.
  if (parsed.search !== '' || parsed.hash !== '' || url.includes('?') || url.includes('#')) return 'has a query (?...) or fragment (#...), which is not read: give the database as the path (/2)';
  return null;
}

/** The user and password of the first seed URL that gives them (node-redis' own URL decoding). */
function clusterCredentials(nodes: readonly string[]): { username?: string; password?: string } {
  for (const node of nodes) {
    if (!node.includes('@')) continue;
    const { username, password } = new URL(node);
    return { ...(username === '' ? {} : { username: decodeURIComponent(username) }), ...(password === '' ? {} : { password: decodeURIComponent(password) }) };
  }
  return {};
}

/** `url` without its password or query (`?password=`), for an error message: the URL is often copied from a secret. */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/\s]*:)[^/\s]*@/, '$1***@').replace(/[?#].*$/, '?***');
}

/**
 * What both links share: listeners, health and the heartbeat, error classification, scripts.
 *
 * Health: the link is down while any connection is down (socket closed or reconnecting) or the
 * last heartbeat failed. `down` is reported with the last moment the link was known healthy
 * (`#lastOkMs`: the last successful heartbeat or ready), because invalidations may have been lost
 * from then on, not merely from when the loss was noticed.
 */
abstract class LinkBase implements RedisLink {
  abstract readonly kind: string;
  protected readonly redis: RedisModule;
  protected readonly settings: Settings;
  readonly #listeners = new Set<LinkListener>();
  readonly #downNodes = new Set<string>();
  #heartbeatFailed = false;
  #wasHealthy = false;
  #opened = false;
  #closed = false;
  #lastOkMs = Date.now();
  #heartbeat: NodeJS.Timeout | null = null;
  #pinging = false;

  constructor(redis: RedisModule, settings: Settings) {
    this.redis = redis;
    this.settings = settings;
  }

  get healthy(): boolean {
    return this.#opened && !this.#closed && this.#downNodes.size === 0 && !this.#heartbeatFailed;
  }

  listen(listener: LinkListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async open(): Promise<void> {
    const startedAt = Date.now();
    await this.connect(startedAt);
    this.#opened = true;
    this.#lastOkMs = Date.now();
    this.#downNodes.clear();
    this.#wasHealthy = true;
    if (this.settings.heartbeatMs > 0) this.#heartbeat = setInterval(() => void this.#beat(), this.settings.heartbeatMs).unref();
  }

  /**
   * Closes every connection. Gracefully (replies still owed are awaited) only while the link is
   * healthy, and then for at most `commandTimeoutMs`: a server that stopped answering (frozen,
   * partitioned, or still owing the reply of a command `timed` gave up on) would otherwise keep
   * close() — and the sockets — open forever. Past that, the sockets are destroyed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const graceful = this.healthy;
    this.#closed = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    await this.disconnect(graceful);
  }

  /** `close()` of a node-redis client or cluster, given up for `destroy()` after `commandTimeoutMs`. */
  protected async closeWithin(client: Pick<NodeClient, 'close' | 'destroy'>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), this.settings.commandTimeoutMs);
    });
    try {
      const closed = client.close().then(
        () => true,
        () => false,
      );
      if (!(await Promise.race([closed, late]))) client.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  async runScript(script: LuaScript, key: string, args: readonly string[]): Promise<unknown> {
    this.assertUsable();
    const call = { keys: [key], arguments: [...args] };
    try {
      return await this.timed(this.scriptTarget().evalSha(script.sha1, call));
    } catch (error) {
      // A server that restarted, or a cluster node we have not used yet, lacks the script: EVAL
      // sends the source and caches it there for the next EVALSHA.
      if (!(error instanceof this.redis.ErrorReply && error.message.startsWith('NOSCRIPT'))) throw this.classify(error);
    }
    try {
      return await this.timed(this.scriptTarget().eval(script.source, call));
    } catch (error) {
      throw this.classify(error);
    }
  }

  /**
   * Bounds the wait for a reply. node-redis' own command timeout covers only a command still
   * queued (it is dropped unsent: `not-applied`); once written to the socket it would wait for
   * the reply forever, so this timer covers the rest, and a write it gives up on may have been
   * applied (`unknown`). The late reply, if any, is ignored.
   */
  protected timed<T>(work: Promise<T>): Promise<T> {
    const ms = this.settings.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LinkFailure('TIMEOUT', 'unknown', `no reply from Redis within ${ms} ms`)), ms);
      work.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /**
   * One server known down (socket lost, or the last heartbeat unanswered): fail now, with
   * nothing sent, rather than send into a connection that would leave the outcome unknown.
   * A cluster tries anyway: other masters may serve the key, and node-redis fails a command for
   * a disconnected node at once by itself.
   */
  protected assertUsable(): void {
    if (this.failFast && !this.healthy) throw new LinkFailure('OFFLINE', 'not-applied', `Redis is unreachable (${this.#closed ? 'link closed' : 'connection down'})`);
  }

  protected abstract readonly failFast: boolean;

  abstract get(key: string): Promise<string | null>;
  abstract scan(match: string, batchSize: number): AsyncIterable<readonly string[]>;
  protected abstract scriptTarget(): Pick<NodeClient, 'evalSha' | 'eval'>;
  protected abstract connect(startedAt: number): Promise<void>;
  protected abstract disconnect(graceful: boolean): Promise<void>;
  protected abstract pingAll(): Promise<void>;
  /** The `host:port` of every node of the current topology (what `pingAll` pings); null for one server. */
  protected abstract currentNodes(): ReadonlySet<string> | null;

  /** Classifies any error of a Redis call (a LinkFailure passes through). */
  classify(error: unknown): LinkFailure {
    if (error instanceof LinkFailure) return error;
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof this.redis.ErrorReply) {
      if (NOT_READY.test(message)) return new LinkFailure('SERVER_NOT_READY', 'not-applied', message, error);
      if (message.startsWith('WRONGTYPE')) return new LinkFailure('WRONGTYPE', 'not-applied', message, error);
      return new LinkFailure('REFUSED', 'not-applied', message, error);
    }
    if (error instanceof this.redis.ClientOfflineError || error instanceof this.redis.ClientClosedError) return new LinkFailure('OFFLINE', 'not-applied', message, error);
    // node-redis times out only commands it has not written yet (see `timed`; its maintenance
    // handling, which fails sent ones with a TimeoutError too, is off: MAINT_NOTIFICATIONS).
    if (error instanceof this.redis.TimeoutError) return new LinkFailure('TIMEOUT', 'not-applied', message, error);
    return new LinkFailure('CONNECTION_LOST', 'unknown', message, error);
  }

  /** Reconnect pauses: 50 ms doubling to reconnectMaxDelayMs; the first connection gives up at connectTimeoutMs. */
  protected reconnectStrategy(startedAt: number): (retries: number, cause?: unknown) => number | false {
    return (retries, cause) => {
      if (this.#closed) return false;
      // The first connection's handshake refused by the server (WRONGPASS, NOAUTH...): a wrong
      // setting, not an outage; give up now (connectRedis names it) instead of retrying it for
      // connectTimeoutMs. "Not now" replies (LOADING...) are still retried.
      if (!this.#opened && cause instanceof this.redis.ErrorReply && !NOT_READY.test(cause.message)) return false;
      // Likewise a certificate not trusted: every retry meets the same certificate.
      if (!this.#opened && (untrustedCertificate(cause) || clientCertificateRefusal(cause) !== null)) return false;
      const delay = Math.min(this.settings.reconnectMaxDelayMs, RECONNECT_BASE_MS * 2 ** Math.min(retries, 16));
      if (this.#opened) return delay;
      // The first connection: never sleep past connectTimeoutMs (a pause of reconnectMaxDelayMs
      // begun just before it would overrun it by that much), and give up once it has passed.
      const remaining = this.settings.connectTimeoutMs - (Date.now() - startedAt);
      if (remaining <= 0) return false;
      return Math.max(1, Math.min(delay, remaining));
    };
  }

  protected nodeDown(node: string): void {
    if (!this.#opened || this.#closed) return;
    this.#downNodes.add(node);
    this.#transition();
  }

  protected nodeUp(node: string): void {
    if (!this.#opened || this.#closed) return;
    this.#downNodes.delete(node);
    // A fresh connection has just completed its handshake (tracking on): the server answers.
    this.#heartbeatFailed = false;
    this.#lastOkMs = Date.now();
    this.#transition();
  }

  protected invalidated(key: string | null): void {
    for (const listener of this.#listeners) tell(() => listener.invalidated(key));
  }

  #transition(): void {
    const healthy = this.healthy;
    if (healthy === this.#wasHealthy) return;
    this.#wasHealthy = healthy;
    if (healthy) for (const listener of this.#listeners) tell(() => listener.up());
    else for (const listener of this.#listeners) tell(() => listener.down(this.#lastOkMs));
  }

  async #beat(): Promise<void> {
    if (this.#pinging || this.#closed) return;
    this.#pinging = true;
    try {
      await this.pingAll();
      this.#lastOkMs = Date.now();
      this.#heartbeatFailed = false;
      // Every node of the current topology answered. A node that left it (a failed master whose
      // replica took over its slots, a node removed by a reshard) will never report ready again:
      // forget it, or the link would stay down, and the near cache distrusted, for good.
      const current = this.currentNodes();
      if (current !== null) for (const node of this.#downNodes) if (!current.has(node)) this.#downNodes.delete(node);
    } catch {
      this.#heartbeatFailed = true;
    } finally {
      this.#pinging = false;
    }
    this.#transition();
  }
}

class StandaloneLink extends LinkBase {
  readonly kind = 'redis';
  protected readonly failFast = true;
  #client: NodeClient | null = null;

  protected async connect(startedAt: number): Promise<void> {
    const s = this.settings;
    const client = this.redis.createClient({
      url: s.url,
      RESP: 3,
      emitInvalidate: true,
      disableOfflineQueue: true,
      maintNotifications: MAINT_NOTIFICATIONS,
      name: s.clientName,
      commandOptions: { timeout: s.commandTimeoutMs },
      socket: { connectTimeout: s.connectTimeoutMs, reconnectStrategy: this.reconnectStrategy(startedAt), ...(s.tls === undefined ? {} : { tls: true as const, ...s.tls }) },
    }) as unknown as NodeClient;
    this.#client = client;
    client.on('invalidate', (key: Buffer | null) => this.invalidated(key === null ? null : key.toString()));
    // An 'error' listener is mandatory (an unheard 'error' event crashes the process); socket
    // errors are followed by 'reconnecting', which is what marks the link down.
    client.on('error', () => this.nodeDown('server'));
    client.on('reconnecting', () => this.nodeDown('server'));
    client.on('end', () => this.nodeDown('server'));
    client.on('ready', () => this.nodeUp('server'));
    await client.connect();
    // A node of a Redis Cluster answers as one server for the keys of its own slots only: every
    // other key fails with MOVED, which read as "refused by Redis; nothing was written" on about
    // two thirds of the keys of a map that otherwise seemed to work. Refuse the setting now.
    if (/^cluster_enabled:1\b/m.test(String(await this.timed(client.info('cluster'))))) {
      throw new ConfigurationError('redis.url', 'points at a Redis Cluster node (cluster_enabled:1): give the cluster as clusterNodes; as one server, keys of the other nodes\' slots fail with MOVED');
    }
  }

  protected async disconnect(graceful: boolean): Promise<void> {
    const client = this.#client;
    if (client === null) return;
    if (graceful && client.isReady) await this.closeWithin(client);
    else client.destroy();
  }

  protected scriptTarget(): NodeClient {
    return this.#client!;
  }

  async get(key: string): Promise<string | null> {
    this.assertUsable();
    try {
      return await this.timed(this.#client!.get(key));
    } catch (error) {
      throw this.classify(error);
    }
  }

  async *scan(match: string, batchSize: number): AsyncIterable<readonly string[]> {
    this.assertUsable();
    yield* scanNode(this.#client!, match, batchSize, (work) => this.timed(work), (error) => this.classify(error));
  }

  protected async pingAll(): Promise<void> {
    await this.timed(this.#client!.ping());
  }

  protected currentNodes(): null {
    return null;
  }
}

/**
 * A cluster: node-redis routes each command to the master owning its key's slot; every node
 * connection is made with tracking on (cluster `defaults`). node-redis does not forward node
 * invalidations to the cluster object, so this link subscribes to each node client as it becomes
 * ready. A GET answered by a node client not yet subscribed could leave an entry no invalidation
 * would ever remove, so every GET first checks that all node clients are subscribed, and if one
 * was just added, the near caches are flushed (invalidated(null)) before the GET is sent.
 */
class ClusterLink extends LinkBase {
  readonly kind = 'redis-cluster';
  protected readonly failFast = false;
  #cluster: NodeCluster | null = null;
  readonly #subscribed = new WeakSet<object>();

  protected async connect(startedAt: number): Promise<void> {
    const s = this.settings;
    // The CA and client certificate too, on root and discovered nodes alike: a root node alone
    // having them would discover the topology, then fail every command on the other nodes.
    const socket = { connectTimeout: s.connectTimeoutMs, reconnectStrategy: this.reconnectStrategy(startedAt), ...s.tls };
    // As with credentials, only root nodes take TLS from their rediss:// URL: every discovered
    // node was dialled in plain text and never answered (each command a TIMEOUT).
    const tls = s.clusterNodes!.some((node) => node.startsWith('rediss://'));
    const cluster = this.redis.createCluster({
      rootNodes: s.clusterNodes!.map((node) => ({ url: node.includes('://') ? node : `redis://${node}`, socket })),
      RESP: 3,
      commandOptions: { timeout: s.commandTimeoutMs },
      // node-redis authenticates only the root nodes with their URLs' credentials; every node it
      // discovers is connected with `defaults`, so without them a cluster with requirepass (any
      // production one) answered NOAUTH on every master.
      defaults: { emitInvalidate: true, disableOfflineQueue: true, maintNotifications: MAINT_NOTIFICATIONS, name: s.clientName, socket: tls ? { ...socket, tls: true as const } : socket, ...clusterCredentials(s.clusterNodes!) },
    }) as unknown as NodeCluster;
    this.#cluster = cluster;
    const id = (info: { host: string; port: number }): string => `${info.host}:${info.port}`;
    // A root node's refusal of the credentials reaches us only as an 'error' event; connect()
    // then fails with "all root nodes unavailable", which would read as an outage.
    let refusal: Error | undefined;
    let connecting = true;
    cluster.on('error', (error: unknown) => {
      if (connecting && ((error instanceof this.redis.ErrorReply && /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(error.message)) || untrustedCertificate(error) || clientCertificateRefusal(error) !== null)) refusal = error as Error;
    });
    cluster.on('node-error', (_error: Error, info: { host: string; port: number }) => this.nodeDown(id(info)));
    cluster.on('node-reconnecting', (info: { host: string; port: number }) => this.nodeDown(id(info)));
    cluster.on('node-disconnect', (info: { host: string; port: number }) => this.nodeDown(id(info)));
    cluster.on('node-ready', (info: { host: string; port: number }) => {
      this.#subscribeNodes();
      this.nodeUp(id(info));
    });
    try {
      await cluster.connect();
    } catch (error) {
      if (refusal !== undefined) throw refusal;
      await this.#refuseStandalone(s.clusterNodes!);
      throw error;
    } finally {
      connecting = false;
    }
    this.#subscribeNodes();
  }

  /**
   * The cluster client could not discover a cluster at any root node ("All the root nodes are
   * unavailable", read as an outage). If the first node answers as a standalone server, the
   * setting is wrong: say so, as a node of a cluster given as `url` is refused.
   */
  async #refuseStandalone(nodes: readonly string[]): Promise<void> {
    const node = nodes[0]!;
    const probe = this.redis.createClient({
      url: node.includes('://') ? node : `redis://${node}`,
      socket: { connectTimeout: this.settings.connectTimeoutMs, reconnectStrategy: false, ...this.settings.tls },
    }) as unknown as NodeClient;
    probe.on('error', () => undefined);
    let info: unknown = '';
    try {
      await this.timed(probe.connect());
      info = await this.timed(probe.info('cluster'));
    } catch {
      return; // Not reachable as a plain server either: the original error stands.
    } finally {
      await probe.close().catch(() => undefined);
    }
    if (/^cluster_enabled:0\b/m.test(String(info))) {
      throw new ConfigurationError('redis.clusterNodes', `${node} is a standalone Redis (cluster_enabled:0), not a node of a Redis Cluster: give it as url`);
    }
  }

  protected async disconnect(graceful: boolean): Promise<void> {
    const cluster = this.#cluster;
    if (cluster === null) return;
    if (graceful) await this.closeWithin(cluster);
    else cluster.destroy();
  }

  protected scriptTarget(): NodeCluster {
    return this.#cluster!;
  }

  async get(key: string): Promise<string | null> {
    if (this.#subscribeNodes() > 0) this.invalidated(null);
    try {
      return await this.timed(this.#cluster!.get(key));
    } catch (error) {
      throw this.classify(error);
    }
  }

  async *scan(match: string, batchSize: number): AsyncIterable<readonly string[]> {
    const cluster = this.#cluster!;
    for (const master of [...cluster.masters]) {
      let client: NodeClient;
      try {
        client = await this.timed(cluster.nodeClient(master));
      } catch (error) {
        throw this.classify(error);
      }
      yield* scanNode(client, match, batchSize, (work) => this.timed(work), (error) => this.classify(error));
    }
  }

  protected async pingAll(): Promise<void> {
    const cluster = this.#cluster!;
    await this.timed(Promise.all(cluster.masters.map(async (master) => (await cluster.nodeClient(master)).ping())));
  }

  protected currentNodes(): ReadonlySet<string> {
    const cluster = this.#cluster!;
    return new Set([...cluster.masters, ...cluster.replicas].map((node) => `${node.host}:${node.port}`));
  }

  /** Subscribes to invalidations of node clients not yet subscribed; returns how many. */
  #subscribeNodes(): number {
    const cluster = this.#cluster;
    if (cluster === null) return 0;
    let added = 0;
    for (const node of [...cluster.masters, ...cluster.replicas]) {
      const client = node.client;
      if (client === undefined || this.#subscribed.has(client)) continue;
      this.#subscribed.add(client);
      client.on('invalidate', (key: Buffer | null) => this.invalidated(key === null ? null : key.toString()));
      added++;
    }
    return added;
  }
}

/**
 * Calls one listener, containing what it throws. Listeners run inside node-redis' socket data
 * handler (invalidations are decoded there): a throw (a map's `onNearInvalidated` hook) made
 * node-redis reset its decoder and emit 'error' on a socket that stays open, so no 'ready' ever
 * followed and the link stayed down for good; and the listeners after it (other maps sharing the
 * link) never heard the invalidation. One listener's bug must cost neither.
 */
function tell(call: () => void): void {
  try {
    call();
  } catch {
    // Contained on purpose (see above); the map itself has already applied the invalidation.
  }
}

async function* scanNode(
  client: NodeClient,
  match: string,
  batchSize: number,
  timed: <T>(work: Promise<T>) => Promise<T>,
  classify: (error: unknown) => LinkFailure,
): AsyncIterable<readonly string[]> {
  let cursor = '0';
  do {
    let reply;
    try {
      reply = await timed(client.scan(cursor, { MATCH: match, COUNT: batchSize }));
    } catch (error) {
      throw classify(error);
    }
    cursor = String(reply.cursor);
    if (reply.keys.length > 0) yield reply.keys;
  } while (cursor !== '0');
}
