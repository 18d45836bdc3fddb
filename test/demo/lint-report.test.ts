/**
 * GET /lint/report when the demo closes (demo.close(), as SIGINT does) with a report on its way:
 * the client gets the whole report, or an answer it can tell is cut (a Content-Length the body
 * falls short of, or no answer at all); never a shorter body it would take for the report. An
 * HTTP/1.0 client is the sharp case: without a Content-Length its body ends where the
 * connection does, so a cut body looks whole.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

/** What an HTTP/1.0 client read before the connection ended: status (null: no answer), headers, body. */
interface Received {
  readonly status: number | null;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
}

/**
 * Sends `GET path HTTP/1.0` and reads nothing until `whileWaiting` has run (the server's writes
 * pile up in the socket buffers, as with a slow client); then reads to the end.
 */
async function getHttp10(service: DemoService, path: string, whileWaiting: () => Promise<void>): Promise<Received> {
  const { hostname, port } = new URL(service.url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.pause();
  // The close must meet the request being answered, not still on its way (an idle connection is
  // simply closed): the server's own 'request' event says it is being handled.
  const handled = new Promise<void>((resolve) => service.server.once('request', () => resolve()));
  socket.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
  await handled;
  const chunks: Buffer[] = [];
  const ended = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('close', () => resolve());
    // A reset is one of the ways a cut shows; what was read before it is what the client has.
    socket.once('error', () => undefined);
  });
  await whileWaiting();
  socket.resume();
  await ended;
  const all = Buffer.concat(chunks);
  const split = all.indexOf('\r\n\r\n');
  if (split === -1) return { status: null, headers: new Map(), body: Buffer.alloc(0) };
  const [statusLine, ...lines] = all.subarray(0, split).toString('latin1').split('\r\n');
  const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine!.split(' ')[1]), headers, body: all.subarray(split + 4) };
}

/** Whether a client can tell `received` complete: a whole, parseable body, or a cut it can see. */
function assertWholeOrDetectablyCut(received: Received, label: string): void {
  if (received.status === null) return;
  assert.equal(received.status, 200, label);
  const declared = received.headers.get('content-length');
  assert.notEqual(declared, undefined, `${label}: a 200 report without content-length cannot be told from a cut one`);
  if (received.body.length === Number(declared)) JSON.parse(received.body.toString('utf8'));
  else assert.ok(received.body.length < Number(declared), `${label}: body ${received.body.length} bytes, declared ${declared}`);
}

test('a report on its way when the demo closes arrives whole, or cut where the client can tell (HTTP/1.0)', async () => {
  const demo = await startDemo({ port: 0, accounts: 5 });
  let closed = false;
  try {
    // The scan runs once and its report is kept: computed here, so the close below meets it being sent.
    assert.equal((await fetch(`${demo.url}/lint/report`)).status, 200);
    const json = await getHttp10(demo, '/lint/report', async () => undefined);
    assert.equal(json.status, 200);
    assertWholeOrDetectablyCut(json, 'json');
    const sarif = await getHttp10(demo, '/lint/report?format=sarif', async () => {
      closed = true;
      await demo.close();
    });
    // The answer was underway: the close waits for it (it is ready, nothing holds it back).
    assert.equal(sarif.status, 200);
    assertWholeOrDetectablyCut(sarif, 'sarif');
  } finally {
    if (!closed) await demo.close();
  }
});

test('a report still being computed when the demo closes: no 200 the client could take for it', async () => {
  const demo = await startDemo({ port: 0, accounts: 5 });
  // The first request starts the scan (seconds); the close comes while it runs.
  const received = await getHttp10(demo, '/lint/report?format=sarif', () => demo.close());
  assertWholeOrDetectablyCut(received, 'sarif while computing');
});
