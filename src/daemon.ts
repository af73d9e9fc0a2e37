// The dind container: what it is created with, what goes into it before it starts, and how we
// know the daemon inside is ready.
import type Docker from 'dockerode';
import * as tar from 'tar-stream';
import { CONTAINER_SETUP_DIR, DAEMON_TLS_PORT, INSTANCE_LABEL } from './constants';
import { connect, tlsClientOptions, type TlsEndpoint } from './engine';
import type { Instance } from './instance';
import type { SubjectAltNames, TlsMaterial } from './tls';

const CERT_DIR = `${CONTAINER_SETUP_DIR}/certs`;
const ENTRYPOINT = `${CONTAINER_SETUP_DIR}/entrypoint.sh`;
const DAEMON_JSON = `${CONTAINER_SETUP_DIR}/daemon.json`;
const PORT_KEY = `${DAEMON_TLS_PORT}/tcp`;

/**
 * Runs before dockerd in any image that has `sh`. On cgroup v2 the container's root cgroup holds its
 * processes, and a cgroup with processes cannot delegate controllers to children: move them into a
 * leaf first, or nested containers get no memory/cpu/pids controllers. Stale pid files from a
 * restored /var/lib/docker or a restarted container would stop dockerd from starting.
 */
export const ENTRYPOINT_SCRIPT = `#!/bin/sh
set -e
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control || :
fi
if ! mountpoint -q /sys/kernel/security 2>/dev/null && [ -d /sys/kernel/security ]; then
  mount -t securityfs none /sys/kernel/security 2>/dev/null || :
fi
rm -f /var/run/docker.pid /run/docker.pid /var/run/docker/containerd/containerd.pid
exec "$@"
`;

/** dockerd's command line: TLS-only listener, our daemon.json, then the user's flags. */
export function dockerdCommand(userArgs: string[]): string[] {
  return [
    'dockerd',
    `--host=tcp://0.0.0.0:${DAEMON_TLS_PORT}`,
    '--tlsverify',
    `--tlscacert=${CERT_DIR}/ca.pem`,
    `--tlscert=${CERT_DIR}/server-cert.pem`,
    `--tlskey=${CERT_DIR}/server-key.pem`,
    `--config-file=${DAEMON_JSON}`,
    ...userArgs
  ];
}

/** Every name a client of this daemon may use: the runner (loopback) and peers on its network. */
export function serverSubjectAltNames(instance: Instance): SubjectAltNames {
  return { dns: ['localhost', instance.name, instance.containerName], ip: ['127.0.0.1', '::1'] };
}

export interface ContainerSpec {
  instance: Instance;
  image: string;
  privileged: boolean;
  dockerdArgs: string[];
}

export function containerCreateOptions(spec: ContainerSpec): Docker.ContainerCreateOptions {
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
    ExposedPorts: { [PORT_KEY]: {} },
    HostConfig: {
      Privileged: spec.privileged,
      NetworkMode: instance.networkName,
      // An empty HostPort lets the engine pick a free one: parallel instances never collide.
      PortBindings: { [PORT_KEY]: [{ HostIp: '127.0.0.1', HostPort: '' }] }
    },
    NetworkingConfig: { EndpointsConfig: { [instance.networkName]: { Aliases: [instance.name] } } }
  };
}

export function networkCreateOptions(instance: Instance): Docker.NetworkCreateOptions {
  return { Name: instance.networkName, Driver: 'bridge', CheckDuplicate: true, Labels: { [INSTANCE_LABEL]: instance.id } };
}

