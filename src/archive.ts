// The daemon's data directory on the runner, archived and restored with GNU tar and zstd. The tree is
// root-owned and holds what overlay2 relies on (whiteout device nodes, `trusted.overlay.*` xattrs,
// file capabilities, setuid bits, hard links, sparse files), so tar runs as root: directly when the
// job is root, through passwordless sudo otherwise. Without either, the cache is off.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import * as exec from '@actions/exec';

export type FileAccess = 'root' | 'sudo' | 'none';

export async function detectFileAccess(): Promise<FileAccess> {
  if (process.getuid?.() === 0) return 'root';
  const sudo = await exec
    .getExecOutput('sudo', ['-n', 'true'], { silent: true, ignoreReturnCode: true })
    .catch(() => undefined);
  return sudo?.exitCode === 0 ? 'sudo' : 'none';
}

export async function hasZstd(): Promise<boolean> {
  const zstd = await exec
    .getExecOutput('zstd', ['--version'], { silent: true, ignoreReturnCode: true })
    .catch(() => undefined);
  return zstd?.exitCode === 0;
}

/** Where the daemon's data goes: xattrs of every namespace, numeric owners, holes kept. */
const TAR_COMMON = `--xattrs --xattrs-include='*' --numeric-owner`;
/** Not worth carrying to the next job, or must not be: scratch space, runtime state, swarm identity. */
const EXCLUDES = ['./tmp', './runtimes', './swarm', './containers'];

/** The metadata file saved at the root of the data: what made the cache. */
export const METADATA_FILE = '.setup-dind-cache.json';

function sudo(access: FileAccess): string {
  return access === 'sudo' ? 'sudo -n ' : '';
}

/** Shell scripts get their arguments as "$1"…, never spliced into the text. */
function bash(
  script: string,
  args: string[],
  stdio: { stdin: 'pipe' | 'ignore'; stdout: 'pipe' | 'ignore' }
): ChildProcess {
  return spawn('bash', ['-c', `set -euo pipefail\n${script}`, 'bash', ...args], {
    stdio: [stdio.stdin, stdio.stdout, 'pipe']
  });
}

function finished(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', chunk => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', code =>
      code === 0
        ? resolve()
        : reject(new Error(`${what} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`))
    );
  });
}

export function archiveScript(access: FileAccess): string {
  const excludes = EXCLUDES.map(path => `--exclude='${path}'`).join(' ');
  return `${sudo(access)}tar --create ${TAR_COMMON} --sparse --one-file-system --anchored ${excludes} --directory "$1" . | zstd -T0 -3 --quiet --stdout`;
}

export function extractScript(access: FileAccess): string {
  return `zstd --decompress --quiet --stdout | ${sudo(access)}tar --extract ${TAR_COMMON} --same-permissions --same-owner --directory "$1"`;
}

/** Extracts a zstd-compressed tar stream into `dir` (which must exist). */
export async function extractInto(access: FileAccess, dir: string, archive: Readable): Promise<void> {
  const child = bash(extractScript(access), [dir], { stdin: 'pipe', stdout: 'ignore' });
  const done = finished(child, 'extracting the cache');
  archive.on('error', error => child.stdin?.destroy(error));
  child.stdin?.on('error', () => undefined);
  archive.pipe(child.stdin!);
  await done;
}

/** Starts archiving `dir`; read the archive from `stream`, and await `done` for the outcome. */
export function archiveFrom(
  access: FileAccess,
  dir: string
): { stream: Readable; done: Promise<void>; kill: () => void } {
  const child = bash(archiveScript(access), [dir], { stdin: 'ignore', stdout: 'pipe' });
  return {
    stream: child.stdout!,
    done: finished(child, 'archiving the daemon data'),
    kill: () => child.kill('SIGKILL')
  };
}

/** Runs a short script to completion, feeding it `input`; returns its stdout. */
async function run(script: string, args: string[], what: string, input?: string): Promise<string> {
  const child = bash(script, args, { stdin: input === undefined ? 'ignore' : 'pipe', stdout: 'pipe' });
  let stdout = '';
  child.stdout?.on('data', chunk => (stdout += chunk));
  const done = finished(child, what);
  if (input !== undefined) child.stdin?.end(input);
  await done;
  return stdout;
}

export async function makeDirectory(access: FileAccess, dir: string): Promise<void> {
  await run(`${sudo(access)}mkdir -p -- "$1"`, [dir], `creating ${dir}`);
}

/** Removes `dir` and all in it (the daemon's files are root's). */
export async function removeDirectory(access: FileAccess, dir: string): Promise<void> {
  await run(`${sudo(access)}rm -rf -- "$1"`, [dir], `removing ${dir}`);
}

/** Empties `dir`, keeping it: what a failed restore leaves behind must not reach the daemon. */
export async function emptyDirectory(access: FileAccess, dir: string): Promise<void> {
  await run(`${sudo(access)}find "$1" -mindepth 1 -delete`, [dir], `emptying ${dir}`);
}

/** Undefined when the file is missing or unreadable. */
export async function readFileAsRoot(access: FileAccess, file: string): Promise<string | undefined> {
  return run(`${sudo(access)}cat -- "$1"`, [file], `reading ${file}`).catch(() => undefined);
}

export async function writeFileAsRoot(access: FileAccess, file: string, content: string): Promise<void> {
  await run(`${sudo(access)}tee -- "$1" >/dev/null`, [file], `writing ${file}`, content);
}

/** Bytes the directory takes on disk (holes in sparse files are not counted, as the archive keeps them). */
export async function directoryBytes(access: FileAccess, dir: string): Promise<number> {
  return Number((await run(`${sudo(access)}du -s --block-size=1 -- "$1"`, [dir], `measuring ${dir}`)).split(/\s/)[0]);
}
