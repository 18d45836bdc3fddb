import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { EtcdStateStore, FileStateStore, MemoryStateStore, StateArgumentError, StateKeyError, StateLeaseLostError, StateStoreClosedError, StateStoreUnavailableError, openStateStore } from '../../src/state/index.ts';
import type { StateEntry, StateEvent, StateStore } from '../../src/state/index.ts';
import { ConfigurationError } from '../../src/map/index.ts';
import { TcpProxy, etcdEndpoints } from './tcp-proxy.ts';
import { PrivateEtcd, etcdBinary, freePort } from './private-etcd.ts';

/**
 * One contract, three stores: every StateStore must behave the same to the breaker and the
 * switches. The etcd run talks to the real etcd of test/infra/etcd.sh.
 */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Records what a watch delivers. */
function recorder(): { resets: StateEntry[][]; events: StateEvent[]; handlers: Parameters<StateStore['watch']>[1] } {
  const resets: StateEntry[][] = [];
  const events: StateEvent[] = [];
  return { resets, events, handlers: { onReset: (entries) => resets.push([...entries]), onEvent: (event) => events.push(event) } };
}

/** Collects the GOVMAP_STATE_WATCH_HANDLER_FAILED warnings the process raises until `stop()`. */
function watchHandlerWarnings(): { warnings: Error[]; stop: () => void } {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    if ((warning as Error & { code?: string }).code === 'GOVMAP_STATE_WATCH_HANDLER_FAILED') warnings.push(warning);
  };
  process.on('warning', onWarning);
  return { warnings, stop: () => process.off('warning', onWarning) };
}

