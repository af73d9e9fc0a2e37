// What every part of a run shares: its record, its configuration, its directories and dind image, its
// clean-up, and the harness of a measurement (one sample, or a failure) and of an action job.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BenchJob, jobRoot, type TimedStep } from './action';
import { Cleanup } from './cleanup';
import { removeImage } from './content';
import type { Config, Failure, LevelInfo, RunRecord, Sample, Scenario } from './model';
import { docker, now, run } from './proc';

export const REPO_ROOT = path.resolve(__dirname, '../..');
export const TEST_IMAGE = 'setup-dind-test/dind:trixie';
export const BENCH_LABEL = 'io.github.setup-dind.bench';
/** Skip a method for the rest of the run after this many failures. */
export const MAX_FAILURES = 2;

export const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
export const cleanup = new Cleanup();

export let record: RunRecord;
export let cfg: Config;
/** On the run's filesystem: every job root, archive, store and output of the methods. */
export let tempDir = '';
/** On the host's own filesystem: scenario 5's job roots and the host's disk probe. */
export let hostDir = '';
/** Where the run's filesystem is mounted. */
export let scratchMount = '';
export let image = '';
export const skipped = new Map<string, number>();

/** The run begins: its configuration, and its record, empty. */
export function begin(given: Config): void {
  cfg = given;
  record = {
    startedAt: new Date().toISOString(),
    config: cfg,
    levels: [],
    setup: {},
    samples: [],
    failures: [],
    notes: []
  };
}

/** Where the run writes, once its filesystem is made. */
export function useDirs(dirs: { scratchMount: string; tempDir: string; hostDir: string }): void {
  ({ scratchMount, tempDir, hostDir } = dirs);
}

export function log(message: string): void {
  const elapsed = record ? ((Date.now() - Date.parse(record.startedAt)) / 1000).toFixed(0).padStart(5) : '';
  console.log(`[${elapsed} s] ${message}`);
}

export function wanted(method: string): boolean {
  return !cfg.methods || cfg.methods.includes(method);
}

export async function setupStep<T>(name: string, run: () => Promise<T>): Promise<T> {
  const started = now();
  log(`${name}…`);
  const result = await run();
  record.setup[name] = now() - started;
  return result;
}

/** Between measurements: flush what the previous one wrote, so that its writeback does not land in the next. */
export async function settle(): Promise<void> {
  await run('sync', []);
}

export function addSample(sample: Omit<Sample, 'detail'> & { detail?: Sample['detail'] }): void {
  record.samples.push({ ...sample, detail: sample.detail ?? {} });
}

/** Runs one measurement; a failure is recorded (and the method skipped once it failed MAX_FAILURES times). */
export async function measure(
  scenario: Scenario,
  method: string,
  rep: number,
  order: number,
  sizeMB: number | undefined,
  body: () => Promise<{ seconds: number; detail?: Sample['detail'] }>
): Promise<void> {
  const id = `${scenario}/${method}/${sizeMB ?? ''}`;
  if ((skipped.get(id) ?? 0) >= MAX_FAILURES) return;
  try {
    const { seconds, detail } = await body();
    addSample({ scenario, method, sizeMB, rep, order, seconds, detail });
    log(`  ${scenario} ${method}${sizeMB ? ` @${sizeMB} MB` : ''} rep ${rep + 1}: ${seconds.toFixed(2)} s`);
  } catch (error) {
    const message = (error as Error).message;
    record.failures.push({ scenario, method, sizeMB, rep, error: message } satisfies Failure);
    skipped.set(id, (skipped.get(id) ?? 0) + 1);
    log(`  ${scenario} ${method}${sizeMB ? ` @${sizeMB} MB` : ''} rep ${rep + 1} FAILED: ${message}`);
  }
  await settle();
}

/** A job of the action, its root under `under`; removed (post, labelled leftovers, directories) whatever happens. */
export async function withJob<T>(
  name: string,
  env: Record<string, string>,
  body: (job: BenchJob) => Promise<T>,
  under = tempDir
): Promise<T> {
  // A HOME of its own: jobs of the set-up run at once, and each main makes its Docker context there.
  const root = jobRoot(under, name);
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const job = new BenchJob(root, { HOME: home, ...env });
  const dispose = cleanup.add(`remove job ${name}`, () => job.dispose());
  try {
    return await body(job);
  } finally {
    await dispose();
  }
}

export function phaseDetail(step: TimedStep, prefix = ''): Sample['detail'] {
  const detail: Sample['detail'] = {};
  for (const [title, seconds] of Object.entries(step.phases))
    detail[`${prefix}phase: ${title.split(image).join('<image>')}`] = seconds;
  const phases = Object.values(step.phases).reduce((s, v) => s + v, 0);
  detail[`${prefix}outside phases (node start-up, input parsing, exit)`] = step.seconds - phases;
  return detail;
}

/** "<bytes> in <s> (hit; X downloaded, Y from the cache directory): <key>" → its seconds and its text. */
export function restoreFact(step: TimedStep): { restoreSeconds: number; restoreFact: string } {
  const fact = step.facts['Cache restored'] ?? '';
  const seconds = /in ([\d.]+) s/.exec(fact);
  return { restoreSeconds: seconds ? Number(seconds[1]) : NaN, restoreFact: fact };
}

export const WARM_INPUTS = (level: LevelInfo) => ({
  image,
  pull: 'never',
  cache: 'true',
  'cache-key': `L${level.targetMB}`
});
export const COLD_INPUTS = () => ({ image, pull: 'never', cache: 'false' });

export type Measured = { seconds: number; detail?: Sample['detail'] };

export function removeOnCleanup(id: string): () => Promise<void> {
  return cleanup.add(
    `remove floor container ${id.slice(0, 12)}`,
    async () => void (await docker(['rm', '--force', '--volumes', id], { allowFail: true }))
  );
}

export async function prepareImage(): Promise<void> {
  const present = await docker(['image', 'inspect', TEST_IMAGE], { allowFail: true });
  if (present.code !== 0) {
    log(`${TEST_IMAGE} is missing: building it with test/dind-image/build.sh`);
    await run('bash', [path.join(REPO_ROOT, 'test/dind-image/build.sh')], { timeoutMs: 20 * 60_000 });
  }
  // Our own tag on the same image: the tests may rebuild theirs meanwhile, which must not change what we run.
  image = `setup-dind-bench/dind:${runId}`;
  await docker(['tag', TEST_IMAGE, image]);
  cleanup.add(`remove tag ${image}`, () => removeImage(image));
}
