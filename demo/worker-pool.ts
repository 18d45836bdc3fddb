import type { Worker } from 'node:worker_threads';

/** What the pool's workers answer: the id of the request they answer, echoed. */
export interface PooledReply {
  readonly id: number;
}

interface Waiting<Reply> {
  readonly resolve: (reply: Reply) => void;
  readonly reject: (error: Error) => void;
  readonly worker: Worker;
}

/**
 * A fixed set of worker threads, started on first use, each asked one part of a job at a time.
 *
 * Replies are matched to requests by an id the worker echoes: concurrent jobs post to the same
 * workers, and a reply taken by whichever job listened first answers a job with another's result.
 * A worker that ends (crash, `process.exit` in it, out of memory) fails the requests it held with
 * `lost(code)`, and the pool is dropped and its other workers ended, so the next job starts a
 * fresh pool: a message posted to an ended worker vanishes, and the job would wait for ever.
 */
/** One set of started workers; an ending worker retires only its own generation. */
interface Generation {
  workers: Promise<Worker[]>;
}

export class WorkerPool<Request extends object, Reply extends PooledReply> {
  readonly #size: number;
  readonly #spawn: () => Worker;
  readonly #lost: (code: number) => Error;
  #pool: Generation | null = null;
  readonly #waiting = new Map<number, Waiting<Reply>>();
  /** Workers ended or ending (an uncaught error ends a worker), with why: a request to one fails at once. */
  readonly #ended = new WeakMap<Worker, Error>();
  #nextId = 0;
  #closed = false;

  constructor(size: number, spawn: () => Worker, lost: (code: number) => Error) {
    this.#size = size;
    this.#spawn = spawn;
    this.#lost = lost;
  }

  /** Sends `requestFor(i, n)` to each of the n workers and resolves with their replies, in order. */
  async each(requestFor: (index: number, workers: number) => Request): Promise<Reply[]> {
    if (this.#closed) throw new Error('the worker pool is closed');
    const workers = await (this.#pool ??= this.#start()).workers;
    return Promise.all(workers.map((worker, i) => this.#ask(worker, requestFor(i, workers.length))));
  }

  /** Ends every worker; requests in flight fail with `lost`. */
  async close(): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = null;
    if (pool !== null) await Promise.all((await pool.workers.catch(() => [])).map((w) => w.terminate()));
  }

  #ask(worker: Worker, request: Request): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const ended = this.#ended.get(worker);
      if (ended !== undefined) {
        reject(ended);
        return;
      }
      const id = ++this.#nextId;
      this.#waiting.set(id, { resolve, reject, worker });
      worker.postMessage({ ...request, id });
    });
  }

  #start(): Generation {
    const generation: Generation = { workers: Promise.resolve([]) };
    generation.workers = (async () => {
      const results = await Promise.allSettled(Array.from({ length: this.#size }, () => this.#startOne(generation)));
      const workers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed === undefined) return workers;
      // A pool that failed to start is not kept: the next job tries again with new workers.
      this.#retire(generation);
      await Promise.all(workers.map((w) => w.terminate()));
      throw failed.reason;
    })();
    return generation;
  }

  async #startOne(generation: Generation): Promise<Worker> {
    const worker = this.#spawn();
    worker.on('message', (reply: Reply) => {
      const waiting = this.#waiting.get(reply.id);
      this.#waiting.delete(reply.id);
      waiting?.resolve(reply);
    });
    // An uncaught error ends the worker: its `exit` follows, a macrotask later. Both end it here,
    // so no request is posted to it in between (it would never be answered).
    const end = (error: Error): void => {
      if (!this.#ended.has(worker)) this.#ended.set(worker, error);
      for (const [id, waiting] of this.#waiting) {
        if (waiting.worker !== worker) continue;
        this.#waiting.delete(id);
        waiting.reject(error);
      }
      // Its siblings are ended too (their requests fail the same way): the next job starts a
      // whole new pool rather than a part of one.
      if (this.#retire(generation)) void generation.workers.then((all) => Promise.all(all.map((w) => w.terminate())), () => undefined);
    };
    worker.on('error', end);
    worker.on('exit', (code) => end(this.#lost(code)));
    await new Promise<void>((resolve, reject) => {
      worker.once('online', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(this.#lost(code)));
    });
    return worker;
  }

  /** Drops `generation` if it is still the pool (not an older one's late exit); true if it was. */
  #retire(generation: Generation): boolean {
    if (this.#closed || this.#pool !== generation) return false;
    this.#pool = null;
    return true;
  }
}
