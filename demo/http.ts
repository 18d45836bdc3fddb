import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP, isIPv6 } from 'node:net';
import type { Socket } from 'node:net';

import { currentBizContext } from '../src/routing/index.ts';

/** A refusal the client caused: 4xx with a stable code and a reason a person can act on. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  /** Headers the refusal must carry besides the JSON ones (a 401's `www-authenticate`, RFC 9110 §11.6.1). */
  readonly headers: Readonly<Record<string, string>> | undefined;
  constructor(status: number, code: string, message: string, headers?: Readonly<Record<string, string>>) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/**
 * The service's base URL. An IPv6 host goes in brackets (RFC 3986 §3.2.2): `http://::1:8080` is
 * no URL, and the background traffic and `--load` sent to it fail every request.
 */
export function serviceUrl(host: string, port: number): string {
  return `http://${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/**
 * How many distinct Host values hostCheck remembers its verdict for. A client sending a new one
 * per request must not grow the cache: past this it starts over.
 */
const HOST_VERDICTS_KEPT = 256;

/**
 * The DNS rebinding check (as webpack-dev-server's allowedHosts, Vite's server.allowedHosts): a
 * web page whose own name is rebound to 127.0.0.1 reaches the service with that name in Host,
 * and could read every view served without a token (balances, /events, /metrics). Served: a
 * loopback name (localhost, *.localhost), any IP address, the address the service listens on, and
 * the names in `allowed`; the port is not looked at. A verdict is computed once
 * per distinct Host value (the service is load-benchmarked at tens of thousands of requests/s).
 */
export function hostCheck(listenHost: string, allowed: readonly string[]): (host: string) => boolean {
  const names = new Set([hostName(listenHost) ?? listenHost.toLowerCase(), ...allowed.map((name) => hostName(name)!)]);
  const verdicts = new Map<string, boolean>();
  return (host) => {
    let verdict = verdicts.get(host);
    if (verdict === undefined) {
      const name = hostName(host);
      // Any IP address is served: a rebound page's requests carry its own DNS name, never an
      // address, and Prometheus and Kubernetes probes reach a pod by its IP (as webpack-dev-server).
      verdict = name !== null && (name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0 || names.has(name));
      if (verdicts.size >= HOST_VERDICTS_KEPT) verdicts.clear();
      verdicts.set(host, verdict);
    }
    return verdict;
  };
}

/**
 * The name in a Host value, lowercased, without port, brackets or a final dot (`LocalHost.:80`
 * is `localhost`, `[::1]:80` is `::1`); null when it is not `name[:port]` or `[IPv6][:port]`.
 */
function hostName(host: string): string | null {
  const lower = host.toLowerCase();
  if (lower.startsWith('[')) {
    const close = lower.indexOf(']');
    const address = lower.slice(1, close);
    return close !== -1 && /^(?::[0-9]*)?$/.test(lower.slice(close + 1)) && isIPv6(address) ? address : null;
  }
  if (isIPv6(lower)) return lower;
  const colon = lower.indexOf(':');
  if (colon !== -1 && !/^[0-9]*$/.test(lower.slice(colon + 1))) return null;
  const name = colon === -1 ? lower : lower.slice(0, colon);
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  return bare === '' ? null : bare;
}

/** A name `allowedHosts` may hold: a DNS name or an IP address (IPv6 with or without brackets), no port, no wildcard. */
export function allowedHostProblem(name: string): string | null {
  if (isIP(name) !== 0 || (name.startsWith('[') && name.endsWith(']') && isIPv6(name.slice(1, -1)))) return null;
  if (/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(name)) return null;
  return 'each must be a host name or IP address as a browser sends it in Host, without scheme, port or wildcard (e.g. demo.bank.internal or 10.0.0.5)';
}

/** The refusal of a Host hostCheck did not accept: it says which Host and how to allow it. */
export function refuseHost(res: ServerResponse, host: string, listenHost: string): void {
  const name = hostName(host);
  const allow = name === null ? 'a name this machine is reached by' : name.includes(':') ? `[${name}]` : name;
  sendError(
    res,
    403,
    'HOST_NOT_ALLOWED',
    `Host ${shown(host)} is not a name this service answers to: it serves localhost, *.localhost, any IP address, the address it listens on (${listenHost}) and the names allowed with --allowed-hosts or GOVMAP_DEMO_ALLOWED_HOSTS, so that a web page pointing its own name at this machine (DNS rebinding) cannot read it; if this is your name for it, start with --allowed-hosts ${allow}`,
  );
}

/**
 * Answers that never end by themselves (the dashboard's event stream): a graceful close does not
 * wait for them, or it would wait for ever (see startDemo's close).
 */
export const openEndedAnswers = new WeakSet<ServerResponse>();

/** Bodies of this service are a few fields; anything bigger is a mistake or an attack. */
export const MAX_BODY_BYTES = 4096;

/**
 * Every JSON answer names the route that served it (`x-govmap-route`, from the request's
 * BizContext; none outside a tagged request, as in the bare baseline). It is written here, in
 * the one writeHead, rather than by the X-Biz-Tag middleware's setHeader (exposeRoute: false in
 * routing.ts): a header set with setHeader sends Node down its slower header path.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, extraHeaders?: Readonly<Record<string, string>>): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  const route = currentBizContext()?.decision.route.id;
  const length = Buffer.byteLength(text);
  const headers =
    route === undefined
      ? { 'content-type': 'application/json; charset=utf-8', 'content-length': length, 'cache-control': 'no-store' }
      : { 'content-type': 'application/json; charset=utf-8', 'content-length': length, 'cache-control': 'no-store', 'x-govmap-route': route };
  res.writeHead(status, extraHeaders === undefined ? headers : { ...headers, ...extraHeaders });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, code: string, reason: string, extraHeaders?: Readonly<Record<string, string>>): void {
  sendJson(res, status, { error: { code, reason } }, extraHeaders);
}

/** How much of a client's input an error message echoes: enough to recognise it, never a log flood. */
export const ECHO_CHARS = 80;

/**
 * A client's value for an error message: as JSON text, so quotes and control characters arrive
 * escaped and a string is told from a number; a string longer than `max` characters is cut (and
 * still quoted), any other value's text is cut at `max`.
 */
export function shown(value: unknown, max = ECHO_CHARS): string {
  if (typeof value === 'string') return value.length <= max ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, max))}…`;
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/**
 * Reads a JSON object body: the right media type in UTF-8, at most MAX_BODY_BYTES, well-formed,
 * every key once per object.
 */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  assertJsonUtf8(req.headers['content-type']);
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'BODY_TOO_LARGE', `bodies are limited to ${MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'BODY_TOO_LARGE', `bodies are limited to ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // V8's message says where (position, line, column) and what it found there.
    const detail = error instanceof SyntaxError ? error.message.slice(0, 160) : 'unparseable';
    throw new HttpError(400, 'BODY_MALFORMED', `the body is not valid JSON: ${detail}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new HttpError(400, 'BODY_NOT_OBJECT', 'the body must be a JSON object');
  }
  const duplicate = duplicateKey(text);
  if (duplicate !== null) {
    throw new HttpError(
      400,
      'BODY_DUPLICATE_KEY',
      `the key ${shown(duplicate.key, 40)} appears twice in the object at ${duplicate.path.length <= ECHO_CHARS ? duplicate.path : `${duplicate.path.slice(0, ECHO_CHARS)}…`}: parsers disagree on which one counts, so every key is sent once`,
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * Refuses a body that is not `application/json`, or is declared in a charset other than UTF-8:
 * the body is decoded as UTF-8 (RFC 8259 §8.1), and `charset=latin1` decoded so would turn its
 * text into other text instead of being refused.
 */
function assertJsonUtf8(header: string | undefined): void {
  const [media, ...parameters] = (header ?? '').split(';');
  if (media!.trim().toLowerCase() !== 'application/json') {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `send the body as application/json (got ${header === undefined ? 'no content-type' : `content-type ${shown(header)}`})`);
  }
  for (const parameter of parameters) {
    const eq = parameter.indexOf('=');
    if (eq === -1 || parameter.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = parameter.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') {
      throw new HttpError(415, 'UNSUPPORTED_CHARSET', `the body is read as UTF-8; charset ${shown(charset, 40)} is not supported (send charset=utf-8, or no charset)`);
    }
  }
}

/** One open object or array while scanning: the keys seen so far (null: an array), and where we are in it. */
interface ScanFrame {
  readonly keys: Set<string> | null;
  lastKey: string;
  index: number;
}

/**
 * The first key that appears twice in one object of `text`, and the path of that object (`$`,
 * `$["set"]`, `$["items"][2]`); null when every object's keys are distinct. JSON.parse keeps the
 * last of duplicate keys, so `{"amount":"1","amount":"100000000"}` would book the amount a
 * reviewer, a log or a proxy reading the first one never saw.
 *
 * `text` must be valid JSON (it was parsed already): then a string is a key exactly when the
 * next non-blank character is `:`, and the scan needs no other grammar. One pass over at most
 * MAX_BODY_BYTES characters; only keys with escapes are decoded (`"\u0061"` is `"a"`).
 */
export function duplicateKey(text: string): { key: string; path: string } | null {
  const frames: ScanFrame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i;
      let escaped = false;
      for (i++; text.charCodeAt(i) !== QUOTE; i++) {
        if (text.charCodeAt(i) === BACKSLASH) {
          escaped = true;
          i++;
        }
      }
      const top = frames.at(-1);
      if (top === undefined || top.keys === null) continue;
      let next = i + 1;
      while (isJsonBlank(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) !== COLON) continue;
      const key = escaped ? (JSON.parse(text.slice(start, i + 1)) as string) : text.slice(start + 1, i);
      if (top.keys.has(key)) {
        const path = frames.slice(0, -1).map((frame) => (frame.keys === null ? `[${frame.index}]` : `[${JSON.stringify(frame.lastKey)}]`));
        return { key, path: `$${path.join('')}` };
      }
      top.keys.add(key);
      top.lastKey = key;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      frames.push({ keys: c === OPEN_BRACE ? new Set() : null, lastKey: '', index: 0 });
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      frames.pop();
    } else if (c === COMMA) {
      const top = frames.at(-1);
      if (top !== undefined && top.keys === null) top.index++;
    }
  }
  return null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** JSON's insignificant whitespace (RFC 8259 §2): space, tab, line feed, carriage return. */
function isJsonBlank(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** The realm of the admin token's challenge: one token guards every admin endpoint. */
export const ADMIN_REALM = 'govmap-demo';

/**
 * The check every /admin/* endpoint makes: `authorization: Bearer <token>`. The scheme is
 * case-insensitive (RFC 9110 §11.1: `bearer` is `Bearer`), and so is nothing else. The tokens
 * are compared as SHA-256 digests in constant time, so neither the token's bytes nor its length
 * show in how long a refusal takes.
 *
 * A refusal is a 401 with the challenge RFC 9110 §11.6.1 requires of one, `www-authenticate:
 * Bearer realm="govmap-demo"`: without it a client or proxy cannot tell which scheme to answer
 * with. A bearer token that does not match adds `error="invalid_token"`; a request without a
 * bearer token gets no error code (RFC 6750 §3.1), so a client knows to ask for one rather than
 * to replace the one it has.
 */
export function adminCheck(token: string): (req: IncomingMessage) => void {
  const expected = createHash('sha256').update(token).digest();
  return (req) => {
    const header = req.headers.authorization ?? '';
    const space = header.indexOf(' ');
    const scheme = space === -1 ? header : header.slice(0, space);
    const given = space === -1 ? '' : header.slice(space + 1).trimStart();
    const matches = timingSafeEqual(createHash('sha256').update(given).digest(), expected);
    // An empty token authorises no one, even where the operator configured one by mistake.
    const bearer = scheme.toLowerCase() === 'bearer';
    if (!bearer || given === '' || !matches) {
      const challenge = bearer && given !== '' ? `Bearer realm="${ADMIN_REALM}", error="invalid_token"` : `Bearer realm="${ADMIN_REALM}"`;
      throw new HttpError(401, 'ADMIN_TOKEN_REQUIRED', 'send the admin token as "authorization: Bearer <token>" (GOVMAP_ADMIN_TOKEN, or the one printed at start)', { 'www-authenticate': challenge });
    }
  };
}

/** Refuses fields the endpoint does not know: a typo ("amout") must not pass as "no amount". */
export function assertOnlyFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(body)) {
    if (!allowed.includes(field)) {
      throw new HttpError(400, 'BODY_UNKNOWN_FIELD', `unknown field ${JSON.stringify(field.slice(0, 40))}; allowed: ${allowed.join(', ')}`);
    }
  }
}

/** How long a demo's close() waits for the answers underway, ms: the server's own request timeout. */
export const CLOSE_DRAIN_MS = 10_000;

/**
 * Resolves once no connection owes an answer (pipelined ones included), or after `ms`. Answers
 * that never end by themselves (openEndedAnswers) are not waited for.
 */
export function drain(connections: ReadonlySet<Socket>, ms: number): Promise<void> {
  const owing = [...connections].filter((socket) => {
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    return inFlight !== undefined && inFlight !== null && !openEndedAnswers.has(inFlight);
  });
  if (owing.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let left = owing.length;
    const deadline = setTimeout(resolve, ms).unref();
    for (const socket of owing) {
      let done = false;
      const settle = (): void => {
        if (done) return;
        done = true;
        if (--left === 0) {
          clearTimeout(deadline);
          resolve();
        }
      };
      socket.once('close', settle);
      whenAnswered(socket, settle);
    }
  });
}

/**
 * Calls `then` once no answer is owed on `socket`. Pipelined answers go out one at a time: when
 * the attached one finishes, Node attaches the next queued one (its own 'finish' listener runs
 * before ours), so this waits again until none is attached. A socket that closes meanwhile ends
 * the wait (`then` is not called).
 */
export function whenAnswered(socket: Socket, then: () => void): void {
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight === undefined || inFlight === null) {
    then();
    return;
  }
  const next = (): void => {
    inFlight.off('finish', next);
    inFlight.off('close', next);
    if (!socket.destroyed) setImmediate(() => whenAnswered(socket, then));
  };
  inFlight.once('finish', next);
  inFlight.once('close', next);
}
