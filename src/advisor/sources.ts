import { ConfigurationError } from '../map/errors.ts';
import { AdvisorAuthError, AdvisorSourceError } from './errors.ts';
import { byName, formatFloatValue, formatOfContentType, formatSeries, parseFloatValue, parsePrometheusText } from './prom-text.ts';
import type { ExpositionFormat, PromSample } from './prom-text.ts';
import { DEFAULT_THRESHOLDS, THRESHOLD_LABELS, resolveThresholds } from './signals.ts';
import type { AdvisorThresholds, MapEvidence, WeekCount } from './signals.ts';

/**
 * Evidence from outside the process: one scrape of a service's metrics endpoint, or the history
 * a Prometheus server keeps. Both fill the same MapEvidence as the in-process advisor; what a
 * source cannot know stays null, and its signal reports `insufficient-data`.
 */

export interface SourceOptions {
  /** Per-request timeout, ms. Default 10,000. */
  readonly timeoutMs?: number;
  readonly thresholds?: AdvisorThresholds;
  /**
   * The Authorization header sent on every request of this source: `Bearer <token>`, or
   * `Basic <base64 of user:password>`. Never put in a message or an error. A 401 or 403 answer
   * is an AdvisorAuthError (`GOVMAP_ADVISOR_AUTH_REFUSED`); a malformed value a
   * ConfigurationError before any request.
   */
  readonly authorization?: string;
}

/**
 * Why `value` is not an Authorization header this source can send, or null when it is one.
 * The rule only, never the value: the caller names where the value came from.
 */
export function authorizationProblem(value: string): string | null {
  const match = /^(bearer|basic) ([A-Za-z0-9\-._~+/]+=*)$/i.exec(value);
  if (match === null) return 'must be "Bearer <token>" or "Basic <base64 of user:password>" (one space, no other whitespace)';
  if (match[1]!.toLowerCase() === 'basic') {
    const decoded = Buffer.from(match[2]!, 'base64');
    // Node decodes what it can of any text: only a value that encodes back the same is base64.
    if (decoded.toString('base64').replace(/=+$/, '') !== match[2]!.replace(/=+$/, '') || !decoded.toString('utf8').includes(':')) {
      return 'must be "Basic " and the base64 of user:password (e.g. the output of: printf %s user:password | base64)';
    }
  }
  return null;
}

/** The header to send, checked before any request: a malformed one must not be sent to be refused. */
function checkedAuthorization(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const problem = authorizationProblem(value);
  if (problem !== null) throw new ConfigurationError('authorization', problem);
  return value;
}

/**
 * `text` with the credentials masked: a server that echoes the request in its error page (a
 * debug proxy) must not get the token printed into a CI log.
 */
function masked(text: string, authorization: string | undefined): string {
  if (authorization === undefined) return text;
  const credential = authorization.slice(authorization.indexOf(' ') + 1);
  return text.split(credential).join('***');
}

const DEFAULT_WINDOW_MS = 300_000;

/**
 * Largest answer read, bytes. A big service's /metrics is a few MB, a Prometheus query answer
 * for these queries far less; a URL that points at something else (a log, a dump) must not
 * fill this process's memory before it is refused.
 */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * Operations a figure needs before it is judged, as the in-process advisor's defaults
 * (`minLoadsPerWindow`, `minOpsForReadWrite`): 1 miss in 2 loads is not a 50% miss ratio, and
 * 1 read and 1 write are not a write-heavy workload. The sliding-window gauges are exported
 * whatever the traffic, so the source checks the counters beside them: a map whose counters
 * since it started stay below these cannot have had more in its window.
 */
export const MIN_LOADS_JUDGED = 100;
export const MIN_OPERATIONS_JUDGED = 100;

/** The note of a figure left unjudged because the load count beside it is missing or refused. */
const UNKNOWN_LOADS_NOTE = (what: string): string => `${what} not judged: the map's load count (syncmap_load_total) is missing or refused, so its traffic is unknown`;

/** The note of a figure left unjudged for too little traffic. */
function tooFewNote(what: string, count: number, needed: number, unit: string): string {
  return `${what} not judged: ${Math.round(count)} ${unit} since the map started, fewer than the ${needed} it needs`;
}

/** Why a fetch failed, in words: the cause (ECONNREFUSED...) rather than "fetch failed". */
function reasonOf(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && error.name === 'TimeoutError') return `no complete answer within the ${timeoutMs} ms timeout`;
  return error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
}

/**
 * GETs `url` as text. The timeout covers the whole answer, body included: a server that sends
 * its headers and then stalls is a source that could not be read, like one that never answers.
 */
