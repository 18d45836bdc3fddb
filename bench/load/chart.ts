/**
 * The load curve as one SVG a person can open in any browser: three panels over the same
 * x axis (offered requests/s) — achieved throughput, p99 latency, GC pause per second — with
 * the governed and the bare run drawn on the same axes. Hand-written SVG: no chart library,
 * no fonts or scripts to fetch.
 */
export interface ChartPoint {
  readonly offered: number;
  readonly achieved: number;
  readonly p99Ms: number;
  readonly gcPauseMsPerSec: number;
}

export interface ChartSeries {
  readonly label: string;
  readonly color: string;
  readonly points: readonly ChartPoint[];
}

const WIDTH = 900;
const PANEL_HEIGHT = 220;
const MARGIN = { left: 80, right: 30, top: 75, bottom: 40 };
const GAP = 50;

export function renderLoadChart(title: string, series: readonly ChartSeries[], notes: readonly string[] = []): string {
  const all = series.flatMap((s) => s.points);
  const maxX = niceCeil(Math.max(1, ...all.map((p) => p.offered)));
  const panels: Array<{ name: string; unit: string; value: (p: ChartPoint) => number; ideal?: boolean }> = [
    { name: 'Achieved throughput', unit: 'req/s', value: (p) => p.achieved, ideal: true },
    { name: 'p99 latency', unit: 'ms', value: (p) => p.p99Ms },
    { name: 'GC pause per second', unit: 'ms/s', value: (p) => p.gcPauseMsPerSec },
  ];
  const height = MARGIN.top + panels.length * (PANEL_HEIGHT + GAP) + MARGIN.bottom + notes.length * 16;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${MARGIN.left}" y="24" font-size="16" font-weight="600">${escape(title)}</text>`);
  series.forEach((s, i) => {
    // Legend under the title, left-aligned: labels are long and must not run off the page.
    const x = MARGIN.left + i * 380;
    const y = 40;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${s.color}" stroke-width="3"/><text x="${x + 30}" y="${y + 4}">${escape(s.label)}</text>`);
  });

  panels.forEach((panel, index) => {
    const top = MARGIN.top + index * (PANEL_HEIGHT + GAP);
    const values = all.map(panel.value).filter(Number.isFinite);
    const maxY = niceCeil(Math.max(panel.ideal === true ? maxX : 0, ...values, 1e-9));
    const sx = (v: number): number => MARGIN.left + (v / maxX) * plotW;
    const sy = (v: number): number => top + PANEL_HEIGHT - (Math.min(v, maxY) / maxY) * PANEL_HEIGHT;
    out.push(`<text x="${MARGIN.left}" y="${top - 8}" font-weight="600">${escape(panel.name)} (${panel.unit})</text>`);
    out.push(`<rect x="${MARGIN.left}" y="${top}" width="${plotW}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`);
    for (let t = 0; t <= 4; t++) {
      const vy = (maxY * t) / 4;
      const y = sy(vy);
      out.push(`<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotW}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${MARGIN.left - 6}" y="${y + 4}" text-anchor="end">${formatTick(vy)}</text>`);
      const vx = (maxX * t) / 4;
      out.push(`<text x="${sx(vx)}" y="${top + PANEL_HEIGHT + 16}" text-anchor="middle">${formatTick(vx)}</text>`);
    }
    if (panel.ideal === true) {
      out.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(maxX)}" y2="${sy(Math.min(maxX, maxY))}" stroke="#bbb" stroke-dasharray="4 4"/>`);
    }
    for (const s of series) {
      const pts = s.points.filter((p) => Number.isFinite(panel.value(p)));
      if (pts.length === 0) continue;
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map((p) => `${sx(p.offered).toFixed(1)},${sy(panel.value(p)).toFixed(1)}`).join(' ')}"/>`);
      for (const p of pts) out.push(`<circle cx="${sx(p.offered).toFixed(1)}" cy="${sy(panel.value(p)).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
  });
  const axisY = MARGIN.top + panels.length * (PANEL_HEIGHT + GAP) - GAP + 32;
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${axisY}" text-anchor="middle">offered load (requests/s)</text>`);
  notes.forEach((note, i) => out.push(`<text x="${MARGIN.left}" y="${axisY + 20 + i * 16}" fill="#555">${escape(note)}</text>`));
  out.push('</svg>');
  return out.join('\n');
}

function niceCeil(v: number): number {
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function formatTick(v: number): string {
  if (v >= 1000) return `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k`;
  if (v === 0 || Number.isInteger(v)) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(v >= 1 ? 1 : 2);
}

function escape(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
