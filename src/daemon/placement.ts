// Main's decisions about where the daemon sits relative to the job's steps, as pure functions of what
// main found (the runner's container, the daemon's addresses, what the entrypoint reported).
import type { DataEvents } from './data-image';
import type { Instance } from './instance';
import { engineHostPath, type RunnerContainer } from '../runner/host';
import { DAEMON_TLS_PORT } from './facts';

/** Where this job reaches the daemon's TLS port. */
export interface DaemonAddress {
  host: string;
  port: number;
}

/** Networks a container cannot be connected to: a runner on them shares the host's loopback or none. */
const UNSHARED_NETWORKS = ['host', 'none'];

/** Where the job's steps run, as far as reaching the daemon is concerned. */
export interface Placement {
  runner?: RunnerContainer;
  /** The runner container's networks the daemon joins; empty on a bare host. */
  sharedNetworks: string[];
}

/** How this job, and the steps after it, reach the daemon. */
export interface Reach {
  address: DaemonAddress;
  /** DOCKER_HOST. */
  dockerHost: string;
  /** Where nested containers' published ports are reachable. */
  ip?: string;
}

/** DOCKER_HOST for an address. */
export function daemonHost(host: string, port: number): string {
  return `tcp://${host}:${port}`;
}

export function placementOf(runner: RunnerContainer | undefined): Placement {
  return { runner, sharedNetworks: runner ? runner.networks.filter(name => !UNSHARED_NETWORKS.includes(name)) : [] };
}

/**
 * On a bare host through the port published on 127.0.0.1; from a container, by the daemon's name on a
 * network they share, or by its address on the default bridge, which has no DNS.
 */
export function reachability(
  instance: Instance,
  publishedPort: number,
  addresses: Record<string, string>,
  placement: Placement
): Reach {
  const network = placement.sharedNetworks.find(name => addresses[name]);
  if (!network) {
    const address = { host: '127.0.0.1', port: publishedPort };
    return { address, dockerHost: daemonHost(address.host, address.port), ip: addresses[instance.networkName] };
  }
  const ip = addresses[network];
  const address = { host: network === 'bridge' ? ip : instance.containerName, port: DAEMON_TLS_PORT };
  return { address, dockerHost: daemonHost(address.host, address.port), ip };
}

/**
 * A job in a container on the default bridge reaches the daemon by its address there, which the engine
 * assigns only when the container starts: the server's certificate must wait for it.
 */
export function lateServerCertificate(placement: Placement): boolean {
  return placement.sharedNetworks[0] === 'bridge';
}

/** The runner paths to mount at the same path in the daemon, as the engine's host has them. */
export function bindMountPlan(
  paths: string[],
  runner: RunnerContainer | undefined
): { mounts: Array<{ source: string; target: string }>; unreachable: string[] } {
  const mounts: Array<{ source: string; target: string }> = [];
  const unreachable: string[] = [];
  for (const target of paths) {
    const source = engineHostPath(runner, target);
    if (source === undefined) unreachable.push(target);
    else mounts.push({ source, target });
  }
  return { mounts, unreachable };
}

/** What the entrypoint's report means for the cache of this job. */
export type DataOutcome =
  | { kind: 'image' }
  /** No filesystem image (no loop device): the cache is off for the job. */
  | { kind: 'plain'; reason: string }
  /** A restored state failed its check: the daemon started empty, and post saves a new state. */
  | { kind: 'discarded'; reason: string };

export function dataOutcome(events: DataEvents, restoredKey: string | undefined): DataOutcome {
  if (events.plain) return { kind: 'plain', reason: events.plain };
  if (events.discarded && restoredKey) return { kind: 'discarded', reason: events.discarded };
  return { kind: 'image' };
}

/**
 * Pure: whether a daemon that did not become ready may have failed on the state restored for it, and so
 * starts again on a fresh filesystem; not when the entrypoint had already set the state aside (or kept
 * no filesystem at all): a cold daemon that fails fails the job.
 */
export function startsAfresh(events: DataEvents, restoredKey: string | undefined): boolean {
  return restoredKey !== undefined && dataOutcome(events, restoredKey).kind === 'image';
}
