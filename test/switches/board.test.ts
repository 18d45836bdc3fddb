import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { SwitchBoard, SwitchConfigError, SwitchMetrics, SwitchNameError, SwitchReplicaReadOnlyError, SwitchVersionConflictError, parseSwitchDocument, parseSwitchSet } from '../../src/switches/index.ts';
import type { SwitchAuditEvent, SwitchChange } from '../../src/switches/index.ts';
import { ConfigurationError } from '../../src/map/errors.ts';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail('expected a throw');
}

const change = (reason = 'test'): { actor: string; reason: string } => ({ actor: 'tester', reason });

describe('snapshots', () => {
  test('a snapshot is frozen all the way down: no reader can change what others read', () => {
    const board = new SwitchBoard({ initial: { fast: { enabled: true, value: { limit: 5 }, offValue: { limit: 0 }, allow: [{ orgIds: ['1001*'] }] } } });
    const snapshot = board.snapshot;
    const definition = snapshot.get('fast')!;
    assert.ok(Object.isFrozen(snapshot));
    assert.ok(Object.isFrozen(definition));
    assert.ok(Object.isFrozen(definition.value));
    assert.ok(Object.isFrozen(definition.allow[0]!.orgIds));
    assert.throws(() => {
      (definition as { enabled: boolean }).enabled = false;
    }, TypeError);
    assert.throws(() => {
      (definition.allow[0]!.orgIds as string[]).push('2');
    }, TypeError);
    assert.equal(board.snapshot.get('fast')!.enabled, true);
  });

  test('every applied change is one new version; a change that changes nothing makes none', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    assert.equal(board.snapshot.version, 1);
    const next = board.set('b', false, change());
    assert.equal(next?.version, 2);
    assert.equal(board.set('b', { enabled: false }, change()), null, 'the shorthand false equals {enabled:false}');
    assert.equal(board.replace({ a: true, b: false }, change()), null);
    assert.equal(board.snapshot.version, 2);
    board.update({ remove: ['a'] }, change());
    assert.equal(board.snapshot.version, 3);
    assert.deepEqual(board.snapshot.names(), ['b']);
  });

  test('an invalid change throws naming every problem, and the board keeps serving the old snapshot', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    const before = board.snapshot;
    const error = caught(() => board.replace({ a: { enabeld: true }, 'bad name!': true, b: { enabled: true, rollout: { percent: 150 } } }, change()));
    assert.ok(error instanceof SwitchConfigError);
    assert.equal(error.code, 'GOVMAP_SWITCH_CONFIG_INVALID');
    const text = error.issues.map((i) => `${i.path}: ${i.rule}`).join('\n');
    assert.match(text, /switches\.a: unknown field\(s\) "enabeld"/);
    assert.match(text, /bad name!/);
    assert.match(text, /switches\.b\.rollout\.percent/);
    assert.equal(board.snapshot, before);
    assert.equal(board.counters.rejectedChanges, 1);
  });

  test('a name both set and removed in one update is refused, and nothing changes', () => {
    const board = new SwitchBoard({ initial: { c: false, d: true } });
    const before = board.snapshot;
    const error = caught(() => board.update({ set: { c: true, e: true }, remove: ['d', 'c'] }, change()));
    assert.ok(error instanceof SwitchConfigError);
    assert.equal(error.code, 'GOVMAP_SWITCH_CONFIG_INVALID');
    assert.deepEqual(error.issues, [{ path: 'remove[1]', rule: '"c" is also in set: a switch is either set or removed by one change, not both' }]);
    assert.equal(board.snapshot, before);
    assert.equal(board.counters.rejectedChanges, 1);
    assert.equal(board.update({ set: { c: true }, remove: ['d'] }, change())?.version, 2, 'disjoint lists still apply');
  });

  test('update() with remove given as one name instead of a list is refused, not read letter by letter', () => {
    const board = new SwitchBoard({ initial: { fx: true, f: true, x: true } });
    const before = board.snapshot;
    const error = caught(() => board.update({ remove: 'fx' as unknown as string[] }, change()));
    assert.ok(error instanceof SwitchConfigError, `got ${String(error)}`);
    assert.equal(error.code, 'GOVMAP_SWITCH_CONFIG_INVALID');
    assert.deepEqual(error.issues, [{ path: 'remove', rule: 'a list of switch names, e.g. ["fx"]' }]);
    assert.equal(board.snapshot, before, 'switches "f" and "x" are still there');
    assert.equal(board.counters.rejectedChanges, 1);
  });

  test('update() with a patch that is not an object (null, a string, a list: a JSON body forwarded as is) or has a misspelt field is refused with a SwitchConfigError naming it, counted once, and nothing changes', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    const before = board.snapshot;
    const patches: Array<[unknown, RegExp]> = [
      [null, /^\(root\): the patch is an object \{ set\?, remove\? \}, not null$/],
      [undefined, /^\(root\): the patch is an object \{ set\?, remove\? \}, not undefined$/],
      ['{"set":{"a":false}}', /^\(root\): the patch is an object \{ set\?, remove\? \}, not a string$/],
      [[{ set: { a: false } }], /^\(root\): the patch is an object \{ set\?, remove\? \}, not an array$/],
      [{ sets: { a: false } }, /^sets: not a field of the patch \(did you mean "set"\?\); its fields are set and remove$/],
    ];
    for (const [patch, rule] of patches) {
      const error = caught(() => (board.update as (...args: unknown[]) => unknown)(patch, change()));
      assert.ok(error instanceof SwitchConfigError, `${JSON.stringify(patch)}: got ${String(error)}`);
      assert.equal(error.code, 'GOVMAP_SWITCH_CONFIG_INVALID');
      assert.equal(error.issues.length, 1);
      assert.match(`${error.issues[0]!.path}: ${error.issues[0]!.rule}`, rule);
    }
    assert.equal(board.snapshot, before);
    assert.equal(board.isOn('a'), true);
    assert.equal(board.counters.rejectedChanges, patches.length);
  });

  test('removing a switch the board does not have (a typo) is refused, naming it and the switch meant, and nothing of the update applies', () => {
    const board = new SwitchBoard({ initial: { 'settlement.fast-path': true, 'legacy-fx': true, other: false } });
    const before = board.snapshot;
    const error = caught(() => board.update({ set: { other: true }, remove: ['legacy-fx', 'settlement.fast-pth', 'nothing-like-it'] }, change()));
    assert.ok(error instanceof SwitchConfigError, `got ${String(error)}`);
    assert.equal(error.code, 'GOVMAP_SWITCH_CONFIG_INVALID');
    assert.deepEqual(error.issues, [
      { path: 'remove[1]', rule: 'no switch "settlement.fast-pth" on board "switches" (did you mean "settlement.fast-path"?): nothing to remove' },
      { path: 'remove[2]', rule: 'no switch "nothing-like-it" on board "switches": nothing to remove' },
    ]);
    assert.match(error.message, /settlement\.fast-pth/);
    assert.equal(board.snapshot, before, 'neither the set nor the valid removal was applied');
    assert.equal(board.isOn('legacy-fx'), true);
    assert.equal(board.isOn('other'), false);
    assert.equal(board.counters.rejectedChanges, 1);
    assert.equal(board.update({ remove: ['settlement.fast-path'] }, change())?.version, 2, 'a name the board has is removed');
  });

  test('a switch named __proto__ (an own key, as JSON.parse makes it) is refused by every way in', () => {
    const raw = (): Record<string, unknown> => JSON.parse('{"__proto__":{"enabled":"garbage"},"ok":true}') as Record<string, unknown>;
    const board = new SwitchBoard();
    for (const attempt of [
      () => board.replace(raw(), change()),
      () => board.update({ set: raw() }, change()),
      () => parseSwitchSet(raw(), 'admin API'),
      () => parseSwitchDocument(JSON.parse('{"switches":{"__proto__":true}}'), 'file'),
    ]) {
      const error = caught(attempt);
      assert.ok(error instanceof SwitchConfigError);
      assert.deepEqual(error.issues.map((i) => i.path), ['switches.__proto__']);
      assert.match(error.message, /switches\.__proto__: a switch name is \[A-Za-z\]\[A-Za-z0-9_.-\]\{0,63\}/);
    }
    assert.equal(board.snapshot.version, 1);
    assert.equal(board.snapshot.has('ok'), false);
  });

  test('a number past 2^53 in a switch value (a limit in minor units written as a YAML or JSON number) is refused: its digits are already lost', () => {
    // JSON.parse (and YAML) round 9007199254740993 to ...992: the limit in force would not be the one written.
    const document = JSON.parse('{"switches":{"payments.limit":{"enabled":true,"value":{"minor":9007199254740993},"offValue":{"minor":0}}}}') as unknown;
    const error = caught(() => parseSwitchDocument(document, 'file switches.yaml'));
    assert.ok(error instanceof SwitchConfigError, String(error));
    assert.deepEqual(error.issues.map((i) => i.path), ['switches["payments.limit"].value.minor']);
    assert.match(error.message, /beyond 2\^53.*decimal string/);
    // Safe integers and fractions (a ratio) are values like any other.
    assert.equal(parseSwitchSet({ a: { enabled: true, value: 9007199254740991, offValue: 0 }, b: { enabled: true, value: 0.25, offValue: 0 } }, 'api').size, 2);
  });

  test('a missing field says "required"; an empty document says it is empty', () => {
    const text = (fn: () => unknown): string => (caught(fn) as Error).message;
    assert.match(text(() => parseSwitchSet({ a: { kill: true } }, 'api')), /switches\.a\.enabled: required/);
    assert.match(text(() => parseSwitchSet({ a: { enabled: true, rollout: { by: 'orgId' } } }, 'api')), /switches\.a\.rollout\.percent: required/);
    assert.match(text(() => parseSwitchDocument({}, 'api')), /switches: required/);
    for (const empty of [null, undefined]) assert.match(text(() => parseSwitchDocument(empty, 'file f')), /\(root\): the document is empty/);
    assert.doesNotMatch(text(() => parseSwitchSet({ a: {} }, 'api')), /received undefined/);
  });

  test('value and offValue must have one JSON type', () => {
    const board = new SwitchBoard();
    assert.throws(() => board.set('limit', { enabled: true, value: 5, offValue: 'none' }, change()), /same JSON type/);
  });

  test('a number or string switch without offValue is refused saying offValue defaults to false, not as if the user had written a mismatched offValue', () => {
    const board = new SwitchBoard();
    const error = caught(() => board.set('payments.limit', { enabled: true, value: 500_000 }, change())) as Error;
    assert.match(error.message, /switches\["payments\.limit"\]\.offValue: .*not given.*false.*give an offValue of type number/);
    assert.equal(board.snapshot.version, 1);
    // One that names it gets what was written.
    assert.match((caught(() => board.set('limit', { enabled: true, value: 5, offValue: 'none' }, change())) as Error).message, /value is a number but offValue a string/);
  });

  test('a switch value of null (an empty `value:` in YAML) is refused, not served as true', () => {
    const board = new SwitchBoard();
    const error = caught(() => board.set('payments.limit', { enabled: true, value: null }, change())) as Error;
    assert.match(error.message, /switches\["payments\.limit"\]\.value: null is not a switch value/);
    assert.match((caught(() => board.set('payments.limit', { enabled: true, offValue: null }, change())) as Error).message, /offValue: null is not a switch value/);
    assert.equal(board.snapshot.version, 1, 'nothing applied');
  });

  test('expectedVersion makes a change conditional (two admins cannot silently overwrite each other)', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    board.set('a', false, { ...change(), expectedVersion: 1 });
    assert.throws(() => board.set('a', true, { ...change(), expectedVersion: 1 }), SwitchVersionConflictError);
    assert.equal(board.isOn('a'), false);
  });

  test('an expectedVersion that is not a whole number (a string from an If-Match header) is refused as such, not reported as a conflict with the very version it names', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    board.set('a', false, change());
    assert.equal(board.snapshot.version, 2);
    for (const expectedVersion of ['2', 2.5, Number.NaN, Number.POSITIVE_INFINITY, null]) {
      const error = caught(() => board.set('a', true, { ...change(), expectedVersion: expectedVersion as never }));
      assert.ok(error instanceof ConfigurationError, `${String(expectedVersion)}: ${String(error)}`);
      assert.equal(error.code, 'GOVMAP_INVALID_CONFIGURATION');
      assert.match(error.message, /change\.expectedVersion/);
      assert.match(error.message, /whole number/);
    }
    assert.equal(board.isOn('a'), false);
    assert.equal(board.snapshot.version, 2);
  });

  test('a change called without its change request (plain JavaScript) is refused with a ConfigurationError naming change.actor, not a TypeError', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    const calls: Array<[string, () => unknown]> = [
      ['set', () => (board.set as (...args: unknown[]) => unknown)('a', false)],
      ['update', () => (board.update as (...args: unknown[]) => unknown)({ set: { a: false } })],
      ['replace', () => (board.replace as (...args: unknown[]) => unknown)({ a: false })],
    ];
    for (const [name, call] of calls) {
      const error = caught(call);
      assert.ok(error instanceof ConfigurationError, `${name}: ${String(error)}`);
      assert.match(error.message, /change\.actor/);
    }
    assert.equal(board.isOn('a'), true);
  });

  test('a change must name its actor', () => {
    const board = new SwitchBoard();
    assert.throws(() => board.set('a', true, { actor: ' ', reason: 'x' }), /names who makes it/);
  });

  test('a change without a reason (docs/switches.md: actor and reason are required) is refused naming change.reason, and nothing is applied', () => {
    const board = new SwitchBoard({ initial: { a: true } });
    const error = caught(() => board.set('a', false, { actor: 'ops' } as never));
    assert.ok(error instanceof ConfigurationError, String(error));
    assert.match(error.message, /change\.reason/);
    assert.equal(board.isOn('a'), true);
    assert.equal(board.snapshot.version, 1);
  });

  test('a replica board refuses local changes', () => {
    const replica = new SwitchBoard({ replica: true });
    assert.equal(replica.snapshot.version, 0);
    assert.throws(() => replica.set('a', true, change()), SwitchReplicaReadOnlyError);
  });
});

