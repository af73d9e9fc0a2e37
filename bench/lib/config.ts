// The run's configuration, from the environment's knobs (bench/README.md): repetitions, sizes, methods.
import { RESTORE_CONNECTIONS } from '../../src/cache/image/write';
import type { Config } from './model';

const ALL_METHODS = [
  'action-cold',
  'floor',
  'official-tls',
  'action-tls',
  'action-warm',
  'floor-populated',
  'raw',
  'single-stream',
  'action-warm-slow',
  'single-stream-slow',
  'load',
  'pull',
  'cache-dir',
  'save-full',
  'save-raw',
  'save-layer',
  'save-tag',
  'download',
  'zstd',
  'write',
  'host-warm',
  'host-load'
];

export function config(): Config {
  const quick = /^(1|true|yes)$/i.test(process.env.BENCH_QUICK ?? '');
  const reps = Number(process.env.BENCH_REPS ?? (quick ? 1 : 3));
  if (!Number.isInteger(reps) || reps < 1)
    throw new Error(`BENCH_REPS must be a positive integer, got '${process.env.BENCH_REPS}'`);
  const sizesMB = (process.env.BENCH_SIZES ?? (quick ? '125,135' : '100,250,1000,2000'))
    .split(',')
    .map(s => Number(s.trim()))
    .sort((a, b) => a - b);
  if (sizesMB.some(s => !(s > 0)))
    throw new Error(`BENCH_SIZES must be a comma-separated list of sizes in MB, got '${process.env.BENCH_SIZES}'`);
  const methods = process.env.BENCH_METHODS?.split(',')
    .map(m => m.trim())
    .filter(Boolean);
  const unknown = methods?.filter(m => !ALL_METHODS.includes(m)) ?? [];
  if (unknown.length > 0)
    throw new Error(`BENCH_METHODS: unknown method(s) ${unknown.join(', ')}; known: ${ALL_METHODS.join(', ')}`);
  const warmTargetMB = sizesMB.reduce((best, s) => (Math.abs(s - 1000) < Math.abs(best - 1000) ? s : best), sizesMB[0]);
  return {
    methods: methods && methods.length > 0 ? methods : undefined,
    capBytesPerSecond: 60e6,
    slowCapBytesPerSecond: 10e6,
    rpcLatencyMs: 20,
    streams: RESTORE_CONNECTIONS,
    reps,
    s1Reps: quick ? 1 : Math.max(reps, 5),
    sizesMB,
    warmTargetMB,
    quick,
    keepImages: /^(1|true|yes)$/i.test(process.env.BENCH_KEEP_IMAGES ?? '')
  };
}
