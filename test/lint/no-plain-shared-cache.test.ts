import { noPlainSharedCache } from '../../src/lint/rules/no-plain-shared-cache.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

// Every case starts with these 2 lines, so the code under test begins on line 3.
const header = `import type { IncomingMessage, ServerResponse } from 'node:http';
import { GovernedMap } from '${GOVMAP}';
`;

typedRuleTester().run('no-plain-shared-cache', noPlainSharedCache, {
  valid: [
    { name: 'a GovernedMap written by a handler', code: `${header}const rates = new GovernedMap<string, number>({ name: 'rates', validate: (_k, v) => v > 0 || 'RATE' });\nexport function handle(req: IncomingMessage, res: ServerResponse): void { rates.store(req.url ?? '', 1); res.end(); }` },
    { name: 'a Map filled at start-up and only read by handlers', code: `${header}const routes = new Map<string, string>();\nroutes.set('/a', 'A');\nexport function handle(req: IncomingMessage, res: ServerResponse): void { res.end(routes.get(req.url ?? '')); }` },
    { name: 'a Map local to the handler', code: `${header}export function handle(req: IncomingMessage, res: ServerResponse): void { const seen = new Map<string, number>(); seen.set(req.url ?? '', 1); res.end(); }` },
    { name: 'a WeakMap (per-object metadata)', code: `${header}const meta = new WeakMap<object, number>();\nexport function handle(req: IncomingMessage, res: ServerResponse): void { meta.set(req, 1); res.end(); }` },
    { name: 'a module-level Map written by a non-exported, synchronous helper', code: `${header}const memo = new Map<string, number>();\nfunction fib(n: number): number { const k = String(n); memo.set(k, n); return n; }\nexport const ten = fib(10);` },
    { name: 'a plain object with fixed fields (configuration, not a dictionary)', code: `${header}const state = { ready: false };\nexport async function start(): Promise<void> { state.ready = true; }` },
    { name: 'a same-named Map class that is not the built-in', code: `class Map<K, V> { set(_k: K, _v: V): void {} }\nconst cache = new Map<string, number>();\nexport async function put(k: string): Promise<void> { cache.set(k, 1); }` },
    { name: 'an imported Map only read by handlers', code: `${header}import { sessionCache } from './shared-cache.ts';\nexport function handle(req: IncomingMessage, res: ServerResponse): void { res.end(sessionCache.get(req.url ?? '')); }` },
    { name: 'an imported GovernedMap written by a handler', code: `${header}import { governedCache } from './shared-cache.ts';\nexport function handle(req: IncomingMessage, res: ServerResponse): void { governedCache.store(req.url ?? '', 'x'); res.end(); }` },
    { name: 'a Map a function of another file returns (not module-level there)', code: `${header}import { makeCache } from './shared-cache.ts';\nexport function handle(req: IncomingMessage, res: ServerResponse): void { makeCache().set(req.url ?? '', 'x'); res.end(); }` },
    { name: 'a namespace import only read, and a GovernedMap written through it', code: `${header}import * as shared from './shared-cache.ts';\nexport function handle(req: IncomingMessage, res: ServerResponse): void { shared.governedCache.store(req.url ?? '', 'x'); res.end(shared.sessionCache.get(req.url ?? '')); }` },
    { name: 'an async function exported nowhere, next to a separate export of another one', code: `const cache = new Map<string, number>();\nasync function warm(k: string): Promise<void> { cache.set(k, 1); }\nexport async function ready(): Promise<boolean> { return true; }\nexport { ready as isReady };\nvoid warm('a');` },
    { name: 'a read-only alias, also destructured', code: `${header}const sessions = new Map<string, string>();\nconst caches = { quotes: new Map<string, number>() };\nexport function handle(req: IncomingMessage, res: ServerResponse): void { const m = sessions; const { quotes } = caches; res.end(m.get(req.url ?? '') ?? String(quotes.get('EURUSD'))); }` },
    { name: 'an alias reassigned to a fresh local Map before the write', code: `${header}const sessions = new Map<string, string>();\nexport async function put(k: string): Promise<void> { let m = sessions; m = new Map<string, string>(); m.set(k, 'x'); let n: Map<string, string> | undefined; n = sessions; n = new Map(); n.delete(k); }` },
    { name: 'a local Map shadowing the name of a module-level one', code: `${header}const sessions = new Map<string, string>();\nexport async function put(k: string): Promise<void> { const sessions = new Map<string, string>(); const m = sessions; m.set(k, 'x'); }\nexport const size = sessions.size;` },
    { name: 'a static field only read by handlers, written in a static block and at start-up', code: `${header}class QuoteCache { static quotes = new Map<string, number>([['EURUSD', 1.1]]); static { QuoteCache.quotes.set('GBPUSD', 1.3); } }\nQuoteCache.quotes.set('USDJPY', 150);\nexport async function rate(ccy: string): Promise<number> { const q = QuoteCache.quotes; return q.get(ccy) ?? QuoteCache.quotes.get('EURUSD') ?? 0; }` },
    { name: 'this in instance methods, and in functions of their own inside static methods, is not the class', options: [{ scope: 'async' }], code: `${header}export class Quotes {\n  static quotes = new Map<string, number>();\n  quotes = new Map<string, number>();\n  async put(k: string): Promise<void> { this.quotes.set(k, 1); }\n  static async later(k: string): Promise<void> { const o = { quotes: new Map<string, number>(), async put() { this.quotes.set(k, 1); } }; await o.put(); }\n}` },
    { name: 'a local object or class shadowing a module-level class with a static Map', code: `${header}class QuoteCache { static quotes = new Map<string, number>(); }\nexport async function put(k: string): Promise<void> { const QuoteCache = { quotes: new Map<string, number>() }; QuoteCache.quotes.set(k, 1); }\nexport async function put2(k: string): Promise<void> { class Local { static quotes = new Map<string, number>(); } Local.quotes.set(k, 1); }\nexport const n = QuoteCache.quotes.size;` },
    { name: 'an instance-less read of a static field through an imported class, and a destructured read', code: `${header}import { QuoteCache, caches } from './shared-cache.ts';\nexport async function rate(ccy: string): Promise<number> { const { sessions } = caches; return (QuoteCache.quotes.get(ccy) ?? 0) + sessions.size; }` },
    { name: 'a namespace Map filled at namespace initialisation and only read by handlers', code: `${header}export namespace Fx { export const rates = new Map<string, number>(); rates.set('EUR', 1); }\nexport async function rate(ccy: string): Promise<number> { return Fx.rates.get(ccy) ?? 0; }` },
    { name: 'a globalThis read, and a write to a global of a package (process.env)', code: `${header}declare global { var cacheG: Map<string, number>; }\nexport async function rate(k: string): Promise<number> { globalThis.process.env[k] = 'x'; return globalThis.cacheG.get(k) ?? cacheG.size; }` },
    { name: 'written from an async function that is not exported (recommended scope)', code: `${header}const cache = new Map<string, number>();\nasync function warm(k: string): Promise<void> { cache.set(k, 1); }\nvoid warm('a');` },
    { name: 'a service class instantiated per request (not at module level, no container decorator)', code: `${header}class Basket { #items = new Map<string, number>(); async add(k: string): Promise<void> { this.#items.set(k, 1); } }\nexport async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> { await new Basket().add(req.url ?? ''); res.end(); }` },
    { name: 'a singleton whose Map is filled in its constructor, a start-up hook or a sync method, and only read by async methods', code: `${header}declare function Injectable(options?: { scope?: number }): ClassDecorator;\ndeclare function Controller(path?: string): ClassDecorator;\ndeclare const Scope: { REQUEST: number; TRANSIENT: number };\n@Injectable()\nexport class Rates { private readonly rates = new Map<string, number>([['EUR', 1]]); private readonly extra: Map<string, number>; constructor() { this.extra = new Map(); this.extra.set('GBP', 1); } async onModuleInit(): Promise<void> { this.rates.set('USD', 1); } seed(k: string): void { this.rates.set(k, 1); } async rate(k: string): Promise<number> { return this.rates.get(k) ?? this.extra.get(k) ?? 0; } }` },
    { name: 'a request-scoped or transient provider (one instance per request)', code: `${header}declare function Injectable(options?: { scope?: number }): ClassDecorator;\ndeclare function Controller(path?: string): ClassDecorator;\ndeclare const Scope: { REQUEST: number; TRANSIENT: number };\n@Injectable({ scope: Scope.REQUEST })\nexport class Basket { items = new Map<string, number>(); async add(k: string): Promise<void> { this.items.set(k, 1); } }\n@Injectable({ scope: Scope.TRANSIENT })\nexport class Scratch { items = new Map<string, number>(); async add(k: string): Promise<void> { this.items.set(k, 1); } }` },
    { name: 'a singleton writing a Map of another object, and a GovernedMap field', code: `${header}const ledger = new (class Ledger { balances = new GovernedMap<string, bigint>({ name: 'b', validate: () => true }); async credit(k: string, other: { items: Map<string, number> }): Promise<void> { this.balances.store(k, 1n); other.items.set(k, 1); } })();\nexport { ledger };` },
    { name: 'strict scope: a singleton\'s start-up hook filling its Map (async, called once by the container)', options: [{ scope: 'async' }], code: `${header}declare function Injectable(options?: { scope?: number }): ClassDecorator;\ndeclare function Controller(path?: string): ClassDecorator;\ndeclare const Scope: { REQUEST: number; TRANSIENT: number };\n@Injectable()\nexport class Rates { private readonly rates = new Map<string, number>(); async onApplicationBootstrap(): Promise<void> { this.rates.set('USD', 1); } async rate(k: string): Promise<number> { return this.rates.get(k) ?? 0; } }` },
  ],
  invalid: [
    {
      name: 'a Map written through a cast or a non-null assertion',
      code: `${header}const sessions: Map<string, string> | undefined = new Map<string, string>();\nconst quotes = new Map<string, unknown>();\nexport function handle(req: IncomingMessage, res: ServerResponse): void { sessions!.set(req.url ?? '', 'x'); (quotes as Map<string, number>).delete('EURUSD'); res.end(); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'Map', name: 'sessions', writer: 'request handler `handle`' } },
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'quotes', writer: 'request handler `handle`' } },
      ],
    },
    {
      name: 'a prototype-free dictionary: Object.create(null), also as a singleton\'s field',
      code: `${header}const byIban: Record<string, string> = Object.create(null);\nexport async function link(iban: string, id: string): Promise<void> { byIban[iban] = id; }\nclass Dedup { seen: Record<string, true> = Object.create(null); async mark(id: string): Promise<void> { this.seen[id] = true; } }\nexport const dedup = new Dedup();`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'dictionary object', name: 'byIban', writer: 'exported async function `link`' } },
        { messageId: 'singletonFieldCache', line: 5, data: { kind: 'dictionary object', name: 'seen', className: 'Dedup', why: 'instantiated once, at module level as `dedup`', writer: 'async method `mark`' } },
      ],
    },
    {
      name: 'a dictionary object written through a cast',
      code: `${header}const limits: Record<string, number> = {};\nexport function handle(req: IncomingMessage, res: ServerResponse): void { (limits as Record<string, unknown>)[req.url ?? ''] = 1; res.end(); }`,
      errors: [{ messageId: 'plainSharedCache', line: 3, data: { kind: 'dictionary object', name: 'limits', writer: 'request handler `handle`' } }],
    },
    {
      name: 'a Map written by a node:http request handler',
      code: `${header}const sessions = new Map<string, string>();\nexport function handle(req: IncomingMessage, res: ServerResponse): void { sessions.set(req.url ?? '', 'x'); res.end(); }`,
      errors: [{ messageId: 'plainSharedCache', line: 3, column: 7, endColumn: 15, data: { kind: 'Map', name: 'sessions', writer: 'request handler `handle`' } }],
    },
    {
      name: 'a Map written by an exported async function',
      code: `${header}const fx = new Map<string, number>();\nexport async function rate(ccy: string): Promise<number> { const r = 1.1; fx.set(ccy, r); return r; }`,
      errors: [{ messageId: 'plainSharedCache', line: 3, data: { kind: 'Map', name: 'fx', writer: 'exported async function `rate`' } }],
    },
    {
      name: 'a dictionary object written by an exported async arrow',
      code: `${header}const tokens: Record<string, string> = {};\nexport const login = async (user: string): Promise<void> => { tokens[user] = 't'; };`,
      errors: [{ messageId: 'plainSharedCache', line: 3, data: { kind: 'dictionary object', name: 'tokens', writer: 'exported async function `login`' } }],
    },
    {
      name: 'a handler nested in a createServer call (reported once per variable)',
      code: `${header}import { createServer } from 'node:http';\nconst hits = new Map<string, number>();\ncreateServer((req, res) => { hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1); hits.delete('x'); res.end(); });`,
      errors: [{ messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'hits', writer: 'request handler (anonymous)' } }],
    },
    {
      name: 'a fetch-API handler (Request from lib)',
      code: `const seen = new Map<string, number>();\nexport default { fetch(req: Request): Response { seen.set(req.url, 1); return new Response('ok'); } };`,
      errors: [{ messageId: 'plainSharedCache', line: 1, data: { kind: 'Map', name: 'seen', writer: 'request handler `fetch`' } }],
    },
    {
      // The usual layout: the Map lives in its own module (exported under another name here),
      // handlers in another. The declaration's file never sees the write, so this one reports.
      name: 'a module-level Map of another file, exported under another name, written by a handler here',
      code: `${header}import { sessionCache } from './shared-cache.ts';\nexport function login(req: IncomingMessage, res: ServerResponse): void { sessionCache.set(req.url ?? '', 'x'); res.end(); }`,
      errors: [{ messageId: 'plainSharedCache', line: 3, column: 10, endColumn: 22, data: { kind: 'Map', name: 'sessionCache', writer: 'request handler `login`' } }],
    },
    {
      name: 'a dictionary object of another file written by an exported async function here',
      code: `import { tokensByUser } from './shared-cache.ts';\nexport async function login(user: string): Promise<void> { tokensByUser[user] = 't'; }`,
      errors: [{ messageId: 'plainSharedCache', line: 1, data: { kind: 'dictionary object', name: 'tokensByUser', writer: 'exported async function `login`' } }],
    },
    {
      // `async function handler() {}` exported by a separate `export { }` / `export default`:
      // as exported as `export async function`, and the usual shape of a route module.
      name: 'an async function exported by a separate export statement',
      code: `const quotes = new Map<string, number>();\nasync function refresh(ccy: string): Promise<void> { quotes.set(ccy, 1); }\nconst fills: Record<string, number> = {};\nconst record = async (id: string): Promise<void> => { fills[id] = 1; };\nexport { refresh as refreshQuote };\nexport default record;`,
      errors: [
        { messageId: 'plainSharedCache', line: 1, data: { kind: 'Map', name: 'quotes', writer: 'exported async function `refresh`' } },
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'dictionary object', name: 'fills', writer: 'exported async function `record`' } },
      ],
    },
    {
      // `import * as shared` is as much an import as `import { sessionCache }`.
      name: 'a module-level Map of another file written through a namespace import',
      code: `${header}import * as shared from './shared-cache.ts';\nexport function login(req: IncomingMessage, res: ServerResponse): void { shared.sessionCache.set(req.url ?? '', 'x'); shared.tokensByUser['u'] = 't'; res.end(); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, column: 13, endColumn: 19, data: { kind: 'Map', name: 'shared.sessionCache', writer: 'request handler `login`' } },
        { messageId: 'plainSharedCache', line: 3, column: 13, endColumn: 19, data: { kind: 'dictionary object', name: 'shared.tokensByUser', writer: 'request handler `login`' } },
      ],
    },
    {
      name: 'a Map written through a const alias in a handler',
      code: `${header}const sessions = new Map<string, string>();\nexport function handle(req: IncomingMessage, res: ServerResponse): void { const m = sessions; m.set(req.url ?? '', 'x'); res.end(); }`,
      errors: [{ messageId: 'plainSharedCache', line: 3, column: 7, data: { kind: 'Map', name: 'sessions', writer: 'request handler `handle` (through the alias `m`)' } }],
    },
    {
      name: 'a let alias, an alias of an alias, and an alias assigned later',
      code: `${header}const quotes = new Map<string, number>();\nconst fills: Record<string, number> = {};\nconst seen = new Map<string, number>();\nexport async function put(k: string, fresh: boolean): Promise<void> { let q = quotes; const r = q; r.delete(k); const f = fills; f[k] = 1; let s = new Map<string, number>(); if (!fresh) s = seen; s.set(k, 1); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'Map', name: 'quotes', writer: 'exported async function `put` (through the alias `r`)' } },
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'dictionary object', name: 'fills', writer: 'exported async function `put` (through the alias `f`)' } },
        { messageId: 'plainSharedCache', line: 5, data: { kind: 'Map', name: 'seen', writer: 'exported async function `put` (through the alias `s`)' } },
      ],
    },
    {
      name: 'Maps of a module-level object, written directly and through destructuring',
      code: `${header}const caches = { sessions: new Map<string, string>(), limits: {} as Record<string, number> };\nconst stores = { quotes: new Map<string, number>() };\nexport async function put(k: string): Promise<void> { const { sessions, limits: l } = caches; sessions.set(k, 'x'); l[k] = 1; stores.quotes.clear(); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, column: 18, endColumn: 26, data: { kind: 'Map', name: 'caches.sessions', writer: 'exported async function `put` (through the alias `sessions`)' } },
        { messageId: 'plainSharedCache', line: 3, column: 55, data: { kind: 'dictionary object', name: 'caches.limits', writer: 'exported async function `put` (through the alias `l`)' } },
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'stores.quotes', writer: 'exported async function `put`' } },
      ],
    },
    {
      name: 'static Maps of module-level classes written by handlers (also from inside the class, and through an alias)',
      code: `${header}class QuoteCache { static quotes = new Map<string, number>(); }\nexport async function refresh(ccy: string): Promise<void> { QuoteCache.quotes.set(ccy, 1.1); }\nexport class Sessions { static byId = new Map<string, string>(); static handle(req: IncomingMessage, res: ServerResponse): void { Sessions.byId.delete(req.url ?? ''); res.end(); } }\nconst Fills = class { static open: Record<string, number> = {}; };\nexport async function fill(id: string): Promise<void> { const o = Fills.open; o[id] = 1; }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, column: 27, endColumn: 33, data: { kind: 'Map', name: 'QuoteCache.quotes', writer: 'exported async function `refresh`' } },
        { messageId: 'plainSharedCache', line: 5, data: { kind: 'Map', name: 'Sessions.byId', writer: 'request handler `handle`' } },
        { messageId: 'plainSharedCache', line: 6, data: { kind: 'dictionary object', name: 'Fills.open', writer: 'exported async function `fill` (through the alias `o`)' } },
      ],
    },
    {
      // The static-class singleton: `this` in a static method is the class, and a private static
      // field is no less one per process than a public one.
      name: 'static Maps written through this in static methods, and private static fields',
      code: `${header}export class FxRates {\n  static #rates = new Map<string, number>();\n  static handle(req: IncomingMessage, res: ServerResponse): void { this.#rates.set(req.url ?? '', 1.1); res.end(); }\n}\nexport class Limits {\n  static #used: Record<string, number> = {};\n  static handle(req: IncomingMessage, res: ServerResponse): void { Limits.#used[req.url ?? ''] = 1; res.end(); }\n}\nexport class Tokens {\n  static byUser = new Map<string, string>();\n  static async refresh(user: string): Promise<void> { const m = this.byUser; m.set(user, 't'); }\n}`,
      options: [{ scope: 'async' }],
      errors: [
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'FxRates.#rates', writer: 'request handler `handle`' } },
        { messageId: 'plainSharedCache', line: 8, data: { kind: 'dictionary object', name: 'Limits.#used', writer: 'request handler `handle`' } },
        { messageId: 'plainSharedCache', line: 12, data: { kind: 'Map', name: 'Tokens.byUser', writer: 'async function `refresh` (through the alias `m`)' } },
      ],
    },
    {
      name: 'a static Map of an imported class and a Map of an imported object, reported at the import',
      code: `${header}import { QuoteCache, caches } from './shared-cache.ts';\nexport async function refresh(ccy: string): Promise<void> { QuoteCache.quotes.set(ccy, 1.1); const { sessions } = caches; sessions.delete(ccy); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, column: 10, endColumn: 20, data: { kind: 'Map', name: 'QuoteCache.quotes', writer: 'exported async function `refresh`' } },
        { messageId: 'plainSharedCache', line: 3, column: 22, endColumn: 28, data: { kind: 'Map', name: 'caches.sessions', writer: 'exported async function `refresh` (through the alias `sessions`)' } },
      ],
    },
    {
      name: 'Maps of namespaces, written inside and outside the namespace',
      code: `${header}export namespace Quotes { export const latest = new Map<string, number>(); export async function put(k: string): Promise<void> { latest.set(k, 1); } }\nexport namespace Fx { export const rates = new Map<string, number>(); }\nexport async function setRate(k: string): Promise<void> { Fx.rates.set(k, 1); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'Map', name: 'Quotes.latest', writer: 'exported async function `put`' } },
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'Fx.rates', writer: 'exported async function `setRate`' } },
      ],
    },
    {
      name: 'declared globals written through globalThis or by name',
      code: `${header}declare global { var cacheG: Map<string, number>; var limitsG: Record<string, number>; }\nexport async function put(k: string): Promise<void> { globalThis.cacheG.set(k, 1); limitsG[k] = 2; globalThis.sharedQuotesG.delete(k); }`,
      errors: [
        { messageId: 'plainSharedCache', line: 3, column: 22, data: { kind: 'Map', name: 'globalThis.cacheG', writer: 'exported async function `put`' } },
        { messageId: 'plainSharedCache', line: 3, data: { kind: 'dictionary object', name: 'limitsG', writer: 'exported async function `put`' } },
        { messageId: 'plainSharedCache', line: 4, data: { kind: 'Map', name: 'globalThis.sharedQuotesG', writer: 'exported async function `put`' } },
      ],
    },
    {
      name: 'strict scope: any async function',
      code: `${header}const cache = new Map<string, number>();\nasync function warm(k: string): Promise<void> { cache.set(k, 1); }\nvoid warm('a');`,
      options: [{ scope: 'async' }],
      errors: [{ messageId: 'plainSharedCache', data: { kind: 'Map', name: 'cache', writer: 'async function `warm`' } }],
    },
    {
      name: 'a user-named request type (Express-style)',
      code: `interface Req { params: Record<string, string> }\nconst carts = new Map<string, number>();\nexport function addToCart(req: Req): void { carts.set(req.params.id ?? '', 1); }`,
      options: [{ requestTypes: [{ from: 'file', name: 'Req' }] }],
      errors: [{ messageId: 'plainSharedCache', line: 2, data: { kind: 'Map', name: 'carts', writer: 'request handler `addToCart`' } }],
    },
    {
      name: 'a NestJS-style singleton service whose async method writes its Map field (also through an alias and an arrow)',
      code: `${header}declare function Injectable(options?: { scope?: number }): ClassDecorator;\ndeclare function Controller(path?: string): ClassDecorator;\ndeclare const Scope: { REQUEST: number; TRANSIENT: number };\n@Injectable()\nexport class BalanceService {\n  private readonly cache = new Map<string, bigint>();\n  #limits: Record<string, number> = {};\n  async credit(id: string, amount: bigint): Promise<void> { const c = this.cache; c.set(id, (c.get(id) ?? 0n) + amount); }\n  refresh = async (id: string): Promise<void> => { this.#limits[id] = 1; };\n}`,
      errors: [
        { messageId: 'singletonFieldCache', line: 8, data: { kind: 'Map', name: 'cache', className: 'BalanceService', why: 'a singleton of its container, @Injectable', writer: 'async method `credit` (through the alias `c`)' } },
        { messageId: 'singletonFieldCache', line: 9, data: { kind: 'dictionary object', name: '#limits', className: 'BalanceService', why: 'a singleton of its container, @Injectable', writer: 'async method `refresh`' } },
      ],
    },
    {
      name: 'a class instantiated once at module level, written by an async method or a request handler method',
      code: `${header}class SessionStore {\n  #sessions = new Map<string, string>();\n  async login(user: string): Promise<void> { this.#sessions.set(user, 't'); }\n}\nexport const sessions = new SessionStore();\nclass Router {\n  hits = new Map<string, number>();\n  handle(req: IncomingMessage, res: ServerResponse): void { this.hits.set(req.url ?? '', 1); res.end(); }\n}\nexport default new Router();`,
      errors: [
        { messageId: 'singletonFieldCache', line: 4, data: { kind: 'Map', name: '#sessions', className: 'SessionStore', why: 'instantiated once, at module level as `sessions`', writer: 'async method `login`' } },
        { messageId: 'singletonFieldCache', line: 9, data: { kind: 'Map', name: 'hits', className: 'Router', why: 'instantiated once, at module level', writer: 'request handler `handle`' } },
      ],
    },
    {
      name: 'a controller (also named through a namespace import) and a user-named singleton decorator',
      code: `${header}declare const nest: { Controller(path?: string): ClassDecorator };\ndeclare function Singleton(): ClassDecorator;\n@nest.Controller('quotes')\nexport class QuotesController { latest = new Map<string, number>(); async put(k: string): Promise<void> { this.latest.delete(k); } }\n@Singleton()\nclass Tokens { issued = new Map<string, string>(); async issue(k: string): Promise<void> { this.issued.clear(); void k; } }\nexport { Tokens };`,
      options: [{ singletonDecorators: ['Controller', 'Singleton'] }],
      errors: [
        { messageId: 'singletonFieldCache', line: 6, data: { kind: 'Map', name: 'latest', className: 'QuotesController', why: 'a singleton of its container, @Controller', writer: 'async method `put`' } },
        { messageId: 'singletonFieldCache', line: 8, data: { kind: 'Map', name: 'issued', className: 'Tokens', why: 'a singleton of its container, @Singleton', writer: 'async method `issue`' } },
      ],
    },
  ],
});
