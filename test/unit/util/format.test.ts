// Human-readable sizes and durations for logs and the job summary.
import { formatSeconds } from '../../../src/util/report';
import { formatBytes, formatDuration, parseDuration } from '../../../src/util/units';

describe('formatBytes', () => {
  test.each([
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024, '10.0 KiB'],
    [1000 * 1024, '1000.0 KiB'],
    [2 ** 20, '1.00 MiB'],
    [500 * 2 ** 20, '500.0 MiB'],
    [2 ** 30, '1.00 GiB'],
    [1.5 * 2 ** 30, '1.50 GiB'],
    [4 * 2 ** 30, '4.00 GiB'],
    [123.45 * 2 ** 30, '123.5 GiB'],
    [2 ** 40, '1.00 TiB'],
    [2048 * 2 ** 40, '2048.0 TiB']
  ])('%p bytes → %p', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('formatSeconds', () => {
  test.each([
    [0, '0.00 s'],
    [0.004, '0.00 s'],
    [0.126, '0.13 s'],
    [1.234, '1.23 s'],
    [9.5, '9.50 s'],
    [10, '10.0 s'],
    [65.43, '65.4 s'],
    [600, '600.0 s']
  ])('%p → %p', (seconds, text) => {
    expect(formatSeconds(seconds)).toBe(text);
  });
});

describe('parseDuration and formatDuration', () => {
  test.each([
    ['7d', 604_800_000, '1w'],
    ['36h', 129_600_000, '1.5d'],
    ['1.5w', 907_200_000, '1.5w'],
    ['45s', 45_000, '45s'],
    ['90m', 5_400_000, '1.5h'],
    ['1000ms', NaN, undefined]
  ])('%p', (text, ms, formatted) => {
    expect(parseDuration(text)).toBe(ms);
    if (formatted !== undefined) expect(formatDuration(ms)).toBe(formatted);
  });
});
