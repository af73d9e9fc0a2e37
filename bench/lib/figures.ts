// A run's samples as figures: medians with their ranges, ratios paired by repetition, and how each is
// written (seconds, MB, ×).
import type { RunRecord, Sample } from './model';
import { max, median, min } from './stats';

export const MB = 1e6;

export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
  values: number[];
}

export function samples(record: RunRecord, method: string, sizeMB?: number): Sample[] {
  for (const sample of record.samples) sample.detail ??= {};
  return record.samples.filter(
    s => s.method === method && (sizeMB === undefined || s.sizeMB === sizeMB) && s.scenario !== 'seed'
  );
}

function stat(values: number[]): Stat {
  const finite = values.filter(Number.isFinite);
  return { median: median(finite), min: min(finite), max: max(finite), n: finite.length, values: finite };
}

export function statOf(
  record: RunRecord,
  method: string,
  sizeMB?: number,
  pick: (s: Sample) => number = s => s.seconds
): Stat {
  return stat(samples(record, method, sizeMB).map(pick));
}

export function detail(key: string): (s: Sample) => number {
  return s => (s.detail[key] === undefined ? NaN : Number(s.detail[key]));
}

export const sec = (v: number) => (Number.isFinite(v) ? `${v.toFixed(Math.abs(v) < 10 ? 2 : 1)} s` : 'n/a');
export const mb = (bytes: number | undefined) =>
  bytes !== undefined && Number.isFinite(bytes) ? `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 0)} MB` : 'n/a';
export const x = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a');
export const spread = (s: Stat) =>
  s.n === 0 ? 'no sample' : s.n === 1 ? 'n=1' : `${sec(s.min)} – ${sec(s.max)}, n=${s.n}`;
export const signed = (v: number) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(2)} s` : 'n/a');

/** Ratios of the same repetition (paired), as a range, to show how stable a ratio of medians is. */
export function pairedRatios(
  record: RunRecord,
  num: string,
  den: string,
  sizeMB: number | undefined,
  pickNum = (s: Sample) => s.seconds,
  pickDen = (s: Sample) => s.seconds
): Stat {
  const ratios: number[] = [];
  for (const a of samples(record, num, sizeMB)) {
    const b = samples(record, den, sizeMB).find(s => s.rep === a.rep);
    if (b) ratios.push(pickNum(a) / pickDen(b));
  }
  return stat(ratios);
}

export function ratioRange(s: Stat): string {
  return s.n === 0 ? 'n/a' : s.n === 1 ? x(s.median) : `${x(s.min)}–${x(s.max)}`;
}
