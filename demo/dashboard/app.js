/* govmap dashboard page: plain browser JavaScript, no build step. State arrives over
 * Server-Sent Events (/events); knobs call the demo's admin endpoints with the token typed in
 * the page (kept in this page's memory only). Every value from the server is inserted as text,
 * never as HTML. */
/* global document, window, EventSource, fetch, ResizeObserver, uPlot, console, setTimeout, setInterval */
'use strict';

(() => {
  /** Chart points kept: 5 minutes at the default one sample a second (the server sends as many on connect). */
  const MAX_POINTS = 300;
  /** Plot height in pixels, axes included (the legend sits below). */
  const CHART_HEIGHT = 130;
  const COLORS = ['#0b5cad', '#b42318', '#1a7f37', '#9a6700', '#7a3ea1', '#0e7c86', '#c2410c'];

  const $ = (selector, root = document) => root.querySelector(selector);

  /** h('td', {class: 'num'}, 'text', child…): an element with text children only (no HTML parsing). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props ?? {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof window.Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const badge = (text, tone) => h('span', { class: `badge ${tone ?? ''}` }, text);
  const stateTone = (state) => (state === 'CLOSED' ? 'ok' : state === 'OPEN' ? 'bad' : 'warn');
  const fmt = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
  const pct = (ratio) => (ratio === null || ratio === undefined ? '–' : `${(ratio * 100).toFixed(1)}%`);
  /**
   * A time of day in UTC, marked `Z` (`08:14:03Z`): the audit trail, the logs and Prometheus are
   * in UTC, and a time in the browser's own zone, unmarked, misled an operator matching the page
   * to a log line.
   */
  const clock = (iso) => {
    const at = iso ? new Date(iso) : null;
    return at === null || Number.isNaN(at.getTime()) ? '–' : `${at.toISOString().slice(11, 19)}Z`;
  };
  function ago(iso, now) {
    if (!iso) return '–';
    const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  // ------------------------------------------------------------------ charts

  const data = { t: [], loads: [], writes: [], miss: [], range: [], rejections: new Map() };
  const charts = {};

  function push(sample) {
    data.t.push(sample.t / 1000);
    data.loads.push(sample.loadsPerSec);
    data.writes.push(sample.writesPerSec);
    data.miss.push(sample.missRatio === null ? null : sample.missRatio * 100);
    data.range.push(sample.rangeP99Ms);
    const index = data.t.length - 1;
    for (const reason of Object.keys(sample.rejectionsPerSec)) {
      if (!data.rejections.has(reason)) data.rejections.set(reason, new Array(index).fill(0));
    }
    for (const [reason, values] of data.rejections) values.push(sample.rejectionsPerSec[reason] ?? 0);
    if (data.t.length > MAX_POINTS) {
      for (const list of [data.t, data.loads, data.writes, data.miss, data.range, ...data.rejections.values()]) list.shift();
    }
  }

  const axis = { stroke: '#5d6877', grid: { stroke: '#eef1f5', width: 1 }, ticks: { stroke: '#dde2ea', width: 1 }, font: '11px system-ui, sans-serif' };
  const fromZero = (min) => (_u, _lo, hi) => [0, Math.max(min, (hi ?? 0) * 1.15)];
  const two = (n) => String(n).padStart(2, '0');
  /** Wall-clock ticks in UTC (HH:MM:SSZ, as `clock`), one line: the date is today's. */
  const timeAxis = { ...axis, space: 70, values: (_u, splits) => splits.map((v) => { const d = new Date(v * 1000); return `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}Z`; }) };

  /** A chart's time span: seconds up to 90, whole minutes beyond (not "1 min" for 30 s). */
  const spanLabel = (sec) => (sec < 90 ? `${Math.round(sec)} s` : `${Math.round(sec / 60)} min`);

  function chartSpecs() {
    const reasons = [...data.rejections.keys()].sort();
    return {
      ops: {
        // Writes are a twentieth of loads or less: their own scale (right axis), or they lie flat.
        series: [{ label: 'loads/s', stroke: COLORS[0], width: 1.5 }, { label: 'writes/s (right)', stroke: COLORS[1], width: 1.5, scale: 'w' }],
        values: () => [data.loads, data.writes],
        range: fromZero(1),
        extraScales: { w: { range: fromZero(1) } },
        extraAxes: [{ ...axis, scale: 'w', side: 1, size: 40, grid: { show: false } }],
        now: () => `loads ${fmt(data.loads.at(-1), 1)}/s · writes ${fmt(data.writes.at(-1), 1)}/s`,
      },
      miss: {
        series: [{ label: 'miss %', stroke: COLORS[0], width: 1.5 }, { label: 'alert 35%', stroke: '#b42318', width: 1, dash: [4, 4] }],
        values: () => [data.miss, data.t.map(() => 35)],
        range: fromZero(40),
        now: () => (data.miss.at(-1) === null || data.miss.at(-1) === undefined ? 'no loads yet' : `${data.miss.at(-1).toFixed(2)}%`),
      },
      range: {
        series: [{ label: 'p99 ms', stroke: COLORS[4], width: 1.5 }],
        values: () => [data.range],
        range: fromZero(0.05),
        now: () => (data.range.at(-1) === null || data.range.at(-1) === undefined ? 'no range walk in the last minute' : `≤ ${fmt(data.range.at(-1), 3)} ms`),
      },
      rejections: {
        series: reasons.length === 0 ? [{ label: 'none yet', stroke: '#b9c1cd', width: 1 }] : reasons.map((r, i) => ({ label: r, stroke: COLORS[(i + 1) % COLORS.length], width: 1.5 })),
        values: () => (reasons.length === 0 ? [data.t.map(() => 0)] : reasons.map((r) => data.rejections.get(r))),
        range: fromZero(1),
        now: () => {
          const last = reasons.map((r) => data.rejections.get(r).at(-1) ?? 0).reduce((a, b) => a + b, 0);
          // Each point is a rate over one sample interval (intervalMs, from the server's history
          // event), not over one second: at 200 ms, adding the rates up counted five times too few.
          const perSample = intervalMs / 1000;
          const inView = Math.round(reasons.map((r) => data.rejections.get(r).reduce((a, b) => a + b, 0)).reduce((a, b) => a + b, 0) * perSample);
          return `${fmt(last, 2)}/s now · ${fmt(inView)} in the last ${spanLabel(data.t.length * perSample)}`;
        },
        key: reasons.join(','),
      },
    };
  }

  function renderCharts() {
    if (typeof uPlot !== 'function') return;
    const specs = chartSpecs();
    for (const [name, spec] of Object.entries(specs)) {
      const figure = $(`#chart-${name}`);
      const plot = $('.plot', figure);
      const series = [data.t, ...spec.values()];
      let chart = charts[name];
      if (chart !== undefined && chart.key !== (spec.key ?? '')) {
        chart.plot.destroy();
        chart = undefined;
      }
      if (chart === undefined) {
        const width = Math.max(200, plot.clientWidth);
        const opts = {
          width,
          height: CHART_HEIGHT,
          legend: { show: true, live: false },
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true }, y: { range: spec.range }, ...(spec.extraScales ?? {}) },
          axes: [timeAxis, { ...axis, size: 46 }, ...(spec.extraAxes ?? [])],
          series: [{}, ...spec.series.map((s) => ({ ...s, spanGaps: false, points: { show: false } }))],
        };
        chart = { plot: new uPlot(opts, series, plot), key: spec.key ?? '' };
        charts[name] = chart;
      } else {
        chart.plot.setData(series);
      }
      figure.dataset.points = String(data.t.length);
      $('.now', figure).textContent = spec.now();
    }
  }

  const resize = new ResizeObserver(() => {
    for (const [name, chart] of Object.entries(charts)) {
      const plot = $(`#chart-${name} .plot`);
      chart.plot.setSize({ width: Math.max(200, plot.clientWidth), height: CHART_HEIGHT });
    }
  });
  resize.observe($('#charts'));

  // ------------------------------------------------------------------ panels

  const windowLabel = (sec) => (typeof sec !== 'number' ? 'window' : sec % 60 === 0 ? `${sec / 60} min` : `${sec} s`);

  function renderFacts(s) {
    const b = s.service.balances;
    const up = s.service.uptimeSec;
    const facts = [
      ['instance', s.service.instance],
      ['up', up < 120 ? `${up} s` : up < 7200 ? `${Math.floor(up / 60)} min` : `${Math.floor(up / 3600)} h`],
      ['balances', `${fmt(b.keys)} keys, ${b.store}`],
      [
        `reads/write (${windowLabel(b.readWriteWindowSec)})`,
        b.readWriteRatio === null ? '–' : fmt(b.readWriteRatio, 1),
        'syncmap_read_write_ratio: reads per write over the sliding window, as the advisor judges it (the floor is 20); the opening balances count as writes until they leave the window',
      ],
      ['req', `${fmt(s.sample.requestsPerSec)}/s`],
      ['degraded', `${fmt(s.sample.degradedPerSec, 1)}/s`],
      ['failed', `${fmt(s.sample.failedPerSec, 1)}/s`, 'answers with a 5xx status, tagged or not (a 503 of a route without a live target counts as degraded too)'],
    ];
    $('#facts').replaceChildren(...facts.map(([k, v, title]) => h('span', { 'data-fact': k.split(' ')[0], title, class: k === 'failed' && s.sample.failedPerSec > 0 ? 'bad' : undefined }, h('span', { class: 'muted' }, `${k} `), h('b', {}, v))));
  }

  function renderOrgs(s) {
    const rows = s.orgs.map((o) => {
      const tone = o.getting === 'normal' ? 'ok' : o.getting === 'idle' ? '' : o.getting === 'failing' ? 'bad' : 'warn';
      return h(
        'tr',
        { 'data-org': o.org, 'data-txn': o.txnType, class: tone === 'warn' || tone === 'bad' ? 'hot' : '' },
        h('td', {}, h('code', {}, o.org)),
        h('td', {}, o.txnType),
        h('td', {}, o.route ?? '–'),
        h('td', { class: 'getting' }, badge(o.getting === 'normal' ? 'normal' : o.getting, tone)),
        h('td', { class: 'small' }, o.detail ?? ''),
        h('td', { class: 'num small' }, o.recent.degraded + o.recent.failed > 0 ? `${o.recent.degraded + o.recent.failed}/${o.recent.total} off` : `${o.recent.total} ok`),
      );
    });
    $('#orgs tbody').replaceChildren(...rows);
    $('#orgs .empty').hidden = rows.length > 0;
    const notListed = $('#orgs-not-listed');
    notListed.hidden = !(s.orgsNotListed > 0);
    notListed.textContent = s.orgsNotListed > 0 ? `${fmt(s.orgsNotListed)} more org/txnType pair(s) had answers in the last 10 s but are not listed: the table keeps ${fmt(rows.length)}, degraded and failing ones first.` : '';
  }

  /** The fault of every org without its own (the latest state's), which each knob completes. */
  let gatewayDefault = { failureRate: 0, latencyMs: 5 };

  function renderFaults(s) {
    gatewayDefault = { failureRate: s.gateway.failureRate, latencyMs: s.gateway.latencyMs };
    const select = $('#fault-org');
    const known = [...new Set([...s.orgs.map((o) => o.org), ...Object.keys(s.gateway.orgs)])].sort();
    const current = [...select.options].map((o) => o.value);
    if (known.join('|') !== current.join('|')) {
      const selected = select.value;
      select.replaceChildren(...known.map((org) => h('option', { value: org }, org)));
      if (known.includes(selected)) select.value = selected;
    }
    const own = Object.entries(s.gateway.orgs);
    $('#fault-list').replaceChildren(
      ...(own.length === 0
        ? [h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'none: every org is served normally'))]
        : own.map(([org, f]) => h('tr', { 'data-fault-org': org, class: 'hot' }, h('td', {}, h('code', {}, org)), h('td', { class: 'num' }, pct(f.failureRate)), h('td', { class: 'num' }, `${fmt(f.latencyMs)} ms`)))),
    );
    $('#gateway-default').textContent = `Every other org: ${pct(s.gateway.failureRate)} failing, ${fmt(s.gateway.latencyMs)} ms. ${fmt(s.gateway.calls)} settlement calls, ${fmt(s.settlementsQueued)} settlements queued for a later batch` + (s.settlementBacklog ? `: ${fmt(s.settlementBacklog.settledLater)} settled later, ${fmt(s.settlementBacklog.pending)} still waiting` + (s.settlementBacklog.overflowed > 0 ? `, ${fmt(s.settlementBacklog.overflowed)} over the backlog's bound (left to reconciliation)` : '') : '') + '.';
  }

  function renderBreakers(s, now) {
    const order = { OPEN: 0, HALF_OPEN: 1, CLOSED: 2 };
    const rows = [...s.breakers]
      .sort((a, b) => order[a.state] - order[b.state] || `${a.group}:${a.key}`.localeCompare(`${b.group}:${b.key}`))
      .map((b) =>
        h(
          'tr',
          { 'data-breaker': `${b.group}:${b.key}`, class: b.state === 'CLOSED' ? '' : 'hot' },
          h('td', { class: 'name' }, h('span', { class: 'muted' }, `${b.group}:`), h('code', {}, b.key ?? '')),
          h('td', { class: 'state' }, badge(b.state, stateTone(b.state))),
          h('td', { class: 'num' }, `${b.window.failures}/${b.window.timeouts}/${b.window.total}`),
          h('td', { class: 'small name' }, b.state === 'OPEN' && b.openUntil ? `probe ${clock(b.openUntil)}` : ago(b.since, now)),
        ),
      );
    $('#breakers tbody').replaceChildren(...rows);
    $('#breaker-store').textContent = s.service.breakerStateStore;
    $('#transitions').replaceChildren(
      ...(s.transitions.length === 0
        ? [h('li', { class: 'muted' }, 'none yet')]
        : s.transitions.slice(0, 15).map((t) =>
            h('li', { 'data-transition': t.breaker }, h('span', { class: 'muted' }, `${clock(t.at)} `), h('code', {}, t.breaker), ' ', badge(t.from, stateTone(t.from)), ' → ', badge(t.to, stateTone(t.to)), h('span', { class: 'muted' }, ` ${t.reason}`)),
          )),
    );
  }

  function renderRoutes(s) {
    const d = s.routing.decisions;
    const refused = Object.values(s.routing.tagRejections).reduce((a, b) => a + b, 0);
    $('#route-decisions').textContent = `Decisions: ${fmt(d.matched)} by a rule, ${fmt(d.noRule)} tagged but unmatched (sent to the default route, alerted), ${fmt(d.untagged)} untagged; ${fmt(refused)} malformed tags refused (400).`;
    $('#routes tbody').replaceChildren(
      ...s.routes.map((r) => {
        const c = r.counters;
        const degraded = c.mock + c.cache + c.queued + c.unavailable;
        return h(
          'tr',
          { 'data-route': r.id, class: r.breaker === 'CLOSED' ? '' : 'hot' },
          h('td', {}, h('code', {}, r.id)),
          h('td', {}, r.orgId),
          h('td', {}, r.txnType),
          h('td', {}, r.target),
          h('td', {}, r.degradation),
          h('td', { class: 'state' }, badge(r.breaker, stateTone(r.breaker))),
          h('td', { class: 'num' }, fmt(c.live)),
          h('td', { class: 'num failed' }, fmt(c.failed)),
          h('td', { class: 'num' }, fmt(degraded)),
          h('td', { class: 'num' }, r.asyncQueued === null ? '–' : fmt(r.asyncQueued)),
        );
      }),
    );
  }

  /** How a switch definition reads in one line. */
  function describeSwitch(d) {
    const parts = [];
    if (d.kill) parts.push('KILL');
    if (d.value !== undefined) parts.push(`value ${JSON.stringify(d.value)}`);
    if (d.offValue !== undefined) parts.push(`off ${JSON.stringify(d.offValue)}`);
    if (d.rollout) parts.push(`${d.rollout.percent}% by ${d.rollout.by}`);
    for (const a of d.allow ?? []) parts.push(`allow ${[...(a.orgIds ?? []), ...(a.txnTypes ?? [])].join(',')}`);
    for (const a of d.deny ?? []) parts.push(`deny ${[...(a.orgIds ?? []), ...(a.txnTypes ?? [])].join(',')}`);
    return parts.join(' · ') || '–';
  }

  let switchVersion = null;
  function renderSwitches(s) {
    switchVersion = s.switches.version;
    $('#switch-version').textContent = `board v${s.switches.version} · ${clock(s.switches.updatedAt)}`;
    $('#switch-version').dataset.version = String(s.switches.version);
    $('#switches tbody').replaceChildren(
      ...s.switches.list.map((sw) =>
        h(
          'tr',
          { 'data-switch': sw.name, title: sw.definition.description ?? '' },
          h('td', {}, h('code', {}, sw.name)),
          h('td', { class: 'state' }, badge(sw.definition.enabled ? 'on' : 'off', sw.definition.enabled ? 'ok' : '')),
          h('td', { class: 'small' }, describeSwitch(sw.definition)),
          h('td', { class: 'num version' }, `v${sw.changedAtVersion ?? '?'}`),
          h('td', {}, h('button', { type: 'button', class: 'small', 'data-flip': sw.name, disabled: token() === '' ? true : undefined, onclick: () => void flip(sw) }, sw.definition.enabled ? 'Turn off' : 'Turn on')),
        ),
      ),
    );
    $('#switch-changes').replaceChildren(
      ...s.switches.changes.slice(0, 6).map((c) => h('li', {}, h('span', { class: 'muted' }, `v${c.version} ${clock(c.at)} `), c.changed.join(', '), h('span', { class: 'muted' }, ` by ${c.actor}: ${c.reason}`))),
    );
  }

  function renderAudit(s) {
    const a = s.audit;
    const status = $('#audit-status');
    const tbody = $('#audit tbody');
    if (!a.configured) {
      status.replaceChildren(badge('audit not configured', ''));
      status.dataset.status = 'not-configured';
      $('#audit-summary').textContent = 'This demo runs without an audit spool for the dashboard to read: no tail, no chain to verify.';
      tbody.replaceChildren();
      $('#audit-tail').hidden = true;
      return;
    }
    $('#audit-tail').hidden = false;
    const v = a.verify;
    const r = a.recorder;
    // The spool on disk can verify while nothing new reaches it (a full or failed disk): the
    // verification alone showed "chain verified" for an audit trail that had stopped.
    if (r && r.healthy === false) {
      status.replaceChildren(badge('spool NOT WRITTEN', 'bad'));
      status.dataset.status = 'unhealthy';
    } else if (v === null) {
      status.replaceChildren(badge('verifying…', 'info'));
      status.dataset.status = 'verifying';
    } else if (v.ok) {
      status.replaceChildren(badge('chain verified', 'ok'));
      status.dataset.status = 'ok';
    } else {
      status.replaceChildren(badge(v.error ? 'verify failed' : 'chain BROKEN', 'bad'));
      status.dataset.status = 'broken';
    }
    const where = v && v.firstBad ? ` First bad record: ${v.firstBad.file}:${v.firstBad.line} (${v.firstBad.problem}).` : '';
    $('#audit-summary').textContent = v
      ? `${fmt(v.records)} records, ${fmt(v.seals)} seals in ${v.files} file(s), last seq ${fmt(v.lastSeq)}, ${v.gaps} gap(s); checked ${clock(v.checkedAt)} in ${v.ms} ms (every ${a.verifyIntervalMs / 1000} s).${where}${v.error ? ` ${v.error}` : ''}`
      : `Spool ${a.dir}: first verification running.`;
    if (r) {
      if (r.healthy === false) $('#audit-summary').textContent += ` The spool cannot be written: ${fmt(r.backlogRecords)} record(s) wait in memory.`;
      if (r.writesLost > 0 || r.readsDropped > 0) $('#audit-summary').textContent += ` Not recorded: ${fmt(r.writesLost)} write(s) lost, ${fmt(r.readsDropped)} read(s) dropped (named by AUDIT_GAP records).`;
      if (r.drainWorkerRestarts > 0) $('#audit-summary').textContent += ` The drain thread died and was restarted ${fmt(r.drainWorkerRestarts)} time(s): no write was lost; reads it held are named by AUDIT_GAP records (DRAIN_WORKER_DIED).`;
      const path = r.writeJournal ? `through the write journal (${fmt(r.journalUsedBytes / 1024, 1)} KiB of ${fmt(r.journalCapacityBytes / 1048576)} MiB waiting)` : 'by write(2), one per record';
      $('#audit-summary').textContent += ` Writes reach the OS ${path}; read ring ${fmt(r.ringUsedBytes / 1024, 1)} KiB used.`;
    }
    if (a.tailError) $('#audit-summary').textContent += ` The newest records could not be read: ${a.tailError}`;
    tbody.replaceChildren(
      ...a.tail.map((e) =>
        h('tr', {}, h('td', { class: 'num' }, e.seq), h('td', {}, e.op), h('td', {}, h('code', {}, `${e.map ?? ''}${e.resource ? ` ${e.resource}` : ''}`)), h('td', {}, badge(e.outcome, e.outcome === 'ok' ? 'ok' : e.outcome === 'miss' ? '' : 'warn')), h('td', { class: 'small' }, clock(e.at))),
      ),
    );
  }

  function renderSandbox(s) {
    const sb = s.sandbox;
    $('#sandbox-summary').textContent =
      sb.lastSweepAt === null
        ? `${fmt(sb.instances.created)} maps created so far; first sweep within ${sb.sweepIntervalMs / 1000} s (idle threshold ${sb.idleThresholdMs / 60000} min).`
        : `${fmt(sb.instances.live)} live maps (${fmt(sb.instances.created)} created, ${fmt(sb.instances.collected)} collected); sweep every ${sb.sweepIntervalMs / 1000} s, last ${clock(sb.lastSweepAt)}; idle threshold ${sb.idleThresholdMs / 60000} min.`;
    $('#suspects').replaceChildren(
      ...(sb.suspects.length === 0
        ? [h('li', {}, badge('no leak suspects', 'ok'))]
        : sb.suspects.map((x) => h('li', { 'data-suspect': x.kind }, badge(x.kind, 'warn'), ' ', h('code', {}, x.map ?? (x.maps ?? []).join(', ')), h('span', { class: 'muted small' }, ` ${x.where ?? ''}`)))),
    );
    $('#advice').replaceChildren(
      ...s.advisor.map((a) =>
        h(
          'li',
          { 'data-map': a.map },
          h('code', {}, a.map),
          ' ',
          badge(a.recommendation, a.recommendation === 'stay' ? 'ok' : 'warn'),
          h('div', { class: 'small' }, a.reason),
          h('div', { class: 'signals' }, a.signals.map((sig) => h('span', { class: 'signal', title: sig.summary }, badge(sig.status, sig.status === 'firing' ? 'bad' : sig.status === 'clear' ? 'ok' : ''), ` ${sig.id.toLowerCase().replace(/_/g, ' ')}`))),
        ),
      ),
    );
  }

  function render(s) {
    const now = s.t;
    renderFacts(s);
    renderOrgs(s);
    renderFaults(s);
    renderBreakers(s, now);
    renderRoutes(s);
    renderSwitches(s);
    renderAudit(s);
    renderSandbox(s);
  }

  // ------------------------------------------------------------------ knobs

  const token = () => $('#token').value.trim();
  function syncButtons() {
    const off = token() === '';
    for (const button of document.querySelectorAll('[data-fault], [data-flip]')) {
      button.disabled = off;
      button.title = off ? 'type the admin token first' : '';
    }
  }
  $('#token').addEventListener('input', syncButtons);

  async function admin(path, body) {
    const response = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token()}` }, body: JSON.stringify(body) });
    const json = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(response.status === 401 ? 'the admin token was refused' : (json.error?.reason ?? `HTTP ${response.status}`));
    return json;
  }

  function say(id, text, ok) {
    const el = $(id);
    el.textContent = text;
    el.className = `result ${ok ? 'ok' : 'bad'}`;
  }

  for (const button of document.querySelectorAll('[data-fault]')) {
    button.addEventListener('click', async () => {
      const org = $('#fault-org').value;
      if (!org) return say('#fault-result', 'no org to choose yet: wait for tagged traffic', false);
      const kind = button.dataset.fault;
      // Both fields, always: the endpoint keeps an unset field of the org's own fault, so "Fail"
      // after "Slow" kept the 400 ms (every call timed out instead of failing) and "Slow" after
      // "Fail" kept the failures. The other field is the default's, as for every other org.
      const body =
        kind === 'fail'
          ? { org, failureRate: 1, latencyMs: gatewayDefault.latencyMs }
          : kind === 'slow'
            ? { org, failureRate: gatewayDefault.failureRate, latencyMs: 400 }
            : { org, reset: true };
      try {
        await admin('/admin/faults', body);
        say('#fault-result', kind === 'reset' ? `org ${org}: back to normal` : `org ${org}: ${kind === 'fail' ? 'every settlement call fails' : 'settlement calls take 400 ms (timeout 200 ms)'}; watch its breakers`, true);
      } catch (error) {
        say('#fault-result', `org ${org}: ${error.message}`, false);
      }
    });
  }

  async function flip(sw) {
    try {
      const result = await admin('/admin/switches', {
        set: { [sw.name]: { ...sw.definition, enabled: !sw.definition.enabled } },
        reason: `flipped from the dashboard (${sw.definition.enabled ? 'off' : 'on'})`,
        actor: 'dashboard',
        expectedVersion: switchVersion ?? undefined,
      });
      // Shown at once; the next pushed state confirms it.
      $('#switch-version').textContent = `board v${result.version}`;
      $('#switch-version').dataset.version = String(result.version);
      say('#switch-result', `${sw.name} turned ${sw.definition.enabled ? 'off' : 'on'}: board v${result.previousVersion} → v${result.version}`, true);
    } catch (error) {
      say('#switch-result', `${sw.name}: ${error.message}`, false);
    }
  }

  $('#lint-run').addEventListener('click', async () => {
    const button = $('#lint-run');
    button.disabled = true;
    $('#lint-summary').textContent = 'scanning…';
    try {
      const response = await fetch('/lint/report');
      const json = await response.json();
      if (!response.ok) throw new Error(json.error?.reason ?? `HTTP ${response.status}`);
      $('#lint-summary').textContent = `${json.filesScanned} files, ${json.rules.length} rules: ${json.findings.length} finding(s), ${json.failing} failing.`;
      $('#lint-findings').replaceChildren(...json.findings.slice(0, 30).map((f) => h('li', {}, h('code', {}, `${f.file}:${f.line}`), ' ', badge(f.ruleId.replace('govmap/', ''), f.severity === 'error' ? 'bad' : 'warn'), h('div', { class: 'small muted' }, f.message))));
    } catch (error) {
      $('#lint-summary').textContent = `scan failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  // ------------------------------------------------------------------ the stream

  /*
   * The browser reopens an EventSource by itself only after a network error. An answer that is
   * not the stream (503 DASHBOARD_BUSY when too many pages are open, a proxy's 502 while the
   * service restarts) closes it for good; a connection that dies without a reset (a laptop that
   * slept, a NAT that forgot it) stays "open" and delivers nothing. Both would leave the page
   * frozen on its last state. So the page reopens a closed stream itself, backing off, and treats
   * a stream silent for STALL_INTERVALS pushes as dead (opened or not: a request sent on a dead
   * kept-alive connection never opens either). Whenever the page is not live, every
   * panel is marked stale (body[data-stale]) so that old figures are not read as current.
   */
  /** First wait before reopening a closed stream, ms; doubled on each failure up to RETRY_MAX_MS. */
  const RETRY_MIN_MS = 2000;
  const RETRY_MAX_MS = 30000;
  /** Pushes missed before the stream is judged dead and reopened. */
  const STALL_INTERVALS = 5;
  /** How often the page checks that states keep arriving, ms. */
  const WATCHDOG_MS = 1000;

  const conn = $('#conn');
  let events = null;
  let intervalMs = 1000;
  let lastStateAt = 0;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let lastT = null;

  function showConnection(state, text) {
    conn.dataset.state = state;
    conn.textContent = text;
    document.body.toggleAttribute('data-stale', state !== 'live');
  }

  function reopenLater(why) {
    if (events !== null) events.close();
    events = null;
    showConnection('down', `${why}; retrying in ${Math.round(retryMs / 1000)} s`);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  }

  function connect() {
    retryTimer = null;
    lastStateAt = Date.now();
    const source = new EventSource('/events');
    events = source;
    source.addEventListener('open', () => {
      lastStateAt = Date.now();
      showConnection('live', 'live');
    });
    source.addEventListener('error', () => {
      if (source !== events) return;
      if (source.readyState === EventSource.CLOSED) reopenLater('disconnected');
      else showConnection('down', 'reconnecting…');
    });
    source.addEventListener('history', (event) => {
      const history = JSON.parse(event.data);
      if (Number.isFinite(history.intervalMs) && history.intervalMs > 0) intervalMs = history.intervalMs;
      for (const list of [data.t, data.loads, data.writes, data.miss, data.range]) list.length = 0;
      data.rejections.clear();
      lastT = null;
      for (const sample of history.samples) push(sample);
    });
    source.addEventListener('state', (event) => {
      lastStateAt = Date.now();
      retryMs = RETRY_MIN_MS;
      if (conn.dataset.state !== 'live') showConnection('live', 'live');
      const s = JSON.parse(event.data);
      if (s.sample.t !== lastT && s.sample.t !== data.t.at(-1) * 1000) push(s.sample);
      lastT = s.sample.t;
      try {
        renderCharts();
        render(s);
        syncButtons();
      } catch (error) {
        console.error('govmap dashboard: rendering failed', error);
      }
    });
  }

  // Open or still connecting alike: a request sent on a dead kept-alive connection never even opens.
  setInterval(() => {
    if (events === null || retryTimer !== null) return;
    const silent = Date.now() - lastStateAt;
    if (silent > STALL_INTERVALS * intervalMs) reopenLater(`no update for ${Math.round(silent / 1000)} s`);
  }, WATCHDOG_MS);

  connect();
})();
