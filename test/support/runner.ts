// An emulation of the GitHub Actions runner's contract for a `uses:` step of this action, faithful in
// what the action can observe: INPUT_* (defaults from action.yml), the GITHUB_ENV / GITHUB_OUTPUT /
// GITHUB_STATE / GITHUB_STEP_SUMMARY file commands, STATE_* for post, `post-if: always()`, and a job
// environment that later steps inherit. It runs the bundled dist/ with node, as the runner does.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

interface ActionManifest {
  inputs: Record<string, { default?: string }>;
  runs: { using: string; main: string; post: string; 'post-if'?: string };
}

/**
 * The node that runs the action's dist/: SETUP_DIND_NODE when set (the runner runs node24, and the test
 * machine's node may be older), else the node running the tests.
 */
export function actionNode(env: NodeJS.ProcessEnv = process.env): string {
  const node = env.SETUP_DIND_NODE;
  if (!node) return process.execPath;
  if (!path.isAbsolute(node) || !fs.existsSync(node))
    throw new Error(`SETUP_DIND_NODE must be the absolute path of a node binary, or unset; got '${node}'.`);
  return node;
}

export function readManifest(): ActionManifest {
  return parse(fs.readFileSync(path.join(REPO_ROOT, 'action.yml'), 'utf8')) as ActionManifest;
}

export interface StepResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** GITHUB_OUTPUT. */
  outputs: Record<string, string>;
  /** GITHUB_ENV: what later steps get. */
  exported: Record<string, string>;
  /** GITHUB_STATE, for post. */
  state: Record<string, string>;
  summary: string;
  /** The signal that killed the step's process, if one did. */
  signal?: NodeJS.Signals;
}

/** A step while it runs: its process, what it has written to GITHUB_STATE so far, and its result once it ends. */
export interface RunningStep {
  child: ChildProcess;
  /** A plain function (no `this`): it is handed on detached from the step. */
  state: () => Record<string, string>;
  done: Promise<StepResult>;
}

export interface RunAs {
  user: string;
}

/** Parses a file command file: `name=value` lines and `name<<DELIM` heredocs. */
/** What the runner gives every step of a job whose workspace and RUNNER_TEMP are these paths. */
export function runnerEnv(workspace: string, temp: string): Record<string, string> {
  return {
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_WORKSPACE: workspace,
    GITHUB_RUN_ID: String(Date.now()),
    GITHUB_JOB: 'test',
    RUNNER_TEMP: temp,
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: process.arch === 'arm64' ? 'ARM64' : 'X64',
    RUNNER_ENVIRONMENT: 'self-hosted'
  };
}

/** The file commands: each a variable naming a file the step writes, and the file's name. */
export const FILE_COMMANDS = {
  GITHUB_ENV: 'env',
  GITHUB_OUTPUT: 'output',
  GITHUB_STATE: 'state',
  GITHUB_STEP_SUMMARY: 'summary',
  GITHUB_PATH: 'path'
} as const;

/** The job's status as the runner's `job.status` gives it: success until a step fails or is cancelled. */
export type JobStatus = 'success' | 'failure' | 'cancelled';

/**
 * A default of action.yml as the runner evaluates it for one step: the expressions the action uses
 * (`${{ job.status }}`); any other expression is an emulation gap, so it fails the test.
 */
export function evaluateDefault(value: string, jobStatus: JobStatus): string {
  const evaluated = value.replace(/\$\{\{\s*job\.status\s*\}\}/g, jobStatus);
  if (evaluated.includes('${{')) throw new Error(`the runner emulation cannot evaluate the default '${value}'`);
  return evaluated;
}

/**
 * INPUT_* for every input of action.yml (the given value, else its default, evaluated for this step)
 * and any other input given.
 */
