// Small statistics for few samples: medians (robust on a noisy shared machine), spread, and a
// least-squares line for the scaling question.

export function median(values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function min(values: number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length ? Math.min(...finite) : NaN;
}

export function max(values: number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length ? Math.max(...finite) : NaN;
}

export interface LinearFit {
  /** y = intercept + slope * x */
  intercept: number;
  slope: number;
  /** Coefficient of determination (1: every point on the line). */
  r2: number;
  /** Largest |residual| relative to the fitted value. */
  worstRelativeResidual: number;
}

export function linearFit(xs: number[], ys: number[]): LinearFit | undefined {
  const points = xs.map((x, i) => [x, ys[i]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (points.length < 2) return undefined;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  if (sxx === 0) return undefined;
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const ssTot = points.reduce((s, [, y]) => s + (y - my) ** 2, 0);
  const ssRes = points.reduce((s, [x, y]) => s + (y - (intercept + slope * x)) ** 2, 0);
  const worstRelativeResidual = Math.max(
    ...points.map(([x, y]) => Math.abs(y - (intercept + slope * x)) / Math.max(1e-9, intercept + slope * x))
  );
  return { intercept, slope, r2: ssTot === 0 ? 1 : 1 - ssRes / ssTot, worstRelativeResidual };
}

/** Rotates `items` by `by` places: each repetition starts with a different method. */
export function rotate<T>(items: T[], by: number): T[] {
  if (items.length === 0) return items;
  const k = ((by % items.length) + items.length) % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
