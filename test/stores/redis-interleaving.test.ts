import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { UpdateConflictError, ValidationError } from '../../src/index.ts';
import { RemoteGovernedMap, int64Codec } from '../../src/stores/redis/index.ts';
import { FakeConnection, FakeRedisServer } from './redis-fake.ts';

/**
 * The remote map's own logic under every interleaving fast-check's scheduler finds: two
 * "machines" (two maps, each with its own connection) on one modelled Redis server (see
 * redis-fake.ts for what is modelled). The real-Redis tests prove the same claims on the wire;
 * these explore orders of events (a reply and an invalidation in one TCP chunk, a write landing
 * between a read and its compare-and-set) that a real run meets only by luck.
 */
const KEY = 'acct-1';
const OPENING = 100n;

function machine(server: FakeRedisServer, s: fc.Scheduler, chunks: number[], name: string): RemoteGovernedMap<bigint> {
  return new RemoteGovernedMap<bigint>({
    name,
    link: new FakeConnection(server, s, chunks),
    keyPrefix: 'acct:',
    codec: int64Codec,
    validate: (_key, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW'),
    bounds: { min: 0n, belowReason: 'BALANCE_UNDERFLOW' },
    updateRetries: 20,
    retryBackoffMaxMs: 0,
    sizeRefreshMs: 0,
  });
}

const operation = fc.record({ kind: fc.constantFrom('add', 'update', 'load'), delta: fc.bigInt({ min: -80n, max: 60n }) });
const plan = fc.record({
  a: fc.array(operation, { minLength: 1, maxLength: 5 }),
  b: fc.array(operation, { minLength: 1, maxLength: 5 }),
  chunks: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 6 }),
});

test('two machines, any interleaving: no update is lost, no balance ever goes below zero, near caches end coherent', async () => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), plan, async (s, { a, b, chunks }) => {
      const server = new FakeRedisServer();
      server.data.set(`acct:${KEY}`, OPENING.toString());
      const maps = [machine(server, s, chunks, 'a'), machine(server, s, chunks, 'b')];
      let applied = 0n;
      const run = async (map: RemoteGovernedMap<bigint>, ops: typeof a): Promise<void> => {
        await Promise.all(
          ops.map(async (op) => {
            try {
              if (op.kind === 'load') {
                const seen = await map.load(KEY);
                assert.ok(seen !== undefined && seen >= 0n);
              } else if (op.kind === 'add') {
                await map.add(KEY, op.delta);
                applied += op.delta;
              } else {
                await map.update(KEY, (balance) => balance! + op.delta);
                if (op.delta !== 0n) applied += op.delta;
              }
            } catch (error) {
              // The only acceptable refusals: the business rule, or contention past the bound.
              if (!(error instanceof ValidationError || error instanceof UpdateConflictError)) throw error;
            }
          }),
        );
      };
      await s.waitFor(Promise.all([run(maps[0]!, a), run(maps[1]!, b)]));
      await s.waitAll(); // deliver every invalidation still in flight

      const final = BigInt(server.data.get(`acct:${KEY}`)!);
      assert.equal(final, OPENING + applied, 'every acknowledged movement is in the balance, and nothing else');
      for (const [, value] of server.history) assert.ok(BigInt(value) >= 0n, `the balance went to ${value}`);
      for (const map of maps) {
        const cached = map.loadCached(KEY);
        assert.ok(cached === undefined || cached === final, `a near cache kept ${cached} while Redis holds ${final}`);
        assert.equal(await s.waitFor(map.load(KEY)), final);
        await map.dispose();
      }
    }),
    { numRuns: 150 },
  );
});

test('a reader racing a writer never keeps a value Redis no longer holds once the invalidations are in', async () => {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.array(fc.bigInt({ min: 1n, max: 50n }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 6 }), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 6 }), async (s, credits, reads, chunks) => {
      const server = new FakeRedisServer();
      server.data.set(`acct:${KEY}`, OPENING.toString());
      const writer = machine(server, s, chunks, 'writer');
      const reader = machine(server, s, chunks, 'reader');
      const writes = Promise.all(credits.map((credit) => writer.add(KEY, credit)));
      const loads = Promise.all(Array.from({ length: reads }, () => reader.load(KEY)));
      await s.waitFor(Promise.all([writes, loads]));
      await s.waitAll();
      const final = OPENING + credits.reduce((x, y) => x + y, 0n);
      assert.equal(server.data.get(`acct:${KEY}`), final.toString());
      const cached = reader.loadCached(KEY);
      assert.ok(cached === undefined || cached === final, `the reader's near cache kept ${cached}, Redis holds ${final}`);
      await writer.dispose();
      await reader.dispose();
    }),
    { numRuns: 200 },
  );
});

test('observers are checked as a GovernedMap checks them: not an observer, or one listed twice, is refused naming the entry', () => {
  const [scheduler] = fc.sample(fc.scheduler(), 1);
  const open = (observers: unknown): RemoteGovernedMap<bigint> =>
    new RemoteGovernedMap<bigint>({ name: 'audited', link: new FakeConnection(new FakeRedisServer(), scheduler!, [1]), codec: int64Codec, validate: () => true, sizeRefreshMs: 0, observers: observers as [] });
  const seen: string[] = [];
  const audit = { onOperation: (op: string, _map: string, key: unknown) => void seen.push(`${op}:${String(key)}`) };
  assert.throws(() => open([audit, audit]), { code: 'GOVMAP_INVALID_CONFIGURATION', message: /"observers\[1\]": is observers\[0\] again \(each observer once/ });
  assert.throws(() => open(['x']), { code: 'GOVMAP_INVALID_CONFIGURATION', message: /"observers\[0\]": must be a MapObserver/ });
  assert.throws(() => open('x'), { code: 'GOVMAP_INVALID_CONFIGURATION', message: /"observers": must be an array of MapObservers/ });
  assert.deepEqual(seen, []);
});