function contract(name: string, open: () => Promise<StateStore>, options: { skip?: string } = {}): void {
  describe(`${name} state store`, { skip: options.skip }, () => {
    const prefix = `/govmap-test/${name}-${randomBytes(4).toString('hex')}/`;
    let n = 0;
    const key = (): string => `${prefix}k${n++}`;

    test('compare-and-set: absent -> created; stale revision refused with the current entry; new revision is larger', async () => {
      const store = await open();
      const k = key();
      const created = await store.compareAndSet(k, '{"v":1}', null);
      assert.ok(created.ok);
      const again = await store.compareAndSet(k, '{"v":2}', null);
      assert.ok(!again.ok);
      assert.deepEqual(again.current, { key: k, value: '{"v":1}', revision: created.revision });
      const next = await store.compareAndSet(k, '{"v":2}', created.revision);
      assert.ok(next.ok && next.revision > created.revision);
      const stale = await store.compareAndSet(k, '{"v":3}', created.revision);
      assert.ok(!stale.ok);
      assert.equal((await store.get(k))?.value, '{"v":2}');
      await store.close();
    });

    test('delete honours the expected revision; list returns a prefix in key order', async () => {
      const store = await open();
      const sub = `${prefix}list-${n++}/`;
      for (const k of ['b', 'a', 'c']) await store.compareAndSet(`${sub}${k}`, `"${k}"`, null);
      assert.deepEqual((await store.list(sub)).map((e) => e.value), ['"a"', '"b"', '"c"']);
      const b = (await store.get(`${sub}b`))!;
      assert.equal(await store.delete(`${sub}b`, b.revision + 1n), false);
      assert.equal(await store.delete(`${sub}b`, b.revision), true);
      assert.equal(await store.get(`${sub}b`), undefined);
      assert.equal(await store.delete(`${sub}b`), false);
      await store.close();
    });

    test('keys written under a lease vanish when it is revoked; a lost lease cannot be written under', async () => {
      const store = await open();
      const k = key();
      const lease = await store.grantLease(5);
      assert.ok((await store.compareAndSet(k, '"leased"', null, { lease })).ok);
      await lease.revoke();
      await until('the leased key is gone', async () => (await store.get(k)) === undefined);
      await assert.rejects(store.compareAndSet(key(), '"x"', null, { lease }), StateLeaseLostError);
      await store.close();
    });

    test('watch: onReset with the current content first, then every change in order', async () => {
      const store = await open();
      const sub = `${prefix}watch-${n++}/`;
      await store.compareAndSet(`${sub}before`, '1', null);
      const r = recorder();
      const watch = store.watch(sub, r.handlers);
      await until('the reset', () => r.resets.length === 1);
      assert.deepEqual(r.resets[0]!.map((e) => e.key), [`${sub}before`]);
      const put = await store.compareAndSet(`${sub}after`, '2', null);
      await store.delete(`${sub}before`);
      await until('two events', () => r.events.length >= 2);
      assert.deepEqual(
        r.events.map((e) => (e.type === 'put' ? `put ${e.entry.key} ${e.entry.value}` : `delete ${e.key}`)),
        [`put ${sub}after 2`, `delete ${sub}before`],
      );
      const first = r.events[0]!;
      assert.equal(first.type === 'put' && first.entry.revision, put.ok && put.revision);
      await watch.close();
      await store.close();
    });

    test('a watch handler that throws is reported as a warning; the watch, the writer and the process go on', async () => {
      const store = await open();
      const sub = `${prefix}throwing-${n++}/`;
      const { warnings, stop } = watchHandlerWarnings();
      try {
        const seen: string[] = [];
        const watch = store.watch(sub, {
          onReset: () => {
            seen.push('reset');
            throw new Error('consumer bug in onReset');
          },
          onEvent: (event) => {
            seen.push(event.type === 'put' ? `put ${event.entry.value}` : 'delete');
            throw new Error('consumer bug in onEvent');
          },
        });
        await until('the reset', () => seen.includes('reset'));
        // The write succeeded: the writer must hear so, whatever a watcher's handler does with it.
        const first = await store.compareAndSet(`${sub}a`, '1', null);
        assert.ok(first.ok, 'a write a throwing watcher saw is still reported written');
        assert.ok((await store.compareAndSet(`${sub}b`, '2', null)).ok);
        await until('both changes delivered after the throws', () => seen.length >= 3);
        assert.deepEqual(seen.slice(0, 3), ['reset', 'put 1', 'put 2']);
        await until('the warnings', () => warnings.length >= 3);
        assert.match(warnings[0]!.message, new RegExp(`state store "${name}": the watch of ".*throwing-.*" went on after its onReset handler threw: consumer bug in onReset`));
        assert.match(warnings[1]!.message, /its onEvent handler threw: consumer bug in onEvent/);
        await watch.close();
      } finally {
        stop();
        await store.close();
      }
    });

    test('an async handler that rejects, and a handler that throws a value with no text, are warnings too, not a crash', async () => {
      const store = await open();
      const sub = `${prefix}rejecting-${n++}/`;
      const { warnings, stop } = watchHandlerWarnings();
      try {
        const seen: string[] = [];
        const watch = store.watch(sub, {
          // Async: a consumer whose lint does not stop it (the type's `void` does not); its throw is a rejection.
          // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the rejection is the point
          onReset: async () => {
            seen.push('reset');
            throw new Error('consumer bug in an async onReset');
          },
          onEvent: () => {
            seen.push('event');
            // A prototype-less object: String() of it throws.
            throw Object.create(null) as unknown;
          },
        });
        await until('the reset', () => seen.includes('reset'));
        assert.ok((await store.compareAndSet(`${sub}a`, '1', null)).ok);
        assert.ok((await store.compareAndSet(`${sub}b`, '2', null)).ok);
        await until('both changes delivered after the throws', () => seen.length >= 3);
        await until('the warnings', () => warnings.length >= 2);
        assert.match(warnings[0]!.message, /its onReset handler threw: consumer bug in an async onReset/);
        assert.match(warnings[1]!.message, /its onEvent handler threw: a value that cannot be shown as text/);
        await watch.close();
      } finally {
        stop();
        await store.close();
      }
    });

    test('watch handlers without onEvent or onReset are refused at watch(), not at the first change', async () => {
      const store = await open();
      for (const bad of [{}, { onEvent: () => undefined }, { onReset: () => undefined }, null, { onEvent: () => undefined, onReset: () => undefined, onStatus: 'yes' }]) {
        assert.throws(
          () => store.watch(`${prefix}bad-handlers/`, bad as never),
          (e: unknown) => e instanceof StateArgumentError && e.code === 'GOVMAP_STATE_ARGUMENT_INVALID' && /^handlers/.test(String(e.details.argument)),
        );
      }
      await store.close();
    });

    test('a key that is not a /-rooted printable path is refused with a typed error', async () => {
      const store = await open();
      // An unpaired surrogate has no UTF-8 form: etcd would store U+FFFD instead, the file store cannot name a file after it.
      for (const bad of ['relative/key', '/with\nnewline', `/${'x'.repeat(600)}`, '/lone\uD800surrogate', '/\uDC00']) {
        await assert.rejects(store.compareAndSet(bad, '1', null), (e: unknown) => e instanceof StateKeyError && e.code === 'GOVMAP_STATE_KEY_INVALID');
        await assert.rejects(store.get(bad), StateKeyError);
      }
      assert.equal(await store.get(`${prefix}pair-\uD83D\uDCB6`), undefined, 'a well-formed pair is a key like any other');
      await store.close();
    });

    test('a value that is not text, or a revision that is not a bigint, is refused with a typed error naming it; nothing is written', async () => {
      const store = await open();
      const k = key();
      const refused = (argument: string) => (e: unknown) => e instanceof StateArgumentError && e.code === 'GOVMAP_STATE_ARGUMENT_INVALID' && e.details.argument === argument;
      await assert.rejects(store.compareAndSet(k, { state: 'OPEN' } as never, null), refused('value'));
      const created = await store.compareAndSet(k, '"v1"', null);
      assert.ok(created.ok);
      // A revision passed as a number would never equal the bigint one: the write would lose its comparison for ever.
      await assert.rejects(store.compareAndSet(k, '"v2"', Number(created.revision) as never), refused('expected'));
      await assert.rejects(store.delete(k, Number(created.revision) as never), refused('expected'));
      assert.equal((await store.get(k))?.value, '"v1"');
      await store.close();
    });

    test('a value etcd could not take (over 1 MiB of UTF-8, or an unpaired surrogate) is refused by every store with a typed error naming the rule; nothing is written', async () => {
      const store = await open();
      const k = key();
      const refused = (rule: RegExp) => (e: unknown) => e instanceof StateArgumentError && e.code === 'GOVMAP_STATE_ARGUMENT_INVALID' && e.details.argument === 'value' && rule.test(e.message);
      const largest = `"${'x'.repeat(1024 * 1024 - 2)}"`;
      await assert.rejects(store.compareAndSet(k, `"${'é'.repeat(512 * 1024)}"`, null), refused(/1048576 bytes/));
      await assert.rejects(store.compareAndSet(k, '"broken \uD800"', null), refused(/unpaired surrogate/));
      assert.equal(await store.get(k), undefined);
      const written = await store.compareAndSet(k, largest, null);
      assert.ok(written.ok, 'exactly 1 MiB is taken');
      assert.equal((await store.get(k))?.value.length, largest.length);
      await store.close();
    });

    test('a watch sees every key of a revoked lease deleted, not only the first (etcd deletes them in one revision)', async () => {
      const store = await open();
      const sub = `${prefix}lease-watch-${n++}/`;
      const lease = await store.grantLease(30);
      for (const k of ['a', 'b', 'c']) assert.ok((await store.compareAndSet(`${sub}${k}`, `"${k}"`, null, { lease })).ok);
      const r = recorder();
      const watch = store.watch(sub, r.handlers);
      await until('the reset', () => r.resets.length === 1);
      assert.equal(r.resets[0]!.length, 3);
      await lease.revoke();
      await until('the keys are gone', async () => (await store.list(sub)).length === 0);
      await until('three deletes', () => r.events.length >= 3);
      assert.deepEqual(r.events.map((e) => (e.type === 'delete' ? e.key : `put ${e.entry.key}`)).sort(), [`${sub}a`, `${sub}b`, `${sub}c`]);
      await watch.close();
      await store.close();
    });

    test('a released lease is no longer renewed: its keys vanish after its time to live', async () => {
      const store = await open();
      const k = key();
      const lease = await store.grantLease(1);
      assert.ok((await store.compareAndSet(k, '"leased"', null, { lease })).ok);
      lease.release();
      assert.equal((await store.get(k))?.value, '"leased"', 'not revoked: still there within the TTL');
      await until('the released lease has expired with its key', async () => (await store.get(k)) === undefined, 20_000);
      await store.close();
    });
  });
}

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

