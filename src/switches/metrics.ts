import { Counter, Gauge, Registry } from 'prom-client';
import type { SwitchBoard } from './board.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';
import { REGISTRY_RULE, isRegistry, registerStaged } from '../metrics/scrape-time.ts';
import { ConfigurationError } from '../map/errors.ts';

/** What metrics read of a switch source: any of FileSwitchSource, StateSwitchSource. */
export interface MeasuredSwitchSource {
  readonly kind: string;
  status(): { readonly errors: number; readonly healthy?: boolean; readonly connected?: boolean };
}

export interface SwitchMetricsOptions {
  /** Registry to register into. Default: a new Registry. Pass the MapMetrics registry to share /metrics. */
  readonly registry?: Registry;
  /** Metric name prefix. Default `govmap_`. */
  readonly prefix?: string;
}

/** Every key of SwitchMetricsOptions (the compiler checks the two stay the same): any other is refused. */
const SWITCH_METRICS_OPTIONS = optionKeys<SwitchMetricsOptions>({
  registry: true, prefix: true,
});

/**
 * Prometheus metrics of switch boards and their sources, read at scrape time from the boards'
 * plain counters (nothing on the switch read path). Alert on `govmap_switch_source_healthy == 0`:
 * the source's newest content was rejected and the board is serving an older version.
 */
export class SwitchMetrics {
  readonly registry: Registry;
  readonly #boards = new Map<string, { board: SwitchBoard; sources: MeasuredSwitchSource[] }>();

  constructor(options: SwitchMetricsOptions = {}) {
    refuseUnknownOptions(options, SWITCH_METRICS_OPTIONS, 'SwitchMetrics');
    if (options.registry !== undefined && !isRegistry(options.registry)) throw new ConfigurationError('registry', REGISTRY_RULE, options.registry);
    this.registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'govmap_';
    // Created apart, moved in together: a taken name refuses all of them (metrics/scrape-time.ts).
    const staging = new Registry();
    const registers = [staging];
    const boards = this.#boards;
    new Gauge({
      name: `${p}switch_snapshot_version`,
      help: 'Version of the switch snapshot a board serves now.',
      labelNames: ['board'],
      registers,
      collect() {
        this.reset();
        for (const { board } of boards.values()) this.set({ board: board.name }, board.snapshot.version);
      },
    });
    const counter = (name: string, help: string, read: (board: SwitchBoard) => number): void => {
      new Counter({
        name: p + name,
        help,
        labelNames: ['board'],
        registers,
        collect() {
          this.reset();
          for (const { board } of boards.values()) this.inc({ board: board.name }, read(board));
        },
      });
    };
    counter('switch_changes_total', 'Switch snapshots swapped in (each a new version).', (b) => b.counters.changes);
    counter('switch_rejected_changes_total', 'Switch changes refused by the board or a source writing to it (invalid, unknown switch, version conflict, replica read-only); nothing was applied.', (b) => b.counters.rejectedChanges);
    counter('switch_audit_errors_total', 'Switch changes whose audit event could not be recorded.', (b) => b.counters.auditErrors);
    new Counter({
      name: `${p}switch_source_errors_total`,
      help: 'Contents a switch source rejected (unreadable, unparsable, invalid), each distinct failure once; the last good version stays.',
      labelNames: ['board', 'source'],
      registers,
      collect() {
        this.reset();
        for (const { board, sources } of boards.values()) for (const s of sources) this.inc({ board: board.name, source: s.kind }, s.status().errors);
      },
    });
    new Gauge({
      name: `${p}switch_source_healthy`,
      help: '1 when the source\'s newest content is applied (and, for a store, it is connected); 0 when the board serves an older version.',
      labelNames: ['board', 'source'],
      registers,
      collect() {
        this.reset();
        for (const { board, sources } of boards.values()) {
          // Two sources of one kind (a FileSwitchSource and a state source over a `file` store)
          // share a label: set one after the other, a healthy one hid an unhealthy one and the
          // `== 0` alert never fired. The gauge is 0 if either is unhealthy (as routing's).
          const healthy = new Map<string, number>();
          for (const s of sources) {
            const status = s.status();
            const value = status.healthy === false || status.connected === false ? 0 : 1;
            healthy.set(s.kind, Math.min(healthy.get(s.kind) ?? 1, value));
          }
          for (const [source, value] of healthy) this.set({ board: board.name, source }, value);
        }
      },
    });
    registerStaged(staging, this.registry, 'SwitchMetrics', p);
  }

  /** Starts exporting `board` (and its sources). */
  track(board: SwitchBoard, sources: readonly MeasuredSwitchSource[] = []): this {
    this.#boards.set(board.name, { board, sources: [...sources] });
    return this;
  }
}
