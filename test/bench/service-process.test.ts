import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { ServiceProcess } from '../../bench/load/service-process.ts';

/**
 * The service the load and cost suites drive, in a process of its own. A service that died by a
 * signal during a round (OOM-killed, crashed) must still be stopped and cleaned up: the bench
 * goes on to report, it does not wait forever for an exit that already happened.
 */
test('stop() of a service that a signal ended returns, and removes its working directory', async () => {
  const service = new ServiceProcess('bare', 10);
  await service.url;
  const exited = new Promise((resolve) => service.child.once('exit', resolve));
  service.child.kill('SIGKILL');
  await exited;
  assert.equal(service.child.signalCode, 'SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    service.stop().then(() => 'stopped'),
    new Promise((resolve) => (timer = setTimeout(() => resolve('still waiting after 10 s'), 10_000))),
  ]);
  clearTimeout(timer);
  assert.equal(outcome, 'stopped');
  assert.equal(existsSync(service.workDir), false, 'its working directory is removed');
});
