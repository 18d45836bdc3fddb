import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import { balances } from './helpers.ts';

/**
 * Verifying the spool of a recorder that is running (what the dashboard and the demo's retention
 * do): the drain worker seals, fsyncs and moves HEAD while verify reads. An intact live spool must
 * verify every time; reading HEAD after the log once made a seal committed meanwhile look like a
 * truncated log.
 */
test('a live spool verifies while the recorder keeps sealing and moving HEAD', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'govmap-verify-live-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', fsyncIntervalMs: 1, sealBytes: 4096 });
  const map = balances();
  audit.attach(map);
  let headMoves = 0;
  let lastSeals = audit.stats().seals;
  try {
    for (let round = 0; round < 40; round++) {
      // A burst the drain worker is still sealing while verify reads.
      for (let i = 0; i < 2000; i++) {
        map.store(`acct-${i % 50}`, BigInt(round * 10_000 + i));
        map.load(`acct-${(i * 7) % 50}`);
      }
      const report = verifySpool(dir);
      assert.equal(report.ok, true, `round ${round}: ${JSON.stringify(report.firstBad)}`);
      const seals = audit.stats().seals;
      if (seals !== lastSeals) headMoves++;
      lastSeals = seals;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } finally {
    await audit.stop();
  }
  assert.ok(headMoves >= 20, `the recorder sealed during most rounds (${headMoves} of 40): the race was exercised`);
  assert.equal(verifySpool(dir).ok, true);
});