async function fetchText(url: string, timeoutMs: number, what: string, authorization?: string): Promise<{ readonly body: string; readonly contentType: string | null }> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'text/plain, application/json', ...(authorization === undefined ? {} : { authorization }) } });
  } catch (error) {
    throw new AdvisorSourceError(url, `cannot reach the ${what}: ${reasonOf(error, timeoutMs)}`, error);
  }
  let body: string;
  try {
    body = await readCapped(response, MAX_ANSWER_BYTES, (why) => new AdvisorSourceError(response.url, why));
  } catch (error) {
    if (error instanceof AdvisorSourceError) throw error;
    throw new AdvisorSourceError(url, `the ${what} did not finish its answer: ${reasonOf(error, timeoutMs)}`, error);
  }
  // The body is left out: a login page says nothing more, and one may echo the request.
  if (response.status === 401 || response.status === 403) throw new AdvisorAuthError(url, what, response.status, authorization !== undefined);
  if (!response.ok) {
    let detail = masked(body, authorization).slice(0, 300);
    try {
      const parsed = JSON.parse(body) as { error?: unknown };
      if (typeof parsed.error === 'string') detail = masked(parsed.error, authorization);
    } catch {
      // not JSON: show the start of the body
    }
    throw new AdvisorSourceError(url, `the ${what} answered HTTP ${response.status}: ${detail}`);
  }
  return { body, contentType: response.headers.get('content-type') };
}

/**
 * The body as UTF-8 text, refused (with `refuse(why)`) once it passes `maxBytes`: the rest is not
 * read, so a source that floods cannot make the reader hold what it sends. Shared with
 * `govmap sandbox report`.
 */
export async function readCapped(response: Response, maxBytes: number, refuse: (why: string) => Error): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw refuse(`answered ${declared} bytes, more than the ${maxBytes} read at most`);
  }
  if (response.body === null) return '';
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let bytes = 0;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    // Leaving the loop by a throw cancels the stream: the rest is never downloaded.
    if (bytes > maxBytes) {
      throw refuse(`answered more than the ${maxBytes} bytes read at most`);
    }
    parts.push(decoder.decode(chunk, { stream: true }));
  }
  parts.push(decoder.decode());
  return parts.join('');
}

// ------------------------------------------------------------------ what a value can be

/** The range a govmap metric's values lie in; a value outside it cannot come from a working exporter. */
interface ValueRule {
  readonly holds: (value: number) => boolean;
  /** The rule in words, for the refusal. */
  readonly rule: string;
}

const isCount = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;
const isNonNegative = (v: number): boolean => Number.isFinite(v) && v >= 0;
const isShare = (v: number): boolean => v >= 0 && v <= 1;
const isFlag = (v: number): boolean => v === 0 || v === 1;

const KEY_COUNT: ValueRule = { holds: isCount, rule: 'a key count is a whole number >= 0' };
const COUNTER: ValueRule = { holds: isNonNegative, rule: 'a counter is a finite number >= 0' };
const MISS_RATIO: ValueRule = { holds: isShare, rule: 'a miss ratio is misses / loads, from 0 to 1' };
// The exporters leave the ratio out when there were no writes, so +Inf is never theirs.
const READ_WRITE: ValueRule = { holds: isNonNegative, rule: 'reads per write is a finite number >= 0 (left out when there were no writes)' };
const WINDOWS: ValueRule = { holds: isCount, rule: 'a number of windows is a whole number >= 0' };
const OPERATIONS: ValueRule = { holds: isCount, rule: 'a number of operations is a whole number >= 0' };
const FLAG: ValueRule = { holds: isFlag, rule: 'a flag is 0 or 1' };
const RATE: ValueRule = { holds: isNonNegative, rule: 'a rate or an increase of a counter is a finite number >= 0' };

/**
 * Every metric the advisor reads, with the range its values lie in. A sample outside it (a key
 * count of -5, a miss ratio of 7, a NaN load total, a read:write of +Inf) is refused: the figure
 * is treated as unknown, so its signal says `insufficient-data` instead of judging on it, and a
 * note names the sample, the value and the rule, the way every other evidence problem is told.
 */
export const VALUE_RULES: Readonly<Record<string, ValueRule>> = Object.freeze({
  syncmap_keys: KEY_COUNT,
  syncmap_load_total: COUNTER,
  syncmap_miss_ratio: MISS_RATIO,
  syncmap_read_write_ratio: READ_WRITE,
  govmap_advisor_recommendation: FLAG,
  govmap_advisor_window_seconds: { holds: (v: number) => Number.isFinite(v) && v > 0, rule: 'a window length is a finite number of seconds > 0' },
  govmap_advisor_window_miss_ratio: MISS_RATIO,
  govmap_advisor_miss_ratio_breached_windows: WINDOWS,
  govmap_advisor_miss_ratio_observed_windows: WINDOWS,
  govmap_advisor_read_write_ratio: READ_WRITE,
  govmap_advisor_window_operations: OPERATIONS,
  govmap_advisor_range_calls: { holds: isCount, rule: 'a number of range calls is a whole number >= 0' },
  govmap_advisor_state_problem: FLAG,
  govmap_advisor_threshold: { holds: (v: number) => Number.isFinite(v) && v > 0, rule: 'a threshold is a finite number > 0' },
  govmap_gc_pause_rising: FLAG,
  govmap_gc_pause_trend_ratio: { holds: isNonNegative, rule: 'a ratio of pause times is a finite number >= 0' },
  govmap_gc_pause_fraction: { holds: isShare, rule: 'a share of time is from 0 to 1' },
});