describe('per-request pinning', () => {
  test('a request keeps the snapshot it started with across awaits while changes land', async () => {
    const board = new SwitchBoard({ initial: { fast: true } });
    const seen: Array<[number, boolean]> = [];
    const request = board.run(async () => {
      seen.push([board.view().version, board.isOn('fast')]);
      await new Promise((r) => setTimeout(r, 5));
      seen.push([board.view().version, board.isOn('fast')]);
      await Promise.resolve();
      seen.push([board.view().version, board.evaluate('fast').on]);
    });
    board.set('fast', false, change('turn off mid-request'));
    await request;
    assert.deepEqual(seen, [
      [1, true],
      [1, true],
      [1, true],
    ]);
    // A request started after the change sees the new version.
    assert.equal(
      board.run(() => board.isOn('fast')),
      false,
    );
    assert.equal(board.pinned, false);
  });

  test('nested runs keep the outer pin; a nested context refines targeting only', () => {
    const board = new SwitchBoard({ initial: { pilot: { enabled: true, allow: [{ orgIds: ['1001'] }] } } });
    board.run(
      () => {
        board.set('pilot', false, change());
        assert.equal(board.isOn('pilot'), true);
        board.run(() => assert.equal(board.isOn('pilot'), false, 'same pinned snapshot, another org'), { orgId: '2002' });
        board.run(() => assert.equal(board.view().version, 1));
      },
      { orgId: '1001' },
    );
  });

  test('fuzzed interleavings: every pinned request reads exactly one version, and versions only grow', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), async (s, changes, requests) => {
        const board = new SwitchBoard({ initial: { flag: true } });
        const observed: number[][] = [];
        const tasks: Promise<unknown>[] = [];
        for (let r = 0; r < requests; r++) {
          tasks.push(
            board.run(async () => {
              const versions: number[] = [];
              for (let i = 0; i < 3; i++) {
                versions.push(board.view().version);
                await s.schedule(Promise.resolve(), `request ${r} read ${i}`);
              }
              observed.push(versions);
            }),
          );
        }
        for (let c = 0; c < changes; c++) {
          tasks.push(s.schedule(Promise.resolve(), `change ${c}`).then(() => board.set('flag', { enabled: c % 2 === 0, description: `change ${c}` }, change())));
        }
        await s.waitAll();
        await Promise.all(tasks);
        for (const versions of observed) assert.equal(new Set(versions).size, 1, `one request saw versions ${versions.join(',')}`);
        assert.equal(board.snapshot.version, 1 + changes);
      }),
      { numRuns: 60 },
    );
  });
});

