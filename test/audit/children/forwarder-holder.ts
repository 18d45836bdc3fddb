/**
 * A process that runs a Kafka forwarder on a spool (and so holds its forwarder lock) until it is
 * killed; it tells the parent (IPC) once the forwarder has started.
 *   argv: <spool dir> <topic> <brokers, comma-separated>
 */
import { startKafkaForwarder } from '../../../src/audit/index.ts';

const [dir, topic, brokers] = process.argv.slice(2) as [string, string, string];
await startKafkaForwarder({ dir, topic, brokers: brokers.split(','), producers: 1 });
process.send!({ started: process.pid });
// The forwarder's threads do not keep a process alive: this does, until the parent kills it.
setInterval(() => undefined, 1 << 30);