/** The files that go into the container before it starts, as a tar to extract at `/`. */
export async function setupArchive(material: TlsMaterial, daemonConfig: Record<string, unknown>): Promise<Buffer> {
  const pack = tar.pack();
  const dir = (name: string) => pack.entry({ name: name.slice(1) + '/', type: 'directory', mode: 0o755 });
  const file = (name: string, content: string, mode: number) => pack.entry({ name: name.slice(1), mode }, content);
  dir(CONTAINER_SETUP_DIR);
  dir(CERT_DIR);
  file(ENTRYPOINT, ENTRYPOINT_SCRIPT, 0o755);
  file(DAEMON_JSON, JSON.stringify(daemonConfig, null, 2) + '\n', 0o644);
  file(`${CERT_DIR}/ca.pem`, material.caCert, 0o644);
  file(`${CERT_DIR}/server-cert.pem`, material.serverCert, 0o644);
  file(`${CERT_DIR}/server-key.pem`, material.serverKey, 0o600);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The loopback port the engine published the daemon's TLS port on. */
export function publishedPort(info: Docker.ContainerInspectInfo): number {
  const binding = info.NetworkSettings.Ports?.[PORT_KEY]?.find(b => b.HostIp === '127.0.0.1' || b.HostIp === '');
  if (!binding) throw new Error(`The engine did not publish the daemon's port ${PORT_KEY}.`);
  return Number(binding.HostPort);
}

export class DaemonNotReadyError extends Error {}

const RETRY_DELAY_MS = 100;

interface AbortablePing {
  ping(options: { abortSignal: AbortSignal }): Promise<unknown>;
}

/**
 * Polls the daemon's ping over mutual TLS until it answers. Before dockerd listens, the engine's port
 * proxy accepts and resets; while it starts, a ping can hang: each attempt gets the time left, and
 * the container is checked between attempts so a daemon that died fails at once.
 */
export async function waitForDaemon(endpoint: TlsEndpoint, container: Docker.Container, timeoutMs: number): Promise<string> {
  const client = connect(tlsClientOptions(endpoint));
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer';
  for (;;) {
    const state = (await container.inspect()).State;
    if (!state.Running) {
      throw new DaemonNotReadyError(`The dind container stopped (exit code ${state.ExitCode}${state.Error ? `: ${state.Error}` : ''}) before its daemon answered.`);
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      // dockerode supports abortSignal on ping; its type declarations predate it.
      await (client as unknown as AbortablePing).ping({ abortSignal: AbortSignal.timeout(left) });
      return ((await client.version()) as { Version: string }).Version;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise(resolve => setTimeout(resolve, Math.min(RETRY_DELAY_MS, Math.max(0, deadline - Date.now()))));
  }
  throw new DaemonNotReadyError(`The daemon did not answer within ${timeoutMs / 1000} s (last error: ${lastError}).`);
}

/** What most likely went wrong, from the container's last log lines, for the failure message. */
export function diagnose(logTail: string, privileged: boolean): string | undefined {
  const hints: Array<[RegExp, string]> = [
    [/executable file not found|dockerd: not found|no such file or directory.*dockerd/i, "The image has no 'dockerd' on its PATH: use a dind image such as docker:28-dind."],
    [/not found.*\/bin\/sh|\/bin\/sh.*no such file/i, "The image has no /bin/sh, which the action's entrypoint needs."],
    [/permission denied|operation not permitted|must be run as root|mount.*failed/i, privileged ? 'The daemon lacks a permission it needs; on this host dind may need a different runtime (for example sysbox).' : "dind needs a privileged container: set 'privileged: true' (the default)."],
    [/address already in use/i, 'A port the daemon needs is taken inside the container.'],
    [/failed to load listeners|x509|tls: /i, 'The daemon could not set up its TLS listener.'],
    [/devmapper|overlay.*not supported|driver not supported/i, "The storage driver is not supported here: try 'daemon-config: {\"storage-driver\":\"vfs\"}'."]
  ];
  const found = hints.find(([pattern]) => pattern.test(logTail));
  if (found) return found[1];
  return privileged ? undefined : "dind needs a privileged container: set 'privileged: true' (the default).";
}

/** The container's log (stdout and stderr interleaved) as text, at most `tail` lines. */
export async function containerLog(container: Docker.Container, tail?: number): Promise<string> {
  const raw = (await container.logs({ stdout: true, stderr: true, follow: false, ...(tail ? { tail } : {}) })) as unknown as Buffer;
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
