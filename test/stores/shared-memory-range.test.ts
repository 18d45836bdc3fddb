/**
 * `GovernedMap.range` over a shared-memory store walks a consistent snapshot (DESIGN.md: "range
 * (consistent snapshot)"; docs/shared-memory.md: `snapshot()` is "every entry at one instant")
 * while another thread writes. A worker sets r0…r(K-1) to round n one key at a time, in key
 * order, round after round; at any one instant the values read r0 >= r1 >= … >= r(K-1) >= r0 - 1.
 * A walk that reads the table live (writers not held off) sees keys written at different
 * instants — a later round's r5 next to an earlier round's r4 — and breaks that order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { GovernedMap } from '../../src/map/index.ts';
import { SharedInt64Store } from '../../src/stores/index.ts';
import { ROUNDS, STOP } from './workers/round-writer.ts';

const KEYS = 48;

/** Why `values` (r0…r(K-1)) cannot be the map at one instant, or null if it can. */
function notOneInstant(values: ReadonlyMap<string, bigint>): string | null {
  const first = values.get('r0');
  const last = values.get(`r${KEYS - 1}`);
  if (first === undefined || last === undefined || values.size !== KEYS) return `${values.size} keys`;
  if (first - last > 1n || first < last) return `r0 = ${first}, r${KEYS - 1} = ${last}`;
  for (let i = 1; i < KEYS; i++) {
    const before = values.get(`r${i - 1}`)!;
    const here = values.get(`r${i}`)!;
    if (here > before) return `r${i - 1} = ${before} but r${i} = ${here} (written after it)`;
  }
  return null;
}

test('range over a shared-memory map is one instant while another thread writes key after key', { timeout: 60_000 }, async (t) => {
  const store = SharedInt64Store.create({ initialCapacity: 256, maxKeyLength: 8 });
  for (let i = 0; i < KEYS; i++) store.set(`r${i}`, 0n);
  const map = new GovernedMap<string, bigint>({ name: 'rounds', store, validate: () => true });
  const control = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL('./workers/round-writer.ts', import.meta.url), { workerData: { handle: store.handle, control: control.buffer, keys: KEYS } });
  store.supervise(worker);
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    // Until enough walks landed mid-round (the writer between two keys: real concurrency), at
    // least 2,000 walks, at most 20 s on a busy machine.
    let walks = 0;
    let midRound = 0;
    let problem: string | null = null;
    const deadline = performance.now() + 20_000;
    while (problem === null && (walks < 2000 || midRound < 50) && performance.now() < deadline) {
      const values = new Map(map.entries());
      walks++;
      problem = notOneInstant(values);
      if (values.get('r0') !== values.get(`r${KEYS - 1}`)) midRound++;
    }
    t.diagnostic(`${walks} walks, ${midRound} of them mid-round, ${Atomics.load(control, ROUNDS)} rounds written`);
    assert.equal(problem, null, `a walk that was not one instant: ${problem}`);
    assert.ok(midRound >= 50, `only ${midRound} of ${walks} walks landed while the writer was mid-round`);
  } finally {
    Atomics.store(control, STOP, 1);
    await exited;
    store.close();
  }
});
