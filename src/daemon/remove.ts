// Post's side of the daemon: its stop, its log, and the removal of what main made for it on the outer
// engine and the runner's disk.
import * as fs from 'node:fs/promises';
import type Docker from 'dockerode';
import { containerLog } from './container';
import type { Instance } from './instance';
import { INSTANCE_LABEL } from '../runner/contract';
import { bestEffort } from '../util/best-effort';

/** dockerd stops its own containers on SIGTERM; give it the time the Docker CLI would. */
const STOP_GRACE_SECONDS = 30;

/** Post's steps on the outer engine and the runner's disk for the daemon main left (see PostSteps). */
export function daemonSteps(docker: Docker, instance: Instance) {
  const label = { label: [`${INSTANCE_LABEL}=${instance.id}`] };
  return {
    listContainers: () => docker.listContainers({ all: true, filters: label }),
    stop: (id: string) => docker.getContainer(id).stop({ t: STOP_GRACE_SECONDS }),
    log: (id: string) => containerLog(docker.getContainer(id)),
    // v: for anonymous volumes of a custom image's other VOLUME paths (the instance's own goes below).
    removeContainer: (id: string) => docker.getContainer(id).remove({ force: true, v: true }),
    removeNetworks: async () => {
      const networks = await docker.listNetworks({ filters: label });
      for (const network of networks) {
        await bestEffort(`remove network ${network.Name}`, () => docker.getNetwork(network.Id).remove(), undefined);
      }
      return networks.length;
    },
    removeVolumes: async () => {
      const { Volumes: volumes } = await docker.listVolumes({ filters: label });
      for (const volume of volumes ?? []) {
        await bestEffort(`remove volume ${volume.Name}`, () => docker.getVolume(volume.Name).remove(), undefined);
      }
      return volumes?.length ?? 0;
    },
    // One file however much the daemon held (data-image.ts), and the entrypoint's notes.
    removeData: () => fs.rm(instance.dataDir, { recursive: true, force: true })
  };
}
