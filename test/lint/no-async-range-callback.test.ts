import { noAsyncRangeCallback } from '../../src/lint/rules/no-async-range-callback.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

// Every case starts with these 7 lines, so the code under test begins on line 8.
const header = `import { GovernedMap } from '${GOVMAP}';
import { readFileSync } from 'node:fs';
import * as fs from 'fs';
import { execSync as run } from 'node:child_process';
declare const balances: GovernedMap<string, bigint>;
declare function notify(id: string): Promise<void>;
declare const plain: Map<string, bigint>;
`;

typedRuleTester().run('no-async-range-callback', noAsyncRangeCallback, {
  valid: [
    { name: 'collect synchronously, await after the walk', code: `${header}const due: string[] = [];\nbalances.range((id, b) => { if (b === 0n) due.push(id); });\nfor (const id of due) await notify(id);` },
    { name: 'async function nested in the callback (defined, not awaited by the walk)', code: `${header}const jobs: Array<() => Promise<void>> = [];\nbalances.range((id) => { jobs.push(async () => { await notify(id); }); });` },
    { name: 'a range method of some other type', code: `${header}declare const tree: { range(cb: (k: string) => Promise<void>): void };\ntree.range(async (k) => { await notify(k); });` },
    { name: 'Map.forEach is not a range walk', code: `${header}plain.forEach(async (_v, k) => { await notify(k); });` },
    { name: 'a same-named readFileSync that is not node:fs', code: `import { GovernedMap } from '${GOVMAP}';\ndeclare const balances: GovernedMap<string, bigint>;\nfunction readFileSync(p: string): string { return p; }\nbalances.range((id) => { readFileSync(id); });` },
    { name: 'synchronous fs call outside the callback', code: `${header}const config = readFileSync('/etc/limits.json', 'utf8');\nbalances.range((id, b) => { if (config.includes(id)) return b > 0n; });` },
    { name: 'a non-blocking fs call (no Sync) that returns void', code: `${header}balances.range((id) => { fs.appendFile('/tmp/x', id, () => undefined); });` },
    { name: 'named synchronous callback from the same file', code: `${header}function visit(id: string, b: bigint): boolean { return b > 0n && id.length > 0; }\nbalances.range(visit);` },
  ],
  invalid: [
    {
      name: 'async arrow callback',
      code: `${header}balances.range(async (id) => { await notify(id); });`,
      errors: [{ messageId: 'asyncCallback', line: 8, column: 16, endColumn: 51, data: { map: 'balances' } }],
    },
    {
      name: 'async function passed by name',
      code: `${header}async function visit(id: string): Promise<void> { await notify(id); }\nbalances.range(visit);`,
      errors: [{ messageId: 'asyncCallback', line: 9, column: 16, endColumn: 21 }],
    },
    {
      name: 'promise-returning callback from elsewhere (judged by its type)',
      code: `${header}declare const visit: (id: string, b: bigint) => Promise<boolean>;\nbalances.range(visit);`,
      errors: [{ messageId: 'promiseReturningCallback', line: 9, column: 16, data: { map: 'balances', type: 'Promise<boolean>' } }],
    },
    {
      name: 'promise-returning call in a sync callback',
      code: `${header}balances.range((id) => { void notify(id); });`,
      errors: [{ messageId: 'promiseInCallback', line: 8, column: 31 }],
    },
    {
      name: 'blocking fs call by named import',
      code: `${header}balances.range((id) => { readFileSync('/tmp/' + id); });`,
      errors: [{ messageId: 'blockingCall', line: 8, column: 26, data: { map: 'balances', callee: 'fs.readFileSync' } }],
    },
    {
      name: 'blocking fs call through a namespace import of "fs"',
      code: `${header}balances.range((id) => { fs.writeFileSync('/tmp/' + id, 'x'); });`,
      errors: [{ messageId: 'blockingCall', data: { map: 'balances', callee: 'fs.writeFileSync' } }],
    },
    {
      name: 'blocking child_process call through an import alias',
      code: `${header}balances.range((id) => { run('echo ' + id); });`,
      errors: [{ messageId: 'blockingCall', data: { map: 'balances', callee: 'child_process.execSync' } }],
    },
    {
      name: 'blocking call through a const alias',
      code: `${header}const read = fs.readFileSync;\nbalances.range((id) => { read(id); });`,
      errors: [{ messageId: 'blockingCall', line: 9, column: 26, data: { map: 'balances', callee: 'fs.readFileSync' } }],
    },
    {
      name: 'Atomics.wait',
      code: `${header}const cell = new Int32Array(new SharedArrayBuffer(4));\nbalances.range(() => { Atomics.wait(cell, 0, 0, 10); });`,
      errors: [{ messageId: 'blockingCall', line: 9, data: { map: 'balances', callee: 'Atomics.wait' } }],
    },
    {
      name: 'async callback that also blocks: both reported',
      code: `${header}balances.range(async (id) => { readFileSync(id); await notify(id); });`,
      errors: [{ messageId: 'asyncCallback' }, { messageId: 'blockingCall' }],
    },
    {
      name: 'a user-named map type',
      code: `${header}declare class Tree { range(cb: (k: string) => unknown): void }\ndeclare const tree: Tree;\ntree.range(async (k) => { await notify(k); });`,
      options: [{ mapTypes: [{ from: 'file', name: 'Tree' }] }],
      errors: [{ messageId: 'asyncCallback', line: 10 }],
    },
  ],
});
