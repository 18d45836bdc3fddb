// A worker whose only pending work is awaiting its follower's first snapshot (then it reports it).
import { parentPort } from 'node:worker_threads';
import { SwitchBoard, followPrimary } from '../../src/switches/index.ts';

const replica = new SwitchBoard({ name: 'ready-check', replica: true });
const follower = followPrimary(replica);
await follower.ready;
parentPort!.postMessage({ version: replica.snapshot.version, fast: replica.isOn('fast') });