contract('memory', () => Promise.resolve(new MemoryStateStore()));
contract('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
  dirs.push(dir);
  return new FileStateStore({ directory: dir, pollIntervalMs: 20 });
});
const etcd = etcdEndpoints();
contract('etcd', () => Promise.resolve(new EtcdStateStore({ endpoints: 'endpoints' in etcd ? etcd.endpoints : 'http://127.0.0.1:1' })), { skip: 'skip' in etcd ? etcd.skip : undefined });

/** A file store in a new directory, watched under /govmap/ from its first reset on. */
async function watchedFileStore(pollIntervalMs: number): Promise<{ dir: string; store: FileStateStore; r: ReturnType<typeof recorder>; watch: ReturnType<StateStore['watch']> }> {
  const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
  dirs.push(dir);
  const store = new FileStateStore({ directory: dir, pollIntervalMs });
  const r = recorder();
  const watch = store.watch('/govmap/', r.handlers);
  await until('the reset', () => r.resets.length === 1);
  return { dir, store, r, watch };
}

describe('file store specifics', () => {
  test('state survives the process: a new store on the same directory reads it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const first = new FileStateStore({ directory: dir });
    const lease = await first.grantLease(30);
    await first.compareAndSet('/govmap/circuit/settlement/a', '{"state":"OPEN"}', null, { lease });
    await first.close(); // stops renewing, does not revoke: as a crash would
    const second = new FileStateStore({ directory: dir });
    assert.equal((await second.get('/govmap/circuit/settlement/a'))?.value, '{"state":"OPEN"}');
    await second.close();
  });

  test('another process\'s writes reach a watch by polling; a foreign file is handed over as is, revision 0', async () => {
    const { dir, store, r, watch } = await watchedFileStore(20);
    await writeFile(join(dir, `${encodeURIComponent('/govmap/circuit/s/x')}.json`), 'garbage');
    await until('the foreign file is seen', () => r.events.length === 1);
    assert.deepEqual(r.events[0], { type: 'put', entry: { key: '/govmap/circuit/s/x', value: 'garbage', revision: 0n } });
    await watch.close();
    await store.close();
  });

  test('a second watch opened while the first one\'s first scan is under way gets its current content at once, not a poll interval later', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    // One process, one store for breakers and switches: its own writes reach its watches at
    // once, so it polls for other processes' writes rarely.
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    await store.compareAndSet('/govmap/switch/sepa-instant', '{"value":true}', null);
    const breakers = recorder();
    const switches = recorder();
    const first = store.watch('/govmap/circuit', breakers.handlers);
    const second = store.watch('/govmap/switch/', switches.handlers);
    // Bounded by the poll interval (60 s) it must not wait for, not by 2 s: a watch's first scan
    // is file I/O, and a loaded CI box ran it past 2 s.
    await until('both resets', () => breakers.resets.length === 1 && switches.resets.length === 1);
    assert.deepEqual(switches.resets[0]!.map((e) => e.value), ['{"value":true}']);
    await first.close();
    await second.close();
    await store.close();
  });

  test('a lease still being granted when close() is called is refused with StateStoreClosedError and never renewed: its file runs out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const store = new FileStateStore({ directory: dir });
    const granting = store.grantLease(1); // a service shutting down while its breaker sync starts
    await store.close();
    await assert.rejects(granting, (e: unknown) => e instanceof StateStoreClosedError && e.code === 'GOVMAP_STATE_STORE_CLOSED');
    const [file] = await readdir(join(dir, '.leases'));
    const expiry = async (): Promise<number> => (JSON.parse(await readFile(join(dir, '.leases', file!), 'utf8')) as { expiresAt: number }).expiresAt;
    const first = await expiry();
    await new Promise((resolve) => setTimeout(resolve, 800)); // two renewals of a 1 s lease
    assert.equal(await expiry(), first, 'renewed after close()');
  });

  test('a file edited by hand twice reaches a watch twice: the second edit is not lost for having revision 0 again', async () => {
    const { dir, store, r, watch } = await watchedFileStore(20);
    const file = join(dir, `${encodeURIComponent('/govmap/switch/sepa-instant')}.json`);
    // As an editor saves (`sed -i`, vim): a new file renamed over the old, never read half-written.
    const edit = async (text: string): Promise<void> => {
      await writeFile(`${file}.edit`, text);
      await rename(`${file}.edit`, file);
    };
    await edit('{"value":true}');
    await until('the first edit is seen', () => r.events.length === 1);
    await edit('{"value":false}');
    await until('the second edit is seen', () => r.events.length === 2);
    assert.deepEqual(r.events[1], { type: 'put', entry: { key: '/govmap/switch/sepa-instant', value: '{"value":false}', revision: 0n } });
    // The same text written again is no change.
    await edit('{"value":false}');
    await store.poll();
    await store.poll();
    assert.equal(r.events.length, 2);
    await watch.close();
    await store.close();
  });

  test('a watch closed from its own onEvent gets none of the other changes the same poll found', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    const other = new FileStateStore({ directory: dir }); // another process on the same directory
    let resets = 0;
    const delivered: StateEvent[] = [];
    const watch = store.watch('/govmap/', {
      onReset: () => resets++,
      onEvent: (event) => {
        delivered.push(event);
        void watch.close();
      },
    });
    await until('the reset', () => resets === 1);
    for (const k of ['a', 'b', 'c']) await other.compareAndSet(`/govmap/circuit/s/${k}`, '{}', null);
    await store.poll();
    assert.equal(delivered.length, 1, 'changes delivered after close()');
    await store.close();
    await other.close();
  });

  test('a poll that listed the directory before this store\'s own write never reports the older state after it', async () => {
    // A scan reads the directory, then reports what changed. When one of this store's own
    // writes lands in between (delivered at once), the scan's listing is older than the watcher's
    // view: it must not resurrect a deleted key, take a key back to an older revision, or delete
    // a key just created. Every round checks the events of one key against what was written.
    const { store, r, watch } = await watchedFileStore(60_000);
    const stale: string[] = [];
    for (let round = 0; round < 150; round++) {
      const key = `/govmap/race/${round % 3}`;
      const before = (await store.get(key))?.revision ?? null;
      const from = r.events.length;
      // The poll starts first, so its listing is read around the write.
      const polling = store.poll();
      const last = round % 2 === 0 ? await store.compareAndSet(key, `v${round}`, before) : await store.delete(key).then(() => null);
      await polling;
      await store.poll();
      const mine = r.events.slice(from).filter((e) => (e.type === 'put' ? e.entry.key : e.key) === key);
      const finalEvent = mine.at(-1);
      const reported = finalEvent === undefined ? 'unchanged' : finalEvent.type === 'put' ? `put ${finalEvent.entry.value}` : 'delete';
      const expected = last === null ? (before === null ? 'unchanged' : 'delete') : `put v${round}`;
      if (mine.length > 1 || reported !== expected) stale.push(`round ${round}: ${mine.map((e) => (e.type === 'put' ? `put ${e.entry.value}` : 'delete')).join(', ')} (expected ${expected})`);
    }
    assert.deepEqual(stale, []);
    await watch.close();
    await store.close();
  });
  test('a key deleted and re-created within one millisecond gets a larger revision, and another process\'s watch reports the new value', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const writer = new FileStateStore({ directory: dir });
    const reader = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    const r = recorder();
    const watch = reader.watch('/govmap/', r.handlers);
    await reader.poll();
    const now = Date.now();
    t.mock.method(Date, 'now', () => now); // one millisecond: revisions start at the clock in µs
    const first = await writer.compareAndSet('/govmap/k', '"v1"', null);
    await reader.poll();
    assert.ok(await writer.delete('/govmap/k'));
    const second = await writer.compareAndSet('/govmap/k', '"v2"', null);
    await reader.poll();
    assert.ok(first.ok && second.ok);
    assert.ok(second.revision > first.revision, `re-created at ${second.revision}, was ${first.revision}`);
    assert.deepEqual(r.events.at(-1), { type: 'put', entry: { key: '/govmap/k', value: '"v2"', revision: second.revision } });
    await watch.close();
    await writer.close();
    await reader.close();
  });

  test('a key whose lease ended (revoked, or expired and reaped by a reader) and is re-created within one millisecond gets a larger revision', async (t) => {
    for (const end of ['revoke', 'expire'] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
      dirs.push(dir);
      const writer = new FileStateStore({ directory: dir });
      const other = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
      const r = recorder();
      const watch = other.watch('/govmap/', r.handlers);
      await other.poll();
      const lease = await writer.grantLease(1);
      const real = Date.now();
      let now = real;
      const mock = t.mock.method(Date, 'now', () => now); // one millisecond: revisions start at the clock in µs
      const first = await writer.compareAndSet('/govmap/probe', '"a"', null, { lease });
      await other.poll();
      if (end === 'revoke') await lease.revoke();
      else {
        // The holder is gone (a crashed process): its lease file runs out; a reader reaps the entry.
        lease.release();
        now = real + 5_000;
        assert.equal(await other.get('/govmap/probe'), undefined);
        now = real; // the clock of the next write reads the same millisecond as the first
      }
      const second = await other.compareAndSet('/govmap/probe', '"b"', null);
      await other.poll();
      assert.ok(first.ok && second.ok);
      assert.ok(second.revision > first.revision, `${end}: re-created at ${second.revision}, was ${first.revision}`);
      assert.deepEqual(r.events.at(-1), { type: 'put', entry: { key: '/govmap/probe', value: '"b"', revision: second.revision } }, end);
      mock.mock.restore();
      await watch.close();
      await writer.close();
      await other.close();
    }
  });

  test('a lock left by a dead process is broken by one writer only: two processes never both win a compare-and-set', async () => {
    // Sixteen stores (as sixteen processes would) find the key's lock stale and race to break
    // it. Each that saw it stale used to unlink it, removing the lock another had just taken.
    const bothWon: string[] = [];
    for (let round = 0; round < 40; round++) {
      const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
      dirs.push(dir);
      const stores = Array.from({ length: 16 }, () => new FileStateStore({ directory: dir }));
      await Promise.all(stores.map((s) => s.list('/')));
      const lock = join(dir, `${encodeURIComponent('/govmap/k')}.json.lock`);
      await writeFile(lock, '');
      const old = new Date(Date.now() - 60_000);
      await utimes(lock, old, old);
      const results = await Promise.all(stores.map(async (s, i) => {
        await new Promise((resolve) => setTimeout(resolve, i % 3)); // staggered, as processes are
        for (let k = 0; k < i * 7; k++) await Promise.resolve();
        return s.compareAndSet('/govmap/k', `"v${i}"`, null);
      }));
      const wins = results.filter((x) => x.ok).length;
      if (wins !== 1) bothWon.push(`round ${round}: ${wins} writers won`);
      await Promise.all(stores.map((s) => s.close()));
    }
    assert.deepEqual(bothWon, []);
  });
});

