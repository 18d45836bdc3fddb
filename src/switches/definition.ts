import { z } from 'zod';
import { SwitchConfigError } from './errors.ts';
import type { SwitchIssue } from './errors.ts';

/**
 * The schema of a switch: what a file, an etcd key or an admin call may say about one switch.
 * Validation is strict (an unknown field is an error: a typo such as "enabeld" must not pass
 * as "enabled is absent"), and every problem is reported at once with its path.
 *
 * Input forms, normalised to one SwitchDefinition:
 *   true / false                       -> { enabled: true/false }
 *   { enabled, kill?, value?, offValue?, rollout?, allow?, deny?, description? }
 */

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** Switch names become map keys, log fields and OpenFeature flag keys. */
export const SWITCH_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const SWITCH_NAME_RULE = 'a switch name is [A-Za-z][A-Za-z0-9_.-]{0,63}';
/** Context keys: the X-Biz-Tag key grammar, so any tag key can drive targeting. */
export const CONTEXT_KEY = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
/** orgId patterns: an X-Biz-Tag value, optionally ending in `*` (a prefix). */
const ORG_PATTERN = /^[A-Za-z0-9_.-]{1,64}\*?$/;
const TXN_TYPE = /^[A-Za-z0-9_.-]{1,64}$/;
/** A switch set larger than this is a mistake (or an attack on the parser), not a rollout plan. */
export const MAX_SWITCHES = 10_000;

/**
 * Who a rule applies to. Within one audience both lists must match (AND; an empty list matches
 * anything); a list of audiences matches if any one does (OR).
 */
export interface SwitchAudience {
  /** Exact org ids (`1001`) or prefixes (`1001*`). Empty: any org. */
  readonly orgIds: readonly string[];
  /** Exact transaction types (`pay`). Empty: any type. */
  readonly txnTypes: readonly string[];
}

export interface SwitchRollout {
  /** Share of the context key's values that get the switch, 0 to 100 in steps of 0.01. */
  readonly percent: number;
  /** The context key whose value is hashed (`orgId`, `account`, `targetingKey`...). Default `orgId`. */
  readonly by: string;
  /**
   * Mixed into the hash so two switches at 10% do not pick the same 10% of orgs. Default: the
   * switch name. Keep it when renaming a switch to keep the same audience.
   */
  readonly salt: string;
  /**
   * How a value becomes a bucket. 1 (default): FNV-1a, as every rollout has always been
   * bucketed. 2: FNV-1a with a final avalanche mix (murmur3 fmix32), even over the buckets
   * where FNV-1a alone is measurably lumpy (sequential ids). Versioned, not replaced: a new
   * default would move every live rollout's audience at once. Changing it on a switch re-draws
   * that switch's audience.
   */
  readonly bucketing: 1 | 2;
}

/** One switch, normalised and (once in a snapshot) deeply frozen. */
export interface SwitchDefinition {
  /** Off means off for everyone (reason DISABLED). */
  readonly enabled: boolean;
  /** Kill switch: forces off over every other field (reason KILLED). Default false. */
  readonly kill: boolean;
  /** What an "on" evaluation serves. Default `true`. */
  readonly value: JsonValue;
  /** What an "off" evaluation serves. Default `false`; same JSON type as `value`. */
  readonly offValue: JsonValue;
  readonly rollout: SwitchRollout | null;
  /** When non-empty, only matching requests can be on (reason NOT_TARGETED otherwise). */
  readonly allow: readonly SwitchAudience[];
  /** Matching requests are off (reason DENIED); deny wins over allow. */
  readonly deny: readonly SwitchAudience[];
  readonly description: string;
}

const audienceSchema = z
  .strictObject({
    orgIds: z.array(z.string().regex(ORG_PATTERN, 'an orgId is [A-Za-z0-9_.-]{1,64}, optionally ending in * for a prefix')).max(1000).optional(),
    txnTypes: z.array(z.string().regex(TXN_TYPE, 'a txnType is [A-Za-z0-9_.-]{1,64}')).max(1000).optional(),
  })
  .refine((a) => (a.orgIds?.length ?? 0) + (a.txnTypes?.length ?? 0) > 0, 'an audience names at least one orgId or txnType');

const rolloutSchema = z.strictObject({
  percent: z.number().min(0).max(100).multipleOf(0.01, 'percent has at most two decimals'),
  by: z.string().regex(CONTEXT_KEY, 'by is a context key [A-Za-z][A-Za-z0-9_]{0,31}').optional(),
  salt: z.string().min(1).max(128).optional(),
  bucketing: z.literal([1, 2], { error: 'bucketing is 1 (FNV-1a, the default) or 2 (FNV-1a with a final mix)' }).optional(),
});

