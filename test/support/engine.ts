// The runner's (outer) Docker engine as the integration tests see it: always the local socket, whatever
// DOCKER_* a test's process has, plus what tests need to prove that a setup-dind instance is gone.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { INSTANCE_LABEL } from '../../src/runner/contract';

export const OUTER_SOCKET = 'unix:///var/run/docker.sock';
/** The stand-in for docker:dind built by test/dind-image/build.sh (no registry is reachable). */
export const TEST_IMAGE = process.env.SETUP_DIND_TEST_IMAGE || 'setup-dind-test/dind:trixie';

/**
 * The tag of an image a suite builds FROM TEST_IMAGE: `name` with TEST_IMAGE's tag, so that a run on
 * another dind test image (setup-dind-test/dind:sid) builds its own instead of replacing the default's.
 */
export function fromTestImage(name: string): string {
  return `setup-dind-test/${name}:${/:(\w[\w.-]*)$/.exec(TEST_IMAGE)?.[1] ?? 'latest'}`;
}
/** On the outer engine; a step `docker load`s it into a dind daemon to run nested containers. */
export const NESTED_BASE_IMAGE = 'debian:trixie-slim';

export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

/** This process's environment without DOCKER_*: the docker CLI then talks to the local socket. */
export function outerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DOCKER_')));
  return { ...env, ...extra };
}

