import { connect } from 'node:net';
import type { Socket } from 'node:net';

/**
 * A lean HTTP/1.1 client for the load generator: keep-alive connections on raw sockets, one
 * request at a time per connection, requests waiting in a queue when every connection is busy.
 *
 * Why not node:http: on this project's 2-core machines the generator shares the CPU with the
 * service it measures, and node:http's client (Agent, ClientRequest, IncomingMessage, header
 * objects, streams) cost ~70 µs of CPU per request, more than the demo service itself (~40 µs):
 * at 16,000 req/s the generator took 1.1 cores, so the "saturation" measured was largely the
 * generator's, and its stalls showed up as the service's latency. This client writes a
 * preformatted request and parses only what it needs (status, framing, connection), a few
 * µs per request (`npm run bench -- load` prints the generator's CPU per request).
 *
 * It speaks enough HTTP/1.1 for any server: Content-Length and chunked bodies, bodiless
 * statuses, `Connection: close`, and bodies delimited by the end of the connection. Anything
 * it cannot parse fails that request (status 0) and closes its connection; nothing hangs:
 * every request has a deadline.
 */
export type Completion = (status: number) => void;

export interface LoadClientOptions {
  /** Most connections open at once. Default 256. */
  readonly connections?: number;
  /** A request without a complete answer after this long fails with status 0, ms. Default 5,000. */
  readonly timeoutMs?: number;
  /**
   * A connection idle for longer is not reused but closed, ms. Default 4,000: below node:http's
   * 5 s keep-alive timeout, so the client never writes into a socket the server is closing.
   */
  readonly idleMs?: number;
}