/**
 * The rule of a metric the advisor reads, or undefined. An own property only: a metric named
 * `constructor` or `__proto__` (any name the format allows) must not find Object.prototype's.
 */
function ruleOf(name: string): ValueRule | undefined {
  return Object.hasOwn(VALUE_RULES, name) ? VALUE_RULES[name] : undefined;
}

/** Why `value` of the series is refused, or null when it is in range (or the metric is not one the advisor reads). */
function refusal(name: string, labels: Readonly<Record<string, string>>, value: number, rule: ValueRule | undefined = ruleOf(name)): string | null {
  if (rule === undefined || rule.holds(value)) return null;
  return `refused ${formatSeries(name, labels)} = ${formatFloatValue(value)}: ${rule.rule}`;
}

/** `name{a="1",b="2"}` with the labels sorted: equal for the same series whatever the label order. */
function seriesIdentity(sample: PromSample): string {
  const names = Object.keys(sample.labels).sort();
  let id = sample.name;
  for (const n of names) id += `\u0000${n}\u0001${sample.labels[n]!}`;
  return id;
}

/**
 * The samples in range, and a refusal note for each one that is not. A series written more
 * than once with different values is refused whole (which value is the figure cannot be told:
 * two exporters merged into one endpoint, say); an exact repeat counts once.
 */
function screen(samples: readonly PromSample[]): { accepted: PromSample[]; refused: Array<{ readonly sample: PromSample; readonly note: string }> } {
  const accepted: PromSample[] = [];
  const refused: Array<{ sample: PromSample; note: string }> = [];
  // Only the metrics the advisor reads are checked: a large exposition is mostly other series.
  const seen = new Map<string, PromSample[]>();
  for (const sample of samples) {
    if (ruleOf(sample.name) === undefined) continue;
    const id = seriesIdentity(sample);
    const same = seen.get(id);
    if (same === undefined) seen.set(id, [sample]);
    else same.push(sample);
  }
  for (const sample of samples) {
    const same = ruleOf(sample.name) === undefined ? undefined : seen.get(seriesIdentity(sample));
    if (same !== undefined && same.length > 1) {
      if (same[0] !== sample) continue; // one decision per series, taken at its first sample
      const values = [...new Set(same.map((s) => formatFloatValue(s.value)))];
      if (values.length > 1) {
        refused.push({ sample, note: `refused ${formatSeries(sample.name, sample.labels)}: written ${same.length} times with different values (${values.join(', ')}); a series has one value per scrape` });
        continue;
      }
    }
    const note = refusal(sample.name, sample.labels, sample.value);
    if (note === null) accepted.push(sample);
    else refused.push({ sample, note });
  }
  return { accepted, refused };
}

/**
 * The thresholds a service's advisor exports (`govmap_advisor_threshold`), when it exports all
 * of them and they hold together; undefined otherwise (a service from before they were
 * exported: the caller's defaults apply). Thresholds other than the defaults are named in a note.
 */
function thresholdsOf(samples: readonly PromSample[], notes: string[]): AdvisorThresholds | undefined {
  const given: Partial<Record<keyof AdvisorThresholds, number>> = {};
  for (const [name, label] of Object.entries(THRESHOLD_LABELS) as Array<[keyof AdvisorThresholds, string]>) {
    const sample = samples.find((s) => s.labels.threshold === label);
    if (sample === undefined) return undefined;
    given[name] = sample.value;
  }
  let thresholds: AdvisorThresholds;
  try {
    thresholds = resolveThresholds(given);
  } catch (error) {
    notes.push(`the service's advisor thresholds are refused (${(error as Error).message}); judged with the defaults`);
    return undefined;
  }
  const differ = (Object.keys(THRESHOLD_LABELS) as Array<keyof AdvisorThresholds>).filter((n) => thresholds[n] !== DEFAULT_THRESHOLDS[n]);
  if (differ.length > 0) notes.push(`judged with the service's own thresholds: ${differ.map((n) => `${THRESHOLD_LABELS[n]} ${formatFloatValue(thresholds[n])} (default ${formatFloatValue(DEFAULT_THRESHOLDS[n])})`).join(', ')}`);
  return thresholds;
}

// ------------------------------------------------------------------ one scrape of /metrics

/** Reads `url` (a service's Prometheus metrics endpoint) once and builds evidence per map. */
export async function evidenceFromMetricsEndpoint(url: string, options: SourceOptions = {}): Promise<MapEvidence[]> {
  const { body, contentType } = await fetchText(url, options.timeoutMs ?? 10_000, 'metrics endpoint', checkedAuthorization(options.authorization));
  return evidenceFromMetricsText(body, url, options.thresholds ?? DEFAULT_THRESHOLDS, formatOfContentType(contentType));
}

