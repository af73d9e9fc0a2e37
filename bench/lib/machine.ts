// The machine and the action as the run finds them: tool versions, the action's node, and a copy of
// dist/ that the jobs run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useRunner } from './action';
import type { Machine } from './model';
import { dockerOut, run, sh } from './proc';
import { REPO_ROOT, TEST_IMAGE, record, tempDir, hostDir, image } from './session';

export async function machineInfo(): Promise<Machine> {
  const version = async (command: string, args: string[]) =>
    (await run(command, args, { allowFail: true })).stdout.split('\n')[0].trim() ||
    (await run(command, args, { allowFail: true })).stderr.split('\n')[0].trim();
  const git = (
    await sh(`git -C "$1" rev-parse --short HEAD; git -C "$1" status --porcelain -- src dist | wc -l`, {
      args: [REPO_ROOT],
      allowFail: true
    })
  ).stdout
    .trim()
    .split('\n');
  const distMtime = fs.statSync(path.join(REPO_ROOT, 'dist/main/index.js')).mtime.toISOString();
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    tempDir,
    hostDir,
    engine: await dockerOut(['version', '--format', 'server {{.Server.Version}}, client {{.Client.Version}}']),
    dindImage: `${TEST_IMAGE} (run as ${image})`,
    dindImageId: await dockerOut(['image', 'inspect', '--format', '{{.Id}}', image]),
    tools: {
      'node (benchmark)': process.version,
      'node (the action, SETUP_DIND_NODE)': await version(process.env.SETUP_DIND_NODE ?? process.execPath, [
        '--version'
      ]),
      zstd: await version('zstd', ['--version']),
      tar: await version('tar', ['--version']),
      curl: await version('curl', ['--version']),
      e2fsprogs: await version('mke2fs', ['-V']),
      openssl: await version('openssl', ['version'])
    },
    git: `${git[0] ?? '?'}${Number(git[1]) > 0 ? ` (+${git[1]} uncommitted changes in src/ dist/)` : ''}`,
    distBuilt: distMtime
  };
}

/**
 * Others may rebuild dist/ while the benchmark runs (a main of the old build and a post of the new one
 * would not even agree on their state): every job runs a copy taken at the start, with a copy of the
 * runner emulation, whose REPO_ROOT is then the copy.
 */
export async function snapshotAction(): Promise<void> {
  const root = path.join(tempDir, 'action');
  fs.mkdirSync(path.join(root, 'test', 'support'), { recursive: true });
  fs.cpSync(path.join(REPO_ROOT, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(REPO_ROOT, 'action.yml'), path.join(root, 'action.yml'));
  fs.copyFileSync(path.join(REPO_ROOT, 'test/support/runner.ts'), path.join(root, 'test/support/runner.ts'));
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  // The copy, loaded at run time from where it resolves its root (no import can name that path).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const runner = require(path.join(root, 'test/support/runner.ts')) as typeof import('../../test/support/runner');
  if (runner.REPO_ROOT !== root)
    throw new Error(`the runner copy resolves its root to ${runner.REPO_ROOT}, not ${root}`);
  useRunner(runner.Job);
  const hash = (
    await sh(`cat "$1"/dist/main/index.js "$1"/dist/post/index.js | sha256sum | cut -c1-12`, { args: [root] })
  ).stdout.trim();
  record.notes.push(`The action ran from a copy of dist/ taken at the start (main + post bundles sha256 ${hash}).`);
}

/** The node the runner runs the action with (node24): scripts/node24.sh, unless SETUP_DIND_NODE names one. */
export async function actionNode(): Promise<void> {
  if (!process.env.SETUP_DIND_NODE)
    process.env.SETUP_DIND_NODE = (
      await run('bash', [path.join(REPO_ROOT, 'scripts/node24.sh')], { timeoutMs: 10 * 60_000 })
    ).stdout.trim();
  if (!path.isAbsolute(process.env.SETUP_DIND_NODE) || !fs.existsSync(process.env.SETUP_DIND_NODE))
    throw new Error(`SETUP_DIND_NODE is not a node binary: '${process.env.SETUP_DIND_NODE}'`);
}