describe('file store: a writer paused while it holds a key\'s lock', () => {
  /**
   * A lock held past 5 s is taken for one its holder left behind when it died, and broken. Its
   * holder may only have been paused (a GC pause, SIGSTOP, an fsync stalled on a busy disk): it
   * then renamed its write over the one made under the broken lock, and two compare-and-sets of
   * the same revision both succeeded, one of them lost. A writer now checks, before its rename,
   * that the lock is still its own.
   */
  test('two compare-and-sets expecting the same revision never both succeed, even when the first is paused past the stale-lock age', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const key = '/govmap/circuit/settlement/paused';
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    await store.compareAndSet(key, '"start"', null);
    const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/cas-loop.ts', import.meta.url)), dir, key], { stdio: ['pipe', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let expectedByMe = '';
    const locks = async (): Promise<string[]> => (await readdir(dir, { recursive: true })).filter((name) => name.endsWith('.lock'));
    try {
      // Paused at a moment its lock exists: it holds it (nobody else writes yet).
      let held = false;
      for (let attempt = 0; attempt < 200 && !held; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 5 + (attempt % 7)));
        child.kill('SIGSTOP');
        held = (await locks()).length > 0;
        if (!held) child.kill('SIGCONT');
      }
      assert.ok(held, 'the writer was paused holding the lock');
      const before = await store.get(key);
      expectedByMe = before!.revision.toString();
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      // Its holder is alive (paused), so its lock is not broken however old: this write waits its
      // 2 s for the lock and is refused, nothing written. (Broken, the holder, resumed between its
      // last check of the lock and its rename, renamed its write over this one: seen in CI.)
      await assert.rejects(store.compareAndSet(key, '"B"', before!.revision), (error: unknown) => error instanceof StateStoreUnavailableError);
      child.kill('SIGCONT');
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      child.kill('SIGCONT');
      child.stdin.end();
      await exited;
      await store.close();
    }
    const attempts = output.trim().split('\n').map((line) => JSON.parse(line) as { expected: string | null; ok: boolean; error?: string });
    // This process's write from that revision was refused above: the paused writer's may be the one.
    const fromThatRevision = attempts.filter((a) => a.ok && a.expected === expectedByMe);
    assert.ok(fromThatRevision.length <= 1, `two writes succeeded from revision ${expectedByMe}: one is lost`);
  });
});