/**
 * The series a figure belongs to: its `map` label ('' when none) and its `instance` label ('' when
 * none). An endpoint that carries several instances (Prometheus's /federate, a Pushgateway)
 * holds one series per instance for the same map; judging on whichever came first would mix one
 * instance's key count with another's load count.
 */
const mapKeyOf = (labels: Readonly<Record<string, string>>): string => `${labels.map ?? ''}\u0000${labels.instance ?? ''}`;

/** Samples by metric name, then by their (map, instance) key. */
function byNameAndMap(samples: readonly PromSample[]): Map<string, Map<string, PromSample[]>> {
  const out = new Map<string, Map<string, PromSample[]>>();
  for (const s of samples) {
    let perMap = out.get(s.name);
    if (perMap === undefined) out.set(s.name, (perMap = new Map<string, PromSample[]>()));
    const key = mapKeyOf(s.labels);
    let list = perMap.get(key);
    if (list === undefined) perMap.set(key, (list = []));
    list.push(s);
  }
  return out;
}

/**
 * Evidence from one exposition, one row per (map, instance). With the in-process advisor
 * exported (`govmap_advisor_*`) the held breaches and the weekly counts are the advisor's;
 * without it a single scrape sees one sliding window and no week, and says so.
 *
 * Lookups go through an index by (metric, map): an exposition of thousands of maps (a
 * per-request leak names a map per request) is read in time linear in its size.
 */
