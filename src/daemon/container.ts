// The dind container: what it is created with, what goes into it before it starts, and how we
// know the daemon inside is ready.
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import * as tar from 'tar-stream';
import { INSTANCE_LABEL } from '../runner/contract';
import { CONTAINER_DATA_DIR } from './data-image';
import { connect, tlsClientOptions, type TlsEndpoint } from '../runner/engine';
import type { Instance } from './instance';
import { flagConfigNames } from './flags';
import type { KeyPair, SubjectAltNames } from './tls';
import { errorMessage } from '../util/errors';
import { CONTAINER_SETUP_DIR, DAEMON_TLS_PORT, DEFAULT_IMAGE } from './facts';

const CERT_DIR = `${CONTAINER_SETUP_DIR}/certs`;
const ENTRYPOINT = `${CONTAINER_SETUP_DIR}/entrypoint.sh`;
/** Run by the entrypoint on restored data before dockerd starts. */
const CHECK_DATA = `${CONTAINER_SETUP_DIR}/check-data.sh`;
const DAEMON_JSON = `${CONTAINER_SETUP_DIR}/daemon.json`;
const PORT_KEY = `${DAEMON_TLS_PORT}/tcp`;
/** dockerd's data root in the container: the entrypoint mounts the data image here, else the volume holds it. */
const DOCKER_DATA_ROOT = '/var/lib/docker';

/**
 * The scripts put into the container: the entrypoint, in place of the image's own (see entrypoint.sh),
 * prepares cgroups, mounts and stale state for a nested dockerd in any image that has `sh`, checks
 * restored data (check-data.sh), then runs dockerd. The build copies them next to the main bundle, as
 * they sit next to this module in src/daemon/.
 */
export function setupScript(name: 'entrypoint.sh' | 'check-data.sh'): string {
  return fs.readFileSync(path.join(__dirname, name), 'utf8');
}

/** Written last into the container: the entrypoint waits for it before it starts dockerd. */
const READY_MARKER = `${CERT_DIR}/ready`;

/**
 * dockerd's command line: the mutual-TLS listener, our daemon.json, then the user's flags. The unix
 * socket exists only inside the dind container (for nested containers that mount it, like
 * Testcontainers' reaper); nothing listens in plaintext on any network.
 */
export function dockerdCommand(userArgs: string[]): string[] {
  return [
    'dockerd',
    '--host=unix:///var/run/docker.sock',
    `--host=tcp://0.0.0.0:${DAEMON_TLS_PORT}`,
    '--tlsverify',
    `--tlscacert=${CERT_DIR}/ca.pem`,
    `--tlscert=${CERT_DIR}/server-cert.pem`,
    `--tlskey=${CERT_DIR}/server-key.pem`,
    `--config-file=${DAEMON_JSON}`,
    ...userArgs
  ];
}

/** Every name and address a client may use: loopback (the published port), its names and its addresses on its networks. */
export function serverSubjectAltNames(instance: Instance, addresses: string[]): SubjectAltNames {
  return { dns: ['localhost', instance.name, instance.containerName], ip: ['127.0.0.1', '::1', ...addresses] };
}

/** The container's IPv4 address on each of its networks. */
export function networkAddresses(info: Docker.ContainerInspectInfo): Record<string, string> {
  return Object.fromEntries(
    Object.entries(info.NetworkSettings.Networks ?? {}).flatMap(([name, network]) =>
      network.IPAddress ? [[name, network.IPAddress]] : []
    )
  );
}

export interface DaemonConfigInputs {
  daemonConfig: Record<string, unknown>;
  dockerdArgs: string[];
  /** undefined: the MTU of the runner's default route. */
  mtu?: number;
  registryMirrors: string[];
  insecureRegistries: string[];
  /** The cache is on: it carries overlay2's image store only. */
  cache: boolean;
}

const DEFAULT_MTU = 1500;
const SNAPSHOTTER_FEATURE = 'containerd-snapshotter';

