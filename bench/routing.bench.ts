import { Worker } from 'node:worker_threads';
import { RouteTable, parseBizTag } from '../src/routing/index.ts';
import { SwitchBoard, publishToWorkers } from '../src/switches/index.ts';
import { medianOf, result, round, timeOps } from './harness.ts';
import type { BenchResult, Suite } from './harness.ts';

/**
 * Routing and switches on the request path, each against a baseline measured in the same run:
 * - a switch read inside a pinned request vs a plain property read of a mutable config object
 *   (the unsafe alternative a hot-reload would mutate in place);
 * - X-Biz-Tag parse of a typical header vs a naive split (which validates nothing);
 * - a route decision on a 1,000-rule table vs one Map.get;
 * - delay from a switch change in the main thread to its adoption by a worker thread.
 */
const SWITCHES = ['settlement.fast-path', 'fx.new-spread', 'ledger.dual-write', 'risk.v2-score'];

const suite: Suite = async ({ progress, quick }) => {
  const ops = quick ? 2_000_000 : 20_000_000;
  const rounds = quick ? 3 : 7;
  const results: BenchResult[] = [];
  const ratios: Record<string, number> = {};
  let sink = 0;

  // ---- switch read inside a pinned request vs a property read
  const board = new SwitchBoard({
    initial: {
      ...Object.fromEntries(SWITCHES.map((name, i) => [name, i % 2 === 0])),
      ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`other.switch-${i}`, true])),
      'pilot.org-1001': { enabled: true, allow: [{ orgIds: ['1001*'] }], rollout: { percent: 50 } },
    },
  });
  const config: Record<string, boolean> = Object.fromEntries(SWITCHES.map((name, i) => [name, i % 2 === 0]));
  const names = SWITCHES;
  const property = (n: number): void => {
    for (let i = 0; i < n; i++) if (config[names[i & 3]!] === true) sink++;
  };
  // The handler takes its pinned view once (`const switches = board.view()`), then reads.
  const pinnedView = (n: number): void => {
    board.run(
      () => {
        const view = board.view();
        for (let i = 0; i < n; i++) if (view.isOn(names[i & 3]!)) sink++;
      },
      { orgId: '100177' },
    );
  };
  // Every read goes through the board (an AsyncLocalStorage lookup per read).
  const viaBoard = (n: number): void => {
    board.run(
      () => {
        for (let i = 0; i < n; i++) if (board.isOn(names[i & 3]!)) sink++;
      },
      { orgId: '100177' },
    );
  };
  // A targeted switch (allow + 50% rollout): evaluated once per request, then memoised.
  const targeted = (n: number): void => {
    board.run(
      () => {
        const view = board.view();
        for (let i = 0; i < n; i++) if (view.isOn('pilot.org-1001')) sink++;
      },
      { orgId: '100177' },
    );
  };
  const samples = { property: [] as number[], view: [] as number[], board: [] as number[], targeted: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    samples.property.push(timeOps(ops, property));
    samples.view.push(timeOps(ops, pinnedView));
    samples.board.push(timeOps(ops / 4, viaBoard));
    samples.targeted.push(timeOps(ops / 4, targeted));
  }
  const propertyNs = medianOf(samples.property);
  const viewNs = medianOf(samples.view);
  const boardNs = medianOf(samples.board);
  const targetedNs = medianOf(samples.targeted);
  progress(`switch read: property ${propertyNs.toFixed(2)} ns, pinned view ${viewNs.toFixed(2)} ns, board.isOn ${boardNs.toFixed(2)} ns, targeted ${targetedNs.toFixed(2)} ns`);
  results.push(
    result('property read (mutable config object)', propertyNs),
    result('switch read, pinned view (view.isOn)', viewNs),
    result('switch read, board.isOn (ALS lookup per read)', boardNs),
    result('targeted switch read, pinned view (memoised)', targetedNs),
  );
  ratios.switch_read_vs_property = round(viewNs / propertyNs);
  ratios.switch_read_board_vs_property = round(boardNs / propertyNs);

  // ---- X-Biz-Tag parse
  const header = 'orgId:1001|txnType:pay';
  const parseOps = quick ? 300_000 : 3_000_000;
  const naive = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const pairs = header.split('|').map((p) => p.split(':'));
      sink += pairs.length;
    }
  };
  const strict = (n: number): void => {
    for (let i = 0; i < n; i++) sink += parseBizTag(header).pairs.length;
  };
  const parseSamples = { naive: [] as number[], strict: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    parseSamples.naive.push(timeOps(parseOps, naive));
    parseSamples.strict.push(timeOps(parseOps, strict));
  }
  const naiveNs = medianOf(parseSamples.naive);
  const parseNs = medianOf(parseSamples.strict);
  progress(`X-Biz-Tag parse: ${parseNs.toFixed(1)} ns (naive split ${naiveNs.toFixed(1)} ns)`);
  results.push(result(`naive split of "${header}" (no validation)`, naiveNs), result(`biztag_parse "${header}"`, parseNs));
  ratios.biztag_parse_ns = round(parseNs, 1);
  ratios.biztag_parse_vs_naive_split = round(parseNs / naiveNs);

  // ---- route decision on a 1,000-rule table
  const rules: Array<{ id: string; orgId: string; txnType: string; target: string }> = [];
  const txnTypes = ['pay', 'refund', 'fx', 'transfer', 'fee'];
  for (let i = 0; i < 600; i++) rules.push({ id: `e${i}`, orgId: String(100_000 + i * 7), txnType: txnTypes[i % 5]!, target: `gw-${i % 17}` });
  for (let i = 0; i < 300; i++) rules.push({ id: `p${i}`, orgId: `${String(1000 + i)}*`, txnType: i % 3 === 0 ? '*' : txnTypes[i % 5]!, target: `gw-${i % 13}` });
  for (let i = 0; i < 95; i++) rules.push({ id: `q${i}`, orgId: `${String(10 + i)}*`, txnType: '*', target: `gw-${i % 5}` });
  for (let i = 0; i < 5; i++) rules.push({ id: `a${i}`, orgId: '*', txnType: txnTypes[i]!, target: 'gw-any' });
  const table = new RouteTable({ default: { target: 'core' }, routes: rules });
  const queries = Array.from({ length: 4096 }, (_, i) => {
    const kind = i % 4;
    const org = kind === 0 ? String(100_000 + (i % 600) * 7) : kind === 1 ? `${1000 + (i % 300)}${i % 97}` : kind === 2 ? `${10 + (i % 95)}55${i}` : `9${i}`;
    return [org, txnTypes[i % 5]!] as const;
  });
  const exact = new Map(queries.map(([o, t]) => [`${o}|${t}`, o]));
  const exactKeys = queries.map(([o, t]) => `${o}|${t}`);
  const decideOps = quick ? 500_000 : 5_000_000;
  const decide = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const [org, txn] = queries[i & 4095]!;
      sink += table.decide(org, txn).route.target.length;
    }
  };
  const mapGet = (n: number): void => {
    for (let i = 0; i < n; i++) sink += exact.get(exactKeys[i & 4095]!)!.length;
  };
  const decideSamples = { decide: [] as number[], map: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    decideSamples.map.push(timeOps(decideOps, mapGet));
    decideSamples.decide.push(timeOps(decideOps, decide));
  }
  const mapNs = medianOf(decideSamples.map);
  const decideNs = medianOf(decideSamples.decide);
  progress(`route decision (1,000 rules): ${decideNs.toFixed(1)} ns (Map.get ${mapNs.toFixed(1)} ns)`);
  results.push(result('Map.get of a precomputed key', mapNs), result(`route_decision on ${rules.length} rules`, decideNs));
  ratios.route_decision_ns = round(decideNs, 1);
  ratios.route_decision_vs_map_get = round(decideNs / mapNs);

  // ---- switch propagation to a worker thread
  const changes = quick ? 50 : 300;
  const delays = await workerDelays(changes);
  delays.sort((a, b) => a - b);
  const p50 = delays[Math.floor(delays.length * 0.5)]!;
  const p99 = delays[Math.min(delays.length - 1, Math.floor(delays.length * 0.99))]!;
  progress(`switch change -> worker adopted: p50 ${(p50 * 1000).toFixed(0)} µs, p99 ${(p99 * 1000).toFixed(0)} µs over ${delays.length} changes`);
  results.push(result('switch change -> worker thread adopted (median)', p50 * 1e6, { p99_ms: round(p99, 3), changes: delays.length }));
  ratios.switch_worker_propagation_p99_ms = round(p99, 3);

  if (sink === -1) console.log(sink);
  return {
    suite: 'routing',
    results,
    ratios,
    targets: { switch_read_vs_property: '<= 2.0' },
    notes: [
      `switch reads: 4 static switches among ${board.snapshot.size}, rotated per read; the property baseline reads the same keys from a plain object`,
      'switch_read_board_vs_property: board.isOn() looks up the pinned view in AsyncLocalStorage on every read; take the view once per request on hot paths',
      `route table: ${rules.length} rules (600 exact, 395 prefix, 5 wildcard), 4,096 query mix of exact, prefix, wildcard and unmatched`,
      `median of ${rounds} alternating rounds`,
    ],
  };
};

