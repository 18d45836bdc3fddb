import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { GovMapError, MapMetrics } from '../../src/index.ts';
import { RedisUnavailableError, RemoteGovernedMap, connectRedis, int64Codec, openRedisGovernedMap } from '../../src/stores/redis/index.ts';
import type { RedisLink } from '../../src/stores/redis/index.ts';
import type { MapObserver } from '../../src/map/index.ts';
import { PrivateRedis, freePort } from './redis-env.ts';

/**
 * Redis going away under a running map: a redis-server of the test's own on its own port (never
 * the shared instance), killed (SIGKILL) or frozen (SIGSTOP) mid-test, then brought back.
 */
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const available = PrivateRedis.available();
const skip = available || ci ? false : 'redis-server is not installed (bash test/infra/redis.sh install)';

const FAST = { heartbeatMs: 100, commandTimeoutMs: 300, reconnectMaxDelayMs: 100, connectTimeoutMs: 2000 };

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function isUnavailable(outcome: string, reason?: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof RedisUnavailableError, `expected RedisUnavailableError, got ${String(error)}`);
    assert.ok(error instanceof GovMapError);
    assert.equal(error.code, 'GOVMAP_REDIS_UNAVAILABLE');
    assert.equal(error.outcome, outcome);
    if (reason) assert.match(error.reason, reason);
    return true;
  };
}