describe('file store: an old lock is broken only when its holder is gone', () => {
  test('a lock held by a live process of this host is never broken, however old; once that process is gone it is', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    const key = '/govmap/circuit/settlement/held';
    const lock = join(dir, `${encodeURIComponent(key)}.json.lock`);
    const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const gone = new Promise((resolve) => holder.once('exit', resolve));
    try {
      await store.list('/');
      await writeFile(lock, `${hostname()}:${holder.pid}:0123456789ab`);
      const old = new Date(Date.now() - 60_000);
      await utimes(lock, old, old);
      await assert.rejects(store.compareAndSet(key, '"A"', null), (error: unknown) => error instanceof StateStoreUnavailableError, 'a live holder keeps its lock');
      assert.equal(await store.get(key), undefined, 'nothing written');
      holder.kill('SIGKILL');
      await gone;
      const written = await store.compareAndSet(key, '"A"', null);
      assert.equal(written.ok, true, 'the lock of a holder that is gone is broken');
    } finally {
      holder.kill('SIGKILL');
      await store.close();
    }
  });
});

describe('file store: temporaries left by a writer that died mid-write', () => {
  const temporaries = async (dir: string): Promise<string[]> => (await readdir(dir, { recursive: true })).filter((name) => name.endsWith('.tmp')).sort();
  const minutesAgo = (minutes: number): Date => new Date(Date.now() - minutes * 60_000);

  test('a writer killed (SIGKILL) between writing its temporary and renaming it: the temporary is never a key, and the next store to open the directory removes it once it is old', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const key = '/govmap/circuit/settlement/crashed';
    const writer = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    await writer.compareAndSet(key, '"start"', null);
    await writer.close();
    const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/cas-loop.ts', import.meta.url)), dir, key], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let leftover: string[] = [];
    try {
      for (let attempt = 0; attempt < 400 && leftover.length === 0; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 2 + (attempt % 5)));
        child.kill('SIGSTOP');
        leftover = await temporaries(dir);
        if (leftover.length === 0) child.kill('SIGCONT');
      }
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    assert.equal(leftover.length, 1, 'the writer was killed with its temporary written and not yet renamed');
    assert.match(leftover[0]!, /\.json\.[0-9]+\.[0-9a-f]{8}\.tmp$/);

    // Just written, it may be a live writer's in another process: kept, and never read as a key.
    const first = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    const listed = await first.list('/');
    assert.deepEqual(listed.map((e) => e.key), [key]);
    const seen = recorder();
    const watch = first.watch('/', seen.handlers);
    await until('the watch has its first content', () => seen.resets.length === 1);
    assert.deepEqual(seen.resets[0]!.map((e) => e.key), [key]);
    await watch.close();
    await first.close();
    assert.deepEqual(await temporaries(dir), leftover);

    // Old enough that no live write can own it: the next store to open the directory removes it.
    await utimes(join(dir, leftover[0]!), minutesAgo(5), minutesAgo(5));
    const second = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    assert.equal((await second.get(key))?.key, key, 'the key itself is kept');
    assert.deepEqual(await temporaries(dir), []);
    await second.close();
  });

  test('old temporaries of keys and of leases are removed at open; a fresh one, and a .tmp the store did not name, are left alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    await mkdir(join(dir, '.leases'), { recursive: true });
    const envelope = JSON.stringify({ revision: '1', value: '"half"', lease: null });
    const old = [`${encodeURIComponent('/govmap/a')}.json.4242.0badf00d.tmp`, join('.leases', '4242-0123456789ab.4242.deadbeef.tmp')];
    const fresh = `${encodeURIComponent('/govmap/b')}.json.4243.cafebabe.tmp`;
    const notOurs = 'notes.tmp';
    for (const name of [...old, fresh, notOurs]) await writeFile(join(dir, name), envelope);
    for (const name of [...old, notOurs]) await utimes(join(dir, name), minutesAgo(10), minutesAgo(10));
    const store = new FileStateStore({ directory: dir, pollIntervalMs: 60_000 });
    assert.deepEqual(await store.list('/'), []);
    assert.deepEqual(await temporaries(dir), [fresh, notOurs].sort());
    await store.close();
  });
});

