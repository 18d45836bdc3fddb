import { noSharedMutationInRange } from '../../src/lint/rules/no-shared-mutation-in-range.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

// Every case starts with these 7 lines, so the code under test begins on line 8.
const header = `import { GovernedMap } from '${GOVMAP}';
import { EventEmitter } from 'node:events';
declare const balances: GovernedMap<string, bigint>;
declare const holds: GovernedMap<string, bigint>;
const totals = new Map<string, bigint>();
const seen: string[] = [];
let swept = 0;
`;
const inFn = (body: string): string => `${header}export function sweep(): void {\n${body}\n}`;

typedRuleTester().run('no-shared-mutation-in-range', noSharedMutationInRange, {
  valid: [
    { name: 'collect into a local, apply after the walk', code: inFn(`const due: Array<[string, bigint]> = [];\nbalances.range((id, b) => { if (b > 0n) due.push([id, b]); });\nfor (const [id, b] of due) holds.store(id, b);`) },
    { name: 'local counters and local maps', code: inFn(`let n = 0;\nconst byPrefix = new Map<string, number>();\nbalances.range((id) => { n++; byPrefix.set(id.slice(0, 4), n); });`) },
    { name: 'writes to the walked map itself (the snapshot makes them safe)', code: inFn(`balances.range((id, b) => { if (b === 0n) balances.delete(id); });`) },
    { name: 'writes to the walked map held in a private field', code: `${header}export class Settlement {\n  readonly #balances = balances;\n  sweep(): void { this.#balances.range((id, b) => { if (b === 0n) this.#balances.delete(id); }); }\n}` },
    { name: 'writes to the walked map through a const alias', code: inFn(`const m = balances;\nbalances.range((id, b) => { if (b === 0n) m.delete(id); });`) },
    { name: 'writes to the walked map through a destructured const alias', code: `${header}export class Sweeper {\n  constructor(private readonly accounts: GovernedMap<string, bigint>) {}\n  sweep(): void {\n    const { accounts } = this;\n    accounts.range((id, b) => { if (b === 0n) this.accounts.delete(id); });\n  }\n}` },
    { name: 'writes to the walked map through a renamed destructured alias', code: `${header}declare const ledger: { readonly balances: GovernedMap<string, bigint> };\nexport function f(): void {\n  const { balances: live } = ledger;\n  ledger.balances.range((id, b) => { if (b === 0n) live.delete(id); });\n}` },
    { name: 'reads of other maps and module state', code: inFn(`balances.range((id, b) => { const h = holds.load(id) ?? 0n; return b - h > 0n && seen.includes(id) && totals.has(id); });`) },
    { name: 'module-level collect in top-level initialisation code', code: `${header}balances.range((id) => { seen.push(id); });` },
    { name: 'this.* state of an object', code: `${header}export class Sweeper {\n  count = 0;\n  run(): void { balances.range(() => { this.count++; }); }\n}` },
    { name: 'a nested function that may run later', code: inFn(`const later: Array<() => void> = [];\nbalances.range((id) => { later.push(() => { seen.push(id); }); });`) },
    { name: 'a same-named store() on something that is not a map', code: inFn(`const log = { store(_id: string, _v: bigint): void {} };\nbalances.range((id, b) => { log.store(id, b); });`) },
    { name: 'range of something that is not a GovernedMap', code: `${header}declare const index: { range(cb: (k: string) => void): void };\nexport function f(): void { index.range((k) => { seen.push(k); }); }` },
    { name: 'a receiver whose identity the rule cannot establish', code: `${header}declare function pick(): GovernedMap<string, bigint>;\nexport function f(): void { balances.range((id) => { pick().delete(id); }); }` },
  ],
  invalid: [
    {
      name: 'writes another GovernedMap',
      code: inFn(`balances.range((id, b) => { holds.store(id, b); });`),
      errors: [{ messageId: 'writesOtherMap', line: 9, column: 29, endColumn: 47, data: { map: 'balances', other: 'holds', method: 'store' } }],
    },
    {
      name: 'writes another GovernedMap held in a private field',
      code: `${header}export class Settlement {\n  readonly #balances = balances;\n  readonly #holds = holds;\n  sweep(): void { this.#balances.range((id, b) => { this.#holds.store(id, b); }); }\n}`,
      errors: [{ messageId: 'writesOtherMap', line: 11, data: { map: 'this.#balances', other: 'this.#holds', method: 'store' } }],
    },
    {
      name: 'updates another GovernedMap',
      code: inFn(`balances.range((id, b) => { holds.update(id, (h) => (h ?? 0n) + b); });`),
      errors: [{ messageId: 'writesOtherMap', data: { map: 'balances', other: 'holds', method: 'update' } }],
    },
    {
      name: 'mutates a module-level Map',
      code: inFn(`balances.range((id, b) => { totals.set(id, b); });`),
      errors: [{ messageId: 'mutatesModuleState', line: 9, column: 29, data: { map: 'balances', name: 'totals' } }],
    },
    {
      name: 'pushes to a module-level array and bumps a module-level counter',
      code: inFn(`balances.range((id) => { seen.push(id); swept += 1; });`),
      errors: [
        { messageId: 'mutatesModuleState', column: 26, data: { map: 'balances', name: 'seen' } },
        { messageId: 'mutatesModuleState', column: 41, data: { map: 'balances', name: 'swept' } },
      ],
    },
    {
      name: 'assigns into a module-level object',
      code: `${header}const stats = { zero: 0 };\nexport function f(): void { balances.range((_id, b) => { if (b === 0n) stats.zero++; }); }`,
      errors: [{ messageId: 'mutatesModuleState', line: 9, data: { map: 'balances', name: 'stats' } }],
    },
    {
      name: 'mutates an imported binding, even from top-level code',
      code: `import { GovernedMap } from '${GOVMAP}';\nimport { env } from 'node:process';\ndeclare const balances: GovernedMap<string, bigint>;\nbalances.range((id) => { env[id] = 'seen'; });`,
      errors: [{ messageId: 'mutatesModuleState', line: 4, column: 26, data: { map: 'balances', name: 'env' } }],
    },
    {
      name: 'callback passed by name',
      code: `${header}function visit(id: string, b: bigint): void { holds.store(id, b); }\nexport function f(): void { balances.range(visit); }`,
      errors: [{ messageId: 'writesOtherMap', line: 8 }],
    },
  ],
});