/**
 * daemon.json: the user's settings, plus the inputs that map onto it. A runner network with an MTU
 * below the usual 1500 lowers the default bridge's and new networks' MTU, or nested traffic stalls on
 * large packets. With the cache on, the containerd image store is off unless the user says otherwise:
 * dockerd 29 turns it on for a new data directory, and the cache carries overlay2's store only. Nothing
 * is added that a dockerd flag sets: dockerd refuses a setting given twice.
 */
export function daemonConfig(inputs: DaemonConfigInputs, runnerMtu: number | undefined): Record<string, unknown> {
  const config: Record<string, unknown> = { ...inputs.daemonConfig };
  const flags = flagConfigNames(inputs.dockerdArgs);
  const mtu = inputs.mtu ?? (runnerMtu !== undefined && runnerMtu < DEFAULT_MTU ? runnerMtu : undefined);
  if (mtu !== undefined && !('mtu' in config) && !flags.has('mtu')) {
    config.mtu = mtu;
    if (!('default-network-opts' in config) && !flags.has('default-network-opts')) {
      config['default-network-opts'] = { bridge: { 'com.docker.network.driver.mtu': String(mtu) } };
    }
  }
  const merge = (key: string, extra: string[]) => {
    if (extra.length === 0) return;
    const existing = Array.isArray(config[key]) ? (config[key] as string[]) : [];
    config[key] = [...new Set([...existing, ...extra])];
  };
  merge('registry-mirrors', inputs.registryMirrors);
  merge('insecure-registries', inputs.insecureRegistries);
  const features = config.features ?? {};
  if (inputs.cache && !flags.has('features') && isPlainObject(features) && !(SNAPSHOTTER_FEATURE in features)) {
    config.features = { ...features, [SNAPSHOTTER_FEATURE]: false };
  }
  return config;
}

/** A port of the dind container published on the runner's 127.0.0.1. */
export interface PortMapping {
  host: number;
  container: number;
}

export interface ContainerSpec {
  instance: Instance;
  image: string;
  privileged: boolean;
  dockerdArgs: string[];
  /** Engine-host directory of the data image (data-image.ts); else the instance's volume holds the data. */
  dataDir?: string;
  /** Engine-host paths bind-mounted at `target`. */
  mounts: Array<{ source: string; target: string }>;
  ports: PortMapping[];
}

/** Port bindings on 127.0.0.1, several runner ports per dind port allowed. */
function publishedPorts(ports: PortMapping[]): Record<string, Array<{ HostIp: string; HostPort: string }>> {
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const port of ports)
    (bindings[`${port.container}/tcp`] ??= []).push({ HostIp: '127.0.0.1', HostPort: String(port.host) });
  return bindings;
}

/**
 * Paths of the dind container to cover with an empty read-only tmpfs: the client's certificate
 * directory, when a bind mount (RUNNER_TEMP's, by default) shows it there. A nested container that
 * mounts that path, or the dind container's `/`, would otherwise read the client's key: the whole
 * daemon's control, privileged containers included.
 */
export function hiddenPaths(certDir: string, targets: string[]): string[] {
  const covered = targets.some(target => {
    const inside = path.posix.relative(target, certDir);
    return !inside.startsWith('..') && !path.posix.isAbsolute(inside);
  });
  return covered ? [certDir] : [];
}

/** Engine API fields @types/dockerode does not know yet. */
type HostConfig = Docker.HostConfig & { CgroupnsMode?: 'private' | 'host' };

