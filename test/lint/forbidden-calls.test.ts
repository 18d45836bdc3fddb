import { DEFAULT_FORBIDDEN_CALLS, forbiddenCalls } from '../../src/lint/rules/forbidden-calls.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

const RM_REASON = DEFAULT_FORBIDDEN_CALLS[0]!.reason;

typedRuleTester().run('forbidden-calls', forbiddenCalls, {
  valid: [
    { name: 'rmSync without recursive', code: `import { rmSync } from 'node:fs';\nrmSync('/tmp/x.json');` },
    { name: 'rmSync with recursive: false', code: `import { rmSync } from 'node:fs';\nrmSync('/tmp/x', { recursive: false });` },
    { name: 'recursive from a variable of type boolean: not provable', code: `import { rmSync } from 'node:fs';\ndeclare const deep: boolean;\nrmSync('/tmp/x', { recursive: deep });` },
    { name: 'a local function named rmSync', code: `function rmSync(_p: string, _o: { recursive: boolean }): void {}\nrmSync('/tmp/x', { recursive: true });` },
    { name: 'a method named rmSync on another object', code: `const tool = { rmSync(_p: string, _o: { recursive: boolean }): void {} };\ntool.rmSync('/tmp/x', { recursive: true });` },
    { name: 'execFile is the safe alternative', code: `import { execFile } from 'node:child_process';\nexecFile('ls', ['-l'], () => undefined);` },
    { name: 'execFile made async with util.promisify is the safe alternative too', code: `import { execFile } from 'node:child_process';\nimport { promisify } from 'node:util';\nconst run = promisify(execFile);\nexport async function f(): Promise<void> { await run('ls', ['-l']); }` },
    { name: 'a RegExp exec is not child_process.exec', code: `/a/.exec('abc');` },
    { name: 'GovernedMap.store is the validated path', code: `import { GovernedMap } from '${GOVMAP}';\nconst m = new GovernedMap<string, number>({ name: 'm', validate: (_k, v) => v >= 0 || 'NEG' });\nm.store('a', 1);` },
    { name: 'a user MapStore implementation calling its own Map', code: `class MyStore { readonly #m = new Map<string, number>(); set(k: string, v: number): void { this.#m.set(k, v); } }\nnew MyStore().set('a', 1);` },
    { name: 'a GovernedMap (here a subclass) may write a store: it is the validated path', code: `import { GovernedMap } from '${GOVMAP}';\nimport type { MapStore } from '${GOVMAP}';\nexport class Ledger extends GovernedMap<string, bigint> { wipe(s: MapStore<string, bigint>): void { s.clear(); } }` },
    { name: 'a store implementation may delegate to the store beneath it', code: `import type { MapStore } from '${GOVMAP}';\nexport class CountingStore<K, V> implements MapStore<K, V> {\n  sets = 0;\n  constructor(private readonly inner: MapStore<K, V>) {}\n  get kind(): string { return 'counting'; }\n  get size(): number { return this.inner.size; }\n  get(k: K): V | undefined { return this.inner.get(k); }\n  has(k: K): boolean { return this.inner.has(k); }\n  set(k: K, v: V): void { this.sets++; this.inner.set(k, v); }\n  delete(k: K): boolean { return this.inner.delete(k); }\n  oldestKey(): K | undefined { return this.inner.oldestKey(); }\n  snapshot(): Array<[K, V]> { return this.inner.snapshot(); }\n  clear(): void { this.inner.clear(); }\n}` },
    { name: 'an empty list forbids nothing', code: `import { execSync } from 'node:child_process';\nexecSync('ls');`, options: [{ calls: [] }] },
  ],
  invalid: [
    {
      name: 'rmSync with recursive: true (named import)',
      code: `import { rmSync } from 'node:fs';\nrmSync('/var/lib/ledger', { recursive: true, force: true });`,
      errors: [{ messageId: 'forbidden', line: 2, column: 1, endColumn: 60, data: { callee: 'fs.rmSync', condition: ' with recursive: true', reason: RM_REASON } }],
    },
    {
      // The usual way a service runs a command with await: exec's promisified form still runs a shell.
      name: 'exec made async with util.promisify, called through the promisified const or directly',
      code: `import { exec } from 'node:child_process';\nimport util from 'node:util';\nconst sh = util.promisify(exec);\nexport async function f(cmd: string): Promise<void> {\n  await sh(cmd);\n  await util.promisify(exec)(cmd);\n}`,
      errors: [
        { messageId: 'forbidden', line: 5, data: { callee: 'child_process.exec', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[2]!.reason } },
        { messageId: 'forbidden', line: 6 },
      ],
    },
    {
      name: 'through an import alias',
      code: `import { rmSync as nuke } from 'fs';\nnuke('/var/lib/ledger', { recursive: true });`,
      errors: [{ messageId: 'forbidden', data: { callee: 'fs.rmSync', condition: ' with recursive: true', reason: RM_REASON } }],
    },
    {
      name: 'through a default import and a destructured const',
      code: `import fs from 'node:fs';\nconst { rmSync } = fs;\nrmSync('/x', { recursive: true });`,
      errors: [{ messageId: 'forbidden', line: 3 }],
    },
    {
      name: 'through a destructured const renamed',
      code: `import fs from 'node:fs';\nconst { rmSync: nuke } = fs;\nnuke('/x', { recursive: true });`,
      errors: [{ messageId: 'forbidden', line: 3, data: { callee: 'fs.rmSync', condition: ' with recursive: true', reason: RM_REASON } }],
    },
    {
      name: 'options object typed with a literal true',
      code: `import { rmSync } from 'node:fs';\nconst opts = { recursive: true } as const;\nrmSync('/x', opts);`,
      errors: [{ messageId: 'forbidden', line: 3 }],
    },
    {
      name: 'fs/promises rm',
      code: `import { rm } from 'node:fs/promises';\nawait rm('/x', { recursive: true });`,
      errors: [{ messageId: 'forbidden', line: 2, column: 7, data: { callee: 'fs/promises.rm', condition: ' with recursive: true', reason: RM_REASON } }],
    },
    {
      name: 'child_process.execSync through a namespace import',
      code: `import * as cp from 'node:child_process';\ncp.execSync('ls');`,
      errors: [{ messageId: 'forbidden', data: { callee: 'child_process.execSync', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[2]!.reason } }],
    },
    {
      name: 'a direct write to a govmap store, bypassing the validator',
      code: `import { InProcessStore } from '${GOVMAP}';\nimport type { MapStore } from '${GOVMAP}';\nconst store: MapStore<string, number> = new InProcessStore<string, number>();\nstore.set('a', -1);`,
      errors: [{ messageId: 'forbidden', line: 4, data: { callee: 'MapStore.set (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } }],
    },
    {
      // The shared-memory stores declare their writes in SharedMemoryStore (add in SharedInt64Store), not in MapStore.
      name: 'direct writes to a shared-memory store, bypassing the validator',
      code: `import { SharedInt64Store } from '${GOVMAP.replace('index.ts', 'stores/shared-memory/index.ts')}';\nconst balances = SharedInt64Store.create();\nbalances.set('acct-1', 1_000_000n);\nbalances.add('acct-1', 500n);\nbalances.delete('acct-1');\nbalances.clear();`,
      errors: [
        { messageId: 'forbidden', line: 3, data: { callee: 'SharedMemoryStore.set (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
        { messageId: 'forbidden', line: 4, data: { callee: 'SharedInt64Store.add (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
        { messageId: 'forbidden', line: 5, data: { callee: 'SharedMemoryStore.delete (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
        { messageId: 'forbidden', line: 6, data: { callee: 'SharedMemoryStore.clear (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
      ],
    },
    {
      // compareAndSwap / compareAndDelete are the shared stores' atomic writes (what a worker would
      // reach for): as raw as set, and they bypass the validator just the same.
      name: 'atomic writes to a store (compareAndSwap, compareAndDelete), bypassing the validator',
      code: `import { SharedInt64Store } from '${GOVMAP.replace('index.ts', 'stores/shared-memory/index.ts')}';\nimport type { MapStore } from '${GOVMAP}';\nconst balances = SharedInt64Store.create();\nbalances.compareAndSwap('acct-1', undefined, -1_000n);\nbalances.compareAndDelete('acct-1', -1_000n);\nconst store: MapStore<string, bigint> = balances;\nstore.compareAndSwap?.('acct-1', undefined, -5n);`,
      errors: [
        { messageId: 'forbidden', line: 4, data: { callee: 'SharedMemoryStore.compareAndSwap (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
        { messageId: 'forbidden', line: 5, data: { callee: 'SharedMemoryStore.compareAndDelete (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
        { messageId: 'forbidden', line: 7, data: { callee: 'MapStore.compareAndSwap (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } },
      ],
    },
    {
      name: 'a store write from a class that is neither a GovernedMap nor a store',
      code: `import type { MapStore } from '${GOVMAP}';\nexport class Repair { run(s: MapStore<string, number>): void { s.set('a', -1); } }`,
      errors: [{ messageId: 'forbidden', line: 2, column: 64, data: { callee: 'MapStore.set (govmap)', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[3]!.reason } }],
    },
    {
      name: 'a user-configured package export',
      code: `import { createHash } from 'node:crypto';\ncreateHash('md5');`,
      options: [{ calls: [{ module: 'crypto', name: 'createHash', reason: 'use the audit chain hash helper' }] }],
      errors: [{ messageId: 'forbidden', data: { callee: 'crypto.createHash', condition: '', reason: 'use the audit chain hash helper' } }],
    },
    {
      name: 'additionalCalls adds to the defaults, which keep applying (a scan config file cannot spread them)',
      code: `import { createHash } from 'node:crypto';\nimport { execSync } from 'node:child_process';\ncreateHash('md5');\nexecSync('ls');`,
      options: [{ additionalCalls: [{ module: 'crypto', name: 'createHash', reason: 'use the audit chain hash helper' }] }],
      errors: [
        { messageId: 'forbidden', line: 3, data: { callee: 'crypto.createHash', condition: '', reason: 'use the audit chain hash helper' } },
        { messageId: 'forbidden', line: 4, data: { callee: 'child_process.execSync', condition: '', reason: DEFAULT_FORBIDDEN_CALLS[2]!.reason } },
      ],
    },
    {
      name: 'additionalCalls adds to a given calls list, not to the defaults it replaced',
      code: `import { createHash } from 'node:crypto';\nimport { execSync } from 'node:child_process';\nimport { writeFileSync } from 'node:fs';\ncreateHash('md5');\nexecSync('ls');\nwriteFileSync('/x', 'a');`,
      options: [{ calls: [{ module: 'fs', name: 'writeFileSync', reason: 'ledger files are written by the ledger' }], additionalCalls: [{ module: 'crypto', name: 'createHash', reason: 'use the audit chain hash helper' }] }],
      errors: [
        { messageId: 'forbidden', line: 4, data: { callee: 'crypto.createHash', condition: '', reason: 'use the audit chain hash helper' } },
        { messageId: 'forbidden', line: 6, data: { callee: 'fs.writeFileSync', condition: '', reason: 'ledger files are written by the ledger' } },
      ],
    },
    {
      name: 'a user-configured condition on a string value',
      code: `import { writeFileSync } from 'node:fs';\nwriteFileSync('/x', 'a', { encoding: 'utf8' });\nwriteFileSync('/x', 'a', { encoding: 'latin1' });`,
      options: [{ calls: [{ module: 'fs', name: 'writeFileSync', when: { argument: 2, property: 'encoding', equals: 'latin1' }, reason: 'ledger files are UTF-8' }] }],
      errors: [{ messageId: 'forbidden', line: 3, data: { callee: 'fs.writeFileSync', condition: ' with encoding: "latin1"', reason: 'ledger files are UTF-8' } }],
    },
  ],
});
