// What a run records: every sample with its repetition and position, the levels of content, the
// machine. results.json is exactly this; results.md and the SVG are computed from it.

export type Scenario = 'S1' | 'S2' | 'S3' | 'S4' | 'seed';

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
  compressedBytes?: number;
  /** Uncompressed size of the archive: what tar carries. */
  dataBytes?: number;
  /** `du -sb` of the extracted tree (apparent sizes). */
  treeBytes?: number;
  files?: number;
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  disk: string;
  filesystem: string;
  tempDir: string;
  engine: string;
  dindImage: string;
  dindImageId: string;
  innerDocker?: string;
  tools: Record<string, string>;
  git: string;
  distBuilt: string;
}

export interface Config {
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
