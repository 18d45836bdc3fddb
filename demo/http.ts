import type { IncomingMessage, ServerResponse } from 'node:http';

import { currentBizContext } from '../src/routing/index.ts';

/** A refusal the client caused: 4xx with a stable code and a reason a person can act on. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
  }
}

/** Bodies of this service are a few fields; anything bigger is a mistake or an attack. */
export const MAX_BODY_BYTES = 4096;

/**
 * Every JSON answer names the route that served it (`x-govmap-route`, from the request's
 * BizContext; none outside a tagged request, as in the bare baseline). It is written here, in
 * the one writeHead, rather than by the X-Biz-Tag middleware's setHeader (exposeRoute: false in
 * routing.ts): a header set with setHeader sends Node down its slower header path.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  const route = currentBizContext()?.decision.route.id;
  const length = Buffer.byteLength(text);
  res.writeHead(
    status,
    route === undefined
      ? { 'content-type': 'application/json; charset=utf-8', 'content-length': length, 'cache-control': 'no-store' }
      : { 'content-type': 'application/json; charset=utf-8', 'content-length': length, 'cache-control': 'no-store', 'x-govmap-route': route },
  );
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, code: string, reason: string): void {
  sendJson(res, status, { error: { code, reason } });
}

/** Reads a JSON object body: the right media type, at most MAX_BODY_BYTES, well-formed. */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  }
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
  } catch {
    throw new HttpError(400, 'BODY_MALFORMED', 'the body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new HttpError(400, 'BODY_NOT_OBJECT', 'the body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Refuses fields the endpoint does not know: a typo ("amout") must not pass as "no amount". */
export function assertOnlyFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(body)) {
    if (!allowed.includes(field)) {
      throw new HttpError(400, 'BODY_UNKNOWN_FIELD', `unknown field ${JSON.stringify(field.slice(0, 40))}; allowed: ${allowed.join(', ')}`);
    }
  }
}
