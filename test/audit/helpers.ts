import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
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
  // A SIGKILL mid-append can leave a partial last line; recovery terminates it and names it in
  // the AUDIT_GAP it writes (gap.torn). Such a line is skipped here only if a gap names it.
  const partial: Array<{ segment: number; offset: number; text: string }> = [];
  for (const file of segmentFiles(dir)) {
    const segment = Number(/(\d+)\.jsonl$/.exec(file)?.[1] ?? -1);
    let offset = 0;
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      const at = offset;
      offset += Buffer.byteLength(text) + 1;
      if (text === '') continue;
      let value: Record<string, unknown>;
      try {
        value = JSON.parse(text) as Record<string, unknown>;
      } catch {
        partial.push({ segment, offset: at, text });
        continue;
      }
      lines.push(value);
      if (value.type === 'SEAL') seals.push(value as unknown as SealRecord);
      else if (value.type !== 'SEGMENT') events.push(value as unknown as AuditEvent);
    }
  }
  for (const line of partial) {
    const named = events.some((e) => e.gap?.torn?.segment === line.segment && e.gap.torn.offset === line.offset);
    if (!named) throw new Error(`segment ${line.segment} byte ${line.offset}: unparsable line no AUDIT_GAP names as torn: ${line.text.slice(0, 80)}`);
  }
  return { events, seals, lines };
}

export function bySeq(events: readonly AuditEvent[]): AuditEvent[] {
  return [...events].sort((a, b) => a.seq - b.seq);
}

/**
 * A "broker" that takes connections and never answers: a black-holed Kafka (packets dropped,
 * no reset), which a stopped broker is not. Closed, with its connections, when the test ends.
 * Returns its port on 127.0.0.1.
 */
export async function blackHoleBroker(t: { after(fn: () => void): void }): Promise<number> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}