export function evidenceFromMetricsText(text: string, source: string, thresholds: AdvisorThresholds = DEFAULT_THRESHOLDS, format: ExpositionFormat = 'prometheus'): MapEvidence[] {
  const samples = parsePrometheusText(text, source, format);
  const { accepted, refused } = screen(samples);
  const metrics = byName(accepted);
  const perMap = byNameAndMap(accepted);
  const ofMap = (name: string, key: string): readonly PromSample[] => perMap.get(name)?.get(key) ?? [];
  /** The first sample of `name` for the (map, instance) `key` whose labels include `extra`; null when none, or NaN. */
  const valueOf = (name: string, key: string, extra: Record<string, string> = {}): number | null => {
    const hit = ofMap(name, key).find((s) => Object.entries(extra).every(([k, v]) => s.labels[k] === v));
    return hit === undefined || Number.isNaN(hit.value) ? null : hit.value;
  };
  // From every sample, refused ones included: a map whose only figure is refused still gets its note.
  const all = byName(samples);
  const maps = new Map<string, { readonly map: string; readonly instance: string }>();
  for (const name of ['syncmap_keys', 'syncmap_load_total', 'govmap_advisor_recommendation']) {
    for (const s of all.get(name) ?? []) if (s.labels.map !== undefined) maps.set(mapKeyOf(s.labels), { map: s.labels.map, instance: s.labels.instance ?? '' });
  }
  // Refusals by (map, instance); those of samples without a map label (GC, the advisor's window)
  // bear on every map of their instance. Both lists keep the order of the exposition (index into
  // `refused`), merged per map below.
  const refusedByKey = new Map<string, number[]>();
  refused.forEach((r, i) => {
    const key = mapKeyOf(r.sample.labels);
    let list = refusedByKey.get(key);
    if (list === undefined) refusedByKey.set(key, (list = []));
    list.push(i);
  });
  /** The first sample of a metric without a map label, of `instance`. */
  const ofInstance = (name: string, instance: string): PromSample | undefined => (metrics.get(name) ?? []).find((s) => (s.labels.instance ?? '') === instance);

  const out: MapEvidence[] = [];
  for (const [map, { map: mapName, instance }] of [...maps].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const machine = `\u0000${instance}`;
    const notes: string[] = mergeOrdered(refusedByKey.get(map) ?? [], refusedByKey.get(machine) ?? []).map((i) => refused[i]!.note);
    // A refused trend has its own note; "not exported" would then be wrong.
    const gcRisingRefused = (refusedByKey.get(machine) ?? []).some((i) => refused[i]!.sample.name === 'govmap_gc_pause_rising');
    const advisorWindowSeconds = valueOf('govmap_advisor_window_seconds', machine);
    const gcRising = ofInstance('govmap_gc_pause_rising', instance);
    const gc = {
      rising: gcRising === undefined ? null : gcRising.value === 1,
      ratio: ofInstance('govmap_gc_pause_trend_ratio', instance)?.value ?? null,
      recentPauseFraction: ofInstance('govmap_gc_pause_fraction', instance)?.value ?? null,
    };
    const withAdvisor = ofMap('govmap_advisor_recommendation', map).length > 0;
    let missRatio: MapEvidence['missRatio'];
    let readWrite: MapEvidence['readWrite'];
    let ranges: MapEvidence['ranges'];
    let serviceThresholds: AdvisorThresholds | undefined;
    if (withAdvisor && advisorWindowSeconds !== null) {
      const latest = valueOf('govmap_advisor_window_miss_ratio', map);
      missRatio = {
        latest,
        breachedWindows: latest === null ? null : valueOf('govmap_advisor_miss_ratio_breached_windows', map),
        observedWindows: valueOf('govmap_advisor_miss_ratio_observed_windows', map),
        windowMs: advisorWindowSeconds * 1000,
      };
      readWrite = {
        ratio: valueOf('govmap_advisor_read_write_ratio', map),
        reads: valueOf('govmap_advisor_window_operations', map, { kind: 'read' }),
        writes: valueOf('govmap_advisor_window_operations', map, { kind: 'write' }),
      };
      const week = (which: string): WeekCount | null => {
        const s = ofMap('govmap_advisor_range_calls', map).find((x) => x.labels.week === which);
        return s === undefined ? null : { week: s.labels.iso_week ?? which, count: s.value };
      };
      ranges = { current: week('current'), previous: week('previous'), beforePrevious: week('before_previous'), calendar: 'iso-week' };
      if (valueOf('govmap_advisor_state_problem', map) === 1) notes.push('the service reports that its weekly range counts are not being persisted (see its /advisor)');
      serviceThresholds = thresholdsOf(ofMap('govmap_advisor_threshold', machine), notes);
    } else {
      // The map part's own 5-minute sliding miss ratio: one window, as of this scrape.
      let latest = valueOf('syncmap_miss_ratio', map);
      let rwRatio = valueOf('syncmap_read_write_ratio', map);
      const loads = valueOf('syncmap_load_total', map);
      if (loads === null) {
        // Missing, or refused (its note calls it unknown): the traffic is unknown, and a gauge
        // with unknown traffic behind it (1 read and 1 write?) is not judged either.
        if (latest !== null) notes.push(UNKNOWN_LOADS_NOTE('miss ratio'));
        if (rwRatio !== null) notes.push(UNKNOWN_LOADS_NOTE('read:write ratio'));
        latest = null;
        rwRatio = null;
      } else {
        const writes = sumOf(ofMap('syncmap_store_total', map)) + sumOf(ofMap('syncmap_delete_total', map));
        if (latest !== null && loads < MIN_LOADS_JUDGED) {
          notes.push(tooFewNote('miss ratio', loads, MIN_LOADS_JUDGED, 'loads'));
          latest = null;
        }
        if (rwRatio !== null && loads + writes < MIN_OPERATIONS_JUDGED) {
          notes.push(tooFewNote('read:write ratio', loads + writes, MIN_OPERATIONS_JUDGED, 'loads and writes'));
          rwRatio = null;
        }
      }
      missRatio = { latest, breachedWindows: latest === null ? null : latest > thresholds.missRatio ? 1 : 0, observedWindows: latest === null ? 0 : 1, windowMs: DEFAULT_WINDOW_MS };
      readWrite = { ratio: rwRatio, reads: null, writes: null };
      ranges = { current: null, previous: null, beforePrevious: null, calendar: 'iso-week' };
      // An advisor that follows only some maps (the demo's follows balances, not its route
      // caches) is exported all the same: "no advisor" would send the team to fix its wiring.
      notes.push(
        advisorWindowSeconds !== null
          ? `the service's advisor does not follow map "${mapName}" (advisor.track(map)): one scrape shows one miss-ratio window and no weekly range history; use --prometheus, or have the Advisor track it`
          : 'the service does not export the in-process advisor (govmap_advisor_*): one scrape shows one miss-ratio window and no weekly range history; use --prometheus, or run the Advisor in the service',
      );
    }
    if (gc.rising === null && !gcRisingRefused) {
      notes.push(
        metrics.has('govmap_gc_pause_seconds_bucket') || metrics.has('govmap_gc_pause_seconds_count')
          ? 'the service observes GC, but its pause trend needs two whole windows of it first'
          : 'no GC pause trend exported (govmap_gc_pause_rising): start a Sandbox in the service',
      );
    }
    out.push({
      map: mapName,
      instance: instance === '' ? null : instance,
      source: 'metrics-endpoint',
      keys: valueOf('syncmap_keys', map),
      missRatio,
      gc,
      readWrite,
      ranges,
      notes,
      ...(serviceThresholds === undefined ? {} : { thresholds: serviceThresholds }),
    });
  }
  return out;
}

/** The sum of finite, non-negative values (a counter's series by outcome); others count 0. */
function sumOf(samples: readonly PromSample[]): number {
  let total = 0;
  for (const s of samples) if (Number.isFinite(s.value) && s.value > 0) total += s.value;
  return total;
}

/** Two ascending lists of indices merged into one ascending list. */
function mergeOrdered(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) out.push(j >= b.length || (i < a.length && a[i]! < b[j]!) ? a[i++]! : b[j++]!);
  return out;
}

// ------------------------------------------------------------------ a Prometheus server

