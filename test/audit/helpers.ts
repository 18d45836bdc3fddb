import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GovernedMap } from '../../src/map/index.ts';
import type { AuditEvent, SealRecord } from '../../src/audit/event.ts';

/** A fresh spool directory, removed when the test ends. */
export function tempSpool(t: { after(fn: () => void): void }, name = 'spool'): string {
  const root = mkdtempSync(join(tmpdir(), 'govmap-audit-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return join(root, name);
}

export function balances(name = 'balances'): GovernedMap<string, bigint> {
  return new GovernedMap<string, bigint>({ name, validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
}

export function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /^audit-[0-9]{6,}\.jsonl$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

export interface SpoolContent {
  readonly events: AuditEvent[];
  readonly seals: SealRecord[];
  /** Every line, in file order, parsed (events, seals and segment headers). */
  readonly lines: Array<Record<string, unknown>>;
}

/** Every record of every segment, in file order. */
export function readSpool(dir: string): SpoolContent {
  const events: AuditEvent[] = [];
  const seals: SealRecord[] = [];
  const lines: Array<Record<string, unknown>> = [];
  for (const file of segmentFiles(dir)) {
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      if (text === '') continue;
      const value = JSON.parse(text) as Record<string, unknown>;
      lines.push(value);
      if (value.type === 'SEAL') seals.push(value as unknown as SealRecord);
      else if (value.type !== 'SEGMENT') events.push(value as unknown as AuditEvent);
    }
  }
  return { events, seals, lines };
}

export function bySeq(events: readonly AuditEvent[]): AuditEvent[] {
  return [...events].sort((a, b) => a.seq - b.seq);
}