describe('change notifications and audit', () => {
  test('listeners get the changed names; a throwing listener is counted and does not stop the change', () => {
    const board = new SwitchBoard({ initial: { a: true, b: true }, log: () => undefined });
    const changes: SwitchChange[] = [];
    board.subscribe(() => {
      throw new Error('listener bug');
    });
    board.subscribe((c) => changes.push(c));
    board.replace({ a: true, b: false, c: true }, change());
    assert.deepEqual(changes[0]!.changed, ['b', 'c']);
    assert.equal(changes[0]!.previous.version, 1);
    assert.equal(changes[0]!.next.version, 2);
    assert.equal(board.counters.listenerErrors, 1);
    assert.equal(board.isOn('b'), false);
  });

  test('a replica adopting a newer version with the same switches takes its version but calls no listener: nothing changed', () => {
    const primary = new SwitchBoard({ name: 'payments', initial: { fast: true } });
    const replica = new SwitchBoard({ name: 'payments', replica: true });
    const changes: SwitchChange[] = [];
    replica.subscribe((c) => changes.push(c));
    assert.equal(replica.adopt(primary.publish()), true);
    assert.deepEqual(changes.map((c) => c.changed), [['fast']]);
    // The replica missed v2 (off) and v3 (on again): v3 is what it already serves.
    primary.set('fast', false, change('off'));
    primary.set('fast', true, change('on again'));
    assert.equal(replica.adopt(primary.publish()), true);
    assert.equal(replica.snapshot.version, 3, 'the replica keeps its primary\'s numbers, so logs agree');
    assert.equal(changes.length, 1, `a listener was called with changed ${JSON.stringify(changes.at(-1)?.changed)}`);
  });

  test('every change is an audit event with who, when, old and new version and why', async () => {
    const events: SwitchAuditEvent[] = [];
    const board = new SwitchBoard({ initial: { a: true }, audit: { record: (e) => void events.push(e) }, clock: () => Date.UTC(2026, 0, 2, 3, 4, 5) });
    board.set('a', false, { actor: 'admin:ops-1', reason: 'incident 4711: settlement lag', source: 'admin' });
    assert.equal(events.length, 1);
    const event = events[0]!;
    assert.equal(event.type, 'SWITCH_CHANGE');
    assert.equal(event.actor, 'admin:ops-1');
    assert.equal(event.reason, 'incident 4711: settlement lag');
    assert.equal(event.source, 'admin');
    assert.equal(event.oldVersion, 1);
    assert.equal(event.newVersion, 2);
    assert.deepEqual(event.changed, ['a']);
    assert.equal(event.at, '2026-01-02T03:04:05.000Z');
    assert.match(event.timestamp, /^\d{19}$/);

    const failing = new SwitchBoard({ audit: { record: () => Promise.reject(new Error('kafka down')) }, log: () => undefined });
    failing.set('x', true, change());
    await new Promise((r) => setImmediate(r));
    assert.equal(failing.counters.auditErrors, 1);
    assert.equal(failing.isOn('x'), true, 'an audit failure never undoes the change');
  });
});

