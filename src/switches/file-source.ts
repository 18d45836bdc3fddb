import { parseSwitchDocument } from './definition.ts';
import type { SwitchBoard } from './board.ts';
import { WatchedFile } from './watched-file.ts';
import type { WatchedFileStatus } from './watched-file.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface FileSwitchSourceOptions {
  /** A `.json`, `.yaml` or `.yml` file: `{ "switches": { "<name>": <definition> } }`. */
  readonly path: string;
  readonly board: SwitchBoard;
  /** Recorded as the actor of every change. Default `file:<absolute path>`. */
  readonly actor?: string;
  /** See WatchedFileOptions: maxBytes (default 1 MiB), debounceMs (50), settleMs (150), pollMs (2000). */
  readonly maxBytes?: number;
  readonly debounceMs?: number;
  readonly settleMs?: number;
  readonly pollMs?: number;
  /** Where rejected reloads are reported. Default `console.error`. */
  readonly log?: (message: string, error?: unknown) => void;
}

/** Every key of FileSwitchSourceOptions (the compiler checks the two stay the same): any other is refused. */
const FILE_SOURCE_OPTIONS = optionKeys<FileSwitchSourceOptions>({
  path: true, board: true, actor: true, maxBytes: true, debounceMs: true, settleMs: true, pollMs: true, log: true,
});

/**
 * Switches from a watched file. Each valid content replaces the board's set whole (one new
 * version); an invalid one (bad syntax, a schema violation, a duplicate key, too large) is
 * rejected whole: the board keeps its last good snapshot and the error is logged, counted
 * (`status().errors`, metric `govmap_switch_source_errors_total`) and shown (`status().lastError`).
 */
export class FileSwitchSource {
  readonly kind = 'file';
  readonly #file: WatchedFile;

  constructor(options: FileSwitchSourceOptions) {
    refuseUnknownOptions(options, FILE_SOURCE_OPTIONS, 'FileSwitchSource');
    const board = options.board;
    let actor = options.actor;
    this.#file = new WatchedFile({
      path: options.path,
      role: 'switch file',
      maxBytes: options.maxBytes,
      debounceMs: options.debounceMs,
      settleMs: options.settleMs,
      pollMs: options.pollMs,
      log: options.log,
      // A content refused before it reaches the board is a refused change all the same: without
      // these two counts an operator's broken edit left govmap_switch_rejected_changes_total at 0.
      refused: () => board.counters.rejectedChanges++,
      apply: (document) => {
        // The whole document is checked (an unknown top-level field is a typo too), then the set applied.
        try {
          parseSwitchDocument(document, `switch file ${this.#file.path}`);
        } catch (error) {
          board.counters.rejectedChanges++;
          throw error;
        }
        board.replace((document as { switches: Record<string, unknown> }).switches, {
          actor: (actor ??= `file:${this.#file.path}`),
          reason: `switch file ${this.#file.path} changed`,
          source: 'file',
        });
      },
    });
  }

  get path(): string {
    return this.#file.path;
  }

  /** Loads the file (throws if it is missing or invalid) and starts watching it. */
  start(): Promise<void> {
    return this.#file.start();
  }

  /** Re-reads now; true when a new version was applied. */
  reload(): Promise<boolean> {
    return this.#file.check();
  }

  status(): WatchedFileStatus {
    return this.#file.status();
  }

  close(): void {
    this.#file.close();
  }
}
