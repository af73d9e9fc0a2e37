// Scenario 1's floor: the same dind image running plain `dockerd` on a unix socket, no TLS, timed from
// container create to the first answered ping. The socket sits in a host directory bind-mounted into
// the container, so it is pinged directly, as often as every 10 ms, without `docker exec`. Its
// /var/lib/docker is a directory bind-mounted from `workDir` (the run's filesystem), not the outer
// engine's anonymous volume: the floor writes where every other method writes.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import Docker from 'dockerode';
import { now, sleep } from './proc';

const POLL_MS = 10;
const TIMEOUT_MS = 60_000;

function pingSocket(socketPath: string): Promise<boolean> {
  return new Promise(resolve => {
    const request = http.get({ socketPath, path: '/_ping', timeout: 1000 }, response => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

export interface FloorResult {
  seconds: number;
  containerId: string;
}

export async function floorStart(options: {
  image: string;
  workDir: string;
  label: string;
  runId: string;
  onCreated: (id: string) => void;
}): Promise<FloorResult> {
  const engine = new Docker({ socketPath: '/var/run/docker.sock' });
  const dir = fs.mkdtempSync(path.join(options.workDir, 'floor-'));
  const socket = path.join(dir, 'docker.sock');
  const lib = path.join(dir, 'lib');
  fs.mkdirSync(lib);
  const started = now();
  const container = await engine.createContainer({
    Image: options.image,
    Cmd: ['dockerd', '--host=unix:///bench-socket/docker.sock'],
    Labels: { [options.label]: options.runId },
    HostConfig: { Privileged: true, Binds: [`${dir}:/bench-socket`, `${lib}:/var/lib/docker`] }
  });
  options.onCreated(container.id);
  try {
    await container.start();
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      if (fs.existsSync(socket) && (await pingSocket(socket))) break;
      if (Date.now() > deadline) throw new Error(`the floor's dockerd did not answer within ${TIMEOUT_MS / 1000} s`);
      await sleep(POLL_MS);
    }
    return { seconds: now() - started, containerId: container.id };
  } finally {
    await container.remove({ force: true, v: true }).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