const jsonType = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

const definitionSchema = z.union([
  z.boolean(),
  z
    .strictObject({
      enabled: z.boolean(),
      kill: z.boolean().optional(),
      value: z.json().optional(),
      offValue: z.json().optional(),
      rollout: rolloutSchema.optional(),
      allow: z.array(audienceSchema).max(100).optional(),
      deny: z.array(audienceSchema).max(100).optional(),
      description: z.string().max(500).optional(),
    })
    .superRefine((d, ctx) => {
      // `?? true` below would serve true for it: an empty `value:` in YAML is a slip, not a value.
      for (const field of ['value', 'offValue'] as const) {
        if (d[field] === null) {
          ctx.addIssue({ code: 'custom', path: [field], message: `null is not a switch value (an empty \`${field}:\` in YAML?): give the value served when ${field === 'value' ? 'on' : 'off'}, or leave it out for ${field === 'value' ? 'true' : 'false'}` });
        }
      }
      if (d.value === null || d.offValue === null) return;
      const on = jsonType(d.value ?? true);
      const off = jsonType(d.offValue ?? false);
      const a = (type: string): string => (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);
      if (on !== off) {
        // A number or string switch that leaves offValue out hits its default: say so, or the
        // message reads as a mismatch in a field the user never wrote.
        const message =
          d.offValue === undefined
            ? `value is ${a(on)} and offValue, not given, defaults to false (a boolean): give an offValue of type ${on}, the same JSON type (an evaluation is typed)`
            : d.value === undefined
              ? `offValue is ${a(off)} and value, not given, defaults to true (a boolean): give a value of type ${off}, the same JSON type (an evaluation is typed)`
              : `value is ${a(on)} but offValue ${a(off)}: value and offValue must be of the same JSON type (an evaluation is typed)`;
        ctx.addIssue({ code: 'custom', path: ['offValue'], message });
      }
      // A JSON or YAML number past 2^53 has lost digits before we see it (9007199254740993 reads
      // as ...992): a limit in minor units would be enforced at a value nobody wrote.
      for (const field of ['value', 'offValue'] as const) {
        for (const path of unsafeIntegerPaths(d[field], [field])) {
          ctx.addIssue({ code: 'custom', path, message: 'a whole number beyond 2^53 loses digits in JSON and YAML: write it as a decimal string (money in minor units, "9007199254740993")' });
        }
      }
    }),
]);

/** Paths of the integers past Number.MAX_SAFE_INTEGER in a JSON value. */
function unsafeIntegerPaths(value: unknown, path: Array<string | number>): Array<Array<string | number>> {
  if (typeof value === 'number') return Number.isInteger(value) && !Number.isSafeInteger(value) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((item, i) => unsafeIntegerPaths(item, [...path, i]));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([key, item]) => unsafeIntegerPaths(item, [...path, key]));
  return [];
}

// Names are checked on the raw keys (switchNameIssues), not here: z.record skips a `__proto__` key.
const setSchema = z.strictObject({
  switches: z.record(z.string(), definitionSchema),
});

type DefinitionInput = z.infer<typeof definitionSchema>;

/** What a switch source hands the board: switch name -> definition (or its true/false shorthand). */
export type SwitchSetInput = Readonly<Record<string, unknown>>;

/**
 * Validates a whole switch set document `{ "switches": { name: definition } }`.
 * @throws SwitchConfigError naming every problem; nothing is returned half-valid
 */
export function parseSwitchDocument(document: unknown, origin: string): Map<string, SwitchDefinition> {
  if (document === null || document === undefined) {
    throw new SwitchConfigError(origin, [{ path: '(root)', rule: 'the document is empty; a switch set is { "switches": { <name>: <definition> } }' }]);
  }
  const names = switchNameIssues(document);
  const parsed = setSchema.safeParse(document, { error: requiredRule });
  if (!parsed.success || names.length > 0) throw new SwitchConfigError(origin, [...names, ...(parsed.success ? [] : toIssues(parsed.error.issues))]);
  const switchNames = Object.keys(parsed.data.switches);
  if (switchNames.length > MAX_SWITCHES) throw new SwitchConfigError(origin, [{ path: 'switches', rule: `at most ${MAX_SWITCHES} switches` }]);
  const out = new Map<string, SwitchDefinition>();
  for (const name of switchNames) out.set(name, normalise(name, parsed.data.switches[name]!));
  return out;
}

/**
 * Every own key of `document.switches` that is not a valid switch name. Read from the raw object
 * because zod's record never visits `__proto__`, which JSON.parse and YAML create as an own key:
 * `{"__proto__": {...}}` would otherwise vanish without an error.
 */