/** Delay (ms) from each board change in this thread to its adoption in a worker replica. */
async function workerDelays(changes: number): Promise<number[]> {
  const board = new SwitchBoard({ name: 'bench', initial: { flag: false } });
  const publisher = publishToWorkers(board);
  // The built switches next to this module: index.js under dist/ (an installed govmap ships no
  // .ts to run), index.ts in a source checkout.
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const source = `
    const { parentPort } = require('node:worker_threads');
    const { SwitchBoard, followPrimary } = require(${JSON.stringify(new URL(`../src/switches/index.${ext}`, import.meta.url).pathname)});
    const replica = new SwitchBoard({ name: 'bench', replica: true });
    const follower = followPrimary(replica);
    replica.subscribe((c) => parentPort.postMessage({ version: c.next.version, delay: follower.lastDelayMs }));
    parentPort.on('message', () => { follower.close(); parentPort.close(); });
  `;
  const worker = new Worker(source, { eval: true });
  const delays: number[] = [];
  let waiting: ((v: number) => void) | null = null;
  worker.on('message', (m: { version: number; delay: number }) => {
    if (m.version > 1) delays.push(m.delay);
    waiting?.(m.version);
  });
  const adopted = (version: number): Promise<void> =>
    new Promise((resolve) => {
      waiting = (v) => {
        if (v >= version) resolve();
      };
    });
  await adopted(1);
  for (let i = 0; i < changes; i++) {
    const next = adopted(board.snapshot.version + 1);
    board.set('flag', i % 2 === 0, { actor: 'bench', reason: `change ${i}` });
    await next;
  }
  worker.postMessage('stop');
  await worker.terminate();
  publisher.close();
  return delays;
}

export default suite;
