import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { describe, test } from 'node:test';
import { WorkerPool } from '../../demo/worker-pool.ts';

interface Ask {
  readonly value: number;
  readonly delayMs?: number;
  readonly exit?: boolean;
}
interface Answer {
  readonly id: number;
  readonly value: number;
  readonly thread: number;
}

// Doubles the value after an optional delay; `exit` ends the worker instead of answering.
const DOUBLER = `
const { parentPort, threadId } = require('node:worker_threads');
parentPort.on('message', (m) => {
  if (m.exit) process.exit(3);
  setTimeout(() => parentPort.postMessage({ id: m.id, value: m.value * 2, thread: threadId }), m.delayMs ?? 0);
});`;

class LostError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`worker ended (${exitCode})`);
    this.exitCode = exitCode;
  }
}

function pool(size: number, code = DOUBLER): { pool: WorkerPool<Ask, Answer>; spawned: () => number } {
  let spawned = 0;
  const p = new WorkerPool<Ask, Answer>(
    size,
    () => {
      spawned++;
      return new Worker(code, { eval: true });
    },
    (exitCode) => new LostError(exitCode),
  );
  return { pool: p, spawned: () => spawned };
}

describe('demo worker pool', () => {
  test('concurrent jobs on the same workers each get their own replies, whatever order they come back in', async () => {
    const { pool: p } = pool(2);
    try {
      const jobs = [1, 2, 3, 4, 5, 6].map((n) => p.each((i) => ({ value: n * 10 + i, delayMs: (7 - n) * 5 })));
      const answers = await Promise.all(jobs);
      assert.deepEqual(
        answers.map((a) => a.map((r) => r.value)),
        [1, 2, 3, 4, 5, 6].map((n) => [(n * 10) * 2, (n * 10 + 1) * 2]),
      );
    } finally {
      await p.close();
    }
  });

  test('a worker that ends fails the job it held (with lost(code)), and the next job runs on a whole new pool', async () => {
    const { pool: p, spawned } = pool(2);
    try {
      const first = await p.each((i) => ({ value: i }));
      const threadsBefore = first.map((r) => r.thread);
      await assert.rejects(
        p.each((i) => ({ value: i, exit: i === 0, delayMs: 50 })),
        (error: unknown) => error instanceof LostError && error.exitCode === 3,
      );
      const after = await p.each((i) => ({ value: i + 100 }));
      assert.deepEqual(after.map((r) => r.value), [200, 202]);
      assert.equal(spawned(), 4, 'two new workers');
      assert.ok(after.every((r) => !threadsBefore.includes(r.thread)), 'no worker of the old pool answers');
    } finally {
      await p.close();
    }
  });

  test('a pool whose worker fails to start is not kept: the job fails, the next one starts it again', async () => {
    let broken = true;
    let spawned = 0;
    const p = new WorkerPool<Ask, Answer>(
      2,
      () => {
        spawned++;
        return new Worker(broken && spawned === 2 ? 'throw new Error("cannot start")' : DOUBLER, { eval: true });
      },
      (exitCode) => new LostError(exitCode),
    );
    try {
      // Fails at start (its error) or once online (lost): either way the job fails, it never hangs.
      await assert.rejects(p.each((i) => ({ value: i })), (error: unknown) => error instanceof LostError || /cannot start/.test(String(error)));
      broken = false;
      assert.deepEqual((await p.each((i) => ({ value: i }))).map((r) => r.value), [0, 2]);
      assert.equal(spawned, 4);
    } finally {
      await p.close();
    }
  });

  test('close() fails the requests in flight; later jobs are refused', async () => {
    const { pool: p } = pool(1);
    await p.each(() => ({ value: 1 }));
    const inFlight = p.each(() => ({ value: 2, delayMs: 10_000 }));
    await p.close();
    await assert.rejects(inFlight, LostError);
    await assert.rejects(p.each(() => ({ value: 3 })), /closed/);
  });
});
