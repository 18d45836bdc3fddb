import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigurationError } from '../../src/map/errors.ts';
import { FileSwitchSource, SwitchBoard, SwitchMetrics, SwitchSourceError } from '../../src/switches/index.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'govmap-switch-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Waits until `predicate` holds, polling; fails with `what` after `ms`. */
async function eventually(what: string, predicate: () => boolean, ms = 15_000): Promise<void> {
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
      // Each refused content is a refused change, whether its syntax, its document or its set broke a rule.
      assert.match(text, /govmap_switch_rejected_changes_total\{board="switches"\} 5\n/);

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
    const unparsable = join(dir, 'unparsable.yaml');
    await writeFile(unparsable, 'switches: [\n');
    await assert.rejects(new FileSwitchSource({ path: unparsable, board }).start(), SwitchSourceError);
    assert.equal(board.counters.rejectedChanges, 2, 'an absent file is no change; the two invalid ones are refused changes');
    assert.equal(board.snapshot.version, 1);
    assert.equal(board.isOn('keep'), true);
  });

  test('a file that cannot be read is logged and counted once, however often it is checked; its return heals', async () => {
    const path = join(dir, 'deleted.yaml');
    await writeFile(path, 'switches:\n  a: true\n');
    const board = new SwitchBoard();
    const logged: string[] = [];
    const source = new FileSwitchSource({ path, board, debounceMs: 10, pollMs: 0, log: (m) => logged.push(m) });
    await source.start();
    try {
      await rm(path);
      for (let i = 0; i < 5; i++) assert.equal(await source.reload(), false);
      assert.equal(source.status().errors, 1);
      assert.equal(logged.length, 1);
      assert.equal(source.status().lastError?.code, 'GOVMAP_SWITCH_SOURCE_FAILED', 'switch files keep the switch code');
      assert.match(source.status().lastError!.message, /^switch source switch file .*deleted\.yaml: cannot open/);
      assert.equal(source.status().healthy, false);
      assert.equal(board.isOn('a'), true, 'the last good snapshot stays');

      // Replaced whole: a half-written file seen by the directory watch would be a failure of its own.
      await replaceFile(path, 'switches:\n  a: true\n');
      await source.reload();
      assert.equal(source.status().healthy, true, 'the good content is back');
      await rm(path);
      await source.reload();
      await source.reload();
      assert.equal(source.status().errors, 2, 'a new failure after a recovery counts again, once');
    } finally {
      source.close();
    }
  });

  test('a file over maxBytes is reported once while it stays over, whatever its size', async () => {
    const path = join(dir, 'growing.json');
    await writeFile(path, JSON.stringify({ switches: { a: true } }));
    const logged: string[] = [];
    const source = new FileSwitchSource({ path, board: new SwitchBoard(), maxBytes: 200, debounceMs: 10, pollMs: 0, log: (m) => logged.push(m) });
    await source.start();
    try {
      for (const size of [300, 300, 900, 5000, 5000]) {
        // Replaced whole: written in place, the directory watch could read it truncated or half
        // written (empty, invalid JSON: other failures, rightly counted), as it did on a busy CI box.
        await replaceFile(path, JSON.stringify({ switches: { a: { enabled: true, description: 'x'.repeat(size) } } }));
        await source.reload();
      }
      assert.equal(source.status().errors, 1);
      assert.equal(logged.length, 1);
      assert.match(logged[0]!, /the limit is 200/);
    } finally {
      source.close();
    }
  });

  test('reload() asked while another read is in flight resolves only once the file as it is now has been read', async () => {
    // A change event's read (or another caller's reload) is in flight when an admin writes the
    // file and asks for a reload: that reload used to answer with the read in flight, which had
    // read the file before the write, so `await reload()` returned with the new content unapplied.
    const path = join(dir, 'in-flight.json');
    await writeFile(path, JSON.stringify({ switches: { a: true } }));
    const board = new SwitchBoard();
    const source = new FileSwitchSource({ path, board, debounceMs: 60_000, pollMs: 0 });
    await source.start();
    try {
      await replaceFile(path, JSON.stringify({ switches: { a: false } }));
      let second: Promise<boolean> | undefined;
      // Runs inside the first read, as it applies what it read: the file changes again, and a reload is asked for.
      const unsubscribe = board.subscribe(() => {
        if (second !== undefined) return;
        writeFileSync(`${path}.tmp`, JSON.stringify({ switches: { a: false, b: true } }));
        renameSync(`${path}.tmp`, path);
        second = source.reload();
      });
      const first = source.reload();
      await new Promise<void>((resolve) => {
        const wait = (): void => void (second === undefined ? setImmediate(wait) : resolve());
        wait();
      });
      assert.equal(await second, true, 'the second reload applied the file as written before it was asked');
      assert.equal(board.isOn('b'), true);
      assert.equal(await first, true);
      unsubscribe();
    } finally {
      source.close();
    }
  });

  test('a file written in place is applied only once whole: a valid first half never removes the switches still to be written', async () => {
    // An editor, `cp` or a shell `>` truncates the file, then writes it. Read between the two
    // writes, its first lines were a valid document on their own and were applied: switch c
    // vanished (back to its default) until the rest landed.
    const path = join(dir, 'in-place.yaml');
    await writeFile(path, 'switches:\n  a: true\n  b: true\n  c: true\n');
    const board = new SwitchBoard();
    const seen: string[][] = [];
    const source = new FileSwitchSource({ path, board, debounceMs: 60_000, pollMs: 0 });
    await source.start();
    const unsubscribe = board.subscribe(() => seen.push(board.snapshot.names()));
    try {
      const file = await open(path, 'w');
      await file.write('switches:\n  a: false\n  b: false\n');
      const reloaded = source.reload();
      await new Promise((r) => setTimeout(r, 20));
      await file.write('  c: false\n');
      await file.close();
      assert.equal(await reloaded, true);
      assert.deepEqual(seen, [['a', 'b', 'c']], 'one change, with every switch; never the first half alone');
      assert.equal(board.isOn('c'), false);
      assert.equal(source.status().errors, 0);
    } finally {
      unsubscribe();
      source.close();
    }
  });

  test('a file that never holds still is reported as unsettled, not applied, and the last good snapshot stays', async () => {
    const path = join(dir, 'churning.json');
    await writeFile(path, JSON.stringify({ switches: { a: true } }));
    const board = new SwitchBoard();
    const logged: string[] = [];
    const source = new FileSwitchSource({ path, board, debounceMs: 60_000, pollMs: 0, settleMs: 5, log: (m) => logged.push(m) });
    await source.start();
    let n = 0;
    // Each version lands whole (written aside, renamed over): a read must never catch a half-written
    // file here, or the source would rightly report it as invalid JSON (seen under CI load) and
    // this test would not reach the rule it checks: content that keeps changing.
    const churn = setInterval(() => {
      writeFileSync(`${path}.next`, JSON.stringify({ switches: { a: false, [`s${n++}`]: true } }));
      renameSync(`${path}.next`, path);
    }, 1);
    try {
      await eventually('the churn to start', () => n > 1);
      assert.equal(await source.reload(), false);
      assert.equal(board.isOn('a'), true, 'the last good snapshot stays');
      assert.match(source.status().lastError!.message, /kept changing for 20 waits of 5 ms \(settleMs\)/);
      assert.equal(source.status().lastError!.code, 'GOVMAP_SWITCH_SOURCE_FAILED');
    } finally {
      clearInterval(churn);
      source.close();
    }
  });

  test('a .json file starting with a UTF-8 byte order mark is read, as YAML already was', async () => {
    for (const name of ['bom.json', 'bom.yaml']) {
      const path = join(dir, name);
      await writeFile(path, `\uFEFF${JSON.stringify({ switches: { a: true } })}`);
      const board = new SwitchBoard();
      const source = new FileSwitchSource({ path, board, pollMs: 0 });
      await source.start();
      source.close();
      assert.equal(board.isOn('a'), true, name);
    }
  });

  test('an empty or blank file is refused as empty, not as "expected object, received null"', async () => {
    for (const [name, text] of [['empty.yaml', ''], ['blank.yaml', '  \n\n'], ['blank.json', '\uFEFF \n']] as const) {
      const path = join(dir, name);
      await writeFile(path, text);
      await assert.rejects(new FileSwitchSource({ path, board: new SwitchBoard(), pollMs: 0 }).start(), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'GOVMAP_SWITCH_SOURCE_FAILED', name);
        assert.match(error.message, /the file is empty/, name);
        assert.doesNotMatch(error.message, /received null/, name);
        return true;
      });
    }
    const comments = join(dir, 'comments.yaml');
    await writeFile(comments, '# switches: to come\n');
    await assert.rejects(new FileSwitchSource({ path: comments, board: new SwitchBoard(), pollMs: 0 }).start(), { code: 'GOVMAP_SWITCH_CONFIG_INVALID', message: /\(root\): the document is empty/ });
  });

  test('a switch named __proto__ is refused, naming the key, not silently dropped', async () => {
    for (const [name, text] of [
      ['proto.json', '{"switches":{"__proto__":{"enabled":"garbage"},"ok":true}}'],
      ['proto.yaml', 'switches:\n  __proto__: { enabled: garbage }\n  ok: true\n'],
    ] as const) {
      const path = join(dir, name);
      await writeFile(path, text);
      const board = new SwitchBoard();
      await assert.rejects(new FileSwitchSource({ path, board, pollMs: 0 }).start(), { code: 'GOVMAP_SWITCH_CONFIG_INVALID', message: /__proto__.*a switch name is \[A-Za-z\]/ }, name);
      assert.equal(board.snapshot.has('ok'), false, 'nothing applied');
    }
  });

  test('timer options beyond a Node.js timer\'s limit are refused, naming the option and the rule', () => {
    for (const option of ['pollMs', 'debounceMs', 'settleMs'] as const) {
      assert.throws(
        () => new FileSwitchSource({ path: join(dir, 'x.yaml'), board: new SwitchBoard(), [option]: 3e9 }),
        (error: unknown) => error instanceof ConfigurationError && error.message.includes(`"${option}"`) && /at most 2147483647 ms/.test(error.message),
        option,
      );
    }
    assert.doesNotThrow(() => new FileSwitchSource({ path: join(dir, 'x.yaml'), board: new SwitchBoard(), pollMs: 2_147_483_647 }));
  });

  test('a file above maxBytes is refused', async () => {
    const path = join(dir, 'big.json');
    await writeFile(path, JSON.stringify({ switches: { a: { enabled: true, description: 'x'.repeat(400) } } }));
    await assert.rejects(new FileSwitchSource({ path, board: new SwitchBoard(), maxBytes: 100 }).start(), /the limit is 100/);
  });
});
