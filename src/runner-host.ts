// Facts about where the job runs: the MTU of its network, and whether it runs inside a container of
// the same engine (a `container:` job, or a runner in a container), which changes how the daemon is
// reached (by name on a shared network, not on 127.0.0.1) and which paths the engine can bind-mount.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Docker from 'dockerode';

/** The MTU of the interface of the default route, from /proc: undefined if there is none. */
export function defaultRouteMtu(procRoute = '/proc/net/route', sysClassNet = '/sys/class/net'): number | undefined {
  try {
    const route = fs
      .readFileSync(procRoute, 'utf8')
      .split('\n')
      .slice(1)
      .map(line => line.trim().split(/\s+/))
      .find(fields => fields[1] === '00000000');
    if (!route) return undefined;
    const mtu = Number(fs.readFileSync(path.join(sysClassNet, route[0], 'mtu'), 'utf8').trim());
    return mtu > 0 ? mtu : undefined;
  } catch {
    return undefined;
  }
}

export interface RunnerContainer {
  id: string;
  /** Networks it is attached to, by name. */
  networks: string[];
  /** Its bind mounts: engine-host source → path inside it. */
  mounts: Array<{ source: string; destination: string }>;
}

/** The files the engine bind-mounts into each container, from its own directory named by the container's id. */
const ENGINE_FILES = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'];

/**
 * Ids this process's container may go by: the id in the source of its own /etc/hostname (and hosts,
 * resolv.conf) mount, then its host name. Only mounts at those very paths count: a process that shares
 * its engine's mount namespace also sees every other container's, under their root directories.
 */
export function candidateIds(mountinfo: string, hostname = os.hostname()): string[] {
  const fromMounts = mountinfo
    .split('\n')
    .map(line => line.split(' '))
    .filter(fields => ENGINE_FILES.includes(fields[4]))
    .flatMap(fields => /\/containers\/([0-9a-f]{64})\//.exec(fields[3])?.[1] ?? []);
  return [...new Set([...fromMounts, hostname])];
}

/** The container this job runs in, if the engine knows it. */
export async function detectRunnerContainer(
  docker: Docker,
  mountinfoFile = '/proc/self/mountinfo'
): Promise<RunnerContainer | undefined> {
  if (!fs.existsSync('/.dockerenv') && !fs.existsSync('/run/.containerenv')) return undefined;
  let mountinfo = '';
  try {
    mountinfo = fs.readFileSync(mountinfoFile, 'utf8');
  } catch {
    // No mount table: the host name is all there is to go by.
  }
  for (const id of candidateIds(mountinfo)) {
    try {
      const info = await docker.getContainer(id).inspect();
      return {
        id: info.Id,
        networks: Object.keys(info.NetworkSettings.Networks ?? {}),
        mounts: (info.Mounts ?? [])
          .filter(mount => mount.Type === 'bind')
          .map(mount => ({ source: mount.Source, destination: mount.Destination }))
      };
    } catch {
      // Not a container of this engine: try the next candidate.
    }
  }
  return undefined;
}

/** Where the engine's host has `localPath`: through the runner container's bind mounts, or as is on a bare host. */
export function engineHostPath(runner: RunnerContainer | undefined, given: string): string | undefined {
  const localPath = path.posix.resolve(given);
  if (!runner) return localPath;
  const mount = runner.mounts
    .filter(
      m =>
        localPath === m.destination ||
        localPath.startsWith(m.destination.endsWith('/') ? m.destination : `${m.destination}/`)
    )
    .sort((a, b) => b.destination.length - a.destination.length)[0];
  return mount ? path.join(mount.source, path.relative(mount.destination, localPath)) : undefined;
}