describe('file store key lengths', () => {
  test('every key the file store accepts can be written, read, deleted and have a stale lock broken; the first longer one is a StateKeyError, not "unavailable"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const store = new FileStateStore({ directory: dir });
    const refused: number[] = [];
    for (let length = 200; ; length++) {
      const key = `/${'a'.repeat(length - 3)}`; // "/" takes 3 in a file name
      assert.equal(encodeURIComponent(key).length, length);
      let result;
      try {
        result = await store.compareAndSet(key, '"x"', null);
      } catch (error) {
        assert.ok(error instanceof StateKeyError && error.code === 'GOVMAP_STATE_KEY_INVALID', `${length}: ${String(error)}`);
        break;
      }
      assert.ok(result.ok, `${length}`);
      assert.equal((await store.get(key))?.value, '"x"', `${length}`);
      // A lock its holder left behind: breaking it makes a name longer than the lock's own.
      const lock = join(dir, `${encodeURIComponent(key)}.json.lock`);
      await writeFile(lock, '');
      await utimes(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
      if (!(await store.delete(key).catch(() => false))) refused.push(length);
    }
    assert.deepEqual(refused, [], 'accepted keys whose writes fail');
    await store.close();
  });
});

describe('file store on a broken file system', () => {
  test('a corrupt lease file reads as an ended lease: never a SyntaxError, and the holder is told, without an unhandled rejection', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => void rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const holder = new FileStateStore({ directory: dir });
      const lease = await holder.grantLease(1); // renewed every 333 ms
      let lost = false;
      lease.onLost(() => (lost = true));
      assert.ok((await holder.compareAndSet('/govmap/circuit/s/a', '"x"', null, { lease })).ok);
      const reader = new FileStateStore({ directory: dir });
      for (const torn of ['', 'null', '{"expiresAt":"soon"}']) {
        await writeFile(join(dir, '.leases', lease.id), torn);
        assert.equal(await reader.get('/govmap/circuit/s/a'), undefined, `lease file ${JSON.stringify(torn)}`);
        assert.deepEqual(await reader.list('/govmap/'), []);
      }
      await until('the holder finds its lease gone', () => lost);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(rejections, []);
      await holder.close();
      await reader.close();
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });

  test('a directory that cannot be created fails with StateStoreUnavailableError, and is tried again once it can be', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const blocker = join(dir, 'not-a-directory');
    await writeFile(blocker, 'x');
    const store = new FileStateStore({ directory: join(blocker, 'state') });
    await assert.rejects(store.get('/govmap/k'), (e: unknown) => e instanceof StateStoreUnavailableError && e.code === 'GOVMAP_STATE_UNAVAILABLE' && /ENOTDIR/.test(e.message));
    await assert.rejects(store.compareAndSet('/govmap/k', '1', null), StateStoreUnavailableError);
    await rm(blocker); // an operator fixes the path: no restart needed
    assert.ok((await store.compareAndSet('/govmap/k', '1', null)).ok);
    assert.equal((await store.get('/govmap/k'))?.value, '1');
    await store.close();
  });

  test('a key file that cannot be read fails with StateStoreUnavailableError naming the key; its lock is not left behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-state-'));
    dirs.push(dir);
    const store = new FileStateStore({ directory: dir });
    // A directory where the key's file belongs: reading, replacing and listing it all fail.
    await store.compareAndSet('/govmap/ok', '1', null);
    await mkdir(join(dir, `${encodeURIComponent('/govmap/k')}.json`));
    await assert.rejects(store.get('/govmap/k'), (e: unknown) => e instanceof StateStoreUnavailableError && e.message.includes('/govmap/k'));
    await assert.rejects(store.compareAndSet('/govmap/k', '1', null), StateStoreUnavailableError);
    await assert.rejects(store.list('/govmap/'), StateStoreUnavailableError);
    assert.deepEqual((await readdir(dir)).filter((name) => name.endsWith('.tmp') || name.endsWith('.lock')), []);
    await store.close();
  });
});

