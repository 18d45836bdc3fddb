import { z } from 'zod';
import { formatPath, requiredRule } from '../switches/definition.ts';
import type { JsonValue } from '../switches/definition.ts';
import type { BizTag } from './biz-tag.ts';
import { ConfigurationError } from '../map/errors.ts';
import { RouteTableError } from './errors.ts';

/**
 * The route table: rules on (orgId, txnType) -> a target and a degradation strategy.
 *
 * Patterns: orgId is exact (`1001`), a prefix (`1001*`, which matches 1001 itself and every id
 * starting with it) or `*`; txnType is exact (`pay`) or `*`. `*` matches any value, an absent
 * one included. A request without an X-Biz-Tag consults no rule: it goes to the default route.
 *
 * Precedence (deterministic; the order of rules in the file never matters):
 *   1. orgId: exact beats prefix beats `*`; between prefixes the longer wins;
 *   2. then, for the same orgId pattern, txnType exact beats `*`.
 * orgId decides first because it is the isolation boundary: a rule written for org 1001 is
 * never overridden by a broader-org rule that happens to name the transaction type. At each
 * orgId level, if neither the exact txnType nor `*` has a rule, the next less specific orgId
 * level is tried. Two rules with the same (orgId, txnType) patterns are rejected at load, so
 * there are no ties. Nothing matched: the default route, counted and logged as unmatched.
 */

/** Route ids become metric labels and map names: short, plain. */
export const ROUTE_ID = /^[A-Za-z][A-Za-z0-9_.-]{0,47}$/;
const ORG_PATTERN = /^(\*|[A-Za-z0-9_.-]{1,64}\*?)$/;
const TXN_PATTERN = /^(\*|[A-Za-z0-9_.-]{1,64})$/;
/** A target names a downstream (service name, URL); the router hands it to the caller's call. */
const TARGET = /^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
/**
 * A mock header value: printable ASCII, spaces and tabs. Node's setHeader throws on a control
 * character or a character above U+00FF, so anything else would load fine and then throw at
 * every degraded answer of the route, exactly when the downstream is already failing.
 */
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
/**
 * Headers a mock may not configure. sendRouteOutcome writes the body as JSON with its own
 * content-type, content-length and cache-control, which would replace a configured one without a
 * word; a configured transfer-encoding went out beside that content-length (a response proxies
 * reject or mis-frame); the hop-by-hop ones are the connection's, not the answer's; and the
 * x-govmap-* markers are how a client tells a degraded answer and its route.
 */
const RESERVED_MOCK_HEADERS: ReadonlySet<string> = new Set([
  'content-length', 'transfer-encoding', 'content-type', 'cache-control', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer',
  'x-govmap-degraded', 'x-govmap-route',
]);

/** Concurrency limits of a route when its rule names none. */
export const DEFAULT_BULKHEAD = Object.freeze({ maxConcurrent: 64, maxQueued: 128 });

export type Degradation =
  /** Answer with a configured response: `body` (any JSON, `null` for none) is required, `status` default 200. */
  | { readonly kind: 'mock'; readonly status: number; readonly body: JsonValue; readonly headers: Readonly<Record<string, string>> }
  /** Serve the last good response for the same request signature, at most `ttlMs` old. */
  | { readonly kind: 'cache'; readonly ttlMs: number; readonly maxEntries: number }
  /**
   * Accept (202) and queue; process later at most `ratePerSec` per second (bursts of `burst`),
   * through the route's breaker, retrying up to `maxAttempts` times.
   */
  | { readonly kind: 'async'; readonly ratePerSec: number; readonly burst: number; readonly maxQueued: number; readonly maxAttempts: number }
  /** No degradation: refuse (503) while the route is degraded. */
  | { readonly kind: 'none' };

/**
 * A mock's extra response headers. zod's record never visits a `__proto__` key, which JSON.parse
 * and YAML create as an own key: without the check on the raw object that header would vanish
 * from the table without an error.
 */
const mockHeadersSchema = z
  .unknown()
  .superRefine((raw, ctx) => {
    if (raw !== null && typeof raw === 'object' && Object.hasOwn(raw, '__proto__')) ctx.addIssue({ code: 'custom', path: ['__proto__'], message: 'a header name is an HTTP token other than __proto__' });
  })
  .pipe(z.record(z.string().regex(HEADER_NAME, 'a header name is an HTTP token'), z.string().max(1024).regex(HEADER_VALUE, 'a header value is printable ASCII, spaces and tabs (no control character, no non-ASCII)')))
  .superRefine((headers, ctx) => {
    // Node's headers are case-insensitive: of two spellings only the last would go out, silently.
    const seen = new Map<string, string>();
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_MOCK_HEADERS.has(lower)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'the degraded answer sets this header itself (its framing, JSON content type, no-store, or the x-govmap-* markers): a configured value would be dropped or would corrupt the response' });
      }
      const other = seen.get(lower);
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: `the same header as "${other}" (header names are case-insensitive); configure it once` });
      seen.set(lower, name);
    }
  });

