// A job whose steps run in a container of the outer engine, as the runner runs them in a job container
// (`container:`) or as a runner that is itself a container (a Kubernetes runner pod) runs them: each
// step a `docker exec` with the job's environment, its file commands through files in RUNNER_TEMP,
// which this machine sees too. The action's dist/ is run by the node mounted at /usr/local/bin/node
// (see `actionMounts`), from the repository mounted read-only at its own path.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OUTER_SOCKET, outerEnv, run } from './engine';
import {
  actionNode,
  FILE_COMMANDS,
  inputEnv,
  parseFileCommands,
  readManifest,
  REPO_ROOT,
  runnerEnv,
  stateEnv,
  type StepResult
} from './runner';

/** `docker run` volumes for the action: the repository (dist/) read-only at its path, and node. */
export function actionMounts(): string[] {
  const node = fs.realpathSync(actionNode());
  return ['--volume', `${REPO_ROOT}:${REPO_ROOT}:ro`, '--volume', `${node}:/usr/local/bin/node:ro`];
}

export interface ContainerJobOptions {
  /** The container the steps run in. */
  container: string;
  /** The job's paths inside it. */
  workspace: string;
  temp: string;
  home: string;
  /** Where this machine sees `temp`: the file commands go through it. */
  hostTemp: string;
  /** `docker exec --user`; the container's own user when not given. */
  user?: string;
  /** Added to (or replacing) the job's environment. */
  env?: Record<string, string>;
  /** Of each step; 120 s by default. */
  stepTimeoutMs?: number;
}

/** The steps of one job in a container; what they export (GITHUB_ENV) later steps get. */
export class ContainerSteps {
  readonly env: Record<string, string>;
  private steps = 0;

  constructor(private readonly job: ContainerJobOptions) {
    this.env = { ...runnerEnv(job.workspace, job.temp), HOME: job.home, ...(job.env ?? {}) };
  }

  /** One step in the container; file commands through files in RUNNER_TEMP, as the runner does. */
  async step(command: string[], extraEnv: Record<string, string> = {}): Promise<StepResult> {
    const dir = path.join('_runner_file_commands', `step-${++this.steps}`);
    const hostDir = path.join(this.job.hostTemp, dir);
    fs.mkdirSync(hostDir, { recursive: true });
    // Whatever user the step runs as may write them (the runner's own user owns them on a real runner).
    fs.chmodSync(path.dirname(hostDir), 0o777);
    fs.chmodSync(hostDir, 0o777);
    const fileEnv: Record<string, string> = {};
    for (const [name, file] of Object.entries(FILE_COMMANDS)) {
      fs.writeFileSync(path.join(hostDir, file), '');
      fs.chmodSync(path.join(hostDir, file), 0o666);
      fileEnv[name] = path.posix.join(this.job.temp, dir, file);
    }
    const env = { ...this.env, ...fileEnv, ...extraEnv };
    const result = await run(
      'docker',
      [
        '-H',
        OUTER_SOCKET,
        'exec',
        '--workdir',
        this.job.workspace,
        ...(this.job.user ? ['--user', this.job.user] : []),
        ...Object.entries(env).flatMap(([name, value]) => ['--env', `${name}=${value}`]),
        this.job.container,
        ...command
      ],
      { env: outerEnv(), timeoutMs: this.job.stepTimeoutMs ?? 120_000 }
    );
    const read = (name: keyof typeof FILE_COMMANDS) =>
      parseFileCommands(fs.readFileSync(path.join(hostDir, FILE_COMMANDS[name]), 'utf8'));
    const exported = read('GITHUB_ENV');
    Object.assign(this.env, exported);
    return {
      exitCode: result.code,
      stdout: result.stdout,
      stderr: result.stderr,
      outputs: read('GITHUB_OUTPUT'),
      exported,
      state: read('GITHUB_STATE'),
      summary: fs.readFileSync(path.join(hostDir, FILE_COMMANDS.GITHUB_STEP_SUMMARY), 'utf8')
    };
  }

  /** A `run:` step (bash). */
  run(script: string, extraEnv: Record<string, string> = {}): Promise<StepResult> {
    return this.step(['bash', '-e', '-c', script], extraEnv);
  }

  runMain(inputs: Record<string, string>): Promise<StepResult> {
    return this.step(['node', path.join(REPO_ROOT, readManifest().runs.main)], inputEnv(inputs));
  }

  runPost(state: Record<string, string>, inputs: Record<string, string>): Promise<StepResult> {
    return this.step(['node', path.join(REPO_ROOT, readManifest().runs.post)], {
      ...inputEnv(inputs),
      ...stateEnv(state)
    });
  }
}
