import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { ConfigurationError } from '../../src/map/errors.ts';
import { EtcdStateStore, MemoryStateStore } from '../../src/state/index.ts';
import type { StateStore } from '../../src/state/index.ts';
import { StateSwitchSource, SwitchBoard, SwitchVersionConflictError } from '../../src/switches/index.ts';

async function eventually(what: string, predicate: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The same behaviour against the in-process store and a real etcd: two "processes" (two
 * boards with their own sources) share switches through the store.
 */
function suite(kind: string, open: () => StateStore | null, skip: string | false): void {
  describe(`state-store switch source (${kind})`, { skip }, () => {
    test('a write by one process reaches every process as a new snapshot; the key follows DESIGN.md', async () => {
      const store = open()!;
      const prefix = `/govmap-test/${randomUUID()}/switch/`;
      const boardA = new SwitchBoard({ name: 'a' });
      const boardB = new SwitchBoard({ name: 'b' });
      const a = new StateSwitchSource({ store, board: boardA, prefix });
      const b = new StateSwitchSource({ store, board: boardB, prefix });
      try {
        await a.start();
        await b.start();
        assert.equal(await a.put('fast-settlement', { enabled: true, rollout: { percent: 10 } }, { actor: 'ops', reason: 'pilot' }), 1);
        await eventually('process B to see the switch', () => boardB.snapshot.has('fast-settlement'));
        assert.equal(boardB.snapshot.get('fast-settlement')!.rollout!.percent, 10);
        assert.equal(boardB.snapshot.source, store.kind);

        const raw = JSON.parse((await store.get(`${prefix}fast-settlement`))!.value);
        assert.deepEqual(Object.keys(raw).sort(), ['actor', 'reason', 'updatedAt', 'value', 'version']);
        assert.equal(raw.version, 1);
        assert.equal(raw.reason, 'pilot');
        assert.ok(!Number.isNaN(Date.parse(raw.updatedAt)));

        assert.equal(await b.put('fast-settlement', false, { actor: 'ops', reason: 'rollback', expectedVersion: 1 }), 2);
        await eventually('process A to see the rollback', () => boardA.snapshot.get('fast-settlement')?.enabled === false);
        await assert.rejects(a.put('fast-settlement', true, { actor: 'ops', reason: 'stale edit', expectedVersion: 1 }), SwitchVersionConflictError);
        assert.equal(boardA.counters.rejectedChanges, 1, 'the refused write is counted on the board of the process that tried it');
        assert.equal(boardB.counters.rejectedChanges, 0);

        assert.equal(await a.remove('fast-settlement'), true);
        await eventually('process B to see the delete', () => !boardB.snapshot.has('fast-settlement'));
      } finally {
        await a.close();
        await b.close();
        await store.close();
      }
    });

    test('a malformed key is rejected alone: its switch keeps the last good definition, the others apply', async () => {
      const store = open()!;
      const prefix = `/govmap-test/${randomUUID()}/switch/`;
      const board = new SwitchBoard();
      const logged: string[] = [];
      const source = new StateSwitchSource({ store, board, prefix, log: (m) => logged.push(m) });
      try {
        await source.put('a', true, { actor: 'ops', reason: 'on' });
        await source.start();
        assert.equal(board.isOn('a'), true);
        const current = await store.get(`${prefix}a`);
        await store.compareAndSet(`${prefix}a`, '{"value": {"enabled": "yes"}, "version": 2, "updatedAt": "2026-01-01T00:00:00Z", "reason": "x"}', current!.revision);
        await store.compareAndSet(`${prefix}b`, '{not json', null);
        await source.put('c', true, { actor: 'ops', reason: 'on' });
        await eventually('switch c to apply', () => board.isOn('c'));
        assert.equal(board.isOn('a'), true, 'a keeps its last good definition');
        assert.equal(board.snapshot.has('b'), false);
        assert.equal(source.status().errors, 2);
        assert.match(logged.join('\n'), /switch\/a rejected/);
        assert.match(logged.join('\n'), /switch\/b rejected.*not JSON/);
      } finally {
        await source.close();
        await store.close();
      }
    });

    test('a key written with a blank actor or reason (another tool, by hand) applies at once, under the store\'s name', async () => {
      const store = open()!;
      const prefix = `/govmap-test/${randomUUID()}/switch/`;
      const board = new SwitchBoard();
      const logged: string[] = [];
      const source = new StateSwitchSource({ store, board, prefix, log: (m) => logged.push(m) });
      try {
        await source.start();
        await store.compareAndSet(`${prefix}a`, '{"value": true, "version": 1, "updatedAt": "2026-01-01T00:00:00Z", "reason": "", "actor": "  "}', null);
        await eventually('switch a to apply', () => board.isOn('a'));
        assert.equal(board.snapshot.actor, store.kind);
        assert.equal(source.status().errors, 0, logged.join('\n'));
      } finally {
        await source.close();
        await store.close();
      }
    });

    test('a switch key deleted and written again is followed, though its version starts over at 1', async () => {
      const store = open()!;
      const prefix = `/govmap-test/${randomUUID()}/switch/`;
      const board = new SwitchBoard();
      const source = new StateSwitchSource({ store, board, prefix, log: () => undefined });
      try {
        await source.start();
        await source.put('a', true, { actor: 'ops', reason: 'on' });
        assert.equal(await source.put('a', false, { actor: 'ops', reason: 'off' }), 2);
        await eventually('a off', () => board.snapshot.get('a')?.enabled === false);
        assert.equal(await source.remove('a'), true);
        await eventually('a gone', () => !board.snapshot.has('a'));
        assert.equal(await source.put('a', true, { actor: 'ops', reason: 'back' }), 1);
        await eventually('a back on', () => board.isOn('a'));
        assert.equal(await source.put('a', { enabled: true, kill: true }, { actor: 'ops', reason: 'kill' }), 2);
        await eventually('a killed', () => board.snapshot.get('a')?.kill === true);
        assert.equal(source.status().errors, 0);
      } finally {
        await source.close();
        await store.close();
      }
    });

    test('an invalid definition never reaches the store', async () => {
      const store = open()!;
      const prefix = `/govmap-test/${randomUUID()}/switch/`;
      const board = new SwitchBoard();
      const source = new StateSwitchSource({ store, board, prefix });
      try {
        await assert.rejects(source.put('a', { enabled: true, rollout: { percent: 101 } }, { actor: 'ops', reason: 'x' }), { code: 'GOVMAP_SWITCH_CONFIG_INVALID' });
        await assert.rejects(source.put('bad name!', true, { actor: 'ops', reason: 'x' }), { code: 'GOVMAP_SWITCH_NAME_INVALID' });
        // A change nobody signs, or with metadata every reader would refuse (actor over 200 characters).
        await assert.rejects(source.put('a', true, { actor: ' ', reason: 'x' }), (error: unknown) => error instanceof ConfigurationError && /request\.actor/.test(error.message));
        await assert.rejects(source.put('a', true, { actor: 'o'.repeat(201), reason: 'x' }), (error: unknown) => error instanceof ConfigurationError && /1-200 characters/.test(error.message));
        await assert.rejects(source.put('a', true, { actor: 'ops', reason: 'r'.repeat(1001) }), (error: unknown) => error instanceof ConfigurationError && /request\.reason/.test(error.message));
        // A version read from an HTTP header is a string: "1" is not a conflict with version 1.
        for (const expectedVersion of ['1', 1.5, Number.NaN]) {
          await assert.rejects(source.put('a', true, { actor: 'ops', reason: 'x', expectedVersion: expectedVersion as never }), (error: unknown) => error instanceof ConfigurationError && /request\.expectedVersion/.test(error.message) && /whole number/.test(error.message));
        }
        assert.equal(await store.get(`${prefix}a`), undefined);
        assert.equal(board.counters.rejectedChanges, 8, 'each refused write counts once in govmap_switch_rejected_changes_total');
      } finally {
        await store.close();
      }
    });
  });
}

suite('memory', () => new MemoryStateStore(), false);

test('startTimeoutMs beyond a Node.js timer\'s limit is refused (it would time out after 1 ms)', () => {
  assert.throws(
    () => new StateSwitchSource({ store: new MemoryStateStore(), board: new SwitchBoard(), startTimeoutMs: 3e9 }),
    (error: unknown) => error instanceof ConfigurationError && /"startTimeoutMs"/.test(error.message) && /at most 2147483647 ms/.test(error.message),
  );
});

const endpoints = process.env.GOVMAP_ETCD_ENDPOINTS;
if (endpoints === undefined && process.env.CI) {
  test('etcd switch source', () => assert.fail('GOVMAP_ETCD_ENDPOINTS is not set under CI: start etcd with test/infra/etcd.sh'));
}
suite('etcd', () => (endpoints === undefined ? null : new EtcdStateStore({ endpoints })), endpoints === undefined ? 'GOVMAP_ETCD_ENDPOINTS not set (bash test/infra/etcd.sh start)' : false);