/** Statuses whose answers carry no body (RFC 9110 §15.3.5, §15.3.6, §15.4.5): a mock's body must be null. */
export const BODYLESS_STATUSES: ReadonlySet<number> = new Set([204, 205, 304]);

const degradationSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('mock'),
    status: z.number().int().min(200).max(599).optional(),
    body: z.json().optional(), // required: see the refine below
    headers: mockHeadersSchema.optional(),
  }).refine((mock) => mock.body !== undefined, {
    // A mock that forgot its answer must not go live answering nothing: say so in its own words.
    path: ['body'],
    message: 'required: the JSON a mock degradation answers with (write null for an empty body)',
  }).refine((mock) => mock.body === undefined || mock.body === null || !BODYLESS_STATUSES.has(mock.status ?? 200), {
    // The answer would go out without it: a configured body silently dropped.
    path: ['body'],
    message: 'must be null with status 204, 205 or 304: those answers carry no body',
  }),
  z.strictObject({
    kind: z.literal('cache'),
    ttlMs: z.number().int().min(1).max(86_400_000),
    maxEntries: z.number().int().min(1).max(1_000_000).optional(),
  }),
  z.strictObject({
    kind: z.literal('async'),
    ratePerSec: z.number().positive().max(1_000_000),
    burst: z.number().int().min(1).max(1_000_000).optional(),
    maxQueued: z.number().int().min(1).max(1_000_000).optional(),
    maxAttempts: z.number().int().min(1).max(100).optional(),
  }),
  z.strictObject({ kind: z.literal('none') }),
]);

const bulkheadSchema = z.strictObject({
  maxConcurrent: z.number().int().min(1).max(100_000),
  maxQueued: z.number().int().min(0).max(1_000_000),
});

const targetSchema = z.string().regex(TARGET, 'a target is [A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}');

const ruleSchema = z.strictObject({
  id: z
    .string()
    .regex(ROUTE_ID, 'a route id is [A-Za-z][A-Za-z0-9_.-]{0,47}')
    .refine((id) => id !== 'default', '"default" is the default route\'s id'),
  orgId: z.string().regex(ORG_PATTERN, 'orgId is exact (1001), a prefix (1001*) or *'),
  txnType: z.string().regex(TXN_PATTERN, 'txnType is exact (pay) or *'),
  target: targetSchema,
  degradation: degradationSchema.optional(),
  bulkhead: bulkheadSchema.optional(),
  description: z.string().max(500).optional(),
});

const tableSchema = z.strictObject({
  default: z.strictObject({ target: targetSchema, degradation: degradationSchema.optional(), bulkhead: bulkheadSchema.optional() }),
  routes: z.array(ruleSchema).max(100_000),
});

export type RouteTableDocument = z.input<typeof tableSchema>;

/** One route as the router uses it. Frozen. */
export interface CompiledRoute {
  readonly id: string;
  /** `*` for the default route. */
  readonly orgId: string;
  readonly txnType: string;
  readonly target: string;
  readonly degradation: Degradation;
  readonly bulkhead: { readonly maxConcurrent: number; readonly maxQueued: number };
  readonly description: string;
  readonly isDefault: boolean;
}

/** Why a request went where it went. Preallocated per route: deciding allocates nothing. */
export interface RouteDecision {
  readonly route: CompiledRoute;
  /** `rule`: a rule matched; `no_rule`: tagged but unmatched (alerted); `untagged`: no X-Biz-Tag. */
  readonly reason: 'rule' | 'no_rule' | 'untagged';
}

interface TxnRules {
  readonly exact: Map<string, RouteDecision>;
  any: RouteDecision | null;
}

interface TrieNode {
  readonly children: Map<number, TrieNode>;
  rules: TxnRules | null;
}

/**
 * A compiled, immutable route table. Lookup: exact orgs in a Map, prefixes in a character trie
 * walked once along the orgId (keeping the deepest level whose txnType matches), then `*`:
 * O(length of orgId), independent of the number of rules, no allocation.
 */