describe('rejected changes metric', () => {
  test('every refused change is counted once in govmap_switch_rejected_changes_total, whichever call it came through', async () => {
    const board = new SwitchBoard({ name: 'payments', initial: { fast: true } });
    const replica = new SwitchBoard({ name: 'payments-replica', replica: true });
    const metrics = new SwitchMetrics().track(board).track(replica);
    const refusals: Array<[string, () => unknown, new (...args: never[]) => Error]> = [
      ['set, invalid name', () => board.set('bad name!', true, change()), SwitchNameError],
      ['update, invalid name in remove', () => board.update({ remove: ['bad name!'] }, change()), SwitchNameError],
      ['update, unknown name in remove', () => board.update({ remove: ['fats'] }, change()), SwitchConfigError],
      ['set, invalid definition', () => board.set('fast', { enabled: 'yes' }, change()), SwitchConfigError],
      ['replace, no actor', () => board.replace({ fast: false }, { actor: '', reason: 'x' }), ConfigurationError],
      ['set, expectedVersion a string', () => board.set('fast', false, { ...change(), expectedVersion: '1' as never }), ConfigurationError],
      ['set, version conflict', () => board.set('fast', false, { ...change(), expectedVersion: 7 }), SwitchVersionConflictError],
    ];
    for (const [what, call, type] of refusals) {
      const error = caught(call);
      assert.ok(error instanceof type, `${what}: got ${String(error)}`);
    }
    assert.equal(board.snapshot.version, 1);
    assert.equal(board.counters.rejectedChanges, refusals.length);

    assert.throws(() => replica.set('fast', true, change()), SwitchReplicaReadOnlyError);
    assert.throws(() => replica.adopt({ ...board.publish(), version: 5, switches: { fast: { enabled: 'yes' } } }), SwitchConfigError);
    assert.throws(() => replica.adopt(null as never), SwitchConfigError);
    assert.equal(replica.snapshot.version, 0);
    assert.equal(replica.counters.rejectedChanges, 3);

    const text = await metrics.registry.metrics();
    assert.match(text, new RegExp(`govmap_switch_rejected_changes_total\\{board="payments"\\} ${refusals.length}\\n`));
    assert.match(text, /govmap_switch_rejected_changes_total\{board="payments-replica"\} 3\n/);
  });
});
