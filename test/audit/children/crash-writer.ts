/**
 * A clearing process for the SIGKILL test: it writes and reads balances under audit until it is
 * killed, and tells the parent (IPC) about every write that has returned, with its seq.
 *   argv: <spool dir> <mode: "free" | "pause"> [direct | journal | journal-64k]
 *   (how writes reach the OS: write(2), the write journal, or a 64 KiB journal that wraps often)
 * In "pause" mode it holds the drain worker after a while and issues reads that can only sit in
 * the ring, reports their seqs, and keeps going: the parent kills it then.
 */
import { createAuditRecorder } from '../../../src/audit/index.ts';
import { GovernedMap } from '../../../src/map/index.ts';

const [dir, mode, path] = process.argv.slice(2) as [string, 'free' | 'pause', string | undefined];
const audit = await createAuditRecorder({
  dir,
  actor: 'clearing/crash-test',
  seqReservation: 256,
  fsyncIntervalMs: 5,
  writeJournal: path === 'journal' || path === 'journal-64k',
  ...(path === 'journal-64k' ? { journalBytes: 1 << 16 } : {}),
});
const map = new GovernedMap<string, bigint>({ name: 'balances', validate: (_k, v) => (v >= 0n ? true : 'BALANCE_UNDERFLOW') });
audit.attach(map);
const send = (message: unknown): void => {
  process.send!(message);
};

let i = 0;
let paused = false;
function burst(): void {
  for (let n = 0; n < 50; n++, i++) {
    const key = `acct-${i % 100}`;
    const value = BigInt(i);
    map.store(key, value);
    send({ type: 'write', seq: audit.stats().nextSeq - 1, key, value: value.toString() });
    for (let r = 0; r < 20; r++) map.load(`acct-${(i + r) % 100}`);
  }
  if (mode === 'pause' && !paused && i >= 2000) {
    paused = true;
    audit.pauseDrainForTesting(true);
    const from = audit.stats().nextSeq;
    for (let r = 0; r < 500; r++) map.load(`acct-${r % 100}`);
    send({ type: 'paused', from, to: audit.stats().nextSeq - 1 });
  }
  setImmediate(burst);
}
send({ type: 'ready' });
burst();
