import { MetricsParseError } from './errors.ts';

/** One sample of the Prometheus text exposition format (version 0.0.4). */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** Milliseconds since the epoch, when the line carries one. */
  readonly timestampMs: number | null;
}

const METRIC_NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;
/** Label value characters that need no decoding: everything up to a quote or a backslash. */
const PLAIN_RUN = /[^"\\]+/y;
/** Go's ParseFloat as the format uses it: decimal, exponent, Inf/NaN with optional sign. */
const FLOAT = /^[+-]?(?:Inf|inf|NaN|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;
const TIMESTAMP = /^-?\d{1,16}$/;

/** OpenMetrics timestamps: seconds since the epoch, fractions allowed. */
const OPENMETRICS_TIMESTAMP = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** An OpenMetrics exemplar after a value: `# {trace_id="..."} 0.05 [1700000000.123]`. */
const EXEMPLAR = /^#[ \t]*\{.*\}[ \t]+\S+(?:[ \t]+\S+)?$/;

/**
 * The two text formats a metrics endpoint may answer in, told apart by its Content-Type as
 * Prometheus does: `text/plain; version=0.0.4` (the default) and
 * `application/openmetrics-text` (what prom-client writes with
 * `Registry.OPENMETRICS_CONTENT_TYPE`, e.g. to carry trace exemplars).
 */
export type ExpositionFormat = 'prometheus' | 'openmetrics';

/** The format a Content-Type header names: OpenMetrics, or else the Prometheus text format. */
export function formatOfContentType(contentType: string | null): ExpositionFormat {
  return contentType !== null && /^\s*application\/openmetrics-text\b/i.test(contentType) ? 'openmetrics' : 'prometheus';
}

/**
 * Parses the Prometheus text format strictly: a line that is not a comment, blank, or a
 * well-formed sample is an error naming the line and the rule, never skipped. What it accepts:
 * `name{label="value",...} value [timestamp]`, label values with the `\\`, `\"` and `\n`
 * escapes, an optional trailing comma in the label set, `# HELP` / `# TYPE` / other comments.
 *
 * In OpenMetrics a sample may also carry an exemplar (` # {labels} value [timestamp]`, checked
 * for shape and left out), and its timestamp is in seconds (fractions allowed); it is returned
 * in milliseconds, as the Prometheus format writes it.
 */
export function parsePrometheusText(text: string, source = 'metrics', format: ExpositionFormat = 'prometheus'): PromSample[] {
  const samples: PromSample[] = [];
  const lines = text.split('\n');
  const openMetrics = format === 'openmetrics';
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    const line = raw.trim();
    if (line.length === 0 || line.startsWith('#')) continue;
    samples.push(parseSample(line, source, i + 1, openMetrics));
  }
  return samples;
}

function parseSample(line: string, source: string, lineNo: number, openMetrics: boolean): PromSample {
  const fail = (rule: string): never => {
    throw new MetricsParseError(source, lineNo, rule, line);
  };
  METRIC_NAME.lastIndex = 0;
  const nameMatch = METRIC_NAME.exec(line);
  if (nameMatch === null) fail('a sample starts with a metric name [a-zA-Z_:][a-zA-Z0-9_:]*');
  const name = nameMatch![0];
  let pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === '{') {
    pos++;
    for (;;) {
      while (line[pos] === ' ' || line[pos] === '\t') pos++;
      if (line[pos] === '}') {
        pos++;
        break;
      }
      LABEL_NAME.lastIndex = pos;
      const labelMatch = LABEL_NAME.exec(line);
      if (labelMatch === null) fail(`expected a label name or "}" at column ${pos + 1}`);
      const label = labelMatch![0];
      pos += label.length;
      while (line[pos] === ' ' || line[pos] === '\t') pos++;
      if (line[pos] !== '=') fail(`expected "=" after label ${label}`);
      pos++;
      while (line[pos] === ' ' || line[pos] === '\t') pos++;
      if (line[pos] !== '"') fail(`the value of label ${label} must be a double-quoted string`);
      pos++;
      let value = '';
      for (;;) {
        if (pos >= line.length) fail(`the value of label ${label} is not closed with a double quote`);
        const ch = line[pos]!;
        if (ch === '"') {
          pos++;
          break;
        }
        if (ch === '\\') {
          const next = line[pos + 1];
          if (next === '\\') value += '\\';
          else if (next === '"') value += '"';
          else if (next === 'n') value += '\n';
          else fail(`label ${label}: "\\${next ?? ''}" is not an escape of the format (only \\\\, \\" and \\n)`);
          pos += 2;
          continue;
        }
        // The run up to the next quote or backslash in one slice, not a character at a time.
        PLAIN_RUN.lastIndex = pos;
        PLAIN_RUN.test(line);
        value += line.slice(pos, PLAIN_RUN.lastIndex);
        pos = PLAIN_RUN.lastIndex;
      }
      if (Object.hasOwn(labels, label)) fail(`label ${label} appears twice`);
      labels[label] = value;
      while (line[pos] === ' ' || line[pos] === '\t') pos++;
      if (line[pos] === ',') {
        pos++;
        continue;
      }
      if (line[pos] === '}') {
        pos++;
        break;
      }
      fail(`expected "," or "}" after the value of label ${label}`);
    }
  }
  if (line[pos] !== ' ' && line[pos] !== '\t') fail('the metric name (and labels) must be followed by whitespace and a value');
  let after = line.slice(pos);
  // Neither a value nor a timestamp holds a "#": one starts an exemplar.
  const hash = after.indexOf('#');
  if (hash >= 0) {
    const exemplar = after.slice(hash).trim();
    if (!openMetrics) fail('an exemplar ("# {...}" after the value) belongs to OpenMetrics text only (served as Content-Type application/openmetrics-text)');
    if (!EXEMPLAR.test(exemplar) || parseFloatValue(exemplar.slice(exemplar.lastIndexOf('}') + 1).trim().split(/[ \t]+/)[0]!) === null) {
      fail('an exemplar is "# {label=<quoted value>,...} value [timestamp]"');
    }
    after = after.slice(0, hash);
  }
  const rest = after.trim().split(/[ \t]+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') fail('a sample has a value and an optional timestamp, nothing else');
  const valueText = rest[0]!;
  const value = parseFloatValue(valueText);
  if (value === null) fail(`value ${JSON.stringify(valueText)} is not a float (digits, exponent, +Inf, -Inf or NaN)`);
  let timestampMs: number | null = null;
  if (rest.length === 2) {
    if (openMetrics) {
      if (!OPENMETRICS_TIMESTAMP.test(rest[1]!)) fail(`timestamp ${JSON.stringify(rest[1])} is not seconds since the epoch (OpenMetrics)`);
      timestampMs = Math.round(Number(rest[1]) * 1000);
    } else {
      if (!TIMESTAMP.test(rest[1]!)) fail(`timestamp ${JSON.stringify(rest[1])} is not whole milliseconds`);
      timestampMs = Number(rest[1]);
    }
  }
  return { name, labels, value: value!, timestampMs };
}

/**
 * A sample value as the format writes it (Go's ParseFloat: `+Inf`, `-Inf`, `NaN` spelled out,
 * which `Number()` does not read), also used for the values of the Prometheus HTTP API; null
 * when `text` is not one.
 */
export function parseFloatValue(text: string): number | null {
  if (!FLOAT.test(text)) return null;
  if (/^[+-]?inf$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(text)) return NaN;
  return Number(text);
}

/** A value as the format writes it: `NaN`, `+Inf`, `-Inf`, or the number. */
export function formatFloatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** `name{label="value",...}` as the format writes it, to name a sample in a message. */
export function formatSeries(name: string, labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return pairs.length === 0 ? name : `${name}{${pairs.join(',')}}`;
}

/** Samples by metric name, for lookups. */
export function byName(samples: readonly PromSample[]): Map<string, PromSample[]> {
  const out = new Map<string, PromSample[]>();
  for (const s of samples) {
    let list = out.get(s.name);
    if (list === undefined) out.set(s.name, (list = []));
    list.push(s);
  }
  return out;
}
