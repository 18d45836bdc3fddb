import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigurationError, GovMapError } from '../map/errors.ts';
import { SwitchSourceError } from './errors.ts';
import { timerOption } from './timer-option.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

/**
 * Builds the error of a file that cannot be read or parsed, so that each role reports its own
 * stable code: `source` is `<role> <absolute path>`, `rule` what is wrong with it.
 */
export type WatchedFileErrorFactory = (source: string, rule: string, cause?: unknown) => GovMapError;

export interface WatchedFileOptions {
  readonly path: string;
  /** Called with each new content (parsed JSON/YAML document). Throwing rejects that content. */
  readonly apply: (document: unknown, text: string) => void;
  /**
   * Called once for each new content refused before `apply` saw it (empty, not valid JSON or
   * YAML), so the owner can count it as a refused change as it counts `apply`'s own refusals.
   * A file that cannot be read at all is no content and does not call it.
   */
  readonly refused?: (error: unknown) => void;
  /** Names the file's role in messages (`switch file`, `route table file`). */
  readonly role: string;
  /**
   * The error of an unreadable, oversized, empty or unparsable file. Default SwitchSourceError
   * (`GOVMAP_SWITCH_SOURCE_FAILED`); a route table file passes RouteTableSourceError.
   */
  readonly error?: WatchedFileErrorFactory;
  /** Largest file accepted, bytes. Default 1 MiB: a switch set or route table is far smaller. */
  readonly maxBytes?: number;
  /** Quiet time after the last change event before reading, ms, at most 2,147,483,647. Default 50 (editors write in bursts). */
  readonly debounceMs?: number;
  /**
   * How long a new content must hold still before it is applied, ms, at most 2,147,483,647;
   * 0 applies what is read at once. Default 150. A file written in place (an editor, `cp`, a
   * shell `>`: truncate, then write) can be read half written, and its first lines may well be
   * valid on their own: a switch list cut after its first entries would be applied, the missing
   * switches back at their defaults until the rest lands. New content is read again after this
   * delay and applied only when both reads agree byte for byte (a rename over the file is atomic
   * and never needs it, but costs the same wait).
   */
  readonly settleMs?: number;
  /**
   * Safety-net re-read interval, ms, at most 2,147,483,647 (a Node.js timer's limit); 0 disables.
   * Default 2000. Directory events are the main signal; polling catches what they miss (network
   * file systems, some container mounts).
   */
  readonly pollMs?: number;
  /** Where reload failures are reported. Default `console.error`. */
  readonly log?: (message: string, error?: unknown) => void;
}

/** Every key of WatchedFileOptions (the compiler checks the two stay the same): any other is refused. */
const WATCHED_FILE_OPTIONS = optionKeys<WatchedFileOptions>({
  path: true, apply: true, refused: true, role: true, error: true, maxBytes: true, debounceMs: true, settleMs: true, pollMs: true, log: true,
});

export interface WatchedFileStatus {
  readonly path: string;
  /** Contents applied (the first load included). */
  readonly loads: number;
  /**
   * Distinct failures: each time a check finds a failure other than the one it found last (a new
   * bad content, by hash; or a read failure of another kind: cannot open, over the size limit).
   * The same failure found again by later checks (every poll of a deleted file) is neither
   * counted nor logged again. The last good content stays applied throughout.
   */
  readonly errors: number;
  /** Whether the file's current content is the applied one. */
  readonly healthy: boolean;
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
  readonly lastLoadedAt: string | null;
}

/**
 * A JSON or YAML file that is re-read when it changes, with a last-good fallback.
 *
 * The directory is watched rather than the file: editors and config tools replace a file by
 * renaming a new one over it, and Kubernetes swaps a `..data` symlink; a watch on the old inode
 * would go silent. Every event in the directory triggers a (debounced) read; the content hash
 * decides whether anything changed, so unrelated files cost one read, not a reload.
 *
 * JSON is parsed as YAML 1.2 (a superset) so that a duplicate key is an error in both formats,
 * instead of JSON.parse silently keeping the last one.
 *
 * A failure is reported once: a deleted file polled every 2 s must not log every 2 s forever.
 * The failure's key (the content hash, or the kind of read failure) is kept until a check finds
 * another failure or good content.
 */
