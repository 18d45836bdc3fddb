import { noRmwAcrossAwait } from '../../src/lint/rules/no-rmw-across-await.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

// Every case starts with these 6 lines, so the code under test begins on line 7.
const header = `import { GovernedMap } from '${GOVMAP}';
declare const balances: GovernedMap<string, bigint>;
declare const limits: GovernedMap<string, bigint>;
declare const cache: Map<string, number>;
declare function riskCheck(id: string): Promise<void>;
declare function fetchRate(id: string): Promise<number>;
`;
const fn = (body: string): string => `${header}export async function handle(id: string, amount: bigint): Promise<void> {\n${body}\n}`;

typedRuleTester().run('no-rmw-across-await', noRmwAcrossAwait, {
  valid: [
    { name: 'updateAsync is the fix', code: fn(`await balances.updateAsync(id, async (current) => { await riskCheck(id); return (current ?? 0n) + amount; });`) },
    { name: 'read, write, then await: nothing in between', code: fn(`const b = balances.load(id) ?? 0n;\nbalances.store(id, b + amount);\nawait riskCheck(id);`) },
    { name: 'await before the read', code: fn(`await riskCheck(id);\nconst b = balances.load(id) ?? 0n;\nbalances.store(id, b + amount);`) },
    { name: 're-read into the same variable after the await', code: fn(`let b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nb = balances.load(id) ?? 0n;\nbalances.store(id, b + amount);`) },
    { name: 'fresh read after the await (compare-before-write guard)', code: fn(`const b = balances.load(id);\nawait riskCheck(id);\nif (balances.load(id) !== b) throw new Error('changed');\nbalances.store(id, (b ?? 0n) + amount);`) },
    { name: 'written value not derived from the read', code: fn(`const b = balances.load(id);\nawait riskCheck(id);\nif (b === undefined) balances.store(id, amount);`) },
    { name: 'different key', code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.store('suspense', b + amount);`) },
    { name: 'different map', code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nlimits.store(id, b + amount);`) },
    { name: 'the await is in a branch that returns', code: fn(`const b = balances.load(id);\nif (b === undefined) { await riskCheck(id); return; }\nbalances.store(id, b + amount);`) },
    { name: 'the await is in a branch that throws', code: fn(`const b = balances.load(id) ?? 0n;\nif (b < amount) { await riskCheck(id); throw new Error('insufficient'); }\nbalances.store(id, b - amount);`) },
    { name: 'await and write in exclusive branches', code: fn(`const b = balances.load(id) ?? 0n;\nif (amount > 0n) { await riskCheck(id); } else { balances.store(id, b + amount); }`) },
    { name: 'await inside a nested function that does not hold the write', code: fn(`const b = balances.load(id) ?? 0n;\nvoid (async () => { await riskCheck(id); })();\nbalances.store(id, b + amount);`) },
    { name: 'compareAndSwap with a stale expected value fails safely', code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.compareAndSwap(id, b, b + amount);`) },
    { name: 'update computes from its argument', code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.update(id, (current) => (current ?? b) + amount);`) },
    { name: 'the key variable is reassigned in between', code: fn(`let key = id;\nconst b = balances.load(key) ?? 0n;\nkey = 'other';\nawait riskCheck(id);\nbalances.store(key, b + amount);`) },
    { name: 'Map cache fill: the written value comes from the awaited fetch, not the read', code: `${header}export async function rate(id: string): Promise<number> {\n  const hit = cache.get(id);\n  if (hit !== undefined) return hit;\n  const fresh = await fetchRate(id);\n  cache.set(id, fresh);\n  return fresh;\n}` },
    { name: 'built-in Map not watched when builtinMap is false', code: fn(`const n = cache.get(id) ?? 0;\nawait riskCheck(id);\ncache.set(id, n + 1);`), options: [{ builtinMap: false }] },
    { name: 'a same-named class that is not govmap\'s GovernedMap', code: `class GovernedMap { load(_k: string): number { return 0; } store(_k: string, _v: number): void {} }\nconst m = new GovernedMap();\nexport async function f(id: string): Promise<void> {\n  const v = m.load(id);\n  await Promise.resolve();\n  m.store(id, v + 1);\n}` },
    { name: 'a receiver that is not a simple expression is not guessed at', code: `${header}declare function pick(): GovernedMap<string, bigint>;\nexport async function f(id: string): Promise<void> {\n  const v = pick().load(id) ?? 0n;\n  await riskCheck(id);\n  pick().store(id, v + 1n);\n}` },
    { name: 'the await is in a branch that continues: the next item is read again', code: `${header}export async function f(ids: string[]): Promise<void> {\n  for (const id of ids) {\n    const b = balances.load(id) ?? 0n;\n    if (b === 0n) { await riskCheck(id); continue; }\n    balances.store(id, b + 1n);\n  }\n}` },
    { name: 'the await is in a branch that breaks out of the loop holding the write', code: `${header}export async function f(ids: string[]): Promise<void> {\n  for (const id of ids) {\n    const b = balances.load(id) ?? 0n;\n    if (b === 0n) { await riskCheck(id); break; }\n    balances.store(id, b + 1n);\n  }\n}` },
    { name: 'a labelled continue of the loop that reads and writes', code: `${header}export async function f(batches: string[][]): Promise<void> {\n  outer: for (const batch of batches) {\n    for (const id of batch) {\n      const b = balances.load(id) ?? 0n;\n      if (b === 0n) { await riskCheck(id); continue outer; }\n      balances.store(id, b + 1n);\n    }\n  }\n}` },
    { name: 'for await: the read and the write inside one iteration', code: `${header}export async function f(events: AsyncIterable<{ id: string; amount: bigint }>): Promise<void> {\n  for await (const e of events) {\n    const b = balances.load(e.id) ?? 0n;\n    balances.store(e.id, b + e.amount);\n  }\n}` },
    { name: 'a then callback that reads the key itself', code: fn(`await riskCheck(id).then(() => { const b = balances.load(id) ?? 0n; balances.store(id, b + amount); });`) },
    { name: 'a then callback writing what the promise resolved to, not the read', code: `${header}export function rate(id: string): Promise<number> | number {\n  const hit = cache.get(id);\n  if (hit !== undefined) return hit;\n  return fetchRate(id).then((fresh) => { cache.set(id, fresh); return fresh; });\n}` },
    { name: 'a return in a try whose finally does not hold the write', code: fn(`const b = balances.load(id) ?? 0n;\ntry { await riskCheck(id); return; } finally { void b; }\nbalances.store(id, b + amount);`) },
    { name: 'a loop writing before its await, re-reading the key before the next write', code: fn(`let b = balances.load(id) ?? 0n;\nfor (const leg of [1n, 2n]) {\n  balances.store(id, b - leg);\n  await riskCheck(id);\n  b = balances.load(id) ?? 0n;\n}`) },
    { name: 'a loop left by a break after the await that follows the write', code: fn(`const b = balances.load(id) ?? 0n;\nfor (const leg of [1n, 2n]) {\n  balances.store(id, b - leg);\n  await riskCheck(id);\n  break;\n}`) },
    { name: 'a loop left by a return after the await that follows the write', code: fn(`const b = balances.load(id) ?? 0n;\nwhile (amount > 0n) {\n  balances.store(id, b + amount);\n  if (amount > 1n) { await riskCheck(id); return; }\n}`) },
    { name: 'a loop whose await is in a function of its own', code: fn(`const b = balances.load(id) ?? 0n;\nfor (const leg of [1n, 2n]) {\n  balances.store(id, b - leg);\n  void (async () => { await riskCheck(id); })();\n}`) },
    // A Map made by this call and never handed out: no other request or callback can write it.
    { name: 'a per-call Map totalling a batch across awaits is not shared, so not reported', code: `${header}export async function settle(items: Array<{ account: string; amount: bigint }>): Promise<Map<string, bigint>> {\n  const totals = new Map<string, bigint>();\n  for (const item of items) {\n    const t = totals.get(item.account) ?? 0n;\n    await riskCheck(item.account);\n    totals.set(item.account, t + item.amount);\n  }\n  for (const [account] of totals) await riskCheck(account);\n  return totals;\n}` },
    { name: 'updateAsync whose function re-reads the key itself', code: fn(`const b = balances.load(id) ?? 0n;\nawait balances.updateAsync(id, async () => { const now = balances.load(id) ?? 0n; return now === b ? b - amount : now; });`) },
    { name: 'a re-read after the await kept in a variable and compared before the write (guard)', code: fn(`const b = balances.load(id);\nawait riskCheck(id);\nconst now = balances.load(id);\nif (now !== b) throw new Error('changed');\nbalances.store(id, (b ?? 0n) + amount);`) },
    { name: 'a re-read after the await whose value the write is computed from', code: fn(`const before = balances.load(id) ?? 0n;\nawait riskCheck(id);\nconst now = balances.load(id) ?? 0n;\nbalances.store(id, now + amount + (before - before));`) },
    { name: 'a re-read after the await checked by an assertion before the write (guard)', code: `${header}import assert from 'node:assert/strict';\nexport async function f(id: string, amount: bigint): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  await riskCheck(id);\n  assert.equal(balances.load(id), b, 'balance changed during the risk check');\n  balances.store(id, b + amount);\n}` },
    { name: 'an entries() snapshot walked with the key re-read before each write', code: fn(`for (const [k, v] of balances.entries()) {\n  await riskCheck(k);\n  const now = balances.load(k) ?? 0n;\n  if (now !== v) continue;\n  balances.store(k, now + 1n);\n}`) },
    { name: 'an entries() snapshot summed and written before any await', code: fn(`let total = 0n;\nfor (const [, v] of balances.entries()) total += v;\nlimits.store(id, total);\nawait riskCheck(id);`) },
    { name: 'a total of an entries() snapshot written under another key after an await: stale, but no write of that key is lost', code: fn(`const all = balances.entries();\nawait riskCheck(id);\nlet total = 0n;\nfor (const [, v] of all) total += v;\nlimits.store('total', total);\nbalances.store('count', BigInt(all.length));`) },
    { name: 'an update function passed by name that computes from its argument', code: fn(`const b = balances.load(id) ?? 0n;\nfunction applyFee(current: bigint | undefined): bigint { return (current ?? b) - 1n; }\nawait riskCheck(id);\nawait balances.updateAsync(id, applyFee);`) },
    { name: 'an update function passed by name that re-reads the key itself', code: fn(`const b = balances.load(id) ?? 0n;\nconst applyFee = async (): Promise<bigint> => { const now = balances.load(id) ?? 0n; return now === b ? b - 1n : now; };\nawait balances.updateAsync(id, applyFee);`) },
    { name: 'an update function declared elsewhere (no body here) is not guessed at', code: `${header}declare function applyFee(): bigint;\nexport async function f(id: string): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  await riskCheck(id);\n  balances.store('last', b);\n  balances.update(id, applyFee);\n}` },
    { name: 'a RemoteGovernedMap update computing from its argument', code: `import { RemoteGovernedMap } from '../../../src/stores/redis/index.ts';\ndeclare const accounts: RemoteGovernedMap<bigint>;\nexport async function credit(id: string, amount: bigint): Promise<void> {\n  const b = (await accounts.load(id)) ?? 0n;\n  await accounts.update(id, (current) => (current ?? b) + amount);\n  await accounts.add(id, amount);\n}` },
    { name: 'synchronous function: no await, no lost update', code: `${header}export function f(id: string): void {\n  const v = balances.load(id) ?? 0n;\n  balances.store(id, v + 1n);\n}` },
  ],
  invalid: [
    {
      // A re-read only logged does not change what is written: the write still uses the stale b.
      name: 'a re-read after the await used only in a log line does not clear the stale write',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nconsole.log(balances.load(id) ?? 0n);\nbalances.store(id, b + amount);\nconst n = cache.get(id) ?? 0;\nawait riskCheck(id);\nconsole.info('was', n, 'now', cache.get(id));\ncache.set(id, n + 1);`),
      errors: [
        { messageId: 'lostUpdate', line: 11 },
        { messageId: 'lostUpdate', line: 15 },
      ],
    },
    {
      name: 'a re-read kept in a variable that only a log line uses does not clear the stale write',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nconst now = balances.load(id);\nconsole.log({ id, now });\nbalances.store(id, b + amount);`),
      errors: [{ messageId: 'lostUpdate', line: 12 }],
    },
    {
      name: 'across loop iterations: a re-read in the loop used only in a log line does not clear it',
      code: fn(`const b = balances.load(id) ?? 0n;\nfor (const leg of [1n, 2n]) {\n  balances.store(id, b - leg);\n  await riskCheck(id);\n  console.log(balances.load(id));\n}`),
      errors: [{ messageId: 'lostUpdate', line: 10 }],
    },
    {
      name: 'loadAndDelete is a read: its value written back after an await is a lost update',
      code: fn(`const b = balances.loadAndDelete(id) ?? 0n;\nawait riskCheck(id);\nbalances.store(id, b + amount);`),
      errors: [{ messageId: 'lostUpdate', line: 10, data: { map: 'balances', key: 'id', write: 'store', read: 'loadAndDelete', fix: 'Use balances.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      name: 'an entries() snapshot: a value looked up in it and written after an await',
      code: fn(`const snap = new Map(balances.entries({ prefix: 'acct-' }));\nawait riskCheck(id);\nbalances.store(id, (snap.get(id) ?? 0n) + amount);`),
      errors: [{ messageId: 'lostUpdateFromSnapshot', line: 10, data: { map: 'balances', key: 'id', write: 'store', read: 'entries', fix: 'Use balances.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      name: 'an entries() snapshot walked with an await before each write of a snapshot value',
      code: fn(`for (const [k, v] of balances.entries()) {\n  await riskCheck(k);\n  balances.store(k, v + 1n);\n}`),
      errors: [{ messageId: 'lostUpdateFromSnapshot', line: 10 }],
    },
    {
      name: 'values collected by a range() callback and written after an await',
      code: fn(`const snap = new Map<string, bigint>();\nbalances.range((k, v) => {\n  snap.set(k, v);\n});\nawait riskCheck(id);\nbalances.store(id, (snap.get(id) ?? 0n) + amount);`),
      errors: [{ messageId: 'lostUpdateFromSnapshot', line: 13, data: { map: 'balances', key: 'id', write: 'store', read: 'range', fix: 'Use balances.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      // Another machine can write the key between the load's reply and the store: the load's own
      // await is the gap, with no other await needed.
      name: 'a RemoteGovernedMap (Redis) load then store of a value computed from it',
      code: `import { RemoteGovernedMap } from '../../../src/stores/redis/index.ts';\ndeclare const accounts: RemoteGovernedMap<bigint>;\nexport async function credit(id: string, amount: bigint): Promise<void> {\n  const b = (await accounts.load(id)) ?? 0n;\n  await accounts.store(id, b + amount);\n  const c = accounts.loadCached(id) ?? 0n;\n  await accounts.update(id, () => c + amount);\n}`,
      errors: [
        { messageId: 'lostUpdate', line: 5, data: { map: 'accounts', key: 'id', write: 'store', read: 'load', fix: 'Use accounts.update(id, async (current) => ...) (a compare-and-set, retried when another machine wrote the key meanwhile), or accounts.add(id, delta) for an int64 counter.' } },
        { messageId: 'lostUpdateInUpdateFn', line: 7 },
      ],
    },
    {
      name: 'an update function passed by name (a function declaration) that ignores its argument',
      code: fn(`const b = balances.load(id) ?? 0n;\nfunction applyFee(): bigint {\n  return b - 1n;\n}\nawait riskCheck(id);\nawait balances.updateAsync(id, applyFee);`),
      errors: [{ messageId: 'staleInUpdateAsync', line: 13, column: 32, data: { map: 'balances', key: 'id', read: 'load' } }],
    },
    {
      name: 'an update function passed by name declared after its use, or a module-level const arrow, that ignores its argument',
      code: `${header}export async function f(id: string): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  await riskCheck(id);\n  balances.update(id, applyFee);\n  function applyFee(): bigint { return b - 1n; }\n}\nconst fee = balances.load('fee') ?? 0n;\nconst chargeFee = (): bigint => fee + 1n;\nexport async function g(): Promise<void> {\n  await riskCheck('fee');\n  balances.update('fee', chargeFee);\n}`,
      errors: [
        { messageId: 'lostUpdateInUpdateFn', line: 10, column: 23 },
        { messageId: 'lostUpdateInUpdateFn', line: 17, column: 26 },
      ],
    },
    {
      // Parentheses around the callee (ESTree drops them; so must the rule) call the same method.
      name: 'a parenthesised callee',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\n(balances.store)(id, b - amount);\nconst c = (cache.get)(id) ?? 0;\nawait riskCheck(id);\n((cache).set)(id, c + 1);`),
      errors: [
        { messageId: 'lostUpdate', line: 10 },
        { messageId: 'lostUpdate', line: 13 },
      ],
    },
    {
      name: 'the lost update: load, await, store derived from the load',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.store(id, b + amount);`),
      errors: [{ messageId: 'lostUpdate', line: 10, column: 1, endLine: 10, endColumn: 31, data: { map: 'balances', key: 'id', write: 'store', read: 'load', fix: 'Use balances.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      name: 'through an alias chain and a compound assignment',
      code: fn(`let next = balances.load(id) ?? 0n;\nconst fee = 1n;\nawait riskCheck(id);\nnext -= fee;\nconst total = next + amount;\nbalances.store(id, total);`),
      errors: [{ messageId: 'lostUpdate', line: 13 }],
    },
    {
      name: 'through a const alias of the map',
      code: fn(`const m = balances;\nconst b = m.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.store(id, b + amount);`),
      errors: [{ messageId: 'lostUpdate', line: 11 }],
    },
    {
      name: 'destructured value',
      code: `${header}declare const accounts: GovernedMap<string, { balance: bigint; status: string }>;\nexport async function f(id: string): Promise<void> {\n  const { balance } = accounts.load(id)!;\n  await riskCheck(id);\n  accounts.store(id, { balance: balance + 1n, status: 'active' });\n}`,
      errors: [{ messageId: 'lostUpdate', line: 11 }],
    },
    {
      name: 'the await inside the written expression',
      code: fn(`const b = balances.load(id) ?? 0n;\nbalances.store(id, b + BigInt(await fetchRate(id)));`),
      errors: [{ messageId: 'lostUpdate', line: 9 }],
    },
    {
      name: 'the await in a branch that falls through to the write',
      code: fn(`const b = balances.load(id) ?? 0n;\nif (amount > 1000n) { await riskCheck(id); }\nbalances.store(id, b + amount);`),
      errors: [{ messageId: 'lostUpdate', line: 10 }],
    },
    {
      name: 'built-in Map counter',
      code: fn(`const n = cache.get(id) ?? 0;\nawait riskCheck(id);\ncache.set(id, n + 1);`),
      errors: [{ messageId: 'lostUpdate', line: 10, data: { map: 'cache', key: 'id', write: 'set', read: 'get', fix: 'Keep this state in a GovernedMap and use updateAsync, or re-read the key after the await.' } }],
    },
    {
      name: 'update whose function ignores its argument',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.update(id, () => b + amount);`),
      errors: [{ messageId: 'lostUpdateInUpdateFn', line: 10, column: 21 }],
    },
    {
      name: 'for await between read and write',
      code: `${header}export async function f(id: string, events: AsyncIterable<bigint>): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  let sum = 0n;\n  for await (const e of events) sum += e;\n  balances.store(id, b + sum);\n}`,
      errors: [{ messageId: 'lostUpdate', line: 11 }],
    },
    {
      name: 'continue with the read before the loop: the next iteration writes the stale value',
      code: `${header}export async function f(id: string, steps: bigint[]): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  for (const step of steps) {\n    if (step === 0n) { await riskCheck(id); continue; }\n    balances.store(id, b + step);\n  }\n}`,
      errors: [{ messageId: 'lostUpdate', line: 11 }],
    },
    {
      name: 'for await with the write inside the loop and the read before it',
      code: `${header}export async function f(id: string, events: AsyncIterable<bigint>): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  for await (const e of events) {\n    balances.store(id, b + e);\n  }\n}`,
      errors: [{ messageId: 'lostUpdate', line: 10 }],
    },
    {
      name: 'await using: its disposal is awaited where its block ends',
      code: `${header}declare function lease(id: string): AsyncDisposable;\nexport async function f(id: string): Promise<void> {\n  const b = balances.load(id) ?? 0n;\n  {\n    await using held = lease(id);\n  }\n  balances.store(id, b + 1n);\n}`,
      errors: [{ messageId: 'lostUpdate', line: 13 }],
    },
    {
      name: 'destructuring assignment of the read',
      code: `${header}declare const accounts: GovernedMap<string, { balance: bigint }>;\nexport async function f(id: string): Promise<void> {\n  let balance: bigint;\n  ({ balance } = accounts.load(id)!);\n  await riskCheck(id);\n  accounts.store(id, { balance: balance + 1n });\n}`,
      errors: [{ messageId: 'lostUpdate', line: 12 }],
    },
    {
      name: 'a private field map: this.#balances',
      code: `${header}export class Payments {\n  readonly #balances = balances;\n  async credit(id: string, amount: bigint): Promise<void> {\n    const b = this.#balances.load(id) ?? 0n;\n    await riskCheck(id);\n    this.#balances.store(id, b + amount);\n  }\n}`,
      errors: [{ messageId: 'lostUpdate', line: 12, data: { map: 'this.#balances', key: 'id', write: 'store', read: 'load', fix: 'Use this.#balances.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      name: 'a subclass of GovernedMap',
      code: `${header}class Ledger extends GovernedMap<string, bigint> {}\ndeclare const ledger: Ledger;\nexport async function f(id: string): Promise<void> {\n  const b = ledger.load(id) ?? 0n;\n  await riskCheck(id);\n  ledger.store(id, b + 1n);\n}`,
      errors: [{ messageId: 'lostUpdate', line: 12 }],
    },
    {
      // Inside the subclass, the receiver `this` has TypeScript's polymorphic this type (a type
      // parameter constrained by the class), not the class type itself.
      name: 'a method of a GovernedMap subclass writing through this',
      code: `${header}export class Ledger extends GovernedMap<string, bigint> {\n  async debit(id: string, amount: bigint): Promise<void> {\n    const b = this.load(id) ?? 0n;\n    await riskCheck(id);\n    this.store(id, b - amount);\n  }\n}`,
      errors: [{ messageId: 'lostUpdate', line: 11, data: { map: 'this', key: 'id', write: 'store', read: 'load', fix: 'Use this.updateAsync(id, async (current) => ...) so the computation sees the current value, or re-read after the await.' } }],
    },
    {
      name: 'a generic helper whose map is a type parameter constrained to GovernedMap',
      code: `${header}export async function debit<M extends GovernedMap<string, bigint>>(accounts: M, id: string, amount: bigint): Promise<void> {\n  const b = accounts.load(id) ?? 0n;\n  await riskCheck(id);\n  accounts.store(id, b - amount);\n}`,
      errors: [{ messageId: 'lostUpdate', line: 10 }],
    },
    {
      // updateAsync queues the function behind the key's pending updates: the value read before
      // the call is stale by the time it runs, with or without an await of its own in between.
      name: 'updateAsync whose function ignores its argument and uses a value read before the call',
      code: `${header}declare const accounts: GovernedMap<string, { balance: bigint; status: string }>;\nexport function debit(id: string, amount: bigint): Promise<{ balance: bigint; status: string }> {\n  const acct = accounts.load(id);\n  if (acct === undefined) throw new Error('no account');\n  return accounts.updateAsync(id, async () => ({ ...acct, balance: acct.balance - amount }));\n}`,
      errors: [{ messageId: 'staleInUpdateAsync', line: 11, column: 35, data: { map: 'accounts', key: 'id', read: 'load' } }],
    },
    {
      name: 'update whose function has a default for its ignored argument',
      code: fn(`const b = balances.load(id) ?? 0n;\nawait riskCheck(id);\nbalances.update(id, (current = 0n) => b - amount);`),
      errors: [{ messageId: 'lostUpdateInUpdateFn', line: 10 }],
    },
    {
      // The same per-call Map, but written by concurrent callbacks of one call: each await lets another in.
      name: 'a per-call Map written by concurrent callbacks is shared between them, and reported',
      code: `${header}export async function settle(items: Array<{ account: string; amount: bigint }>): Promise<void> {\n  const totals = new Map<string, bigint>();\n  await Promise.all(items.map(async (item) => {\n    const t = totals.get(item.account) ?? 0n;\n    await riskCheck(item.account);\n    totals.set(item.account, t + item.amount);\n  }));\n}`,
      errors: [{ messageId: 'lostUpdate', line: 12 }],
    },
    {
      name: 'a per-call Map handed to another function before the await may be written meanwhile, and is reported',
      code: `${header}declare function track(m: Map<string, bigint>): void;\nexport async function settle(id: string, amount: bigint): Promise<void> {\n  const totals = new Map<string, bigint>();\n  track(totals);\n  const t = totals.get(id) ?? 0n;\n  await riskCheck(id);\n  totals.set(id, t + amount);\n}`,
      errors: [{ messageId: 'lostUpdate', line: 13 }],
    },
    {
      name: 'a user-named map type',
      code: `class KvStore { get(_k: string): number { return 0; } put(_k: string, _v: number): void {} }\nconst kv = new KvStore();\nexport async function f(id: string): Promise<void> {\n  const v = kv.get(id);\n  await Promise.resolve();\n  kv.put(id, v + 1);\n}`,
      options: [{ maps: [{ type: { from: 'file', name: 'KvStore' }, read: ['get'], write: ['put'] }] }],
      errors: [{ messageId: 'lostUpdate', line: 6 }],
    },
    {
      // The in-flight counter idiom: the finally restores the count read before the work, wiping
      // out every increment and decrement other requests made during it.
      name: 'a finally holding the write, left by a return after the await',
      code: fn(`const n = cache.get(id) ?? 0;\ncache.set(id, n + 1);\ntry {\n  return await riskCheck(id);\n} finally {\n  cache.set(id, n);\n}`),
      errors: [{ messageId: 'lostUpdate', line: 13 }],
    },
    {
      name: 'a catch holding the write, reached by a throw after the await',
      code: fn(`const b = balances.load(id) ?? 0n;\ntry {\n  await riskCheck(id);\n  throw new Error('refused');\n} catch {\n  balances.store(id, b + amount);\n}`),
      errors: [{ messageId: 'lostUpdate', line: 13 }],
    },
    {
      name: 'a then callback: it runs after the promise settles, as code after an await does',
      code: fn(`const b = balances.load(id) ?? 0n;\nreturn riskCheck(id).then(() => {\n  balances.store(id, b + amount);\n});`),
      errors: [{ messageId: 'lostUpdate', line: 10 }],
    },
    {
      // The second leg's store runs after the first leg's await, with the balance read before both.
      name: 'across loop iterations: read before the loop, write then await inside it',
      code: fn(`let b = balances.load(id) ?? 0n;\nfor (const leg of [1n, 2n]) {\n  b -= leg;\n  balances.store(id, b);\n  await riskCheck(id);\n}\nconst n = cache.get(id) ?? 0;\nlet i = 0;\nwhile (i < 3) {\n  cache.set(id, n + i);\n  if (i++ === 0) continue;\n  await riskCheck(id);\n}`),
      errors: [
        { messageId: 'lostUpdate', line: 11 },
        { messageId: 'lostUpdate', line: 17 },
      ],
    },
    {
      name: 'this.map in a class method, key from a member chain',
      code: `${header}export class Payments {\n  readonly balances = new GovernedMap<string, bigint>({ name: 'b', validate: (_k, v) => (v >= 0n ? true : 'NEG') });\n  async credit(req: { params: { id: string } }, amount: bigint): Promise<void> {\n    const b = this.balances.load(req.params.id) ?? 0n;\n    await riskCheck(req.params.id);\n    this.balances.store(req.params.id, b + amount);\n  }\n}`,
      errors: [{ messageId: 'lostUpdate', line: 12 }],
    },
  ],
});
