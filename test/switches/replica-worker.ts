// A worker thread holding a replica board: reports every snapshot it adopts to its parent.
import { parentPort } from 'node:worker_threads';
import { SwitchBoard, followPrimary } from '../../src/switches/index.ts';

const replica = new SwitchBoard({ name: 'payments', replica: true });
const follower = followPrimary(replica);
replica.subscribe((change) => {
  parentPort!.postMessage({ version: change.next.version, fast: replica.isOn('fast'), delayMs: follower.lastDelayMs, actor: change.next.actor });
});
parentPort!.on('message', (message: string) => {
  if (message === 'close') {
    follower.close();
    parentPort!.close();
  }
});
