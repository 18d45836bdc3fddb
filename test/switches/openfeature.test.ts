import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ErrorCode, OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import type { EventDetails } from '@openfeature/server-sdk';
import { GovmapSwitchProvider, SwitchBoard } from '../../src/switches/index.ts';

after(async () => {
  await OpenFeature.close();
});

test('the OpenFeature provider serves the board through the real SDK, never throws, and reports changes', async () => {
  const board = new SwitchBoard({
    initial: {
      'fast-settlement': { enabled: true, allow: [{ orgIds: ['1001*'] }] },
      'fx-spread-bp': { enabled: true, value: 15, offValue: 25 },
      'routing-mode': { enabled: false, value: 'direct', offValue: 'queued' },
      'fx-currencies': { enabled: true, value: ['EUR', 'USD'], offValue: [] },
    },
  });
  await OpenFeature.setProviderAndWait('govmap-test', new GovmapSwitchProvider(board));
  const client = OpenFeature.getClient('govmap-test');

  assert.equal(await client.getBooleanValue('fast-settlement', false, { orgId: '100177' }), true);
  const denied = await client.getBooleanDetails('fast-settlement', true, { orgId: '2002' });
  assert.equal(denied.value, false);
  assert.equal(denied.reason, 'TARGETING_MATCH');
  assert.equal(denied.flagMetadata.govmapReason, 'NOT_TARGETED');
  assert.equal(denied.flagMetadata.version, 1);
  assert.equal(await client.getNumberValue('fx-spread-bp', 0), 15);
  assert.equal(await client.getStringValue('routing-mode', 'x'), 'queued');

  const missing = await client.getBooleanDetails('no-such-switch', true);
  assert.equal(missing.value, true, 'an unknown flag gives the caller default');
  assert.equal(missing.errorCode, ErrorCode.FLAG_NOT_FOUND);
  const mismatch = await client.getStringDetails('fx-spread-bp', 'fallback');
  assert.equal(mismatch.value, 'fallback');
  assert.equal(mismatch.errorCode, ErrorCode.TYPE_MISMATCH);
  // A list is an OpenFeature object value (a structure), as in the SDK's in-memory provider.
  const currencies = await client.getObjectDetails('fx-currencies', ['GBP']);
  assert.deepEqual(currencies.value, ['EUR', 'USD']);
  assert.equal(currencies.errorCode, undefined);
  assert.equal((await client.getObjectDetails('fx-spread-bp', {})).errorCode, ErrorCode.TYPE_MISMATCH);

  const changed: EventDetails[] = [];
  client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
    if (details) changed.push(details);
  });
  board.update({ set: { 'fx-spread-bp': { enabled: false, value: 15, offValue: 25 }, 'new-flag': true } }, { actor: 'ops', reason: 'widen spread' });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(changed.length, 1);
  assert.deepEqual(changed[0]!.flagsChanged, ['fx-spread-bp', 'new-flag']);
  assert.equal(await client.getNumberValue('fx-spread-bp', 0), 25);
});

test('inside a pinned request the provider answers from the pinned snapshot and the request context', async () => {
  const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001'] }] } } });
  await OpenFeature.setProviderAndWait('govmap-pinned', new GovmapSwitchProvider(board));
  const client = OpenFeature.getClient('govmap-pinned');
  await board.run(
    async () => {
      board.set('pilot', false, { actor: 'ops', reason: 'off' });
      assert.equal(await client.getBooleanValue('pilot', false), true, 'pinned version, org from the request');
      assert.equal(await client.getBooleanValue('pilot', true, { orgId: '2002' }), false, 'a context given refines the org');
    },
    { orgId: '1001' },
  );
  assert.equal(await client.getBooleanValue('pilot', true, { orgId: '1001' }), false, 'outside the request: the current version');
});

test('a non-finite number in the OpenFeature context (Number() of a malformed orgId) is an absent key, as on the board: never a rollout bucket', async () => {
  const board = new SwitchBoard({ initial: { 'fast-path': { enabled: true, rollout: { percent: 50 } } } });
  const provider = new GovmapSwitchProvider(board);
  for (const orgId of [Number.NaN, Infinity, -Infinity]) {
    const resolved = await provider.resolveBooleanEvaluation('fast-path', false, { orgId });
    assert.equal(resolved.value, false, `orgId ${orgId} was served the switch`);
    assert.equal(resolved.flagMetadata?.govmapReason, 'ROLLOUT_KEY_MISSING', `orgId ${orgId}`);
    assert.equal(resolved.flagMetadata?.govmapReason, board.evaluate('fast-path', { orgId } as never).reason, 'the provider and the board agree');
  }
  await provider.onClose();
});

test('a provider set again after the SDK closed it (replaced, then restored) still reports every change of the board', async () => {
  const board = new SwitchBoard({ initial: { pilot: true } });
  const provider = new GovmapSwitchProvider(board);
  await OpenFeature.setProviderAndWait('govmap-reset', provider);
  // Replacing a provider makes the SDK call its onClose(); restoring it must bring its events back.
  await OpenFeature.setProviderAndWait('govmap-reset', new GovmapSwitchProvider(new SwitchBoard()));
  await OpenFeature.setProviderAndWait('govmap-reset', provider);
  const client = OpenFeature.getClient('govmap-reset');
  const changed: EventDetails[] = [];
  client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
    if (details) changed.push(details);
  });
  board.set('pilot', false, { actor: 'ops', reason: 'stop the pilot' });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(changed.map((d) => d.flagsChanged), [['pilot']]);
  assert.equal(await client.getBooleanValue('pilot', true), false);
});