describe('Redis unreachable mid-test', { skip }, () => {
  let server: PrivateRedis;
  const links: RedisLink[] = [];

  before(async () => {
    assert.ok(available, 'redis-server must be installed under CI (bash test/infra/redis.sh install)');
    server = new PrivateRedis(await freePort());
    await server.start();
  });

  after(async () => {
    for (const link of links) await link.close().catch(() => undefined);
    await server?.stop();
  });

  async function map(staleReadMs: number): Promise<RemoteGovernedMap<bigint>> {
    const link = await connectRedis({ url: server.url, ...FAST });
    links.push(link);
    return new RemoteGovernedMap<bigint>({
      name: 'balances',
      link,
      keyPrefix: 'outage:',
      codec: int64Codec,
      validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'),
      bounds: { min: 0n },
      nearCache: { staleReadMs },
      sizeRefreshMs: 0,
    });
  }

  test('killed: typed errors, stale reads only within the bound, then recovery with the near cache dropped', async () => {
    const strict = await map(0);
    const lenient = await map(1500);
    await strict.store('acct-1', 100n);
    assert.equal(await strict.load('acct-1'), 100n);
    assert.equal(await lenient.load('acct-1'), 100n);
    assert.equal(lenient.loadCached('acct-1'), 100n);

    await server.kill();
    const killedAt = Date.now();
    await until(() => !strict.stats().near.trusted && !lenient.stats().near.trusted, 'noticing the loss');

    // staleReadMs 0: the near cache is gone at once; reads and writes fail, typed.
    assert.equal(strict.loadCached('acct-1'), undefined);
    await assert.rejects(strict.load('acct-1'), isUnavailable('none', /OFFLINE|CONNECTION_LOST/));
    await assert.rejects(strict.add('acct-1', -1n), isUnavailable('not-applied', /OFFLINE|CONNECTION_LOST/));
    await assert.rejects(strict.store('acct-2', 1n), isUnavailable('not-applied', /OFFLINE|CONNECTION_LOST/));
    await assert.rejects(strict.entries(), RedisUnavailableError);
    assert.ok(strict.counters.unavailable >= 4);
    assert.equal(strict.counters.storesOk, 1, 'nothing was acknowledged while Redis was down');
    // What an on-call engineer sees: the outage counted per map, on the service's /metrics.
    const metrics = new MapMetrics().track(strict);
    const scraped = await metrics.render();
    const unavailable = Number(/^syncmap_store_unavailable_total\{map="balances"\} (\d+)$/m.exec(scraped)?.[1]);
    assert.ok(unavailable >= 4, `syncmap_store_unavailable_total counts the failed operations:\n${scraped}`);
    assert.match(scraped, /^syncmap_remote_loads_total\{map="balances"\} [1-9]\d*$/m);
    assert.match(scraped, /^syncmap_cas_conflicts_total\{map="balances"\} 0$/m);

    // staleReadMs 1500: the last known value is served while within the bound; writes still fail.
    assert.equal(await lenient.load('acct-1'), 100n);
    assert.ok(lenient.stats().near.staleServes >= 1);
    await assert.rejects(lenient.add('acct-1', 5n), isUnavailable('not-applied'));
    await until(() => Date.now() - killedAt > 1700, 'the staleness bound passing', 5000);
    assert.equal(lenient.loadCached('acct-1'), undefined, 'past staleReadMs the entry is no longer served');
    await assert.rejects(lenient.load('acct-1'), isUnavailable('none'));

    // Back (empty: no persistence). A near cache that survived would still answer 100.
    await server.start();
    await until(() => strict.stats().near.trusted && lenient.stats().near.trusted, 'reconnecting');
    assert.equal(await strict.load('acct-1'), undefined, 'the restarted server is empty and the map says so');
    assert.equal(await lenient.load('acct-1'), undefined);
    await strict.store('acct-1', 5n);
    // lenient cached the absence; strict's write reaches it as an invalidation (one delay later).
    await until(() => lenient.stats().near.invalidations > 0, 'the invalidation of the cached absence', 5000);
    assert.equal(await lenient.load('acct-1'), 5n);
    // Tracking is on again on the new connections: invalidations flow.
    await strict.add('acct-1', 1n);
    await until(() => lenient.loadCached('acct-1') === undefined, 'the invalidation after recovery', 5000);
    assert.equal(await lenient.load('acct-1'), 6n);
    await strict.dispose();
    await lenient.dispose();
  });

  test('frozen with writes in flight: nothing acknowledged is lost, nothing reported not-applied was applied', async (t) => {
    const writer = await map(0);
    await writer.store('acct-7', 1_000_000n);
    const outcomes = { acked: 0, unknown: 0, notApplied: 0, timedOut: 0 };
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        try {
          await writer.add('acct-7', 1n);
          outcomes.acked++;
        } catch (error) {
          assert.ok(error instanceof RedisUnavailableError, String(error));
          if (error.reason === 'TIMEOUT') outcomes.timedOut++;
          if (error.outcome === 'unknown') outcomes.unknown++;
          else outcomes.notApplied++;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    await new Promise((resolve) => setTimeout(resolve, 200));
    server.pause();
    await until(() => !writer.stats().near.trusted, 'the heartbeat noticing the frozen server', 5000);
    await new Promise((resolve) => setTimeout(resolve, 400));
    server.resume();
    await until(() => writer.stats().near.trusted, 'the heartbeat seeing the server again', 5000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    running = false;
    await Promise.all(workers);

    const raw = createClient({ url: server.url });
    await raw.connect();
    const applied = BigInt((await raw.get('outage:acct-7'))!) - 1_000_000n;
    await raw.close();
    t.diagnostic(`acknowledged ${outcomes.acked}, unknown ${outcomes.unknown}, not applied ${outcomes.notApplied} (timed out ${outcomes.timedOut}); Redis applied ${applied}`);
    // A write frozen in its GET is not-applied (only the GET was sent), one frozen in its script
    // unknown: which phase the freeze hits varies, that some timed out does not.
    assert.ok(outcomes.timedOut > 0, 'some writes timed out while the server was frozen');
    assert.ok(applied >= BigInt(outcomes.acked), 'every acknowledged add is in Redis');
    assert.ok(applied <= BigInt(outcomes.acked + outcomes.unknown), 'nothing reported not-applied was applied');
    await writer.dispose();
  });

  test('staleReadMs serves reads only: a write the near cache alone would settle fails while Redis is down', async () => {
    const lenient = await map(5000);
    await lenient.store('acct-3', 100n);
    assert.equal(await lenient.load('acct-3'), 100n);
    assert.equal(await lenient.load('acct-ghost'), undefined); // the absence is cached too

    await server.kill();
    try {
      await until(() => !lenient.stats().near.trusted, 'noticing the loss');
      assert.equal(await lenient.load('acct-3'), 100n, 'reads are served within staleReadMs');
      // Each of these used to settle on the near cache alone and report success for a write
      // Redis never saw: a delete "of nothing", an add "to a missing account", a no-op update.
      await assert.rejects(lenient.delete('acct-ghost'), isUnavailable('not-applied'));
      await assert.rejects(lenient.add('acct-ghost', 5n), isUnavailable('not-applied'));
      await assert.rejects(lenient.update('acct-3', (v) => v!), isUnavailable('not-applied'));
      await assert.rejects(lenient.add('acct-3', 0n), isUnavailable('not-applied'));
      assert.equal(lenient.counters.storesOk, 1, 'nothing was acknowledged while Redis was down');
    } finally {
      await server.start();
    }
    await until(() => lenient.stats().near.trusted, 'reconnecting');
    await lenient.dispose();
  });

  test('a delete that fails while Redis is down is counted and audited as a failed delete (syncmap_delete_total{outcome="rejected"}), never as a failed store, as GovernedMap counts it', async () => {
    const link = await connectRedis({ url: server.url, ...FAST });
    links.push(link);
    const events: string[] = [];
    const observer: MapObserver<string> = { onOperation: (_map, op, key, outcome, reason) => void (outcome === 'error' && events.push(`${op} ${key ?? '-'} ${outcome} ${reason ?? '-'}`)) };
    const balances = new RemoteGovernedMap<bigint>({
      name: 'balances',
      link,
      keyPrefix: 'outage-delete:',
      codec: int64Codec,
      validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'),
      bounds: { min: 0n },
      nearCache: { staleReadMs: 60_000 },
      sizeRefreshMs: 0,
      observers: [observer],
    });
    const metrics = new MapMetrics().track(balances);
    await balances.store('acct-1', 100n);
    await balances.store('acct-2', 200n);
    assert.equal(await balances.load('acct-1'), 100n); // cached: its delete goes straight to the script
    await server.kill();
    try {
      await until(() => !balances.stats().near.trusted, 'noticing the loss');
      // One fails in its script (the near cache held the value), one in the GET before it.
      await assert.rejects(balances.delete('acct-1'), isUnavailable('not-applied'));
      await assert.rejects(balances.delete('acct-2'), isUnavailable('not-applied'));
    } finally {
      await server.start();
    }
    await until(() => balances.stats().near.trusted, 'reconnecting');
    assert.deepEqual(events, ['DELETE acct-1 error REDIS_UNAVAILABLE', 'DELETE acct-2 error REDIS_UNAVAILABLE']);
    const stats = balances.stats();
    assert.deepEqual(stats.stores, { ok: 2, rejected: 0, error: 0 }, 'a failed delete is not a failed store');
    assert.deepEqual(stats.deletes, { ok: 0, miss: 0, rejected: 2 });
    const scraped = await metrics.render();
    assert.match(scraped, /^syncmap_store_total\{map="balances",outcome="error"\} 0$/m);
    assert.match(scraped, /^syncmap_delete_total\{map="balances",outcome="rejected"\} 2$/m);
    assert.match(scraped, /^syncmap_store_unavailable_total\{map="balances"\} 2$/m);
    await balances.dispose();
  });

  test('a write that fails in its first read (a GET) says not-applied: nothing but the GET was sent', async () => {
    // Heartbeat off: the link still looks healthy, so the GET is sent into the frozen server and
    // times out. Only the GET timed out; no script was sent, so the write cannot have been applied,
    // and "unknown" would send a transfer to reconciliation instead of reversing its debit.
    const link = await connectRedis({ url: server.url, ...FAST, heartbeatMs: 0 });
    links.push(link);
    const balances = new RemoteGovernedMap<bigint>({
      name: 'balances',
      link,
      keyPrefix: 'outage-read:',
      codec: int64Codec,
      validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW'),
      bounds: { min: 0n },
      sizeRefreshMs: 0,
    });
    await balances.store('acct-9', 100n); // a write drops the key from the near cache: the next write GETs first
    server.pause();
    try {
      await assert.rejects(balances.add('acct-9', 5n), isUnavailable('not-applied', /TIMEOUT/));
      await assert.rejects(balances.update('acct-9', (v) => v! + 1n), isUnavailable('not-applied', /TIMEOUT/));
      await assert.rejects(balances.delete('acct-9'), isUnavailable('not-applied', /TIMEOUT/));
    } finally {
      server.resume();
    }
    assert.equal(await balances.load('acct-9'), 100n);
    await balances.dispose();
  });

  test('closed while the server is frozen with a reply owed: close() ends within commandTimeoutMs and the socket is gone', async () => {
    // Heartbeat off: the link still looks healthy, so close() starts gracefully and would wait
    // forever for the reply of the GET that timed out.
    const link = await connectRedis({ url: server.url, ...FAST, heartbeatMs: 0 });
    const sockets = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length;
    const before = sockets();
    server.pause();
    try {
      await assert.rejects(link.get('outage:frozen'), (error: unknown) => error instanceof Error && (error as { kind?: string }).kind === 'TIMEOUT');
      // The server stays frozen until the finally below: a close() that waits for the owed reply
      // never returns, so any bound tells it apart. 10 s, not a multiple of commandTimeoutMs
      // (300 ms) near it: a loaded CI box runs the give-up timer late, and a 2 s bound failed there.
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)));
      const closed = await Promise.race([link.close().then(() => true), gaveUp]);
      clearTimeout(timer);
      assert.ok(closed, 'close() returned within 10 s (it hung while the server owed a reply)');
      await until(() => sockets() < before, 'the socket closing');
    } finally {
      server.resume();
    }
  });
});

