// The one job API of the integration suites: a job of the emulated runner (runner.ts) with the test
// defaults, its instances recorded for the sweep that removes what a failed test left, and the checks
// every suite makes of main, post and what is left behind.
import * as fs from 'node:fs';
import type { CacheServer, CacheServerStats } from './cache-server';
import { labelled, OUTER_SOCKET, Sweeper, TEST_IMAGE, type Started } from './engine';
import { Job, type StepResult } from './runner';
import { commands, expectExit } from './steps';

/** What every test passes to main unless it says otherwise: the local image, no registry, no cache. */
export const BASE_INPUTS: Record<string, string> = { image: TEST_IMAGE, pull: 'never', cache: 'false' };
/** Hides the exported variables, which override any context or -H. */
export const NO_DOCKER_ENV = 'env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT';
/** The runner's own engine, from a step, whatever main exported. */
export const OUTER_DOCKER = `${NO_DOCKER_ENV} docker -H ${OUTER_SOCKET}`;
/** The inner daemon has no buildx: the classic builder. */
export const BUILD = 'DOCKER_BUILDKIT=0 docker build --quiet';

/** A step's way to get an image of the runner's engine into the daemon: nothing can be pulled here. */
export function loadFromOuter(...images: string[]): string {
  return `${OUTER_DOCKER} save ${images.join(' ')} | docker load --quiet`;
}

export interface Account {
  uid: number;
  gid: number;
  home: string;
}

/** A user of this machine (../shared/docker-host/up makes `runner` and `runner-nosudo`). */
export function account(user: string): Account {
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(line => line.startsWith(`${user}:`));
  if (!entry) throw new Error(`No user ${user} on this machine: run ../shared/docker-host/up first.`);
  const fields = entry.split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] };
}

/** The rows of a step summary's tables: phase → time, fact → value. */
export function summaryRows(summary: string): Record<string, string> {
  const rows: Record<string, string> = {};
  for (const match of summary.matchAll(/<tr><td>([\s\S]*?)<\/td><td>([\s\S]*?)<\/td><\/tr>/g)) {
    rows[match[1].replace(/^(✅|❌) /, '')] = match[2];
  }
  return rows;
}

/** How a cache server's counters moved. */
export function delta(
  before: CacheServerStats,
  after: CacheServerStats
): Partial<Record<keyof CacheServerStats, number>> {
  const moved: Partial<Record<keyof CacheServerStats, number>> = {};
  for (const [name, value] of Object.entries(after)) {
    const was = before[name as keyof CacheServerStats];
    if (typeof value === 'number' && typeof was === 'number') moved[name as keyof CacheServerStats] = value - was;
  }
  return moved;
}

/** Every instance the suite's mains started, for `sweepAll` in an afterAll. */
const sweeper = new Sweeper();

/** Removes what failed tests left behind; call from each suite's afterAll. */
export async function sweepAll(): Promise<void> {
  const removed = await sweeper.sweep();
  if (removed.length > 0) console.warn(`Swept what failed tests left behind:\n  ${removed.join('\n  ')}`);
}

export interface JobOptions {
  /** Run the job's steps as this user (its HOME is the user's); else as this process, with a HOME of the job's own. */
  user?: string;
  /** The cache service the job may use (its environment); none by default. */
  cache?: CacheServer;
  env?: Record<string, string>;
}

export interface MainStep {
  result: StepResult;
  outputs: Record<string, string>;
  started: Started;
  /** The instance's data directory on the runner (next to its certificates). */
  dataDir: string;
  warnings: string[];
}

/** A job of the suite: main with the test defaults, `run:` steps, and a post that must leave nothing. */
export class TestJob {
  readonly job: Job;
  readonly home: string;
  private mains: MainStep[] = [];

  constructor(options: JobOptions = {}) {
    this.job = new Job({
      env: { ...(options.cache?.env ?? {}), ...(options.env ?? {}) },
      ...(options.user ? { runAs: { user: options.user } } : {})
    });
    this.home = options.user ? account(options.user).home : this.job.ownHome();
  }

  get temp(): string {
    return this.job.temp;
  }

  get workspace(): string {
    return this.job.workspace;
  }

  /** Main with BASE_INPUTS under `inputs`; fails the test unless it exits with `exitCode`. */
  async main(inputs: Record<string, string> = {}, exitCode = 0): Promise<MainStep> {
    const result = await this.job.runMain({ ...BASE_INPUTS, ...inputs });
    const started = sweeper.record(result.state, this.home);
    expectExit(result, exitCode, 'main');
    if (!started) throw new Error(`main saved no instance state:\n${result.stdout}\n${result.stderr}`);
    const main = {
      result,
      outputs: result.outputs,
      started,
      dataDir: `${started.certDir}-data`,
      warnings: commands(result.stdout, 'warning')
    };
    this.mains.push(main);
    return main;
  }

  /** A `run:` step (bash, -o pipefail) that must succeed. */
  async step(script: string, what = 'step'): Promise<StepResult> {
    const result = await this.job.run(`set -o pipefail\n${script}`);
    expectExit(result, 0, what);
    return result;
  }

  /** A `run:` step whatever its exit code. */
  run(script: string, env: Record<string, string> = {}): Promise<StepResult> {
    return this.job.run(script, env);
  }

  /**
   * Runs the posts and checks them: each exits 0, says no error, warns `warnings` times (when given),
   * and every instance is gone: labelled containers, networks and volumes, its data directory and
   * certificates, and nothing at all is left in RUNNER_TEMP.
   */
  async post(options: { warnings?: number } = {}): Promise<StepResult[]> {
    const posts = await this.job.finish();
    for (const post of posts) {
      expectExit(post, 0, 'post');
      expect(commands(post.stdout, 'error')).toEqual([]);
      if (options.warnings !== undefined) expect(commands(post.stdout, 'warning')).toHaveLength(options.warnings);
    }
    for (const main of this.mains) {
      expect(await labelled(main.started.id)).toEqual({ containers: [], networks: [], volumes: [] });
      expect({ dataDir: main.dataDir, exists: fs.existsSync(main.dataDir) }).toEqual({
        dataDir: main.dataDir,
        exists: false
      });
      expect(fs.existsSync(main.started.certDir)).toBe(false);
    }
    expect(fs.readdirSync(this.job.temp)).toEqual([]);
    return posts;
  }

  /** Whatever happened: the posts still queued (unchecked), then the job's directories. */
  async dispose(): Promise<void> {
    await this.job.finish().catch(() => undefined);
    this.job.cleanup();
  }
}

/** Runs `body` with a new job, disposing of it however the body ends. */
export async function withJob<T>(options: JobOptions, body: (job: TestJob) => Promise<T>): Promise<T> {
  const job = new TestJob(options);
  try {
    return await body(job);
  } finally {
    await job.dispose();
  }
}