export class WatchedFile {
  readonly path: string;
  readonly #options: WatchedFileOptions;
  readonly #maxBytes: number;
  readonly #debounceMs: number;
  readonly #settleMs: number;
  readonly #pollMs: number;
  readonly #log: (message: string, error?: unknown) => void;
  readonly #error: WatchedFileErrorFactory;
  #watcher: FSWatcher | null = null;
  #poll: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #appliedHash: string | null = null;
  /** Key of the failure last reported (`content:<hash>` or `read:<kind>`), null while healthy. */
  #failedKey: string | null = null;
  /** The read in flight, if any. */
  #reading: Promise<boolean> | null = null;
  /** The read to start once the one in flight has ended (see check()). */
  #queued: Promise<boolean> | null = null;
  #closed = false;
  #loads = 0;
  #errors = 0;
  #lastError: WatchedFileStatus['lastError'] = null;
  #lastLoadedAt: string | null = null;

  constructor(options: WatchedFileOptions) {
    refuseUnknownOptions(options, WATCHED_FILE_OPTIONS, 'WatchedFile');
    if (typeof options.path !== 'string' || options.path === '') throw new ConfigurationError('path', 'a file path is required');
    this.#options = options;
    this.path = resolve(options.path);
    this.#maxBytes = positive('maxBytes', options.maxBytes ?? 1024 * 1024);
    this.#debounceMs = timerOption('debounceMs', options.debounceMs ?? 50, 0);
    this.#settleMs = timerOption('settleMs', options.settleMs ?? 150, 0);
    this.#pollMs = timerOption('pollMs', options.pollMs ?? 2000, 0);
    this.#log = options.log ?? ((message, error) => console.error(message, error ?? ''));
    this.#error = options.error ?? ((source, rule, cause) => new SwitchSourceError(source, rule, cause));
  }

