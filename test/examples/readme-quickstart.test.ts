import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

/**
 * docs-snippets.test.ts compiles README.md's "The API in five minutes"; this runs it, as a user
 * pasting it would, and checks what its comments promise: the balance after each step, the
 * refused overdraft leaving the map unchanged, and the metrics the server it starts serves.
 * Only the import path (the source, not dist/) and the port (a free one) are adapted.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));

function quickStart(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## The API in five minutes'));
  const block = /^```ts\n([\s\S]*?)^```/m.exec(section)?.[1];
  assert.ok(block !== undefined, 'README.md has no ts block under "The API in five minutes"');
  assert.match(block, /\.listen\(9464\)/, 'the quick start no longer serves /metrics on 9464: update this test');
  return block
    .replace(/from 'govmap'/, `from '${pathToFileURL(join(root, 'src/index.ts')).href}'`)
    .replace('http.createServer(', 'const server = http.createServer(')
    .replace('.listen(9464)', '.listen(0)');
}

test('README quick start, run as written: the balance ends at 7400n (10000 - 2500 - 100), an overdraft is refused with BALANCE_UNDERFLOW and changes nothing, and /metrics serves the syncmap_* series', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'govmap-readme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'quick-start.ts');
  const epilogue = `
const trace = [];
await new Promise((resolve) => server.once('listening', resolve));
try { balances.update('acct-1', (b) => b - 1_000_000n); } catch (error) { trace.push({ name: error.name, code: error.code, reason: error.reason, message: error.message }); }
const body = await (await fetch('http://127.0.0.1:' + server.address().port + '/metrics')).text();
server.close();
console.log(JSON.stringify({ balance: String(balances.load('acct-1')), refused: trace[0], metrics: body }));
`;
  writeFileSync(file, quickStart() + epilogue);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: dir, timeout: 30_000 });
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { balance: string; refused: { name: string; code: string; reason: string; message: string }; metrics: string };
  assert.equal(result.balance, '7400', 'store 10000, update -2500, updateAsync -100; the refused overdrafts changed nothing');
  assert.deepEqual(result.refused, {
    name: 'ValidationError',
    code: 'GOVMAP_VALIDATION_REJECTED',
    reason: 'BALANCE_UNDERFLOW',
    message: 'map "balances": write of key "acct-1" rejected by its validator (BALANCE_UNDERFLOW): acct-1 would go negative',
  });
  // One refusal in the block itself (its try/catch), one in the epilogue.
  assert.match(result.metrics, /^syncmap_validation_rejections_total\{map="balances",reason="BALANCE_UNDERFLOW"\} 2$/m);
  assert.match(result.metrics, /^syncmap_store_total\{map="balances",outcome="ok"\} 3$/m);
  assert.match(result.metrics, /^syncmap_keys\{map="balances"\} 1$/m);
  assert.match(result.metrics, /^syncmap_range_total\{map="balances"\} 1$/m);
});
