// Assertions on steps of the emulated runner, shared by the integration suites.
import type { StepResult } from './runner';

type StepOutput = Pick<StepResult, 'exitCode' | 'stdout' | 'stderr'>;

/** Workflow commands are %-escaped; this reads their messages back. */
export function commands(stdout: string, kind: 'error' | 'warning' | 'debug'): string[] {
  return stdout
    .split('\n')
    .filter(line => line.startsWith(`::${kind}`))
    .map(line =>
      line
        .slice(line.indexOf('::', 2) + 2)
        .replace(/%0A/g, '\n')
        .replace(/%0D/g, '\r')
        .replace(/%25/g, '%')
    );
}

/** Asserts the step's exit code, showing its output when it is not the expected one. */
export function expectExit(step: StepOutput, code: number, what: string): void {
  if (step.exitCode !== code) {
    throw new Error(
      `${what}: exit code ${step.exitCode}, expected ${code}.\n--- stdout\n${step.stdout}\n--- stderr\n${step.stderr}`
    );
  }
}

/** Main succeeded without a warning. */
export function expectCleanMain(main: StepResult): void {
  expectExit(main, 0, 'main');
  expect(commands(main.stdout, 'warning')).toEqual([]);
}

/** Posts succeed, and say nothing went wrong while cleaning (post only ever warns). */
export function expectCleanPosts(posts: StepResult[], count: number): void {
  expect(posts).toHaveLength(count);
  for (const post of posts) {
    expectExit(post, 0, 'post');
    expect(commands(post.stdout, 'warning')).toEqual([]);
    expect(commands(post.stdout, 'error')).toEqual([]);
  }
}