export function containerCreateOptions(
  spec: ContainerSpec
): Docker.ContainerCreateOptions & { HostConfig: HostConfig } {
  const { instance } = spec;
  return {
    name: instance.containerName,
    Image: spec.image,
    Hostname: instance.name,
    Entrypoint: ['/bin/sh', ENTRYPOINT],
    Cmd: dockerdCommand(spec.dockerdArgs),
    // The official image's entrypoint would otherwise make its own certificates; ours is not used, but
    // the variable also tells its docker CLI where certs are, which must not point anywhere.
    Env: ['DOCKER_TLS_CERTDIR='],
    Labels: { [INSTANCE_LABEL]: instance.id },
    ExposedPorts: { [PORT_KEY]: {}, ...Object.fromEntries(spec.ports.map(port => [`${port.container}/tcp`, {}])) },
    HostConfig: {
      Privileged: spec.privileged,
      // docker-init as PID 1 reaps the zombies finished nested containers leave; a private cgroup
      // namespace lets the entrypoint delegate cgroup v2 controllers to nested containers.
      Init: true,
      CgroupnsMode: 'private',
      NetworkMode: instance.networkName,
      // An empty HostPort lets the engine pick a free one: parallel instances never collide.
      PortBindings: {
        [PORT_KEY]: [{ HostIp: '127.0.0.1', HostPort: '' }],
        ...publishedPorts(spec.ports)
      },
      Mounts: [
        {
          Type: 'volume',
          Source: instance.volumeName,
          Target: DOCKER_DATA_ROOT,
          // As an anonymous volume would: the image's content at that path copied in, the local driver.
          VolumeOptions: {
            NoCopy: false,
            Labels: { [INSTANCE_LABEL]: instance.id },
            DriverConfig: { Name: 'local', Options: {} }
          }
        }
      ],
      Binds: [
        ...(spec.dataDir ? [`${spec.dataDir}:${CONTAINER_DATA_DIR}`] : []),
        ...spec.mounts.map(mount => `${mount.source}:${mount.target}`)
      ],
      // The engine mounts these after the binds they lie in (it orders mounts by depth).
      Tmpfs: Object.fromEntries(
        hiddenPaths(
          instance.certDir,
          spec.mounts.map(mount => mount.target)
        ).map(hidden => [hidden, 'ro,size=4k'])
      )
    },
    NetworkingConfig: { EndpointsConfig: { [instance.networkName]: { Aliases: [instance.name] } } }
  };
}

export function networkCreateOptions(instance: Instance): Docker.NetworkCreateOptions {
  return {
    Name: instance.networkName,
    Driver: 'bridge',
    CheckDuplicate: true,
    Labels: { [INSTANCE_LABEL]: instance.id }
  };
}

