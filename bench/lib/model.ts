// What a run records: every sample with its repetition and position, the levels of content, the
// machine. results.json is exactly this; results.md and the SVG are computed from it.

import type { FsInfo } from './scratch';

/** S1 cold start, S2 warm start, S3 post, S4 scaling, S5 back to back on the host's filesystem. */
export type Scenario = 'S1' | 'S2' | 'S3' | 'S4' | 'S5' | 'probe' | 'seed';

export interface Sample {
  scenario: Scenario;
  method: string;
  /** The level's target size (MB) for data-bearing methods. */
  sizeMB?: number;
  rep: number;
  /** Position of this method in its repetition's order (the order rotates from repetition to repetition). */
  order: number;
  seconds: number;
  detail: Record<string, number | string | boolean>;
}

export interface Failure {
  scenario: Scenario;
  method: string;
  sizeMB?: number;
  rep: number;
  error: string;
}

export interface LevelInfo {
  targetMB: number;
  images: string[];
  /** Images this level's seeding job loaded on top of the previous level's cache. */
  added: string[];
  /** From the outer engine's unpacked image sizes (base + images). */
  estimatedBytes: number;
  /** The cache entry restored for this level (newest under its key prefix). */
  key?: string;
  prefix?: string;
  version?: string;
  /** Its manifest entry's size. */
  manifestBytes?: number;
  /** Parts the state spreads over. */
  parts?: number;
  /** Distinct frames its chunks use, and their compressed bytes: what a restore downloads. */
  frames?: number;
  compressedBytes?: number;
  /** Those frames decompressed (frames × 1 MiB): what the raw pipeline writes. */
  uniqueBytes?: number;
  /** Chunks × 1 MiB: what a restore writes into the image (the level's data size). */
  dataBytes?: number;
  /** The filesystem image's size as saved. */
  filesystemBytes?: number;
  /** The populated floor's /var/lib/docker: the level's images loaded by a plain dockerd (run.ts populate). */
  populated?: string;
  /** Bytes of the docker save archive of its images (scenario 2c). */
  archiveBytes?: number;
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  /** The run's own filesystem, where every method but scenario 5's writes. */
  scratch?: FsInfo & { file: string; device: string; mkfs: string };
  /** The host's filesystem (scenario 5's job roots, the cache service emulation's files). */
  hostFs?: FsInfo;
  tempDir: string;
  hostDir?: string;
  engine: string;
  dindImage: string;
  dindImageId: string;
  innerDocker?: string;
  tools: Record<string, string>;
  git: string;
  distBuilt: string;
}

export interface Config {
  /** BENCH_METHODS: only these methods (development); undefined: all. */
  methods?: string[];
  /** The cache service emulation during measurements: download cap per response, latency per RPC. */
  capBytesPerSecond: number;
  /** The parallel comparison's second cap per download response, where the network is the limit. */
  slowCapBytesPerSecond?: number;
  rpcLatencyMs: number;
  /** Parallel streams of the raw pipeline (the action's RESTORE_CONNECTIONS). */
  streams: number;
  reps: number;
  s1Reps: number;
  sizesMB: number[];
  warmTargetMB: number;
  quick: boolean;
  keepImages: boolean;
}

export interface RunRecord {
  startedAt: string;
  finishedAt?: string;
  durationSeconds?: number;
  config: Config;
  machine?: Machine;
  levels: LevelInfo[];
  /** Set-up steps (not measurements): name → seconds. */
  setup: Record<string, number>;
  samples: Sample[];
  failures: Failure[];
  notes: string[];
}
