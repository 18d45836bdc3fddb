import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuditRecorder, verifySpool } from '../../src/audit/index.ts';
import type { VerifyReport } from '../../src/audit/index.ts';
import { balances, segmentFiles } from './helpers.ts';

/**
 * A scratch root for tests that write a stopped spool once and damage copies of it: small
 * segments and seal blocks, so a few hundred operations span several of each.
 */
export interface SpoolFixture {
  readonly root: string;
  /** A stopped spool of `iterations` STORE+LOAD pairs (flushed every 100 unless `flushEvery` is 0). */
  readonly writeSpool: (dir: string, options?: { extra?: Record<string, unknown>; iterations?: number; flushEvery?: number }) => Promise<void>;
  /** A fresh copy of `source` under the root. */
  readonly copyOf: (source: string) => string;
  /** Verifies a copy of `source` after `damage` was done to it. */
  readonly damaged: (source: string, damage: (dir: string, files: string[]) => void, key?: Uint8Array | null) => VerifyReport;
}

export function spoolFixture(name: string): SpoolFixture {
  const root = mkdtempSync(join(tmpdir(), `govmap-${name}-`));
  process.on('exit', () => rmSync(root, { recursive: true, force: true }));
  let copies = 0;
  const copyOf = (source: string): string => {
    const dir = join(root, `copy-${copies++}`);
    cpSync(source, dir, { recursive: true });
    return dir;
  };
  return {
    root,
    writeSpool: async (dir, { extra = {}, iterations = 900, flushEvery = 100 } = {}) => {
      const audit = await createAuditRecorder({ dir, actor: 'clearing/instance-1', maxSegmentBytes: 65_536, sealBytes: 4096, ...extra });
      const map = balances();
      audit.attach(map);
      for (let i = 0; i < iterations; i++) {
        map.store(`acct-${i % 40}`, BigInt(1000 + i));
        map.load(`acct-${(i * 7) % 40}`);
        if (flushEvery > 0 && i % flushEvery === 0) await audit.flush();
      }
      await audit.stop();
    },
    copyOf,
    damaged: (source, damage, key = null) => {
      const dir = copyOf(source);
      damage(dir, segmentFiles(dir));
      return verifySpool(dir, { key });
    },
  };
}

/** The lines of `file`, without the empty string after its last newline. */
export function lines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

export function writeLines(file: string, content: string[]): void {
  writeFileSync(file, `${content.join('\n')}\n`);
}
