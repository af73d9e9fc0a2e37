// A line chart written by hand (no dependencies): time against data size, one polyline per series,
// a point per measured size, an optional dashed least-squares line, axes with round ticks, a legend.

export interface Series {
  name: string;
  color: string;
  points: Array<{ x: number; y: number; label?: string }>;
  dashed?: boolean;
  /** A straight line y = intercept + slope * x drawn across the plot (dashed), e.g. a fit. */
  line?: { intercept: number; slope: number };
}

export interface Chart {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

const WIDTH = 860;
const HEIGHT = 520;
const MARGIN = { left: 70, right: 250, top: 64, bottom: 56 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" step (1, 2 or 5 times a power of ten) giving about `count` ticks up to `max`. */
function tickStep(max: number, count = 6): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) < 1 ? 2 : 1);
}

export function lineChart(chart: Chart): string {
  const all = chart.series.flatMap(s => s.points).filter(p => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xMaxData = Math.max(1, ...all.map(p => p.x));
  const yMaxData = Math.max(0.1, ...all.map(p => p.y));
  const xStep = tickStep(xMaxData * 1.05);
  const yStep = tickStep(yMaxData * 1.1);
  const xMax = Math.ceil((xMaxData * 1.05) / xStep) * xStep;
  const yMax = Math.ceil((yMaxData * 1.1) / yStep) * yStep;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number) => MARGIN.left + (x / xMax) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - (y / yMax) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`
  );
  out.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`);
  out.push(`<text x="${MARGIN.left}" y="26" font-size="16" font-weight="bold">${esc(chart.title)}</text>`);
  if (chart.subtitle) out.push(`<text x="${MARGIN.left}" y="46" fill="#555">${esc(chart.subtitle)}</text>`);
  // Grid and ticks.
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    out.push(
      `<line x1="${MARGIN.left}" y1="${sy(y).toFixed(1)}" x2="${MARGIN.left + plotW}" y2="${sy(y).toFixed(1)}" stroke="#e4e4e4"/>`
    );
    out.push(
      `<text x="${MARGIN.left - 8}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end" fill="#333">${fmt(y)}</text>`
    );
  }
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    out.push(
      `<line x1="${sx(x).toFixed(1)}" y1="${MARGIN.top}" x2="${sx(x).toFixed(1)}" y2="${MARGIN.top + plotH}" stroke="#f0f0f0"/>`
    );
    out.push(
      `<text x="${sx(x).toFixed(1)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle" fill="#333">${fmt(x)}</text>`
    );
  }
  out.push(
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}" stroke="#333"/>`
  );
  out.push(
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}" stroke="#333"/>`
  );
  out.push(
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 14}" text-anchor="middle" fill="#222">${esc(chart.xLabel)}</text>`
  );
  out.push(
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#222">${esc(chart.yLabel)}</text>`
  );
  // Series.
  out.push(
    `<defs><clipPath id="plot"><rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}"/></clipPath></defs>`
  );
  chart.series.forEach(series => {
    const points = series.points.filter(p => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    if (series.line) {
      const { intercept, slope } = series.line;
      out.push(
        `<line clip-path="url(#plot)" x1="${sx(0).toFixed(1)}" y1="${sy(intercept).toFixed(1)}" x2="${sx(xMax).toFixed(1)}" y2="${sy(intercept + slope * xMax).toFixed(1)}" stroke="${series.color}" stroke-width="1.5" stroke-dasharray="6 4" opacity="0.8"/>`
      );
    }
    if (points.length > 1) {
      const d = points.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
      out.push(
        `<path d="${d}" fill="none" stroke="${series.color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="4 3"' : ''}/>`
      );
    }
    for (const p of points) {
      if (p.label)
        out.push(
          `<text x="${(sx(p.x) - 6).toFixed(1)}" y="${(sy(p.y) - 9).toFixed(1)}" text-anchor="end" font-size="11" fill="${series.color}">${esc(p.label)}</text>`
        );
      out.push(
        `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${series.color}"><title>${esc(`${series.name}: ${fmt(Number(p.y.toFixed(2)))} s at ${fmt(Math.round(p.x))} MB`)}</title></circle>`
      );
    }
  });
  // Legend.
  const lx = MARGIN.left + plotW + 18;
  chart.series.forEach((series, i) => {
    const y = MARGIN.top + 8 + i * 22;
    const dash = series.dashed || (series.line && series.points.length === 0) ? ' stroke-dasharray="6 4"' : '';
    out.push(`<line x1="${lx}" y1="${y}" x2="${lx + 22}" y2="${y}" stroke="${series.color}" stroke-width="2"${dash}/>`);
    if (series.points.length > 0) out.push(`<circle cx="${lx + 11}" cy="${y}" r="3" fill="${series.color}"/>`);
    out.push(`<text x="${lx + 30}" y="${y + 4}" fill="#222">${esc(series.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