export interface PrometheusSourceOptions extends SourceOptions {
  /** Window of the miss ratio and the GC trend, ms. Default 300,000 (5 minutes). */
  readonly windowMs?: number;
  /** Evaluation time, ms since the epoch. Default now. */
  readonly nowMs?: number;
  /** GC pause time rise (window over window) that counts as rising. Default 1.2. */
  readonly gcRisingRatio?: number;
  /** Share of time in GC below which GC never counts as rising. Default 0.001. */
  readonly gcMinPauseFraction?: number;
}

interface VectorSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}
interface MatrixSeries {
  readonly metric: Record<string, string>;
  readonly values: Array<[number, number]>;
}

/** A small client of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`). */
export class PrometheusQueryClient {
  readonly baseUrl: string;
  readonly #timeoutMs: number;
  readonly #authorization: string | undefined;

  /** `authorization`: the Authorization header sent on every query (see SourceOptions). */
  constructor(baseUrl: string, timeoutMs = 10_000, authorization?: string) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new AdvisorSourceError(baseUrl, 'is not a URL (expected e.g. http://127.0.0.1:9090)');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AdvisorSourceError(baseUrl, 'must be an http:// or https:// URL');
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.#timeoutMs = timeoutMs;
    this.#authorization = checkedAuthorization(authorization);
  }

  async query(promql: string, timeMs: number): Promise<VectorSample[]> {
    const data = await this.#get('query', { query: promql, time: String(timeMs / 1000) });
    if (data.resultType !== 'vector') throw new AdvisorSourceError(this.baseUrl, `query ${promql} returned a ${String(data.resultType)}, not a vector`);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((r) => ({ metric: r.metric, value: apiValue(r.value[1]) }));
  }

  async queryRange(promql: string, startMs: number, endMs: number, stepMs: number): Promise<MatrixSeries[]> {
    const data = await this.#get('query_range', { query: promql, start: String(startMs / 1000), end: String(endMs / 1000), step: String(stepMs / 1000) });
    if (data.resultType !== 'matrix') throw new AdvisorSourceError(this.baseUrl, `query_range ${promql} returned a ${String(data.resultType)}, not a matrix`);
    return (data.result as Array<{ metric: Record<string, string>; values: Array<[number, string]> }>).map((r) => ({
      metric: r.metric,
      values: r.values.map(([t, v]) => [t * 1000, apiValue(v)] as [number, number]),
    }));
  }

  async #get(endpoint: string, params: Record<string, string>): Promise<{ resultType: unknown; result: unknown }> {
    const url = `${this.baseUrl}/api/v1/${endpoint}?${new URLSearchParams(params).toString()}`;
    const { body } = await fetchText(url, this.#timeoutMs, 'Prometheus server', this.#authorization);
    let parsed: { status?: unknown; data?: { resultType?: unknown; result?: unknown }; error?: unknown };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch (error) {
      throw new AdvisorSourceError(url, 'answered with something that is not JSON (is this the Prometheus base URL?)', error);
    }
    if (parsed.status !== 'success' || parsed.data === undefined || !Array.isArray(parsed.data.result)) {
      throw new AdvisorSourceError(url, `query failed: ${typeof parsed.error === 'string' ? parsed.error : JSON.stringify(parsed).slice(0, 200)}`);
    }
    return { resultType: parsed.data.resultType, result: parsed.data.result };
  }
}

/** A value of the HTTP API: a string as the text format writes it ("+Inf", "NaN"); anything else is NaN. */
function apiValue(text: string): number {
  return parseFloatValue(String(text)) ?? NaN;
}

const seriesKey = (metric: Record<string, string>): string => `${metric.map ?? ''}\u0000${metric.instance ?? ''}`;

/**
 * Evidence per (map, instance) from a Prometheus server that scrapes govmap services:
 * - keys: `syncmap_keys`; read:write: `syncmap_read_write_ratio`;
 * - miss ratio held: `syncmap_miss_ratio` sampled at window steps over the last N windows;
 * - GC trend: `rate(govmap_gc_pause_seconds_sum[w])` against the same `offset w`
 *   (`nodejs_gc_duration_seconds_sum` when the sandbox is not exporting), per instance;
 * - range growth: `increase(syncmap_range_total[7d])` against the 7 days before: rolling
 *   weeks, not ISO weeks, and only when Prometheus holds data from two weeks back.
 */