export function inputEnv(inputs: Record<string, string>, jobStatus: JobStatus = 'success'): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, spec] of Object.entries(readManifest().inputs)) {
    env[`INPUT_${name.toUpperCase()}`] = inputs[name] ?? evaluateDefault(spec.default ?? '', jobStatus);
  }
  for (const name of Object.keys(inputs)) env[`INPUT_${name.toUpperCase()}`] = inputs[name];
  return env;
}

/** STATE_* for post, from what main wrote to GITHUB_STATE. */
export function stateEnv(state: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(state).map(([name, value]) => [`STATE_${name}`, value]));
}

export function parseFileCommands(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i]);
      values[heredoc[1]] = body.join('\n');
    } else {
      const at = line.indexOf('=');
      values[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return values;
}

/** One job: a workspace, RUNNER_TEMP, the job's environment, and the post steps still to run. */
export class Job {
  readonly root: string;
  readonly workspace: string;
  readonly temp: string;
  readonly env: Record<string, string>;
  private readonly posts: Array<{ state: Record<string, string>; inputs: Record<string, string> }> = [];
  private readonly runAs?: RunAs;
  /** `job.status`: a step that fails makes it `failure`, one killed by a signal (a cancelled job) `cancelled`. */
  status: JobStatus = 'success';

  constructor(options: { env?: Record<string, string>; runAs?: RunAs; root?: string } = {}) {
    this.root = options.root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-job-'));
    this.workspace = path.join(this.root, 'workspace');
    this.temp = path.join(this.root, 'temp');
    fs.mkdirSync(this.workspace, { recursive: true });
    fs.mkdirSync(this.temp, { recursive: true });
    this.runAs = options.runAs;
    if (this.runAs) {
      fs.chmodSync(this.root, 0o755);
      const { uid, gid } = account(this.runAs.user);
      for (const dir of [this.workspace, this.temp]) fs.chownSync(dir, uid, gid);
    }
    // TMPDIR is the test run's own folder (scripts/test.sh), which job users cannot write: a runner sets none.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) => !/^(INPUT_|STATE_|GITHUB_|RUNNER_|DOCKER_|SETUP_DIND_)/.test(name) && name !== 'TMPDIR'
      )
    );
    this.env = {
      ...(inherited as Record<string, string>),
      ...runnerEnv(this.workspace, this.temp),
      ...(options.env ?? {})
    };
  }

  /**
   * Gives the job's steps a HOME of their own (`home` under the job's root, or the given directory), so
   * that their Docker CLI contexts and buildx records are theirs alone. Returns it.
   */
  ownHome(home = path.join(this.root, 'home')): string {
    fs.mkdirSync(home, { recursive: true });
    this.env.HOME = home;
    return home;
  }

  /** The `uses: ./` main step with `with:` inputs; its post is queued for `finish()`. */
  async runMain(inputs: Record<string, string> = {}): Promise<StepResult> {
    return this.startMain(inputs).done;
  }

  /**
   * Main, handed back while it runs (a test that reads its state as it goes, or kills it, as a cancelled
   * job would), with `nodeArgs` before the entry point (a `-r` preload). Its post is queued for
   * `finish()` once it has ended, with the state written by then, as the runner does.
   */
  startMain(inputs: Record<string, string> = {}, nodeArgs: string[] = []): RunningStep {
    const step = this.startNode(readManifest().runs.main, inputEnv(inputs, this.status), nodeArgs);
    const done = step.done.then(result => {
      this.posts.push({ state: result.state, inputs });
      return result;
    });
    return { ...step, done };
  }

  /**
   * Runs the queued posts in reverse order, as the runner does at the end of the job. `onSpawn` gets
   * each post's process (a test that kills one, as a cancelled job would).
   */
  async finish(onSpawn?: (child: ChildProcess) => void): Promise<StepResult[]> {
    const results: StepResult[] = [];
    for (let post = this.posts.pop(); post; post = this.posts.pop()) {
      results.push(await this.runPost(post.state, post.inputs, onSpawn));
    }
    return results;
  }

  /** One post step with the given state (STATE_*), as the runner would run it. */
  async runPost(
    state: Record<string, string>,
    inputs: Record<string, string> = {},
    onSpawn?: (child: ChildProcess) => void
  ): Promise<StepResult> {
    const step = this.startNode(readManifest().runs.post, { ...inputEnv(inputs, this.status), ...stateEnv(state) });
    onSpawn?.(step.child);
    return step.done;
  }

  /** A `run:` step (bash), with the job's environment. */
  async run(script: string, extraEnv: Record<string, string> = {}): Promise<StepResult> {
    return this.start('bash', ['-e', '-c', script], extraEnv).done;
  }

  private startNode(entry: string, extraEnv: Record<string, string>, nodeArgs: string[] = []): RunningStep {
    return this.start(actionNode(), [...nodeArgs, path.join(REPO_ROOT, entry)], extraEnv);
  }

  /** Starts a step: its file-command files, the job's environment, its process (as the job's user). */
  private start(command: string, args: string[], extraEnv: Record<string, string>): RunningStep {
    const files = fs.mkdtempSync(path.join(this.root, 'step-'));
    if (this.runAs) {
      fs.chmodSync(files, 0o777);
    }
    const fileEnv: Record<string, string> = {};
    for (const [name, file] of Object.entries(FILE_COMMANDS)) {
      fileEnv[name] = path.join(files, file);
      fs.writeFileSync(fileEnv[name], '', { mode: 0o666 });
      fs.chmodSync(fileEnv[name], 0o666);
    }
    const env = { ...this.env, ...fileEnv, ...extraEnv };
    const [cmd, argv] = this.runAs
      ? ['setpriv', ['--reuid', this.runAs.user, '--regid', this.runAs.user, '--init-groups', '--', command, ...args]]
      : [command, args];
    const child = spawn(cmd, argv, {
      cwd: this.workspace,
      env: { ...env, ...(this.runAs ? { HOME: account(this.runAs.user).home } : {}) }
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', chunk => (stdout += chunk));
    child.stderr.on('data', chunk => (stderr += chunk));
    const read = (name: keyof typeof FILE_COMMANDS) => fs.readFileSync(fileEnv[name], 'utf8');
    const done = (async () => {
      // Killed by a signal: no code; say which, as a shell would (128 + number) and in stderr.
      const { exitCode, signal } = await new Promise<{ exitCode: number; signal?: NodeJS.Signals }>(resolve =>
        child.on('close', (code, signal) => {
          if (signal) stderr += `\n[killed by ${signal}]`;
          resolve({ exitCode: code ?? 128 + (signal ? os.constants.signals[signal] : 0), signal: signal ?? undefined });
        })
      );
      // A step whose process printed ::error:: and exited 1 is a failed step; the runner reads the files either way.
      if (signal) this.status = 'cancelled';
      else if (exitCode !== 0 && this.status === 'success') this.status = 'failure';
      const exported = parseFileCommands(read('GITHUB_ENV'));
      Object.assign(this.env, exported);
      const result: StepResult = {
        exitCode,
        stdout,
        stderr,
        outputs: parseFileCommands(read('GITHUB_OUTPUT')),
        exported,
        state: parseFileCommands(read('GITHUB_STATE')),
        summary: read('GITHUB_STEP_SUMMARY'),
        ...(signal ? { signal } : {})
      };
      fs.rmSync(files, { recursive: true, force: true });
      return result;
    })();
    return { child, state: () => parseFileCommands(read('GITHUB_STATE')), done };
  }

  /** Removes the job's directories (as the runner cleans its temp directory). */
  cleanup(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

export interface Account {
  uid: number;
  gid: number;
  home: string;
}

/** A user of this machine (scripts/engine-up.sh makes `runner` and `runner-nosudo`). */
export function account(user: string): Account {
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(line => line.startsWith(`${user}:`));
  if (!entry) throw new Error(`No user ${user} on this machine: run scripts/engine-up.sh first.`);
  const fields = entry.split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] };
}