async function tarBuffer(build: (pack: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  build(pack);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The server's key pair and the marker that releases dockerd, entries of a tar to extract at `/`. */
function serverEntries(pack: tar.Pack, server: KeyPair): void {
  pack.entry({ name: `${CERT_DIR.slice(1)}/server-cert.pem`, mode: 0o644 }, server.cert);
  pack.entry({ name: `${CERT_DIR.slice(1)}/server-key.pem`, mode: 0o600 }, server.key);
  pack.entry({ name: READY_MARKER.slice(1), mode: 0o644 }, '');
}

/**
 * What goes into the container before it starts, as a tar to extract at `/` (directories first); with
 * the server's certificate when it can be issued before the container's addresses are known.
 */
export function setupArchive(caCert: string, config: Record<string, unknown>, server?: KeyPair): Promise<Buffer> {
  return tarBuffer(pack => {
    pack.entry({ name: CONTAINER_SETUP_DIR.slice(1) + '/', type: 'directory', mode: 0o755 });
    pack.entry({ name: CERT_DIR.slice(1) + '/', type: 'directory', mode: 0o755 });
    pack.entry({ name: ENTRYPOINT.slice(1), mode: 0o755 }, setupScript('entrypoint.sh'));
    pack.entry({ name: CHECK_DATA.slice(1), mode: 0o755 }, setupScript('check-data.sh'));
    pack.entry({ name: DAEMON_JSON.slice(1), mode: 0o644 }, JSON.stringify(config, null, 2) + '\n');
    pack.entry({ name: `${CERT_DIR.slice(1)}/ca.pem`, mode: 0o644 }, caCert);
    if (server) serverEntries(pack, server);
  });
}

/** The server's certificate for a container already started (it names the container's addresses). */
export function serverArchive(server: KeyPair): Promise<Buffer> {
  return tarBuffer(pack => serverEntries(pack, server));
}

/** The loopback port the engine published the daemon's TLS port on. */
export function publishedPort(info: Docker.ContainerInspectInfo): number {
  const binding = info.NetworkSettings.Ports?.[PORT_KEY]?.find(b => b.HostIp === '127.0.0.1' || b.HostIp === '');
  const port = Number(binding?.HostPort);
  if (!(port > 0)) throw new Error(`The engine did not publish the daemon's port ${PORT_KEY}.`);
  return port;
}

export class DaemonNotReadyError extends Error {}

/** How long the daemon must keep answering, on a fresh connection each time, before it counts as ready. */
export interface Steadiness {
  /** From the first answer to the last one, at least this long; every answer in between counts. */
  steadyMs: number;
  /** Between two answers; also between failed attempts. */
  intervalMs: number;
}

export const READY_STEADINESS: Steadiness = { steadyMs: 250, intervalMs: 50 };

/** Of the wait-timeout, what is kept for a cold start should the daemon not start on a restored state: half, at most this. */
const COLD_START_RESERVE_MS = 20_000;

function coldStartReserveMs(waitTimeoutMs: number): number {
  return Math.min(waitTimeoutMs / 2, COLD_START_RESERVE_MS);
}

/**
 * Pure: how long a daemon on a restored state may take to answer: the wait-timeout less the cold start's
 * reserve. A state that stops dockerd is seen at once (the container exits); one that holds it up costs
 * this much, not the whole wait.
 */
export function restoredWaitMs(waitTimeoutMs: number): number {
  return waitTimeoutMs - coldStartReserveMs(waitTimeoutMs);
}

/**
 * Pure: how long the cold start that replaces a restored state may take to answer, `elapsedMs` after the
 * wait for the restored one began: what is left of the wait-timeout, and never less than the reserve.
 */
export function coldWaitMs(waitTimeoutMs: number, elapsedMs: number): number {
  return Math.max(coldStartReserveMs(waitTimeoutMs), waitTimeoutMs - elapsedMs);
}

interface AbortablePing {
  ping(options: { abortSignal: AbortSignal }): Promise<unknown>;
}

/**
 * Polls the daemon over mutual TLS, through the very address later steps use, until it has answered
 * without a single failure for `steadyMs` (one fresh connection per attempt: no keep-alive reuse, as
 * each later CLI call connects anew). Before dockerd listens, the engine's port proxy accepts and
 * resets; while it starts, a ping can hang: each attempt gets the time left. A failure after an
 * answer starts the count again, so a daemon that answers once and then drops connections (restarts,
 * a listener that goes away) is not reported ready. The container is checked between attempts, so a
 * daemon that died fails at once.
 */
export async function waitForDaemon(
  endpoint: TlsEndpoint,
  container: Docker.Container,
  timeoutMs: number,
  steadiness: Steadiness = READY_STEADINESS,
  /** Called once, at the daemon's first answer: work that needs it can overlap the steady period. */
  onFirstAnswer?: () => void
): Promise<string> {
  // keepAlive off: every request opens, and closes, its own connection (through the port proxy too).
  const agent = new https.Agent({ keepAlive: false });
  const client = connect({ ...tlsClientOptions(endpoint), agent } as Docker.DockerOptions);
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer';
  let firstAnswer: number | undefined;
  let version: string | undefined;
  try {
    for (;;) {
      const state = (await container.inspect()).State;
      if (!state.Running) {
        throw new DaemonNotReadyError(
          `The dind container stopped (exit code ${state.ExitCode}${state.Error ? `: ${state.Error}` : ''}) before its daemon answered.`
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        // dockerode supports abortSignal on ping; its type declarations predate it.
        await (client as unknown as AbortablePing).ping({ abortSignal: AbortSignal.timeout(left) });
        // The version right at the first answer: the rest of the period is plain pings.
        if (version === undefined) {
          version = ((await client.version()) as { Version: string }).Version;
          onFirstAnswer?.();
        }
        if (firstAnswer === undefined)
          core.debug(
            `The daemon answers (dockerd ${version}); ready after ${steadiness.steadyMs} ms without a failure`
          );
        firstAnswer ??= Date.now();
        if (Date.now() - firstAnswer >= steadiness.steadyMs) return version;
      } catch (error) {
        // Only changes: a daemon that is starting fails the same way many times a second.
        if (errorMessage(error) !== lastError) core.debug(`The daemon does not answer yet: ${errorMessage(error)}`);
        lastError = errorMessage(error);
        firstAnswer = undefined;
      }
      await new Promise(resolve =>
        setTimeout(resolve, Math.min(steadiness.intervalMs, Math.max(0, deadline - Date.now())))
      );
    }
  } finally {
    agent.destroy();
  }
  const steadily = version === undefined ? '' : ` without a failure for ${steadiness.steadyMs / 1000} s`;
  throw new DaemonNotReadyError(
    `The daemon did not answer within ${timeoutMs / 1000} s${steadily} (last error: ${lastError}).`
  );
}

/** What most likely went wrong, from the container's last log lines, for the failure message. */
export function diagnose(logTail: string, privileged: boolean): string | undefined {
  // Definite causes first; the privileged hint next (an unprivileged dockerd fails in many ways);
  // dockerd also logs harmless "executable file not found" for optional helpers, so match dockerd's own.
  const missing: Array<[RegExp, string]> = [
    [
      /exec: "dockerd": executable file not found|dockerd: not found|exec[^\n]*dockerd[^\n]*no such file/i,
      `The image has no 'dockerd' on its PATH: use a dind image such as ${DEFAULT_IMAGE}.`
    ],
    [
      /exec: "\/bin\/sh"|\/bin\/sh: not found|exec[^\n]*\/bin\/sh[^\n]*no such file/i,
      "The image has no /bin/sh, which the action's entrypoint needs."
    ]
  ];
  const others: Array<[RegExp, string]> = [
    [
      /permission denied|operation not permitted|must be run as root|mount.*failed/i,
      'The daemon lacks a permission it needs; on this host dind may need a different runtime (for example sysbox).'
    ],
    [/address already in use/i, 'A port the daemon needs is taken inside the container.'],
    [/failed to load listeners|x509|tls: /i, 'The daemon could not set up its TLS listener.'],
    [
      /devmapper|overlay.*not supported|driver not supported/i,
      'The storage driver is not supported here: try \'daemon-config: {"storage-driver":"vfs"}\'.'
    ]
  ];
  const definite = missing.find(([pattern]) => pattern.test(logTail));
  if (definite) return definite[1];
  if (!privileged) return "dind needs a privileged container: set 'privileged: true' (the default).";
  return others.find(([pattern]) => pattern.test(logTail))?.[1];
}

const LAST_LINE_CHARS = 300;

/** Pure: the last line of a log, bounded (dockerd's last words: why it stopped). */
export function lastLogLine(log: string): string {
  const line = log.trimEnd().split('\n').pop()?.trim() ?? '';
  return line.length > LAST_LINE_CHARS ? `${line.slice(0, LAST_LINE_CHARS)}…` : line;
}

/** The container's log (stdout and stderr interleaved) as text, at most `tail` lines. */
export async function containerLog(container: Docker.Container, tail?: number): Promise<string> {
  const raw = await container.logs({
    stdout: true,
    stderr: true,
    follow: false,
    ...(tail ? { tail } : {})
  });
  return demultiplex(raw);
}

/** The Engine multiplexes stdout/stderr of non-TTY containers in 8-byte-header frames. */
export function demultiplex(raw: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length && raw[offset] <= 2 && raw.readUInt16BE(offset + 1) === 0) {
    const size = raw.readUInt32BE(offset + 4);
    parts.push(raw.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return offset === 0 ? raw.toString('utf8') : Buffer.concat(parts).toString('utf8');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
