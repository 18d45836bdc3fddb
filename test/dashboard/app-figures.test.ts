/**
 * Figures the dashboard page computes itself (demo/dashboard/app.js), checked without a browser:
 * the page runs in a node:vm context whose DOM is a permissive stub that records the text set on
 * each element, and its EventSource is fed the events the server sends.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

/** Loads the page; returns the stream's listeners and the texts it set, by selector path. */
function loadPage(): { listeners: Record<string, (event: { data: string }) => void>; texts: Map<string, unknown> } {
  const texts = new Map<string, unknown>();
  const stub = (path: string): any =>
    new Proxy(function () {}, {
      get(_target, prop) {
        if (prop === Symbol.toPrimitive) return () => '';
        if (prop === Symbol.iterator) return function* () {};
        if (prop === 'then') return undefined;
        if (prop === 'clientWidth') return 600;
        if (prop === 'querySelector') return (selector: string) => stub(`${path} ${selector}`);
        if (prop === 'querySelectorAll') return () => [];
        if (prop === 'dataset') return {};
        return stub(`${path}.${String(prop)}`);
      },
      set(_target, prop, value) {
        texts.set(`${path}.${String(prop)}`, value);
        return true;
      },
      apply: () => stub(`${path}()`),
      construct: () => stub(`${path} new`),
    });
  const listeners: Record<string, (event: { data: string }) => void> = {};
  class FakeEventSource {
    static CLOSED = 2;
    readyState = 1;
    addEventListener(name: string, listener: (event: { data: string }) => void): void {
      listeners[name] = listener;
    }
    close(): void {}
  }
  const context = vm.createContext({
    document: stub('document'),
    window: stub('window'),
    EventSource: FakeEventSource,
    fetch: () => new Promise(() => undefined),
    ResizeObserver: class { observe(): void {} },
    uPlot: class { setData(): void {} destroy(): void {} setSize(): void {} },
    // Only the charts are under test: the panels' rendering of a partial state is not.
    console: { ...console, error: () => undefined },
    setTimeout: () => 0,
    setInterval: () => 0,
    clearTimeout: () => undefined,
  });
  vm.runInContext(readFileSync(new URL('../../demo/dashboard/app.js', import.meta.url), 'utf8'), context);
  return { listeners, texts };
}

for (const intervalMs of [1000, 200]) {
  test(`"N refused in the last M" counts the refusals shown, at a push interval of ${intervalMs} ms`, () => {
    const { listeners, texts } = loadPage();
    // One minute of history: two refused writes a second, sampled every intervalMs.
    const t0 = Date.now() - 60_000;
    const samples = Array.from({ length: 60_000 / intervalMs }, (_, i) => ({
      t: t0 + i * intervalMs, loadsPerSec: 1, writesPerSec: 1, missRatio: 0, rangeP99Ms: null, rejectionsPerSec: { BALANCE_UNDERFLOW: 2 }, requestsPerSec: 1, degradedPerSec: 0,
    }));
    listeners.history!({ data: JSON.stringify({ intervalMs, samples }) });
    listeners.state!({ data: JSON.stringify({ sample: samples.at(-1) }) });
    assert.equal(texts.get('document #chart-rejections .now.textContent'), '2/s now · 120 in the last 60 s');
  });
}
