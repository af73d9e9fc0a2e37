// The one job API of the integration suites: a job of the emulated runner (runner.ts) with the test
// defaults, its instances recorded for the sweep that removes what a failed test left, and the checks
// every suite makes of main, post and what is left behind.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CacheServer, CacheServerStats } from './cache-server';
import { labelled, namedLike, OUTER_SOCKET, Sweeper, TEST_IMAGE, type Started } from './engine';
import { account, Job, type StepResult } from './runner';
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

/** Six hex digits: a name of a test's own (a container, context or cache key no other test or job uses). */
export function unique(): string {
  return randomBytes(3).toString('hex');
}

/** The port of main's `host` output, which must be tcp://127.0.0.1:<port>. */
export function portOf(host: string): number {
  const match = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(host);
  if (!match) throw new Error(`host output '${host}' is not tcp://127.0.0.1:<port>`);
  return Number(match[1]);
}

/** The names of the Docker CLI contexts a job's steps see (the CLI's own `default` among them), sorted. */
export async function contextNames(job: { run(script: string): Promise<StepResult> }): Promise<string[]> {
  const listed = await job.run(`${NO_DOCKER_ENV} docker context ls --format '{{.Name}}'`);
  expectExit(listed, 0, 'docker context ls');
  return listed.stdout
    .split('\n')
    .map(line => line.replace(/\s*\*$/, '').trim())
    .filter(Boolean)
    .sort();
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

/**
 * Records the instance a main step saved in its state (if it got that far) for `sweepAll`; `home` is the
 * HOME of the job's steps (its Docker CLI context and buildx builder). TestJob does this for its mains.
 */
export function recordInstance(main: StepResult, home: string): Started | undefined {
  return sweeper.record(main.state, home);
}

/** Removes what failed tests left behind; call from each suite's afterAll. */
export async function sweepAll(): Promise<void> {
  const removed = await sweeper.sweep();
  if (removed.length > 0) console.warn(`Swept what failed tests left behind:\n  ${removed.join('\n  ')}`);
}

/**
 * Nothing of the instance is left: no container, network or volume labelled with it on the outer engine,
 * neither its certificates nor its data directory at `certDir` (where this machine sees them).
 */
export async function expectInstanceGone(started: Started, certDir = started.certDir): Promise<void> {
  expect(await labelled(started.id)).toEqual({ containers: [], networks: [], volumes: [] });
  for (const dir of [certDir, `${certDir}-data`])
    expect({ dir, exists: fs.existsSync(dir) }).toEqual({ dir, exists: false });
}

export interface JobOptions {
  /** Run the job's steps as this user (its HOME is the user's); else as this process, with a HOME of the job's own. */
  user?: string;
  /** The HOME of the job's steps, when not the user's nor one of the job's own (two jobs of one runner user). */
  home?: string;
  /** The cache service the job may use (its environment); none by default. */
  cache?: CacheServer;
  env?: Record<string, string>;
}

/** A main step, whatever its outcome. */
export interface MainRun {
  result: StepResult;
  outputs: Record<string, string>;
  /** The instance, if main got as far as saving it in its state. */
  started?: Started;
  warnings: string[];
  errors: string[];
}

/** A main step that saved its instance. */
export interface MainStep extends MainRun {
  started: Started;
  /** The instance's data directory on the runner (next to its certificates). */
  dataDir: string;
}

/** A main step while it runs: its process, its state so far, and the main step once it has ended. */
export interface RunningMain {
  child: ChildProcess;
  /** A plain function (no `this`): it is handed on detached from the step. */
  state: () => Record<string, string>;
  done: Promise<MainRun>;
}

/** A job of the suite: main with the test defaults, `run:` steps, and a post that must leave nothing. */
export class TestJob {
  readonly job: Job;
  readonly home: string;
  private instances: Started[] = [];

  constructor(options: JobOptions = {}) {
    this.job = new Job({
      env: { ...(options.cache?.env ?? {}), ...(options.env ?? {}) },
      ...(options.user ? { runAs: { user: options.user } } : {})
    });
    this.home = options.user ? account(options.user).home : this.job.ownHome(options.home);
  }

  get root(): string {
    return this.job.root;
  }

  get temp(): string {
    return this.job.temp;
  }

  get workspace(): string {
    return this.job.workspace;
  }

  /** The job's environment: what later steps get (main's exports among it). */
  get env(): Record<string, string> {
    return this.job.env;
  }

  /** Main with BASE_INPUTS under `inputs`, whatever its outcome; its instance, if any, is checked by `post`. */
  async runMain(inputs: Record<string, string> = {}): Promise<MainRun> {
    return this.mainRun(await this.job.runMain({ ...BASE_INPUTS, ...inputs }));
  }

  /**
   * Main as `runMain`, handed back while it runs, with `nodeArgs` before the entry point (a `-r`
   * preload): a test reads its state as it goes, or kills it. Its post is queued with the state written.
   */
  startMain(inputs: Record<string, string> = {}, nodeArgs: string[] = []): RunningMain {
    const running = this.job.startMain({ ...BASE_INPUTS, ...inputs }, nodeArgs);
    return { child: running.child, state: running.state, done: running.done.then(result => this.mainRun(result)) };
  }

  /** Main as `runMain`; fails the test unless it exits with `exitCode` and saved its instance. */
  async main(inputs: Record<string, string> = {}, exitCode = 0): Promise<MainStep> {
    const main = await this.runMain(inputs);
    expectExit(main.result, exitCode, 'main');
    // Node's warnings land in the user's log (docker-modem's url.parse deprecation did, on Node 24).
    expect(main.result.stderr).not.toMatch(/Warning:/);
    if (!main.started) throw new Error(`main saved no instance state:\n${main.result.stdout}\n${main.result.stderr}`);
    return { ...main, started: main.started, dataDir: `${main.started.certDir}-data` };
  }

  private mainRun(result: StepResult): MainRun {
    const started = sweeper.record(result.state, this.home);
    if (started) this.instances.push(started);
    return {
      result,
      outputs: result.outputs,
      started,
      warnings: commands(result.stdout, 'warning'),
      errors: commands(result.stdout, 'error')
    };
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
   * there are `count` of them (when given), and nothing is left (`expectNothingLeft`).
   */
  async post(options: { warnings?: number; count?: number } = {}): Promise<StepResult[]> {
    const posts = await this.job.finish();
    if (options.count !== undefined) expect(posts).toHaveLength(options.count);
    for (const post of posts) {
      expectExit(post, 0, 'post');
      expect(commands(post.stdout, 'error')).toEqual([]);
      expect(post.stderr).not.toMatch(/Warning:/);
      if (options.warnings !== undefined) expect(commands(post.stdout, 'warning')).toHaveLength(options.warnings);
    }
    await this.expectNothingLeft();
    return posts;
  }

  /** A post step with this state, outside of the job's queue (the runner runs none such: a test's own). */
  runPost(state: Record<string, string>, inputs: Record<string, string> = {}): Promise<StepResult> {
    return this.job.runPost(state, inputs);
  }

  /**
   * Main refused before making anything: it exited 1 with one error, saved no state and set no output
   * or variable; no container or network is named after it (`setup-dind-<name>-`), RUNNER_TEMP is empty
   * and the job's HOME has no Docker CLI contexts; its post has nothing to clean up. Returns the error.
   */
  async expectRefused(main: MainRun, name: string): Promise<string> {
    expectExit(main.result, 1, 'main');
    expect(main.errors).toHaveLength(1);
    expect(main.started).toBeUndefined();
    expect({ state: main.result.state, outputs: main.outputs, exported: main.result.exported }).toEqual({
      state: {},
      outputs: {},
      exported: {}
    });
    expect(await namedLike(`setup-dind-${name}-`)).toEqual({ containers: [], networks: [] });
    expect(fs.readdirSync(this.job.temp)).toEqual([]);
    expect(fs.existsSync(path.join(this.home, '.docker', 'contexts'))).toBe(false);
    const [post] = await this.post({ warnings: 0, count: 1 });
    expect(post.stdout).toMatch(/Nothing to clean up/);
    return main.errors[0];
  }

  /** Every instance the job's mains started is gone (`expectInstanceGone`), and RUNNER_TEMP is empty. */
  async expectNothingLeft(): Promise<void> {
    for (const started of this.instances) await expectInstanceGone(started);
    expect(fs.readdirSync(this.job.temp)).toEqual([]);
  }

  /**
   * Whatever happened: the posts still queued (unchecked), then `beforeCleanup` (a file system to
   * unmount), then the job's directories.
   */
  async dispose(beforeCleanup?: () => Promise<unknown>): Promise<void> {
    await this.job.finish().catch(() => undefined);
    await beforeCleanup?.();
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