export class RouteTable {
  readonly version: number;
  readonly origin: string;
  /** Rules in precedence order (most specific first), then the default route. */
  readonly routes: readonly CompiledRoute[];
  readonly defaultRoute: CompiledRoute;
  readonly #exact = new Map<string, TxnRules>();
  readonly #trie: TrieNode = { children: new Map(), rules: null };
  #any: TxnRules | null = null;
  readonly #noRule: RouteDecision;
  readonly #untagged: RouteDecision;

  /** @throws RouteTableError listing every problem */
  constructor(document: unknown, options: { readonly version?: number; readonly origin?: string } = {}) {
    const origin = options.origin ?? 'api';
    const version = options.version ?? 1;
    // Exported as govmap_route_table_version and compared at replaceTable: NaN or 1.5 would
    // show nonsense and defeat the "not newer" warning.
    if (!(Number.isSafeInteger(version) && version >= 1)) throw new ConfigurationError('version', 'a route table version is a positive whole number', version);
    if (document === null || document === undefined) {
      throw new RouteTableError(origin, [{ path: '(root)', rule: 'the document is empty; a route table is { "default": { "target": ... }, "routes": [...] }' }]);
    }
    const parsed = tableSchema.safeParse(document, { error: requiredRule });
    if (!parsed.success) throw new RouteTableError(origin, parsed.error.issues.map((i) => ({ path: formatPath(i.path), rule: i.message })));
    const data = parsed.data;
    const issues: { path: string; rule: string }[] = [];
    const ids = new Set<string>();
    const patterns = new Map<string, string>();
    data.routes.forEach((rule, index) => {
      if (ids.has(rule.id)) issues.push({ path: `routes[${index}].id`, rule: `duplicate route id "${rule.id}"` });
      ids.add(rule.id);
      const pattern = `${rule.orgId}\u0000${rule.txnType}`;
      const other = patterns.get(pattern);
      if (other !== undefined) issues.push({ path: `routes[${index}]`, rule: `same orgId "${rule.orgId}" and txnType "${rule.txnType}" as route "${other}"; one of them would never match` });
      patterns.set(pattern, rule.id);
    });
    if (issues.length > 0) throw new RouteTableError(origin, issues);

    this.version = version;
    this.origin = origin;
    const compiled = data.routes.map((rule) => compile(rule.id, rule.orgId, rule.txnType, rule.target, rule.degradation, rule.bulkhead, rule.description ?? '', false));
    compiled.sort(byPrecedence);
    this.defaultRoute = compile('default', '*', '*', data.default.target, data.default.degradation, data.default.bulkhead, 'unmatched and untagged traffic', true);
    this.routes = Object.freeze([...compiled, this.defaultRoute]);
    this.#noRule = Object.freeze({ route: this.defaultRoute, reason: 'no_rule' });
    this.#untagged = Object.freeze({ route: this.defaultRoute, reason: 'untagged' });
    for (const route of compiled) this.#index(route);
    Object.freeze(this);
  }

  /** Where a request tagged (orgId, txnType) goes. Either may be undefined (absent from the tag). */
  decide(orgId: string | undefined, txnType: string | undefined): RouteDecision {
    if (orgId !== undefined) {
      const exact = this.#exact.get(orgId);
      if (exact !== undefined) {
        const hit = pick(exact, txnType);
        if (hit !== null) return hit;
      }
      // Walk the trie along orgId; the deepest node whose rules match txnType wins.
      let best: RouteDecision | null = null;
      let node: TrieNode | undefined = this.#trie;
      for (let i = 0; i < orgId.length; i++) {
        node = node.children.get(orgId.charCodeAt(i));
        if (node === undefined) break;
        if (node.rules !== null) best = pick(node.rules, txnType) ?? best;
      }
      if (best !== null) return best;
    }
    if (this.#any !== null) {
      const hit = pick(this.#any, txnType);
      if (hit !== null) return hit;
    }
    return this.#noRule;
  }

  /** Where a request with this tag (null: no X-Biz-Tag) goes. */
  decideTag(tag: BizTag | null): RouteDecision {
    return tag === null ? this.#untagged : this.decide(tag.orgId, tag.txnType);
  }

  route(id: string): CompiledRoute | undefined {
    return this.routes.find((r) => r.id === id);
  }

  /** The table in its document form (default first), for GET /routes. */
  toJSON(): { version: number; origin: string; default: Record<string, unknown>; routes: Record<string, unknown>[] } {
    const describe = (r: CompiledRoute): Record<string, unknown> => ({
      id: r.id,
      orgId: r.orgId,
      txnType: r.txnType,
      target: r.target,
      degradation: r.degradation,
      bulkhead: r.bulkhead,
      ...(r.description ? { description: r.description } : {}),
    });
    return { version: this.version, origin: this.origin, default: describe(this.defaultRoute), routes: this.routes.filter((r) => !r.isDefault).map(describe) };
  }

  #index(route: CompiledRoute): void {
    const decision: RouteDecision = Object.freeze({ route, reason: 'rule' });
    let rules: TxnRules;
    if (route.orgId === '*') {
      rules = this.#any ??= { exact: new Map(), any: null };
    } else if (route.orgId.endsWith('*')) {
      let node = this.#trie;
      const prefix = route.orgId.slice(0, -1);
      for (let i = 0; i < prefix.length; i++) {
        const code = prefix.charCodeAt(i);
        let child = node.children.get(code);
        if (child === undefined) node.children.set(code, (child = { children: new Map(), rules: null }));
        node = child;
      }
      rules = node.rules ??= { exact: new Map(), any: null };
    } else {
      rules = this.#exact.get(route.orgId) ?? { exact: new Map(), any: null };
      this.#exact.set(route.orgId, rules);
    }
    if (route.txnType === '*') rules.any = decision;
    else rules.exact.set(route.txnType, decision);
  }
}