function switchNameIssues(document: unknown): SwitchIssue[] {
  const switches = (document as { switches?: unknown }).switches;
  if (switches === null || typeof switches !== 'object' || Array.isArray(switches)) return []; // the schema reports it
  return Object.keys(switches)
    .filter((name) => !SWITCH_NAME.test(name))
    .map((name) => ({ path: formatPath(['switches', name]), rule: SWITCH_NAME_RULE }));
}

/**
 * Per-parse zod error map: a missing field says "required" instead of zod's "Invalid input:
 * expected boolean, received undefined"; other issues keep zod's message.
 */
export function requiredRule(issue: { readonly code?: string; readonly input?: unknown }): string | undefined {
  if (issue.input === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_union')) return 'required';
  return undefined;
}

/** Validates the switches of a set given as a plain name -> definition record. */
export function parseSwitchSet(switches: SwitchSetInput, origin: string): Map<string, SwitchDefinition> {
  return parseSwitchDocument({ switches }, origin);
}

/** Validates one definition of switch `name`. @throws SwitchConfigError */
export function parseSwitchDefinition(name: string, definition: unknown, origin: string): SwitchDefinition {
  return parseSwitchDocument({ switches: { [name]: definition } }, origin).get(name)!;
}

function normalise(name: string, input: DefinitionInput): SwitchDefinition {
  if (typeof input === 'boolean') {
    return { enabled: input, kill: false, value: true, offValue: false, rollout: null, allow: [], deny: [], description: '' };
  }
  return {
    enabled: input.enabled,
    kill: input.kill ?? false,
    value: (input.value ?? true),
    offValue: (input.offValue ?? false),
    rollout: input.rollout === undefined ? null : { percent: input.rollout.percent, by: input.rollout.by ?? 'orgId', salt: input.rollout.salt ?? name, bucketing: input.rollout.bucketing ?? 1 },
    allow: (input.allow ?? []).map(audience),
    deny: (input.deny ?? []).map(audience),
    description: input.description ?? '',
  };
}

function audience(a: { orgIds?: string[] | undefined; txnTypes?: string[] | undefined }): SwitchAudience {
  return { orgIds: a.orgIds ?? [], txnTypes: a.txnTypes ?? [] };
}

/** The definition in the input form (what a file or an etcd key holds), for round trips and /switches. */
export function definitionToJson(definition: SwitchDefinition): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = { enabled: definition.enabled };
  if (definition.kill) out.kill = true;
  if (definition.value !== true) out.value = definition.value;
  if (definition.offValue !== false) out.offValue = definition.offValue;
  if (definition.rollout !== null) {
    // The default is left out: a definition written before bucketing existed reads back (and
    // compares, and publishes) exactly as it did.
    const { percent, by, salt, bucketing } = definition.rollout;
    out.rollout = bucketing === 1 ? { percent, by, salt } : { percent, by, salt, bucketing };
  }
  if (definition.allow.length > 0) out.allow = definition.allow.map((a) => ({ orgIds: [...a.orgIds], txnTypes: [...a.txnTypes] }));
  if (definition.deny.length > 0) out.deny = definition.deny.map((a) => ({ orgIds: [...a.orgIds], txnTypes: [...a.txnTypes] }));
  if (definition.description !== '') out.description = definition.description;
  return out;
}

/** JSON with object keys sorted: two definitions are the same switch iff their canonical texts are equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

/** Freezes a value and everything reachable from it: a snapshot must be immutable all the way down. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

interface ZodIssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  readonly keys?: readonly string[];
  readonly errors?: readonly (readonly ZodIssueLike[])[];
}

/** zod issues -> `path: rule` lines a person can act on (union errors reduced to the object branch). */
export function toIssues(issues: readonly ZodIssueLike[]): SwitchIssue[] {
  const out: SwitchIssue[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union' && issue.errors !== undefined) {
      // A definition is `boolean | object`; the object branch's complaints are the useful ones.
      const objectBranch = issue.errors.find((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
      if (objectBranch !== undefined) {
        out.push(...toIssues(objectBranch.map((i) => ({ ...i, path: [...issue.path, ...i.path] }))));
        continue;
      }
      out.push({ path: formatPath(issue.path), rule: 'must be true, false or a switch definition object' });
      continue;
    }
    const rule = issue.code === 'unrecognized_keys' && issue.keys ? `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` : issue.message;
    out.push({ path: formatPath(issue.path), rule });
  }
  return out;
}

export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) out += out === '' ? part : `.${part}`;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}
