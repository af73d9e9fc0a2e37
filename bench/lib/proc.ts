// Child processes for the benchmark, always asynchronous: the cache service emulation runs in this
// process and proxies every blob byte, so a synchronous call here would stall the very transfer being
// timed. Every child is in its own process group and tracked, so that a failing or interrupted run
// can end exactly what it started (and nothing else).
import { spawn, type ChildProcess } from 'node:child_process';

const OUTER_SOCKET = 'unix:///var/run/docker.sock';

/** This process's environment without DOCKER_*: the docker CLI then talks to the local socket. */
export function outerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DOCKER_')));
  return { ...env, ...extra };
}

export interface ProcResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  seconds: number;
}

export interface ProcOptions {
  /** Positional arguments of a bash script ("$1"…), never spliced into its text. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Do not throw on a non-zero exit. */
  allowFail?: boolean;
  /** Stream the child's output to ours (long set-up steps). */
  echo?: boolean;
  cwd?: string;
  /** Called with the child once spawned (to end it early). */
  onSpawn?: (child: ChildProcess) => void;
}

const live = new Set<ChildProcess>();
const KEEP_OUTPUT = 256 * 1024;

function keepTail(text: string): string {
  return text.length > KEEP_OUTPUT ? text.slice(-KEEP_OUTPUT) : text;
}

/** Runs a command to completion; throws with its stderr on failure unless `allowFail`. */
export function run(command: string, argv: string[], options: ProcOptions = {}): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, argv, {
      env: options.env ?? outerEnv(),
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true
    });
    live.add(child);
    options.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = keepTail(stdout + chunk.toString());
      if (options.echo) process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = keepTail(stderr + chunk.toString());
      if (options.echo) process.stderr.write(chunk);
    });
    const timeoutMs = options.timeoutMs ?? 20 * 60_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.on('error', error => {
      clearTimeout(timer);
      live.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      const seconds = (performance.now() - started) / 1000;
      const result = { code: code ?? (signal ? 128 : 1), stdout, stderr, seconds };
      if (timedOut) reject(new Error(`${describe(command, argv)} timed out after ${timeoutMs / 1000} s`));
      else if (result.code !== 0 && !options.allowFail) {
        reject(
          new Error(
            `${describe(command, argv)} failed (exit ${result.code}${signal ? `, ${signal}` : ''}): ${tail(stderr || stdout)}`
          )
        );
      } else resolve(result);
    });
  });
}

/** A bash script with `set -euo pipefail`; arguments go in as "$1"…. */
export function sh(script: string, options: ProcOptions = {}): Promise<ProcResult> {
  return run('bash', ['-c', `set -euo pipefail\n${script}`, 'bash', ...(options.args ?? [])], options);
}

/** The docker CLI against the outer engine, whatever DOCKER_* say. */
export function docker(args: string[], options: ProcOptions = {}): Promise<ProcResult> {
  return run('docker', ['-H', OUTER_SOCKET, ...args], { ...options, env: options.env ?? outerEnv() });
}

export async function dockerOut(args: string[], options: ProcOptions = {}): Promise<string> {
  return (await docker(args, options)).stdout.trim();
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Ends every child this module started that still runs (their process groups, by id). */
export function killLiveChildren(): number {
  const count = live.size;
  for (const child of live) killGroup(child, 'SIGKILL');
  return count;
}

export function tail(text: string, lines = 6): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

function describe(command: string, argv: string[]): string {
  if (command === 'bash' && argv[0] === '-c')
    return `bash script '${argv[1].split('\n').slice(1).join('; ').slice(0, 160)}'`;
  return `${command} ${argv.join(' ')}`.slice(0, 200);
}

export function now(): number {
  return performance.now() / 1000;
}

export function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}