test('a first connection to a port nobody listens on gives up at connectTimeoutMs, not a reconnect pause later', { skip }, async () => {
  const port = await freePort();
  // Pauses double from 50 ms: 50 + 100 + 200 + 400 + 800 = 1,550 ms have passed when the 1,600 ms
  // pause starts, which overran this deadline to ~3,150 ms before. A deadline just past 1,550 ms
  // makes that overrun large (~1,350 ms), so the bound below can allow a loaded machine a second
  // of lateness (timers, connect attempts) and still tell the two apart.
  const connectTimeoutMs = 1_800;
  const started = performance.now();
  await assert.rejects(connectRedis({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs, reconnectMaxDelayMs: 2_000 }), isUnavailable('none'));
  const took = performance.now() - started;
  assert.ok(took >= connectTimeoutMs - 50 && took < connectTimeoutMs + 1_000, `gave up after ${Math.round(took)} ms`);
});

test('openRedisGovernedMap names a bad map setting at once, before connecting: not "Redis unavailable" after the connect timeout while Redis is down', { skip }, async () => {
  const url = `redis://127.0.0.1:${await freePort()}`; // nobody listens: Redis is down
  const cases: Array<[string, Record<string, unknown>]> = [
    ['validate', { name: 'balances', codec: int64Codec }],
    ['bounds', { name: 'balances', codec: int64Codec, validate: () => true, bounds: { min: 10n, max: 0n } }],
    ['keyPrefix', { name: 'bal:eu', codec: int64Codec, validate: () => true }],
  ];
  for (const [option, mapOptions] of cases) {
    const started = performance.now();
    await assert.rejects(openRedisGovernedMap({ ...mapOptions, redis: { url, connectTimeoutMs: 3_000 } } as never), (error: unknown) => {
      assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `${option}: expected ConfigurationError, got ${String(error)}`);
      assert.match(error.message, new RegExp(`"${option}"`));
      return true;
    });
    assert.ok(performance.now() - started < 1_000, `${option}: refused without waiting for Redis`);
  }
});

