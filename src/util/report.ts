// Logs that read as the action's story: one collapsible group per phase with its duration, and the
// same phases as a table in the job summary.
import * as core from '@actions/core';
import { errorMessage } from './errors';

interface PhaseRecord {
  title: string;
  seconds: number;
  outcome: 'done' | 'failed';
}

export function formatSeconds(seconds: number): string {
  return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
}

export class Timeline {
  private readonly phases: PhaseRecord[] = [];
  private readonly facts: Array<[string, string]> = [];

  /** Runs one phase inside a log group and records how long it took. */
  async phase<T>(title: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    return core.group(title, async () => {
      try {
        const result = await run();
        this.record(title, started, 'done');
        return result;
      } catch (error) {
        this.record(title, started, 'failed');
        throw error;
      }
    });
  }

  /** A line of the summary that is not a phase (an address, a version, a cache decision). */
  fact(name: string, value: string): void {
    this.facts.push([name, value]);
  }

  private record(title: string, started: number, outcome: PhaseRecord['outcome']): void {
    const seconds = (performance.now() - started) / 1000;
    this.phases.push({ title, seconds, outcome });
    core.info(`${outcome === 'done' ? 'Done' : 'Failed'} in ${formatSeconds(seconds)}`);
  }

  /** Writes the job summary; a summary that cannot be written is not worth failing for. */
  async writeSummary(heading: string): Promise<void> {
    if (!process.env.GITHUB_STEP_SUMMARY) return;
    try {
      const rows = [
        [
          { data: 'Phase', header: true },
          { data: 'Time', header: true }
        ],
        ...this.phases.map(p => [`${p.outcome === 'done' ? '✅' : '❌'} ${p.title}`, formatSeconds(p.seconds)])
      ];
      const summary = core.summary.addHeading(heading, 3).addTable(rows);
      if (this.facts.length > 0) summary.addTable(this.facts.map(([name, value]) => [name, value]));
      await summary.write();
    } catch (error) {
      core.warning(`Could not write the job summary: ${errorMessage(error)}`);
    }
  }
}
