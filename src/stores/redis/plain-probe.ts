import { connect } from 'node:net';

/**
 * Whether the server behind a `rediss://` URL that never completed a TLS handshake speaks plain
 * Redis instead. A plain Redis server reads a TLS ClientHello as a half-sent command and waits
 * for the rest, so the client sees nothing but its connect timeout: "Redis unavailable" sent
 * people to look for an outage. One plain `PING` on a fresh socket tells: any RESP reply
 * (`+PONG`, `-NOAUTH ...`) is a plain server. Best effort within `budgetMs`; false on any doubt.
 */
export function answersPlainRedis(url: string, budgetMs = 500): Promise<boolean> {
  let host: string;
  let port: number;
  try {
    const parsed = new URL(url);
    host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
    port = parsed.port === '' ? 6379 : Number(parsed.port);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = '';
    const done = (plain: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(plain);
    };
    const timer = setTimeout(() => done(false), budgetMs);
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(/^[+-]/.test(reply));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}