/** Where a connection is in reading its answer. */
const Phase = {
  Idle: 0,
  Head: 1,
  Body: 2,
  ChunkSize: 3,
  ChunkData: 4,
  ChunkDataEnd: 5,
  Trailers: 6,
  UntilClose: 7,
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

const HEAD_LIMIT = 64 * 1024;

class Connection {
  readonly socket: Socket;
  phase: Phase = Phase.Idle;
  done: Completion | null = null;
  /** performance.now() of the request's start, or of the last use when idle. */
  since = 0;
  status = 0;
  /** Body bytes (or chunk bytes) still to come. */
  remaining = 0;
  closeAfter = false;
  /** Header (or chunk-size line) bytes split across reads. */
  pending: Buffer | null = null;
  live = true;
  noBody = false;

  constructor(socket: Socket) {
    this.socket = socket;
  }
}

interface Waiting {
  readonly bytes: string;
  readonly noBody: boolean;
  readonly done: Completion;
  readonly queuedAt: number;
}

export class LoadHttpClient {
  readonly #host: string;
  readonly #port: number;
  readonly #maxConnections: number;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  readonly #all = new Set<Connection>();
  readonly #idle: Connection[] = [];
  #waiting: Waiting[] = [];
  #waitingHead = 0;
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(url: string, options: LoadClientOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:') throw new Error(`load client: ${url} is not an http: URL`);
    this.#host = parsed.hostname;
    this.#port = Number(parsed.port || 80);
    this.#maxConnections = options.connections ?? 256;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#idleMs = options.idleMs ?? 4000;
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(100, Math.max(10, this.#timeoutMs / 10)));
    this.#sweeper.unref();
  }

  /** Open connections (busy or idle). */
  get connections(): number {
    return this.#all.size;
  }

  /**
   * Sends one request; `done` gets the answer's status once its body has been read, or 0 when
   * there is none (connection failed or closed, deadline passed, malformed answer).
   */
  send(method: string, path: string, headers: Readonly<Record<string, string>>, body: string | undefined, done: Completion): void {
    if (this.#closed) {
      done(0);
      return;
    }
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.#host}:${this.#port}\r\n`;
    let hasLength = false;
    for (const name in headers) {
      head += `${name}: ${headers[name]}\r\n`;
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
    }
    if (body !== undefined && !hasLength) head += `content-length: ${Buffer.byteLength(body)}\r\n`;
    const bytes = body === undefined ? `${head}\r\n` : `${head}\r\n${body}`;
    const noBody = method === 'HEAD';
    const connection = this.#takeIdle();
    if (connection !== undefined) this.#start(connection, bytes, noBody, done);
    else if (this.#all.size < this.#maxConnections) this.#start(this.#open(), bytes, noBody, done);
    else this.#waiting.push({ bytes, noBody, done, queuedAt: performance.now() });
  }

  /** Closes every connection; requests still in flight or waiting fail with status 0. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const connection of [...this.#all]) this.#fail(connection);
    const waiting = this.#waiting.slice(this.#waitingHead);
    this.#waiting = [];
    this.#waitingHead = 0;
    for (const w of waiting) w.done(0);
  }

  #takeIdle(): Connection | undefined {
    const now = performance.now();
    for (;;) {
      const connection = this.#idle.pop();
      if (connection === undefined) return undefined;
      if (!connection.live) continue;
      if (now - connection.since <= this.#idleMs) return connection;
      this.#retire(connection);
    }
  }

  #open(): Connection {
    const socket = connect({ host: this.#host, port: this.#port, noDelay: true });
    const connection = new Connection(socket);
    this.#all.add(connection);
    socket.on('data', (chunk: Buffer) => this.#onData(connection, chunk));
    socket.on('end', () => this.#onEnd(connection));
    socket.on('error', () => this.#fail(connection));
    socket.on('close', () => this.#fail(connection));
    return connection;
  }

  #start(connection: Connection, bytes: string, noBody: boolean, done: Completion): void {
    connection.done = done;
    connection.since = performance.now();
    connection.phase = Phase.Head;
    connection.status = 0;
    connection.remaining = 0;
    connection.closeAfter = false;
    connection.pending = null;
    connection.noBody = noBody;
    connection.socket.write(bytes);
  }

  #onData(c: Connection, chunk: Buffer): void {
    let at = 0;
    const end = chunk.length;
    while (at < end) {
      switch (c.phase) {
        case Phase.Idle:
          // Bytes nobody asked for: the connection's framing is lost.
          this.#fail(c);
          return;
        case Phase.Head:
        case Phase.ChunkSize:
        case Phase.ChunkDataEnd:
        case Phase.Trailers: {
          const next = this.#lineBlock(c, chunk, at, c.phase === Phase.Head);
          if (next < 0) return;
          at = next;
          break;
        }
        case Phase.Body:
        case Phase.ChunkData: {
          const n = Math.min(c.remaining, end - at);
          c.remaining -= n;
          at += n;
          if (c.remaining !== 0) break;
          if (c.phase === Phase.Body) this.#complete(c);
          else c.phase = Phase.ChunkDataEnd;
          break;
        }
        case Phase.UntilClose:
          return;
      }
      if (!c.live) return;
    }
  }

  /**
   * Collects a header block (`head`: up to the empty line) or one line (chunk framing) from
   * `chunk` at `at`, joining it with bytes kept from earlier reads. Returns where the rest of
   * the chunk starts, or -1 when more bytes are needed (or the connection failed).
   */
  #lineBlock(c: Connection, chunk: Buffer, at: number, head: boolean): number {
    let text: Buffer;
    let from: number;
    let joined = 0;
    if (c.pending === null) {
      text = chunk;
      from = at;
    } else {
      joined = c.pending.length;
      text = Buffer.concat([c.pending, chunk.subarray(at)]);
      from = 0;
    }
    const stop = text.indexOf(head ? '\r\n\r\n' : '\r\n', from, 'latin1');
    if (stop < 0) {
      if (text.length - from > HEAD_LIMIT) {
        this.#fail(c);
        return -1;
      }
      c.pending = Buffer.from(text.subarray(from));
      return -1;
    }
    c.pending = null;
    const ok = head ? this.#parseHead(c, text.toString('latin1', from, stop)) : this.#parseLine(c, text.toString('latin1', from, stop));
    if (!ok) {
      this.#fail(c);
      return -1;
    }
    const next = stop + (head ? 4 : 2);
    // Position in `chunk` of the byte after the block.
    return joined === 0 ? next : at + (next - joined);
  }

  #parseHead(c: Connection, head: string): boolean {
    // "HTTP/1.1 200 OK"
    if (!head.startsWith('HTTP/1.')) return false;
    const status = Number(head.slice(9, 12));
    if (!Number.isInteger(status) || status < 100 || status > 999) return false;
    if (status < 200) {
      // 1xx interim answer: the real one follows.
      c.phase = Phase.Head;
      return true;
    }
    let length = -1;
    let chunked = false;
    let close = head.startsWith('HTTP/1.0');
    let lineStart = head.indexOf('\r\n');
    while (lineStart >= 0) {
      const lineEnd = head.indexOf('\r\n', lineStart + 2);
      const line = head.slice(lineStart + 2, lineEnd < 0 ? head.length : lineEnd);
      const colon = line.indexOf(':');
      if (colon > 0) {
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim().toLowerCase();
        if (name === 'content-length') {
          if (!/^[0-9]+$/.test(value)) return false;
          length = Number(value);
        } else if (name === 'transfer-encoding') {
          chunked = value.split(',').some((coding) => coding.trim() === 'chunked');
        } else if (name === 'connection') {
          if (value.split(',').some((option) => option.trim() === 'close')) close = true;
          else if (value.split(',').some((option) => option.trim() === 'keep-alive')) close = false;
        }
      }
      lineStart = lineEnd;
    }
    c.status = status;
    c.closeAfter = close;
    if (c.noBody || status === 204 || status === 304) {
      this.#complete(c);
    } else if (chunked) {
      c.phase = Phase.ChunkSize;
    } else if (length >= 0) {
      c.remaining = length;
      c.phase = Phase.Body;
      if (length === 0) this.#complete(c);
    } else {
      // No framing: the body ends with the connection.
      c.closeAfter = true;
      c.phase = Phase.UntilClose;
    }
    return true;
  }

  #parseLine(c: Connection, line: string): boolean {
    if (c.phase === Phase.ChunkDataEnd) {
      if (line.length !== 0) return false;
      c.phase = Phase.ChunkSize;
      return true;
    }
    if (c.phase === Phase.Trailers) {
      if (line.length === 0) this.#complete(c);
      return true;
    }
    const semicolon = line.indexOf(';');
    const hex = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) return false;
    const size = Number.parseInt(hex, 16);
    if (size === 0) {
      c.phase = Phase.Trailers;
    } else {
      c.remaining = size;
      c.phase = Phase.ChunkData;
    }
    return true;
  }

  #complete(c: Connection): void {
    const done = c.done;
    const status = c.status;
    c.done = null;
    c.phase = Phase.Idle;
    c.since = performance.now();
    if (c.closeAfter) this.#retire(c);
    else this.#release(c);
    done?.(status);
  }

  /** A connection free again: the next waiting request, or the idle stack. */
  #release(c: Connection): void {
    if (this.#waitingHead < this.#waiting.length) {
      const next = this.#waiting[this.#waitingHead]!;
      this.#waiting[this.#waitingHead++] = undefined as unknown as Waiting;
      if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#waitingHead);
        this.#waitingHead = 0;
      }
      this.#start(c, next.bytes, next.noBody, next.done);
    } else {
      this.#idle.push(c);
    }
  }

  /** Closes a connection with no request on it, and opens one for a waiting request if any. */
  #retire(c: Connection): void {
    if (!c.live) return;
    c.live = false;
    this.#all.delete(c);
    c.socket.destroy();
    this.#refill();
  }

  #onEnd(c: Connection): void {
    if (c.phase === Phase.UntilClose) {
      // The answer's body was delimited by the end of the connection: it is complete.
      c.closeAfter = true;
      this.#complete(c);
      return;
    }
    this.#fail(c);
  }

  /** The connection is unusable: its request (if any) fails, it is closed. */
  #fail(c: Connection): void {
    if (!c.live) return;
    const done = c.done;
    c.done = null;
    c.live = false;
    c.phase = Phase.Idle;
    this.#all.delete(c);
    c.socket.destroy();
    done?.(0);
    this.#refill();
  }

  /** Waiting requests get connections that closing ones left room for. */
  #refill(): void {
    while (!this.#closed && this.#waitingHead < this.#waiting.length && this.#all.size < this.#maxConnections) this.#release(this.#open());
  }

  #sweep(): void {
    const now = performance.now();
    for (const c of this.#all) {
      if (c.done !== null && now - c.since > this.#timeoutMs) this.#fail(c);
    }
    while (this.#waitingHead < this.#waiting.length && now - this.#waiting[this.#waitingHead]!.queuedAt > this.#timeoutMs) {
      const expired = this.#waiting[this.#waitingHead]!;
      this.#waiting[this.#waitingHead++] = undefined as unknown as Waiting;
      expired.done(0);
    }
  }
}