  /**
   * Reads and applies the file, then watches it. A missing or invalid file at start is an
   * error (there is no last good content to keep serving): fail the deploy, not the first request.
   */
  async start(): Promise<void> {
    const read = await this.#readSettled();
    if ('failure' in read) throw read.failure;
    const text = read.text;
    this.#applyText(text, createHash('sha256').update(text).digest('hex'));
    try {
      this.#watcher = watch(dirname(this.path), { persistent: false }, () => this.#schedule());
      this.#watcher.on('error', (error) => {
        this.#log(`govmap: ${this.#options.role} ${this.path}: directory watch failed; relying on polling`, error);
        this.#watcher?.close();
        this.#watcher = null;
      });
    } catch (error) {
      this.#log(`govmap: ${this.#options.role} ${this.path}: cannot watch its directory; relying on polling`, error);
    }
    if (this.#pollMs > 0) {
      this.#poll = setInterval(() => this.#schedule(), this.#pollMs);
      this.#poll.unref();
    }
  }

  /**
   * Re-reads now (what a change event does after its debounce). Resolves true when new content
   * was applied, false when unchanged or rejected (the rejection is logged, counted and in status()).
   * Resolves only once a read that started after the call has finished: one already in flight
   * may have read the file before the change the caller knows of.
   */
  check(): Promise<boolean> {
    if (this.#reading === null) return this.#readNow();
    // A read is in flight; the file may have changed after it started reading: read again after
    // it, and answer with that read (not the one in flight: `await reload()` right after writing
    // the file used to resolve with the content from before the write still applied). One read,
    // shared by every caller meanwhile.
    this.#queued ??= this.#reading.then(
      () => this.#afterInFlight(),
      () => this.#afterInFlight(),
    );
    return this.#queued;
  }

  status(): WatchedFileStatus {
    return {
      path: this.path,
      loads: this.#loads,
      errors: this.#errors,
      healthy: this.#failedKey === null,
      lastError: this.#lastError,
      lastLoadedAt: this.#lastLoadedAt,
    };
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#poll !== null) clearInterval(this.#poll);
    if (this.#debounce !== null) clearTimeout(this.#debounce);
  }

  #readNow(): Promise<boolean> {
    const reading = this.#checkOnce().finally(() => {
      this.#reading = null;
    });
    this.#reading = reading;
    return reading;
  }

  /** The queued read: a read started since the last one ended began after its callers asked too. */
  #afterInFlight(): Promise<boolean> {
    this.#queued = null;
    if (this.#closed) return Promise.resolve(false);
    return this.#reading ?? this.#readNow();
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.check();
    }, this.#debounceMs);
    this.#debounce.unref();
  }

  async #checkOnce(): Promise<boolean> {
    const read = await this.#readSettled();
    if (this.#closed) return false;
    if ('failure' in read) {
      this.#fail(`read:${read.kind}`, read.failure);
      return false;
    }
    const text = read.text;
    const hash = createHash('sha256').update(text).digest('hex');
    if (hash === this.#appliedHash) {
      this.#failedKey = null; // reverted to the good content: healthy again
      return false;
    }
    if (`content:${hash}` === this.#failedKey) return false; // the same bad content: reported once already
    try {
      this.#applyText(text, hash);
      return true;
    } catch (error) {
      this.#fail(`content:${hash}`, error);
      return false;
    }
  }

  #applyText(raw: string, hash: string): void {
    const json = this.path.endsWith('.json');
    // Windows editors start UTF-8 files with a byte order mark; YAML skips it, JSON.parse does not.
    const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
    // Checked before parsing: YAML reads an empty file as null, which the schema would report as
    // "expected object, received null" instead of saying what is wrong.
    const refuse = (error: GovMapError): GovMapError => {
      this.#options.refused?.(error);
      return error;
    };
    if (text.trim() === '') throw refuse(this.#error(`${this.#options.role} ${this.path}`, 'the file is empty (an empty file is refused, never read as an empty set)'));
    let document: unknown;
    try {
      // A .json file must be JSON (YAML syntax in it is an error too); the YAML pass then finds
      // duplicate keys, which JSON.parse would silently resolve to the last one.
      if (json) JSON.parse(text);
      document = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
    } catch (error) {
      throw refuse(this.#error(`${this.#options.role} ${this.path}`, `not valid ${json ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]}`, error));
    }
    this.#options.apply(document, text);
    this.#appliedHash = hash;
    this.#failedKey = null;
    this.#loads++;
    this.#lastLoadedAt = new Date().toISOString();
  }

  #fail(key: string, error: unknown): void {
    if (key === this.#failedKey) return; // the failure reported last time, found again: not news
    this.#errors++;
    this.#failedKey = key;
    const code = error instanceof GovMapError ? error.code : ((error as NodeJS.ErrnoException).code ?? 'ERROR');
    const message = error instanceof Error ? error.message : String(error);
    this.#lastError = { code, message, at: new Date().toISOString() };
    this.#log(`govmap: ${this.#options.role} ${this.path}: reload rejected, still serving the last good version: ${message}`);
  }

  /**
   * The file's text once two reads settleMs apart agree, or why it could not be read. Content
   * already applied, or already reported as bad, is returned at once: nothing would change.
   * A file still changing after SETTLE_ROUNDS waits is a failure of its own (`unsettled`), so
   * that a file rewritten without pause cannot hold check() callers forever.
   */
  async #readSettled(): Promise<ReadResult> {
    let read = await this.#read();
    for (let round = 0; ; round++) {
      if ('failure' in read || this.#settleMs === 0 || this.#closed) return read;
      const hash = createHash('sha256').update(read.text).digest('hex');
      if (hash === this.#appliedHash || `content:${hash}` === this.#failedKey) return read;
      if (round === SETTLE_ROUNDS) {
        return {
          failure: this.#error(`${this.#options.role} ${this.path}`, `kept changing for ${SETTLE_ROUNDS} waits of ${this.#settleMs} ms (settleMs); a content is applied only once two reads that far apart agree`),
          kind: 'unsettled',
        };
      }
      await sleep(this.#settleMs);
      const again = await this.#read();
      if ('text' in again && again.text === read.text) return read;
      read = again;
    }
  }

  /**
   * The file's text, or why it could not be read. `kind` says which failure it is, for
   * de-duplication: `open:<errno code>`, `read:<errno code>` or `too-large` (whatever the size:
   * a file growing past the limit while it is written is one failure, not one per size seen).
   */
  async #read(): Promise<ReadResult> {
    const where = `${this.#options.role} ${this.path}`;
    let handle;
    try {
      handle = await open(this.path, 'r');
    } catch (error) {
      return { failure: this.#error(where, `cannot open: ${(error as Error).message}`, error), kind: `open:${(error as NodeJS.ErrnoException).code ?? 'ERROR'}` };
    }
    try {
      const { size } = await handle.stat();
      if (size > this.#maxBytes) return { failure: this.#error(where, `is ${size} bytes; the limit is ${this.#maxBytes}`), kind: 'too-large' };
      const buffer = Buffer.alloc(Math.min(size, this.#maxBytes) + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead > this.#maxBytes) return { failure: this.#error(where, `grew beyond the limit of ${this.#maxBytes} bytes while being read`), kind: 'too-large' };
      return { text: buffer.subarray(0, bytesRead).toString('utf8') };
    } catch (error) {
      return { failure: this.#error(where, `cannot read: ${(error as Error).message}`, error), kind: `read:${(error as NodeJS.ErrnoException).code ?? 'ERROR'}` };
    } finally {
      await handle.close();
    }
  }
}

type ReadResult = { readonly text: string } | { readonly failure: GovMapError; readonly kind: string };

/** Waits of settleMs a content may keep changing through before it is reported as unsettled. */
const SETTLE_ROUNDS = 20;

function positive(option: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value > 0)) throw new ConfigurationError(option, 'must be a positive integer', value);
  return value;
}
