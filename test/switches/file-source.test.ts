import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileSwitchSource, SwitchBoard, SwitchMetrics, SwitchSourceError } from '../../src/switches/index.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'govmap-switch-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Waits until `predicate` holds, polling; fails with `what` after `ms`. */
async function eventually(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes like a config tool does: a temporary file renamed over the old one (atomic). */
async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.hrtime.bigint()}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

describe('file source', () => {
  test('loads YAML at start, then follows changes as whole new versions', async () => {
    const path = join(dir, 'switches.yaml');
    await writeFile(path, 'switches:\n  fast-settlement:\n    enabled: true\n    rollout: { percent: 25 }\n  legacy-fx: false\n');
    const board = new SwitchBoard();
    const source = new FileSwitchSource({ path, board, debounceMs: 10, pollMs: 0 });
    await source.start();
    try {
      assert.equal(board.snapshot.version, 2);
      assert.deepEqual(board.snapshot.names(), ['fast-settlement', 'legacy-fx']);
      assert.equal(board.snapshot.actor, `file:${source.path}`);
      assert.equal(board.snapshot.source, 'file');

      await replaceFile(path, 'switches:\n  fast-settlement: false\n');
      await eventually('the new file to be applied', () => board.snapshot.version === 3);
      assert.deepEqual(board.snapshot.names(), ['fast-settlement']);
      assert.equal(board.isOn('fast-settlement'), false);
    } finally {
      source.close();
    }
  });

  test('an invalid file keeps the last good snapshot; the error is logged, counted and visible; a fix recovers', async () => {
    const path = join(dir, 'switches.json');
    await writeFile(path, JSON.stringify({ switches: { a: true } }));
    const board = new SwitchBoard();
    const logged: string[] = [];
    const source = new FileSwitchSource({ path, board, debounceMs: 10, pollMs: 0, log: (m) => logged.push(m) });
    const metrics = new SwitchMetrics().track(board, [source]);
    await source.start();
    try {
      const good = board.snapshot;
      for (const [bad, why] of [
        ['{"switches": {"a": tru', /not valid JSON/],
        ['switches:\n  a: false\n', /not valid JSON/],
        [JSON.stringify({ switches: { a: { enabled: 'yes' } } }), /switches\.a\.enabled/],
        ['{"switches": {"a": true, "a": false}}', /[Dd]uplicate|unique/],
        [JSON.stringify({ switchez: {} }), /unknown field\(s\) "switchez"/],
      ] as const) {
        const errorsBefore = source.status().errors;
        await replaceFile(path, bad);
        await eventually(`rejection of ${bad}`, () => source.status().errors === errorsBefore + 1);
        assert.equal(board.snapshot, good, 'the last good snapshot is still served');
        assert.equal(source.status().healthy, false);
        assert.match(source.status().lastError!.message, why);
        assert.match(logged.at(-1)!, /still serving the last good version/);
      }
      const text = await metrics.registry.metrics();
      assert.match(text, /govmap_switch_source_errors_total\{board="switches",source="file"\} 5/);
      assert.match(text, /govmap_switch_source_healthy\{board="switches",source="file"\} 0/);

      await replaceFile(path, JSON.stringify({ switches: { a: false } }));
      await eventually('the fixed file to be applied', () => board.snapshot !== good);
      assert.equal(board.isOn('a'), false);
      assert.equal(source.status().healthy, true);
      assert.match(await metrics.registry.metrics(), /govmap_switch_source_healthy\{board="switches",source="file"\} 1/);
    } finally {
      source.close();
    }
  });

  test('the polling safety net picks up a change the directory watch did not report', async () => {
    const path = join(dir, 'polled.json');
    await writeFile(path, JSON.stringify({ switches: { a: true } }));
    const board = new SwitchBoard();
    const source = new FileSwitchSource({ path, board, debounceMs: 1, pollMs: 30 });
    await source.start();
    try {
      await writeFile(path, JSON.stringify({ switches: { a: false } }));
      await eventually('the change to be applied', () => board.isOn('a') === false);
    } finally {
      source.close();
    }
  });

  test('a missing or invalid file at start fails start(), and the board is untouched', async () => {
    const board = new SwitchBoard({ initial: { keep: true } });
    await assert.rejects(new FileSwitchSource({ path: join(dir, 'absent.yaml'), board }).start(), SwitchSourceError);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'switches:\n  x: maybe\n');
    await assert.rejects(new FileSwitchSource({ path: bad, board }).start(), { code: 'GOVMAP_SWITCH_CONFIG_INVALID' });
    assert.equal(board.snapshot.version, 1);
    assert.equal(board.isOn('keep'), true);
  });

  test('a file above maxBytes is refused', async () => {
    const path = join(dir, 'big.json');
    await writeFile(path, JSON.stringify({ switches: { a: { enabled: true, description: 'x'.repeat(400) } } }));
    await assert.rejects(new FileSwitchSource({ path, board: new SwitchBoard(), maxBytes: 100 }).start(), /the limit is 100/);
  });
});
