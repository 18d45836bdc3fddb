/**
 * One producer lane of the Kafka forwarder, in its own worker thread.
 *
 * The forwarder's cost is almost all in the Kafka client (building a record per message,
 * concatenating, compressing, and the garbage of both), on one thread. A lane owns one
 * idempotent `acks=all` producer and the partitions `p` with `p % lanes === lane`, so each
 * partition (and so each key) is written by exactly one producer, in spool order: the main
 * thread hands a lane its part of every batch in spool order, and the lane hands them to its
 * producer in that order (the client sends one produce request at a time per connection for an
 * idempotent producer). Lanes run on other cores than the service's event loop.
 *
 * Protocol (main -> lane): `send` {id, data, index, count} — `data` holds each record's key and
 * value bytes, `index` five numbers per record (key start, key end, value start, value end,
 * partition); `partitions` {id} — the topic's partition count (creates the topic like a send
 * would); `discard` {id} — drop the producer (after a failure: a new one starts a new
 * idempotence session); `close` {id}. Every request gets one reply with its id: `ok` (with
 * `count` for `partitions`) or `failed` {message, timeout, tooLarge}.
 *
 * Invariants: a send that does not settle within `sendTimeoutMs` is answered `failed` (timeout)
 * and left to fail on its own; the lane never retries by itself (the forwarder resends from its
 * last acknowledged record, with a new producer in every lane). Sends reach the producer one at
 * a time, each once the one before it is acknowledged (see `previous`); after a failed send, every
 * send until the next `discard` is answered `failed` without reaching the producer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Producer } from '@platformatic/kafka';
import { describeKafkaError, LANE_INDEX_FIELDS, tooLarge } from './kafka-lane-protocol.ts';
import type { ProducerLaneData, ProducerLaneReply, ProducerLaneRequest } from './kafka-lane-protocol.ts';

const DEDUP_HEADER_BYTES = Buffer.from('govmap-dedup');

const data = workerData as ProducerLaneData;
const port = parentPort!;
const kafka = await import('@platformatic/kafka');
let producer: Producer | undefined;
/**
 * Why a send of this producer session failed; cleared by `discard`. The client drops its
 * idempotence session on a failed send, so a send after it (the forwarder pipelines batches and
 * learns of the failure later) would go out under a new producer id, which the broker takes
 * without the gap check: a later record of a key in Kafka ahead of the failed one's resend.
 * Refused, it is resent in order with the failed one.
 */
let failedEarlier: string | undefined;
/**
 * The lane's last send, settled either way: the next send goes to the producer only after it.
 * Handed over at once, a send queued in the client behind one that failed is "recovered" by the
 * client (the broker refuses it as out of sequence; the client starts a new producer session and
 * sends it again), and lands ahead of the failed one's resend. This costs the overlap of the
 * next batch's compression with the broker's acknowledgement of the current one, in this lane.
 */
let previous: Promise<void> = Promise.resolve();

function getProducer(): Producer {
  if (producer === undefined) {
    producer = new kafka.Producer({
      clientId: data.clientId,
      bootstrapBrokers: [...data.brokers],
      idempotent: true,
      acks: -1,
      // Bounded: with idempotence the client otherwise retries forever.
      retries: 3,
      retryDelay: 250,
      timeout: Math.min(data.sendTimeoutMs, 5000),
      compression: data.compression,
      connectTimeout: Math.min(data.sendTimeoutMs, 3000),
      autocreateTopics: true,
    });
    producer.on('error', () => undefined);
  }
  return producer;
}

async function discard(): Promise<void> {
  const p = producer;
  producer = undefined;
  failedEarlier = undefined;
  if (p === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.close(true).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
  clearTimeout(timer);
}

/** `work` within the lane's deadline; the loser of the race is left to fail unobserved. */
async function withDeadline<T>(work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new LaneTimeout()), data.sendTimeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

class LaneTimeout extends Error {}

function send(request: Extract<ProducerLaneRequest, { type: 'send' }>): Promise<unknown> {
  const bytes = Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength);
  const index = request.index;
  const messages: Array<{ topic: string; key: Buffer; value: Buffer; partition: number; headers?: Map<Buffer, Buffer> }> = [];
  for (let r = 0, i = 0; r < request.count; r++, i += LANE_INDEX_FIELDS) {
    const value = bytes.subarray(index[i + 2], index[i + 3]);
    const message: (typeof messages)[number] = { topic: data.topic, key: bytes.subarray(index[i], index[i + 1]), value, partition: index[i + 4]! };
    if (data.dedupHeader) message.headers = new Map([[DEDUP_HEADER_BYTES, Buffer.from(dedupKey(value))]]);
    messages.push(message);
  }
  return getProducer().send({ messages });
}


/** `<actor>:<seq>` of a record line (the same as `dedupKeyOf`, kept here so the lane loads no more). */
function dedupKey(line: Buffer): string {
  const parsed = JSON.parse(line.toString('utf8')) as { actor: string; seq: number };
  return `${parsed.actor}:${parsed.seq}`;
}

async function partitions(): Promise<number> {
  const metadata = await getProducer().metadata({ topics: [data.topic], autocreateTopics: true });
  const topic = metadata.topics.get(data.topic);
  if (topic === undefined) throw new Error(`Kafka metadata has no topic "${data.topic}"`);
  return topic.partitionsCount;
}

// Requests are started in arrival order (sends reach the producer in spool order); replies may
// be posted as each settles.
port.on('message', (request: ProducerLaneRequest) => {
  const reply = (work: Promise<number | undefined>): void => {
    work.then(
      (count) => port.postMessage({ type: 'ok', id: request.id, ...(count === undefined ? {} : { count }) } satisfies ProducerLaneReply),
      (error: unknown) =>
        port.postMessage({
          type: 'failed',
          id: request.id,
          message: describeKafkaError(error),
          timeout: error instanceof LaneTimeout,
          tooLarge: tooLarge(error),
        } satisfies ProducerLaneReply),
    );
  };
  switch (request.type) {
    case 'send': {
      const sending = previous.then(() => {
        if (failedEarlier !== undefined) throw new Error(`not sent: an earlier send of this producer lane failed (${failedEarlier}); sent again, in order, from the last acknowledged record`);
        let work: Promise<unknown>;
        try {
          work = send(request);
        } catch (error) {
          work = Promise.reject(error instanceof Error ? error : new Error(String(error)));
        }
        return withDeadline(work).then(
          () => undefined,
          (error: unknown) => {
            failedEarlier ??= error instanceof LaneTimeout ? `no answer within ${data.sendTimeoutMs} ms` : describeKafkaError(error);
            throw error;
          },
        );
      });
      previous = sending.catch(() => undefined);
      reply(sending);
      break;
    }
    case 'partitions':
      reply(withDeadline(partitions()));
      break;
    case 'discard':
      reply(discard().then(() => undefined));
      break;
    case 'close':
      // The forwarder terminates the thread once this is answered.
      reply(discard().then(() => undefined));
      break;
  }
});
