import { Worker } from 'node:worker_threads';
import type { VerifyRequest, VerifySummary } from './spool-verify.worker.ts';

export type { VerifySummary } from './spool-verify.worker.ts';

/**
 * Verifies audit spools in one worker thread (demo/spool-verify.worker.ts), so the service's
 * event loop never reads and hashes a spool itself. Requests run one at a time, in order; the
 * worker starts on the first request (loading its modules is paid once) and does not keep the
 * process alive. A worker that fails is replaced on the next request.
 */
export class SpoolVerifier {
  #worker: Worker | null = null;
  /** The request in progress: the next one starts after it settles. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  /**
   * The verification of `path` (a spool directory or one segment file), with the HMAC `key` when
   * the spool is keyed. Rejects only when the worker itself fails or the verifier is closed; a
   * spool that does not verify resolves with `ok: false` and its first bad record.
   */
  verify(path: string, key: Uint8Array | null = null): Promise<VerifySummary> {
    const run = this.#queue.then(() => this.#run({ dir: path, key }));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = null;
    await worker?.terminate();
  }

  #run(request: VerifyRequest): Promise<VerifySummary> {
    if (this.#closed) return Promise.reject(new Error('the spool verifier is closed'));
    const worker = (this.#worker ??= this.#start());
    return new Promise<VerifySummary>((resolve, reject) => {
      const onError = (error: Error): void => {
        worker.off('message', onMessage);
        if (this.#worker === worker) this.#worker = null;
        reject(error);
      };
      const onExit = (code: number): void => onError(new Error(`the spool verify worker exited (code ${code})`));
      const onMessage = (summary: VerifySummary): void => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(summary);
      };
      worker.once('error', onError);
      worker.once('exit', onExit);
      worker.once('message', onMessage);
      worker.postMessage(request);
    });
  }

  #start(): Worker {
    const url = new URL(`./spool-verify.worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
    const worker = new Worker(url, { name: 'govmap-spool-verify' });
    worker.unref();
    return worker;
  }
}