/** Runs a command; never throws for a non-zero exit (the caller asserts on `code`). */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; maxBuffer?: number } = {}
): Promise<Exec> {
  return new Promise(resolve => {
    execFile(
      command,
      args,
      {
        env: options.env ?? outerEnv(),
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: options.maxBuffer ?? 64 * 1024 * 1024
      },
      (error, stdout, stderr) => {
        const code = error
          ? typeof (error as { code?: unknown }).code === 'number'
            ? (error as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      }
    );
  });
}

/** The docker CLI against the outer engine. */
export function outer(args: string[]): Promise<Exec> {
  return run('docker', ['-H', OUTER_SOCKET, ...args]);
}

/** The docker CLI against the outer engine; throws with its stderr when it fails. */
export async function outerOk(args: string[]): Promise<string> {
  const result = await outer(args);
  if (result.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout.trim();
}

/** Builds (or finds cached) an image on the outer engine with the classic builder; removes the one it replaced. */
export async function buildImage(tag: string, dockerfile: string, target?: string): Promise<void> {
  const before = await outer(['image', 'inspect', '--format', '{{.Id}}', tag]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-build-'));
  try {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
    const args = ['-H', OUTER_SOCKET, 'build', '--quiet', '--tag', tag, ...(target ? ['--target', target] : []), dir];
    const built = await run('docker', args, { env: outerEnv({ DOCKER_BUILDKIT: '0' }), timeoutMs: 10 * 60_000 });
    if (built.code !== 0) throw new Error(`building ${tag} failed:\n${built.stdout}\n${built.stderr}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const after = await outerOk(['image', 'inspect', '--format', '{{.Id}}', tag]);
  if (before.code === 0 && before.stdout.trim() !== after) await outer(['image', 'rm', before.stdout.trim()]);
}

const lines = (text: string) =>
  text
    .split('\n')
    .map(line => line.trim())
    .filter(Boolean);

export interface Labelled {
  containers: string[];
  networks: string[];
  volumes: string[];
}

/** Everything on the outer engine (or the engine at `host`) labelled with this instance id. */
export async function labelled(instanceId: string, host = OUTER_SOCKET): Promise<Labelled> {
  const filter = ['--filter', `label=${INSTANCE_LABEL}=${instanceId}`];
  const list = async (args: string[]) => {
    const result = await run('docker', ['-H', host, ...args]);
    if (result.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
    return result.stdout.trim();
  };
  const [containers, networks, volumes] = await Promise.all([
    list(['ps', '--all', '--quiet', '--no-trunc', ...filter]),
    list(['network', 'ls', '--quiet', '--no-trunc', ...filter]),
    list(['volume', 'ls', '--quiet', ...filter])
  ]);
  return { containers: lines(containers), networks: lines(networks), volumes: lines(volumes) };
}

/** Containers and networks whose name contains `part` (for a main that failed before it had an instance id). */
export async function namedLike(part: string): Promise<{ containers: string[]; networks: string[] }> {
  const [containers, networks] = await Promise.all([
    outerOk(['ps', '--all', '--format', '{{.Names}}', '--filter', `name=${part}`]),
    outerOk(['network', 'ls', '--format', '{{.Name}}', '--filter', `name=${part}`])
  ]);
  return { containers: lines(containers), networks: lines(networks) };
}

// A subset of `docker inspect` for a container, as the tests read it.
export interface ContainerInfo {
  Id: string;
  Name: string;
  State: { Running: boolean; Status: string };
  Config: { Labels: Record<string, string>; Image: string };
  HostConfig: {
    Privileged: boolean;
    NetworkMode: string;
    PortBindings: Record<string, Array<{ HostIp: string; HostPort: string }> | null>;
  };
  NetworkSettings: {
    Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null>;
    Networks: Record<string, unknown>;
  };
  Mounts: Array<{ Type: string; Name?: string; Destination: string }>;
}

export async function inspectContainer(id: string): Promise<ContainerInfo> {
  return (JSON.parse(await outerOk(['container', 'inspect', id])) as ContainerInfo[])[0];
}

/** Names of the volumes a container mounts (the image's VOLUME /var/lib/docker is one). */
export async function containerVolumes(id: string): Promise<string[]> {
  return (await inspectContainer(id)).Mounts.flatMap(mount =>
    mount.Type === 'volume' && mount.Name ? [mount.Name] : []
  );
}

export async function volumeExists(name: string): Promise<boolean> {
  return (await outer(['volume', 'inspect', name])).code === 0;
}

export async function allVolumes(): Promise<Set<string>> {
  return new Set(lines(await outerOk(['volume', 'ls', '--quiet'])));
}

/** Volumes no container uses: what a container removed without its volumes leaves behind. */
export async function danglingVolumes(): Promise<Set<string>> {
  return new Set(lines(await outerOk(['volume', 'ls', '--quiet', '--filter', 'dangling=true'])));
}

/**
 * What a test knows it started, so afterAll can remove what a failing test left behind. Only the
 * instances of this test process are swept: other jobs on the same engine may run setup-dind too.
 */
export interface Started {
  id: string;
  certDir: string;
  /** The context main created, if it got that far, and the HOME whose ~/.docker holds it. */
  context?: string;
  /** The buildx builder main created (or was about to), in the same HOME. */
  builder?: string;
  home: string;
}

/** What a main step saved in its state about its instance, if it got that far (its certDir is a path where main ran). */
export interface SavedInstance {
  instance: { id: string; certDir: string };
  context?: string;
  builder?: string;
}

export function savedInstance(state: Record<string, string>): SavedInstance | undefined {
  return state.instance ? (JSON.parse(state.instance) as SavedInstance) : undefined;
}

export class Sweeper {
  private readonly started = new Map<string, Started>();

  /** Records the instance a main step saved in its state (if it got that far). */
  record(state: Record<string, string>, home: string): Started | undefined {
    const parsed = savedInstance(state);
    if (!parsed) return undefined;
    const started = {
      id: parsed.instance.id,
      certDir: parsed.instance.certDir,
      context: parsed.context,
      builder: parsed.builder,
      home
    };
    this.started.set(started.id, started);
    return started;
  }

  /** Force-removes every container (with its volumes) and network labelled with a recorded instance id. */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    for (const { id, certDir, context, builder, home } of this.started.values()) {
      // First, while the daemon may still run: buildx then also removes its BuildKit container and reports success.
      if (builder && (await run('docker', ['buildx', 'rm', builder], { env: outerEnv({ HOME: home }) })).code === 0)
        removed.push(`builder ${builder}`);
      const left = await labelled(id).catch(() => ({ containers: [], networks: [], volumes: [] }));
      for (const container of left.containers) {
        await outer(['rm', '--force', '--volumes', container]);
        removed.push(`container ${container.slice(0, 12)}`);
      }
      for (const network of left.networks) {
        await outer(['network', 'rm', network]);
        removed.push(`network ${network.slice(0, 12)}`);
      }
      for (const volume of left.volumes) {
        await outer(['volume', 'rm', '--force', volume]);
        removed.push(`volume ${volume}`);
      }
      if (context) {
        // Only a context this instance made (its description names the instance).
        const env = outerEnv({ HOME: home });
        const inspected = await run('docker', ['context', 'inspect', '--format', '{{json .Metadata}}', context], {
          env
        });
        if (inspected.code === 0 && inspected.stdout.includes(`setup-dind instance ${id}`)) {
          await run('docker', ['context', 'rm', '--force', context], { env });
          removed.push(`context ${context}`);
        }
      }
      if (fs.existsSync(certDir)) {
        fs.rmSync(certDir, { recursive: true, force: true });
        removed.push(`directory ${certDir}`);
      }
    }
    this.started.clear();
    return removed;
  }
}

/** A bare TCP connection attempt: whether anything accepts on that address. */
export function tcpConnect(host: string, port: number, timeoutMs = 3000): Promise<'connected' | 'refused' | 'timeout'> {
  return new Promise(resolve => {
    const socket = net.connect({ host, port });
    const done = (outcome: 'connected' | 'refused' | 'timeout') => {
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(timeoutMs, () => done('timeout'));
    socket.once('connect', () => done('connected'));
    socket.once('error', () => done('refused'));
  });
}