export async function evidenceFromPrometheus(baseUrl: string, options: PrometheusSourceOptions = {}): Promise<MapEvidence[]> {
  const client = new PrometheusQueryClient(baseUrl, options.timeoutMs, options.authorization);
  const defaults = options.thresholds ?? DEFAULT_THRESHOLDS;
  const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
  const now = options.nowMs ?? Date.now();
  const w = `${Math.round(windowMs / 1000)}s`;
  const risingRatio = options.gcRisingRatio ?? 1.2;
  const minFraction = options.gcMinPauseFraction ?? 0.001;

  // The thresholds each instance's advisor exports judge that instance's maps, as `--url` does
  // with one service's: a CI gate must not get another answer from the Prometheus beside it.
  // Asked first: the miss-ratio history must reach back as many windows as any instance judges.
  const exportedThresholds = await client.query('govmap_advisor_threshold', now);
  const thresholdNotes = new Map<string, string[]>();
  const thresholdsByInstance = new Map<string, AdvisorThresholds | undefined>();
  for (const instance of new Set(exportedThresholds.map((s) => s.metric.instance ?? ''))) {
    const notes: string[] = [];
    const samples = exportedThresholds
      .filter((s) => (s.metric.instance ?? '') === instance && refusal('govmap_advisor_threshold', s.metric, s.value) === null)
      .map((s) => ({ name: 'govmap_advisor_threshold', labels: s.metric, value: s.value }) as PromSample);
    thresholdsByInstance.set(instance, thresholdsOf(samples, notes));
    thresholdNotes.set(instance, notes);
  }
  const historyWindows = Math.max(defaults.missRatioWindows, ...[...thresholdsByInstance.values()].map((x) => x?.missRatioWindows ?? 0));

  const [keys, loads, rw, missRange, gcRecent, gcPrevious, nodeGcRecent, nodeGcPrevious, rangesLast, rangesBefore, coverPrev, coverBefore, storesTotal, deletesTotal] = await Promise.all([
    client.query('syncmap_keys', now),
    client.query('syncmap_load_total', now),
    client.query('syncmap_read_write_ratio', now),
    client.queryRange('syncmap_miss_ratio', now - (historyWindows - 1) * windowMs, now, windowMs),
    client.query(`sum by (instance) (rate(govmap_gc_pause_seconds_sum[${w}]))`, now),
    client.query(`sum by (instance) (rate(govmap_gc_pause_seconds_sum[${w}] offset ${w}))`, now),
    client.query(`sum by (instance) (rate(nodejs_gc_duration_seconds_sum[${w}]))`, now),
    client.query(`sum by (instance) (rate(nodejs_gc_duration_seconds_sum[${w}] offset ${w}))`, now),
    client.query('increase(syncmap_range_total[7d])', now),
    client.query('increase(syncmap_range_total[7d] offset 7d)', now),
    client.query('count_over_time(syncmap_range_total[1d] offset 6d)', now),
    client.query('count_over_time(syncmap_range_total[1d] offset 13d)', now),
    client.query('sum by (map, instance) (syncmap_store_total)', now),
    client.query('sum by (map, instance) (syncmap_delete_total)', now),
  ]);
  // Values out of range are refused as in one scrape: left out, with a note on their map's
  // series (GC figures, summed per instance, on every series of that instance).
  const refusedBySeries = new Map<string, string[]>();
  const refusedByInstance = new Map<string, string[]>();
  const noteOn = (to: Map<string, string[]>, key: string, note: string): void => void to.set(key, [...(to.get(key) ?? []), note]);
  const inRange = (name: string, samples: VectorSample[], rule?: ValueRule): VectorSample[] =>
    samples.filter((s) => {
      const { __name__: _name, ...labels } = s.metric;
      const note = refusal(name, labels, s.value, rule);
      if (note !== null) {
        if (s.metric.map === undefined) noteOn(refusedByInstance, s.metric.instance ?? '', note);
        else noteOn(refusedBySeries, seriesKey(s.metric), note);
      }
      return note === null;
    });
  const index = (samples: VectorSample[]): Map<string, number> => new Map(samples.map((s) => [seriesKey(s.metric), s.value]));
  const byInstance = (samples: VectorSample[]): Map<string, number> => new Map(samples.map((s) => [s.metric.instance ?? '', s.value]));
  const keysBy = index(inRange('syncmap_keys', keys));
  const loadsBy = index(inRange('syncmap_load_total', loads));
  const storesBy = index(storesTotal.filter((x) => Number.isFinite(x.value) && x.value >= 0));
  const deletesBy = index(deletesTotal.filter((x) => Number.isFinite(x.value) && x.value >= 0));
  const rwBy = index(inRange('syncmap_read_write_ratio', rw));
  const lastWeek = index(inRange('increase(syncmap_range_total[7d])', rangesLast, RATE));
  const weekBefore = index(inRange('increase(syncmap_range_total[7d] offset 7d)', rangesBefore, RATE));
  const coveredPrev = index(coverPrev);
  const coveredBefore = index(coverBefore);
  const gcNow = byInstance(inRange(`rate(govmap_gc_pause_seconds_sum[${w}])`, gcRecent, RATE));
  const gcThen = byInstance(inRange(`rate(govmap_gc_pause_seconds_sum[${w}] offset ${w})`, gcPrevious, RATE));
  const nodeNow = byInstance(inRange(`rate(nodejs_gc_duration_seconds_sum[${w}])`, nodeGcRecent, RATE));
  const nodeThen = byInstance(inRange(`rate(nodejs_gc_duration_seconds_sum[${w}] offset ${w})`, nodeGcPrevious, RATE));
  const missBy = new Map(
    missRange.map((s) => {
      const { __name__: _name, ...labels } = s.metric;
      const kept = s.values.filter(([at, v]) => {
        const note = refusal('syncmap_miss_ratio', labels, v);
        if (note !== null) noteOn(refusedBySeries, seriesKey(s.metric), `${note} (at ${new Date(at).toISOString()})`);
        return note === null;
      });
      return [seriesKey(s.metric), kept] as const;
    }),
  );

  const series = new Map<string, Record<string, string>>();
  for (const s of [...keys, ...loads]) if (s.metric.map !== undefined) series.set(seriesKey(s.metric), s.metric);

  const out: MapEvidence[] = [];
  for (const [key, metric] of [...series].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const instance = metric.instance ?? '';
    const notes: string[] = [...(refusedBySeries.get(key) ?? []), ...(refusedByInstance.get(instance) ?? []), ...(thresholdNotes.get(instance) ?? [])];
    const serviceThresholds = thresholdsByInstance.get(instance);
    const t = serviceThresholds ?? defaults;
    // Miss ratio: consecutive points, newest first, at exact window steps.
    const points = new Map((missBy.get(key) ?? []).map(([at, v]) => [Math.round(at / 1000), v]));
    let observed = 0;
    let breached = 0;
    let breaking = false;
    for (let k = 0; k < t.missRatioWindows; k++) {
      const v = points.get(Math.round((now - k * windowMs) / 1000));
      if (v === undefined || Number.isNaN(v)) break;
      observed++;
      if (!breaking && v > t.missRatio) breached++;
      else breaking = true;
    }
    let latest = points.get(Math.round(now / 1000));
    // The gauges are exported whatever the traffic: too few operations since the map started
    // means too few in any window of it.
    const loadCount = loadsBy.get(key);
    let rwRatio = rwBy.get(key) ?? null;
    if (loadCount === undefined) {
      // Not held, or refused: unknown traffic gates the gauges as too little would (see above).
      if (latest !== undefined && !Number.isNaN(latest)) notes.push(UNKNOWN_LOADS_NOTE('miss ratio'));
      if (rwRatio !== null) notes.push(UNKNOWN_LOADS_NOTE('read:write ratio'));
      latest = undefined;
      observed = 0;
      breached = 0;
      rwRatio = null;
    } else {
      if (latest !== undefined && !Number.isNaN(latest) && loadCount < MIN_LOADS_JUDGED) {
        notes.push(tooFewNote('miss ratio', loadCount, MIN_LOADS_JUDGED, 'loads'));
        latest = undefined;
        observed = 0;
        breached = 0;
      }
      const operations = loadCount + (storesBy.get(key) ?? 0) + (deletesBy.get(key) ?? 0);
      if (rwRatio !== null && operations < MIN_OPERATIONS_JUDGED) {
        notes.push(tooFewNote('read:write ratio', operations, MIN_OPERATIONS_JUDGED, 'loads and writes'));
        rwRatio = null;
      }
    }
    // GC: the sandbox's histogram, else prom-client's default GC metric.
    let recent = gcNow.get(instance);
    let previous = gcThen.get(instance);
    if (recent === undefined) {
      recent = nodeNow.get(instance);
      previous = nodeThen.get(instance);
    }
    let rising: boolean | null = null;
    let ratio: number | null = null;
    if (recent !== undefined && previous !== undefined) {
      ratio = previous > 0 ? recent / previous : null;
      rising = recent >= minFraction && recent > 0 && recent >= risingRatio * previous;
    } else {
      notes.push(`no GC pause history for instance ${instance || '(none)'} over two ${w} windows (govmap_gc_pause_seconds or nodejs_gc_duration_seconds)`);
    }
    const prevCovered = coveredPrev.has(key);
    const beforeCovered = coveredBefore.has(key);
    if (!beforeCovered) notes.push('Prometheus holds less than two weeks of syncmap_range_total for this series: week-over-week growth cannot be judged yet');
    out.push({
      map: metric.map!,
      instance: instance || null,
      source: 'prometheus',
      keys: keysBy.get(key) ?? null,
      missRatio: { latest: latest === undefined || Number.isNaN(latest) ? null : latest, breachedWindows: latest === undefined ? null : breached, observedWindows: observed, windowMs },
      gc: { rising, ratio, recentPauseFraction: recent ?? null },
      readWrite: { ratio: rwRatio, reads: null, writes: null },
      ranges: {
        current: null,
        previous: prevCovered && lastWeek.has(key) ? { week: 'last 7d', count: Math.round(lastWeek.get(key)!) } : null,
        beforePrevious: beforeCovered && weekBefore.has(key) ? { week: 'the 7d before', count: Math.round(weekBefore.get(key)!) } : null,
        calendar: 'rolling-7d',
      },
      notes,
      ...(serviceThresholds === undefined ? {} : { thresholds: serviceThresholds }),
    });
  }
  return out;
}