test('rediss:// to a server that speaks plain Redis is a ConfigurationError saying so, not "Redis unavailable"', { skip }, async () => {
  for (const password of [null, 'right-secret']) {
    const server = new PrivateRedis(await freePort());
    await server.start(password === null ? [] : ['--requirepass', password]);
    try {
      await assert.rejects(connectRedis({ url: `rediss://127.0.0.1:${server.port}`, connectTimeoutMs: 1_000 }), (error: unknown) => {
        assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
        assert.match(error.message, /"redis\.url"/);
        assert.match(error.message, /plain Redis.*use redis:\/\//);
        return true;
      });
    } finally {
      await server.stop();
    }
  }
  // Nobody listening is still an outage: the probe finds no plain server either.
  await assert.rejects(connectRedis({ url: `rediss://127.0.0.1:${await freePort()}`, connectTimeoutMs: 500 }), isUnavailable('none'));
});

test('a wrong password is a ConfigurationError naming redis.url, at once: not "Redis unavailable (OFFLINE)" after connectTimeoutMs', { skip }, async () => {
  const server = new PrivateRedis(await freePort());
  await server.start(['--requirepass', 'right-secret']);
  try {
    for (const url of [`redis://default:wrong-secret@127.0.0.1:${server.port}`, server.url]) {
      const started = performance.now();
      await assert.rejects(connectRedis({ url, connectTimeoutMs: 3_000 }), (error: unknown) => {
        assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
        assert.match(error.message, /"redis\.url"/);
        assert.match(error.message, /WRONGPASS|NOAUTH/);
        assert.doesNotMatch(error.message, /secret/, 'the password is not echoed');
        return true;
      });
      const took = performance.now() - started;
      assert.ok(took < 1_500, `refused after ${Math.round(took)} ms: a refused handshake is not retried until connectTimeoutMs`);
    }
    const link = await connectRedis({ url: `redis://default:right-secret@127.0.0.1:${server.port}` });
    assert.equal(link.healthy, true);
    await link.close();
  } finally {
    await server.stop();
  }
});

test('rediss:// to a server whose certificate a private CA signed: with redis.tls.caFile (or ca) it connects and serves; without, a ConfigurationError naming redis.tls at once, not "Redis unavailable"', { skip }, async () => {
  const server = new PrivateRedis(await freePort(), { tls: true });
  await server.start();
  try {
    const started = performance.now();
    await assert.rejects(connectRedis({ url: server.url, connectTimeoutMs: 3_000 }), (error: unknown) => {
      assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
      assert.match(error.message, /"redis\.tls"/);
      assert.match(error.message, /certificate/);
      return true;
    });
    const took = performance.now() - started;
    assert.ok(took < 1_500, `refused after ${Math.round(took)} ms: an untrusted certificate is not retried until connectTimeoutMs`);

    for (const tls of [{ caFile: server.caFile }, { ca: readFileSync(server.caFile) }, { ca: readFileSync(server.caFile, 'utf8') }]) {
      const map = await openRedisGovernedMap<bigint>({ name: 'balances', redis: { url: server.url, tls }, keyPrefix: 'tls:', codec: int64Codec, validate: () => true, sizeRefreshMs: 0 });
      await map.store('acct-1', 250n);
      assert.equal(await map.load('acct-1'), 250n);
      await map.dispose();
    }
    // Only the store trusts the CA: the process-wide trust store is unchanged.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: server.port }, () => resolve(socket.end()));
        socket.on('error', reject);
      }),
      /self[- ]signed|unable to verify|certificate/i,
    );
  } finally {
    await server.stop();
  }
});

