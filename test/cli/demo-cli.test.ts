import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

function run(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`govmap ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('govmap demo --load drives traffic, shows progress and ends cleanly', async () => {
  const { code, stdout, stderr } = await run(['demo', '--port', '0', '--accounts', '200', '--load', '--duration', '2', '--exit']);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /reference clearing service on http:\/\/127\.0\.0\.1:\d+/);
  assert.match(stdout, /req\/s/);
  assert.match(stdout, /load done/);
  assert.match(stdout, /map "balances": 200 keys/);
  assert.doesNotMatch(stdout, /\b5\d\d:/, 'no 5xx during the load');
  // The closing lines account for the audit: every load and every write attempt of the balances
  // (openings included) is a record, and nothing was dropped or lost.
  const map = /map "balances": \d+ keys, (\d+) loads, (\d+) ranges, (\d+) stores, (\d+) rejected/.exec(stdout);
  const audit = /audit: [\d,]+ records \(([\d,]+) reads, ([\d,]+) writes\) in \S+; 0 reads dropped, 0 writes lost/.exec(stdout);
  assert.ok(map !== null && audit !== null, stdout);
  const count = (text: string): number => Number(text.replaceAll(',', ''));
  assert.equal(count(audit[1]!), count(map[1]!) + count(map[2]!), 'one read record per load and per range');
  assert.equal(count(audit[2]!), count(map[3]!) + count(map[4]!), 'one write record per store, accepted or rejected');
});

test('bad options are refused with the option and the rule named', async () => {
  const { code, stderr } = await run(['demo', '--port', 'eighty']);
  assert.notEqual(code, 0);
  assert.match(stderr, /--port must be a whole number from 0 to 65535/);
});

test('a busy port is reported as such, not as a stack trace', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const { port } = blocker.address() as AddressInfo;
  try {
    const { code, stderr } = await run(['demo', '--port', String(port)]);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use`));
  } finally {
    blocker.close();
  }
});