/**
 * Whether `route`'s rule takes a request with `tag` (null: untagged): the default route takes
 * every request, a rule only tagged ones its orgId and txnType patterns match. Precedence aside:
 * a request decided under an older table is checked against the route its id names now.
 */
export function routeCovers(route: CompiledRoute, tag: BizTag | null): boolean {
  if (route.isDefault) return true;
  if (tag === null) return false;
  const org = route.orgId;
  const orgOk = org === '*' || (org.endsWith('*') ? tag.orgId?.startsWith(org.slice(0, -1)) === true : tag.orgId === org);
  return orgOk && (route.txnType === '*' || tag.txnType === route.txnType);
}

function pick(rules: TxnRules, txnType: string | undefined): RouteDecision | null {
  if (txnType !== undefined) {
    const exact = rules.exact.get(txnType);
    if (exact !== undefined) return exact;
  }
  return rules.any;
}

type DegradationInput = z.infer<typeof degradationSchema> | undefined;

function compile(
  id: string,
  orgId: string,
  txnType: string,
  target: string,
  degradation: DegradationInput,
  bulkhead: { maxConcurrent: number; maxQueued: number } | undefined,
  description: string,
  isDefault: boolean,
): CompiledRoute {
  return Object.freeze({
    id,
    orgId,
    txnType,
    target,
    degradation: Object.freeze(normaliseDegradation(degradation)),
    bulkhead: Object.freeze(bulkhead ?? DEFAULT_BULKHEAD),
    description,
    isDefault,
  });
}

function normaliseDegradation(d: DegradationInput): Degradation {
  if (d === undefined) return { kind: 'none' };
  switch (d.kind) {
    case 'mock':
      return { kind: 'mock', status: d.status ?? 200, body: d.body as JsonValue, headers: Object.freeze({ ...(d.headers ?? {}) }) };
    case 'cache':
      return { kind: 'cache', ttlMs: d.ttlMs, maxEntries: d.maxEntries ?? 10_000 };
    case 'async':
      return {
        kind: 'async',
        ratePerSec: d.ratePerSec,
        burst: d.burst ?? Math.max(1, Math.ceil(d.ratePerSec)),
        maxQueued: d.maxQueued ?? 10_000,
        maxAttempts: d.maxAttempts ?? 5,
      };
    default:
      return { kind: 'none' };
  }
}

/** orgId rank: exact 0, prefix 1 (longer first), `*` 2; then txnType exact before `*`; then id. */
function byPrecedence(a: CompiledRoute, b: CompiledRoute): number {
  const rank = (r: CompiledRoute): number => (r.orgId === '*' ? 2 : r.orgId.endsWith('*') ? 1 : 0);
  return (
    rank(a) - rank(b) ||
    b.orgId.length - a.orgId.length ||
    (a.txnType === '*' ? 1 : 0) - (b.txnType === '*' ? 1 : 0) ||
    (a.orgId < b.orgId ? -1 : a.orgId > b.orgId ? 1 : 0) ||
    (a.txnType < b.txnType ? -1 : a.txnType > b.txnType ? 1 : 0)
  );
}