test('a TLS standalone Redis given as clusterNodes with its private CA (redis.tls) is named as standalone, not "Redis unavailable"', { skip }, async () => {
  const server = new PrivateRedis(await freePort(), { tls: true });
  await server.start();
  try {
    await assert.rejects(connectRedis({ clusterNodes: [server.url], tls: { caFile: server.caFile }, connectTimeoutMs: 2_000 }), (error: unknown) => {
      assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
      assert.match(error.message, /"redis\.clusterNodes"/);
      assert.match(error.message, /standalone Redis/);
      return true;
    });
  } finally {
    await server.stop();
  }
});

test('a TLS Redis requiring client certificates (tls-auth-clients yes): with redis.tls certFile/keyFile (or cert/key PEM) it connects and serves; without one, a ConfigurationError naming redis.tls saying the server requires a client certificate, at once; a key that does not match the certificate, or a certificate its CA did not sign, refused naming the option', { skip }, async () => {
  const server = new PrivateRedis(await freePort(), { clientAuth: true });
  await server.start();
  const dir = mkdtempSync(join(tmpdir(), 'govmap-client-cert-'));
  try {
    const configurationError = (option: string, rule: RegExp) => (error: unknown) => {
      assert.ok(error instanceof GovMapError && error.code === 'GOVMAP_INVALID_CONFIGURATION', `expected ConfigurationError, got ${String(error)}`);
      assert.match(error.message, new RegExp(`"${option.replace(/\./g, '\\.')}"`));
      assert.match(error.message, rule);
      return true;
    };
    let started = performance.now();
    await assert.rejects(connectRedis({ url: server.url, tls: { caFile: server.caFile }, connectTimeoutMs: 3_000 }), configurationError('redis.tls', /requires a client certificate/));
    assert.ok(performance.now() - started < 1_500, `refused after ${Math.round(performance.now() - started)} ms: a missing client certificate is not retried until connectTimeoutMs`);

    // The CA's own key: a valid key, but not the certificate's.
    started = performance.now();
    await assert.rejects(
      connectRedis({ url: server.url, tls: { caFile: server.caFile, certFile: server.certFile, keyFile: join(dirname(server.caFile), 'ca.key') }, connectTimeoutMs: 3_000 }),
      configurationError('redis.tls.keyFile', /does not match/),
    );
    assert.ok(performance.now() - started < 1_000, 'refused before connecting');

    // A certificate of another CA, which the server does not trust.
    const run = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-days', '1', '-subj', '/CN=not-the-banks-ca'], { cwd: dir, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    started = performance.now();
    await assert.rejects(
      connectRedis({ url: server.url, tls: { caFile: server.caFile, certFile: join(dir, 'other.crt'), keyFile: join(dir, 'other.key') }, connectTimeoutMs: 3_000 }),
      configurationError('redis.tls', /refused the client certificate/),
    );
    assert.ok(performance.now() - started < 1_500, 'a client certificate the server refuses is not retried until connectTimeoutMs');

    const pem = { ca: readFileSync(server.caFile), cert: readFileSync(server.certFile, 'utf8'), key: readFileSync(server.keyFile) };
    for (const tls of [{ caFile: server.caFile, certFile: server.certFile, keyFile: server.keyFile }, pem]) {
      const map = await openRedisGovernedMap<bigint>({ name: 'balances', redis: { url: server.url, tls }, keyPrefix: 'mtls:', codec: int64Codec, validate: () => true, sizeRefreshMs: 0 });
      await map.store('acct-1', 250n);
      assert.equal(await map.load('acct-1'), 250n);
      await map.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await server.stop();
  }
});
