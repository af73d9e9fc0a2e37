// Human-readable sizes in binary units, the way Docker prints them, durations and ids.
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

export const HOUR_MS = 3_600_000;

/** Milliseconds per duration unit, largest first. */
const DURATION_UNITS: Array<[string, number]> = [
  ['w', 168 * HOUR_MS],
  ['d', 24 * HOUR_MS],
  ['h', HOUR_MS],
  ['m', 60_000],
  ['s', 1000]
];

/** `7d`, `12h`, `1.5w` (case-insensitive) in milliseconds; NaN if it is not one. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([wdhms])$/i.exec(text.trim());
  const unit = match ? DURATION_UNITS.find(([name]) => name === match[2].toLowerCase()) : undefined;
  return match && unit ? Number(match[1]) * unit[1] : NaN;
}

/** In the largest unit that keeps it at least 1: `1w`, `1.5d`. */
export function formatDuration(ms: number): string {
  const [name, size] = DURATION_UNITS.find(([, size]) => ms >= size) ?? ['s', 1000];
  return `${Number((ms / size).toFixed(1))}${name}`;
}

/** The 12-character form Docker prints of a container id or a content hash. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}