describe('openStateStore', () => {
  test('names the store a configuration asks for, and refuses an unknown kind', async () => {
    assert.equal(openStateStore().kind, 'memory');
    assert.equal(openStateStore({ kind: 'etcd', endpoints: ['127.0.0.1:2379'] }).kind, 'etcd');
    assert.throws(() => openStateStore({ kind: 'zookeeper' } as never), ConfigurationError);
    assert.throws(() => new EtcdStateStore({ endpoints: ['not a host'] }), ConfigurationError);
    await Promise.resolve();
  });
});

describe('etcd store options', () => {
  test('an endpoint whose port no socket can have (0, or above 65535) is refused at construction naming it, not left to fail every call as "unreachable"', () => {
    for (const endpoint of ['http://127.0.0.1:99999', 'etcd-1:0', 'etcd-1:2379,etcd-2:65536']) {
      assert.throws(
        () => new EtcdStateStore({ endpoints: endpoint }),
        (e: unknown) => e instanceof ConfigurationError && e.code === 'GOVMAP_INVALID_CONFIGURATION' && e.message.includes('"endpoints"') && /port/.test(e.message) && e.message.includes(endpoint.split(',').at(-1)!),
      );
    }
    assert.deepEqual(new EtcdStateStore({ endpoints: 'etcd-1:1,https://etcd-2:65535/' }).endpoints, ['http://etcd-1:1', 'https://etcd-2:65535']);
  });

  test('an etcd that cannot be reached fails each operation with StateStoreUnavailableError naming the store, the operation and its key, as the file store does', async () => {
    const store = new EtcdStateStore({ endpoints: `127.0.0.1:${await freePort()}`, callTimeoutMs: 300, dialTimeoutMs: 300 });
    try {
      const key = '/govmap/switch/sepa-instant';
      for (const [operation, call] of [
        ['get', () => store.get(key)],
        ['compareAndSet', () => store.compareAndSet(key, '{}', null)],
        ['delete', () => store.delete(key)],
        ['delete', () => store.delete(key, 7n)],
        ['list', () => store.list('/govmap/switch/')],
      ] as const) {
        await assert.rejects(call(), (e: unknown) => e instanceof StateStoreUnavailableError && e.message.startsWith(`state store "etcd": ${operation} /govmap/switch/`), operation);
      }
    } finally {
      await store.close();
    }
  });
});

