import { GovernedMap } from '../../src/index.ts';
import { Sandbox } from '../../src/sandbox/index.ts';

/**
 * A report as the sandbox writes it, with an IDLE suspect (fake clock, no GC observation), as
 * JSON text (`indent` as JSON.stringify's): what the CLI receives and what a CI job saves.
 */
export function sandboxReportText(indent?: number): string {
  let now = Date.UTC(2025, 0, 6, 9);
  const sandbox = new Sandbox({ idleThresholdMs: 1_000, gc: false, clock: () => now }).start();
  try {
    const forgotten = new GovernedMap<string, number>({ name: 'fx_rates_eod', validate: () => true });
    forgotten.store('EURUSD', 10842);
    sandbox.sweep();
    now += 2_000;
    sandbox.sweep();
    return JSON.stringify(sandbox.report(), null, indent);
  } finally {
    sandbox.stop();
  }
}
