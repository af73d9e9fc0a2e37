// The action as a job runs it (test/support/runner.ts runs dist/ with the runner's contract), timed
// from outside, with its own phase times read from the job summary it writes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Job, StepResult } from '../../test/support/runner';
import { docker, now, tail } from './proc';

const INSTANCE_LABEL = 'io.github.setup-dind.instance';

let JobClass: typeof Job | undefined;

/** The runner emulation's Job class to use (a copy of it, next to a copy of dist/). */
export function useRunner(job: typeof Job): void {
  JobClass = job;
}

/** Steps that finished their work but died on their way out (a bug of the action to report, not hide). */
export const crashes: string[] = [];

export interface TimedStep {
  seconds: number;
  /** When the step's node was spawned (ms since the epoch). */
  startedAt: number;
  result: StepResult;
  /** Phase title (without the status mark) → seconds, from the summary table. */
  phases: Record<string, number>;
  /** Other summary rows (name → value). */
  facts: Record<string, string>;
}

/** Reads the summary's tables: phase rows have a time cell ("1.23 s"), fact rows anything else. */
function parseSummary(html: string): { phases: Record<string, number>; facts: Record<string, string> } {
  const phases: Record<string, number> = {};
  const facts: Record<string, string> = {};
  for (const row of html.match(/<tr>[\s\S]*?<\/tr>/g) ?? []) {
    const cells = [...row.matchAll(/<td>([\s\S]*?)<\/td>/g)].map(match => match[1].trim());
    if (cells.length !== 2) continue;
    const time = /^([\d.]+) s$/.exec(cells[1]);
    const name = cells[0].replace(/^(✅|❌)\s*/u, '');
    if (time) phases[name] = Number(time[1]);
    else facts[name] = cells[1];
  }
  return { phases, facts };
}

/** The first phase whose title starts with `prefix`. */
export function phase(step: TimedStep | undefined, prefix: string): number {
  if (!step) return NaN;
  const found = Object.entries(step.phases).find(([title]) => title.startsWith(prefix));
  return found ? found[1] : NaN;
}

function warnings(result: StepResult): string[] {
  return result.stdout.split('\n').filter(line => line.startsWith('::warning'));
}

/** A job of the benchmark: tracks what the action made so that cleanup can remove it whatever happens. */
export class BenchJob {
  readonly job: Job;
  readonly instanceIds: string[] = [];
  private finished = false;

  constructor(root: string, env: Record<string, string>) {
    if (!JobClass) throw new Error('useRunner() first');
    this.job = new JobClass({ root, env });
  }

  /** Main; fails when the step fails or warns (a warning means a cache restore or a step went wrong). */
  async main(inputs: Record<string, string>, options: { allowWarnings?: boolean } = {}): Promise<TimedStep> {
    const started = now();
    const startedAt = Date.now();
    const result = await this.job.runMain(inputs);
    const seconds = now() - started;
    const instance = result.state.instance
      ? (JSON.parse(result.state.instance) as { instance?: { id?: string } }).instance?.id
      : undefined;
    if (instance) this.instanceIds.push(instance);
    if (result.exitCode !== 0) {
      // A main that did all its work (its outputs are written) and then died by a signal on its way
      // out: counted and reported, not fatal to the benchmark.
      const signal = /\[killed by (SIG\w+)\]/.exec(result.stderr)?.[1];
      if (!(signal && result.outputs.version))
        throw new Error(`main failed (exit ${result.exitCode}): ${tail(result.stdout + result.stderr, 12)}`);
      crashes.push(`main exited by ${signal} (exit ${result.exitCode}) after the daemon answered`);
    }
    if (!options.allowWarnings && warnings(result).length > 0)
      throw new Error(`main warned: ${warnings(result).join(' | ')}`);
    return { seconds, startedAt, result, ...parseSummary(result.summary) };
  }

  /** A `run:` step with the job's environment (DOCKER_HOST etc. of the dind daemon). */
  async step(script: string, env: Record<string, string> = {}): Promise<{ seconds: number; result: StepResult }> {
    const started = now();
    const result = await this.job.run(`set -o pipefail\n${script}`, env);
    const seconds = now() - started;
    if (result.exitCode !== 0)
      throw new Error(`step failed (exit ${result.exitCode}): ${tail(result.stderr || result.stdout, 8)}`);
    return { seconds, result };
  }

  /** The queued post step(s); returns the last one timed. */
  async post(): Promise<TimedStep> {
    this.finished = true;
    const startedAt = Date.now();
    const started = now();
    const results = await this.job.finish();
    const seconds = now() - started;
    const result = results[results.length - 1];
    if (!result) throw new Error('no post step ran');
    if (result.exitCode !== 0) {
      const signal = /\[killed by (SIG\w+)\]/.exec(result.stderr)?.[1];
      if (!(signal && /Removed \d+ container/.test(result.stdout)))
        throw new Error(`post failed (exit ${result.exitCode}): ${tail(result.stdout + result.stderr, 12)}`);
      crashes.push(`post exited by ${signal} (exit ${result.exitCode}) after it removed everything`);
    }
    if (warnings(result).length > 0) throw new Error(`post warned: ${warnings(result).join(' | ')}`);
    return { seconds, startedAt, result, ...parseSummary(result.summary) };
  }

  /**
   * Removes whatever is left: runs the post if it has not run (it stops and removes the daemon), then
   * force-removes anything still labelled with this job's instance ids, then the job's directories.
   */
  async dispose(): Promise<void> {
    if (!this.finished) {
      this.finished = true;
      await this.job.finish().catch(error => console.warn(`  (cleanup) post failed: ${(error as Error).message}`));
    }
    for (const id of this.instanceIds) {
      const filter = ['--filter', `label=${INSTANCE_LABEL}=${id}`];
      const containers = (await docker(['ps', '--all', '--quiet', ...filter], { allowFail: true })).stdout
        .split('\n')
        .filter(Boolean);
      for (const container of containers) await docker(['rm', '--force', '--volumes', container], { allowFail: true });
      const networks = (await docker(['network', 'ls', '--quiet', ...filter], { allowFail: true })).stdout
        .split('\n')
        .filter(Boolean);
      for (const network of networks) await docker(['network', 'rm', network], { allowFail: true });
      const volumes = (await docker(['volume', 'ls', '--quiet', ...filter], { allowFail: true })).stdout
        .split('\n')
        .filter(Boolean);
      for (const volume of volumes) await docker(['volume', 'rm', '--force', volume], { allowFail: true });
    }
    fs.rmSync(this.job.root, { recursive: true, force: true });
  }
}

/** A fresh job root under the run's temp dir. */
export function jobRoot(tempDir: string, name: string): string {
  return fs.mkdtempSync(path.join(tempDir, `job-${name}-`));
}