describe('etcd store against a real etcd', { skip: 'skip' in etcd ? etcd.skip : undefined }, () => {
  const endpoints = 'endpoints' in etcd ? etcd.endpoints : '';

  test('a lease revoked on the server side is reported lost to its holder', async () => {
    const store = new EtcdStateStore({ endpoints });
    const lease = await store.grantLease(3);
    let lost = false;
    lease.onLost(() => (lost = true));
    const client = await store.client();
    await client.leaseClient.leaseRevoke({ ID: lease.id });
    await until('the holder is told', () => lost, 15_000);
    assert.equal(lease.lost, true);
    await store.close();
  });

  test('revoking a lease while etcd is unreachable rejects with StateStoreUnavailableError, not a raw gRPC error', async () => {
    const proxy = await new TcpProxy(endpoints.split(',')[0]!).start();
    const store = new EtcdStateStore({ endpoints: proxy.url, callTimeoutMs: 500, dialTimeoutMs: 500 });
    try {
      const lease = await store.grantLease(5);
      await proxy.cut();
      await assert.rejects(lease.revoke(), (e: unknown) => e instanceof StateStoreUnavailableError && e.code === 'GOVMAP_STATE_UNAVAILABLE' && e.message.includes(lease.id));
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  test('a write under a lease etcd has already ended fails with StateLeaseLostError, and the holder is told at once, not at the next keep-alive', async () => {
    const store = new EtcdStateStore({ endpoints });
    const key = `/govmap-test/lease-ended-${randomBytes(4).toString('hex')}/k`;
    try {
      const lease = await store.grantLease(60);
      let told = 0;
      lease.onLost(() => told++);
      // Revoked by another client (an operator, or etcd expiring it while this one was paused):
      // this process's keep-alive, 20 s away, has not noticed yet.
      const client = await store.client();
      await client.leaseClient.leaseRevoke({ ID: lease.id });
      await assert.rejects(
        store.compareAndSet(key, '"v"', null, { lease }),
        (e: unknown) => e instanceof StateLeaseLostError && e.code === 'GOVMAP_STATE_LEASE_LOST' && e.message.includes(lease.id),
      );
      assert.equal(lease.lost, true);
      assert.equal(told, 1);
      assert.equal(await store.get(key), undefined, 'nothing was written');
    } finally {
      await store.close();
    }
  });

  test('a watch closed from its own onEvent delivers nothing more, not even changes already on their way', async () => {
    const watched = new EtcdStateStore({ endpoints });
    const writer = new EtcdStateStore({ endpoints });
    const sub = `/govmap-test/closed-watch-${randomBytes(4).toString('hex')}/`;
    try {
      let resets = 0;
      let delivered = 0;
      const closing: { promise: Promise<void> | null } = { promise: null };
      const watch = watched.watch(sub, {
        onReset: () => resets++,
        onEvent: () => {
          delivered++;
          closing.promise ??= watch.close();
        },
      });
      await until('the first reset', () => resets === 1);
      await Promise.all(Array.from({ length: 200 }, (_, i) => writer.compareAndSet(`${sub}k${i}`, '1', null)));
      await until('the watch is closing', () => closing.promise !== null);
      await closing.promise;
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(delivered, 1, 'changes delivered after close()');
    } finally {
      await (await writer.client()).delete().prefix(sub).exec();
      await watched.close();
      await writer.close();
    }
  });

  test('closing a watch, or the store, while etcd stops answering (packets dropped, no reset) returns within the call timeout instead of hanging', async () => {
    for (const what of ['watch', 'store'] as const) {
      const proxy = await new TcpProxy(endpoints.split(',')[0]!).start();
      const store = new EtcdStateStore({ endpoints: proxy.url, callTimeoutMs: 500, dialTimeoutMs: 500 });
      try {
        const r = recorder();
        const watch = store.watch(`/govmap-test/stalled-${randomBytes(4).toString('hex')}/`, r.handlers);
        await until('the first reset', () => r.resets.length === 1);
        proxy.stall();
        const started = Date.now();
        // A close() that waits for the stalled etcd never returns: 10 times the call timeout tells
        // it apart and leaves a loaded CI box room (a 2 s bound failed there, not on the code).
        const outcome = await Promise.race([
          (what === 'watch' ? watch.close() : store.close()).then(() => 'closed'),
          new Promise((resolve) => setTimeout(() => resolve('still waiting'), 15_000).unref()),
        ]);
        assert.equal(outcome, 'closed', `${what}.close() hung`);
        assert.ok(Date.now() - started < 5_000, `${what}.close() took ${Date.now() - started} ms`);
      } finally {
        await store.close();
        await proxy.close();
      }
    }
  });

  test('compaction while a watcher is cut off: it re-lists and hands over the current content', { skip: etcdBinary() === null ? 'no etcd binary for a private etcd (compacting the shared one would disturb other tests)' : undefined }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-etcd-'));
    dirs.push(dir);
    const server = new PrivateEtcd(etcdBinary()!, dir, await freePort(), await freePort());
    await server.start();
    const proxy = await new TcpProxy(server.url).start();
    const watched = new EtcdStateStore({ endpoints: proxy.url, callTimeoutMs: 1_000, dialTimeoutMs: 1_000 });
    const direct = new EtcdStateStore({ endpoints: server.url });
    try {
      const sub = '/govmap-test/compaction/';
      await direct.compareAndSet(`${sub}a`, '"a1"', null);
      const r = recorder();
      const watch = watched.watch(sub, r.handlers);
      await until('the first reset', () => r.resets.length === 1);
      await proxy.cut();
      // While cut off: a changes twice, b appears, and etcd compacts the history away.
      const a = (await direct.get(`${sub}a`))!;
      const a2 = await direct.compareAndSet(`${sub}a`, '"a2"', a.revision);
      assert.ok(a2.ok);
      await direct.compareAndSet(`${sub}a`, '"a3"', a2.revision);
      await direct.compareAndSet(`${sub}b`, '"b1"', null);
      const client = await direct.client();
      const head = await client.get(`${sub}a`).exec();
      await client.kv.compact({ revision: head.header.revision, physical: true });
      await proxy.restore();
      await until('a second reset with the current content', () => r.resets.length >= 2, 30_000);
      assert.deepEqual(r.resets.at(-1)!.map((e) => e.value), ['"a3"', '"b1"']);
      await watch.close();
    } finally {
      await watched.close();
      await direct.close();
      await proxy.close();
      await server.stop();
    }
  });
});

describe('etcd store on a private etcd', { skip: etcdBinary() === null ? 'no etcd binary for a private etcd' : undefined }, () => {
  test('a value too large for etcd is refused before it is sent: the store goes on serving, instead of the etcd client\'s breaker failing every call as "unavailable"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'govmap-etcd-'));
    dirs.push(dir);
    const server = new PrivateEtcd(etcdBinary()!, dir, await freePort(), await freePort());
    await server.start();
    const store = new EtcdStateStore({ endpoints: server.url });
    try {
      const switches = '/govmap-test/switch/';
      await assert.rejects(store.compareAndSet(`${switches}huge`, `"${'x'.repeat(2 * 1024 * 1024)}"`, null), (e: unknown) => e instanceof StateArgumentError && e.details.argument === 'value');
      // Another consumer of the same store, right after: its write and read are served.
      assert.ok((await store.compareAndSet(`${switches}sepa-instant`, '{"value":true}', null)).ok);
      assert.equal((await store.get(`${switches}sepa-instant`))?.value, '{"value":true}');
      assert.equal(await store.get(`${switches}huge`), undefined);
    } finally {
      await store.close();
      await server.stop();
    }
  });
});
