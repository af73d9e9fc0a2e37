// Facts about where the job runs: the MTU of its network, and whether it runs inside a container of
// the same engine (a `container:` job, or a runner in a container), which changes how the daemon is
// reached (by name on a shared network, not on 127.0.0.1) and which paths the engine can bind-mount;
// and, where there is no engine at all, whether that is for good (actions-runner-controller's
// kubernetes mode) and what to use instead.
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

/** What to use where a job has no Docker engine for good. */
const USE_INSTEAD =
  "Use actions-runner-controller's dind mode (containerMode.type: dind: a privileged Docker sidecar in each runner pod), or a runner with a Docker engine.";

/**
 * Main's error when the engine does not answer. Where the job's environment says that there is no
 * engine to be had, it says why and what to use instead:
 * - ACTIONS_RUNNER_CONTAINER_HOOKS: the runner runs jobs through container hooks, as ARC's kubernetes
 *   mode does (runner-container-hooks' k8s hooks). A step sees it when it runs on the runner itself.
 * - KUBERNETES_SERVICE_HOST without DOCKER_HOST: the step runs in a Kubernetes pod that was given no
 *   engine. In ARC's kubernetes mode every job has a job container (ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER),
 *   a pod whose steps get the job's environment, not the runner's: the hooks variable never reaches
 *   them, Kubernetes' own variables do. (ARC's dind mode sets DOCKER_HOST: a sidecar that is down is
 *   no reason to recommend it.)
 * Else the plain message: the engine may just be down, or the user not allowed to use it.
 */
export function engineUnreachableMessage(
  engine: string,
  reason: string,
  env: Record<string, string | undefined> = process.env
): string {
  if (env.ACTIONS_RUNNER_CONTAINER_HOOKS)
    return `setup-dind cannot run in actions-runner-controller's kubernetes mode: this runner runs its jobs as pods through container hooks (ACTIONS_RUNNER_CONTAINER_HOOKS is set) and has no Docker engine to start a dind container with (none at ${engine}: ${reason}). ${USE_INSTEAD}`;
  if (env.KUBERNETES_SERVICE_HOST && !env.DOCKER_HOST)
    return `setup-dind cannot start a dind container here: this job runs in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set) with no Docker engine (none at ${engine}: ${reason}), as in actions-runner-controller's kubernetes mode, whose jobs run as pods through container hooks. ${USE_INSTEAD}`;
  return `Cannot reach the Docker engine at ${engine}: ${reason}. setup-dind needs a Docker engine on the runner (and the job's user allowed to use it).`;
}
