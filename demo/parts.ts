/**
 * Parts of governance the reference service can run without (`govmap demo --without audit,routing`).
 *
 * Why: "what does governance cost us" has one answer per part. A platform team deciding whether
 * to audit every read, or to route by X-Biz-Tag, needs to know what that part costs on its
 * own, and `govmap bench cost` measures each by running the service without it. Not a way to
 * run the service: a part left out is simply absent (no audit trail, no routing), and the demo
 * says so at start.
 *
 * - `audit`: no recorder; nothing is written under --audit-dir.
 * - `routing`: no X-Biz-Tag middleware; every request takes the default route, untagged.
 * - `dashboard`: the dashboard no longer observes each request (its traffic panels stay empty).
 * - `metrics`: the balances map is not tracked (no syncmap_* series for it on /metrics).
 * - `shared-memory`: balances in the in-process store instead of shared memory (no
 *   /shared-memory routes).
 */
export const OPTIONAL_PARTS = ['audit', 'routing', 'dashboard', 'metrics', 'shared-memory'] as const;
export type OptionalPart = (typeof OPTIONAL_PARTS)[number];

/** A `--without` value the demo cannot run with: names the value and what it may hold. */
export class PartsListError extends Error {
  readonly code = 'GOVMAP_DEMO_PARTS_INVALID';
  readonly value: string;
  constructor(value: string, rule: string) {
    super(`--without ${JSON.stringify(value)}: ${rule}; the parts are ${OPTIONAL_PARTS.join(', ')} (comma-separated)`);
    this.name = 'PartsListError';
    this.value = value;
  }
}

/** `audit,routing` -> ['audit', 'routing'], in OPTIONAL_PARTS order. @throws PartsListError */
export function parseParts(text: string): OptionalPart[] {
  const names = text.split(',').map((s) => s.trim());
  if (names.some((n) => n === '')) throw new PartsListError(text, 'an empty name (two commas, or a comma at an end)');
  const unknown = names.filter((n) => !(OPTIONAL_PARTS as readonly string[]).includes(n));
  if (unknown.length > 0) throw new PartsListError(text, `${unknown.map((n) => JSON.stringify(n)).join(', ')} ${unknown.length === 1 ? 'is not a part' : 'are not parts'}`);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) throw new PartsListError(text, `"${twice}" is named twice`);
  return OPTIONAL_PARTS.filter((p) => names.includes(p));
}
