import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ConfigurationError } from '../../src/map/errors.ts';
import { SwitchBoard, followPrimary, publishToWorkers } from '../../src/switches/index.ts';

interface Seen {
  version: number;
  fast: boolean;
  delayMs: number;
  actor: string;
}

function startReplica(): { worker: Worker; seen: Seen[]; next: (version: number) => Promise<Seen> } {
  const worker = new Worker(new URL('./replica-worker.ts', import.meta.url));
  const seen: Seen[] = [];
  const waiters: Array<{ version: number; resolve: (s: Seen) => void }> = [];
  worker.on('message', (message: Seen) => {
    seen.push(message);
    for (const w of waiters.filter((x) => x.version === message.version)) w.resolve(message);
  });
  const next = (version: number): Promise<Seen> => {
    const already = seen.find((s) => s.version === version);
    if (already) return Promise.resolve(already);
    return new Promise((resolve) => waiters.push({ version, resolve }));
  };
  return { worker, seen, next };
}

async function stop(worker: Worker): Promise<void> {
  worker.postMessage('close');
  await Promise.race([once(worker, 'exit'), new Promise((r) => setTimeout(r, 2000)).then(() => worker.terminate())]);
}

test('worker threads adopt every new snapshot, with the primary\'s versions, and measure the delay', async () => {
  const board = new SwitchBoard({ name: 'payments', initial: { fast: false } });
  const publisher = publishToWorkers(board);
  const early = startReplica();
  try {
    // A worker started after the primary asks for the current snapshot and gets it.
    const first = await early.next(1);
    assert.equal(first.fast, false);

    board.set('fast', true, { actor: 'ops', reason: 'enable' });
    const second = await early.next(2);
    assert.deepEqual({ version: second.version, fast: second.fast, actor: second.actor }, { version: 2, fast: true, actor: 'ops' });
    assert.ok(second.delayMs >= 0 && second.delayMs < 5000, `delay ${second.delayMs} ms`);

    const late = startReplica();
    try {
      const caughtUp = await late.next(2);
      assert.equal(caughtUp.fast, true, 'a late worker starts on the current version, not on nothing');
      for (let v = 3; v <= 6; v++) board.set('fast', v % 2 === 0, { actor: 'ops', reason: `flip ${v}` });
      const [a, b] = await Promise.all([early.next(6), late.next(6)]);
      assert.equal(a.fast, true);
      assert.equal(b.fast, true);
      // Versions only grow in each worker.
      for (const { seen } of [early, late]) {
        const versions = seen.map((s) => s.version);
        assert.deepEqual(versions, [...versions].sort((x, y) => x - y));
      }
    } finally {
      await stop(late.worker);
    }
  } finally {
    publisher.close();
    await stop(early.worker);
  }
});

test('a worker that only awaits follower.ready stays alive for the snapshot, then exits by itself', async () => {
  const board = new SwitchBoard({ name: 'ready-check', initial: { fast: true } });
  const publisher = publishToWorkers(board);
  try {
    const worker = new Worker(new URL('./ready-worker.ts', import.meta.url));
    const messages: unknown[] = [];
    worker.on('message', (m) => messages.push(m));
    const [code] = (await Promise.race([once(worker, 'exit'), new Promise((r) => setTimeout(r, 10_000)).then(() => ['timeout'])])) as [number | string];
    assert.deepEqual(messages, [{ version: 1, fast: true }], 'the worker got the snapshot before it exited');
    assert.equal(code, 0, 'it exited by itself once ready: the channel no longer holds it');
  } finally {
    publisher.close();
  }
});

test('following a primary with a board that is not a replica is refused: it would ignore the primary\'s first snapshot and serve its own switches as if in sync', async () => {
  const primary = new SwitchBoard({ name: 'not-replica', initial: { fast: true } });
  const publisher = publishToWorkers(primary);
  // Forgot `replica: true`: the board starts at version 1, the primary's number for its own first set.
  const follower = new SwitchBoard({ name: 'not-replica' });
  try {
    assert.throws(
      () => followPrimary(follower).close(),
      (error: unknown) => error instanceof ConfigurationError && /"replica"/.test(error.message) && /replica: true/.test(error.message),
    );
    assert.equal(follower.isOn('fast'), false);
  } finally {
    publisher.close();
  }
});
