// The floors: the same dind image running plain `dockerd` on a unix socket, no TLS, timed from
// container create to the first answered ping. The socket sits in a host directory bind-mounted into
// the container, so it is pinged directly, as often as every 10 ms, without `docker exec`. Its
// /var/lib/docker is a directory bind-mounted from the run's filesystem, not the outer engine's
// anonymous volume: the floor writes where every other method writes. The empty floor starts on a
// fresh directory; the populated floor on a level's daemon data already in place (populate), pruned
// to what a restored state keeps, as the action's entrypoint prunes it.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import Docker from 'dockerode';
import { now, sh, sleep } from './proc';

const POLL_MS = 10;
const TIMEOUT_MS = 60_000;
/** What a restored state keeps of /var/lib/docker (the entrypoint's `keep`): everything else goes before each start. */
const KEPT = ['image', 'overlay2', 'engine-id'];

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

interface FloorOptions {
  image: string;
  workDir: string;
  label: string;
  runId: string;
  onCreated: (id: string) => void;
  /** A populated /var/lib/docker to start on (pruned first, untimed); else a fresh empty one. */
  lib?: string;
}

/** Removes what a restored state would not hold, as the entrypoint's prune does (containers' layer mounts too). */
async function prune(lib: string): Promise<void> {
  for (const entry of fs.readdirSync(lib))
    if (!KEPT.includes(entry)) fs.rmSync(path.join(lib, entry), { recursive: true, force: true });
  const store = path.join(lib, 'image');
  if (fs.existsSync(store))
    for (const entry of fs.readdirSync(store))
      if (entry !== 'overlay2') fs.rmSync(path.join(store, entry), { recursive: true, force: true });
  await sh(
    'for d in "$1"/image/overlay2/layerdb/mounts "$1"/image/overlay2/layerdb/tmp; do [ -e "$d" ] && rm -rf "$d" && mkdir -m 755 "$d"; done; true',
    {
      args: [lib]
    }
  );
}

/**
 * A plain dockerd on `lib`, started and answering; `body` gets its socket; then it is stopped (the
 * daemon's own clean shutdown) and removed.
 */
export async function withPlainDaemon<T>(
  options: Omit<FloorOptions, 'lib'> & { lib: string },
  body: (socket: string) => Promise<T>
): Promise<T> {
  const { dir, container } = await startFloor(options, options.lib);
  try {
    await waitForPing(path.join(dir, 'docker.sock'));
    return await body(path.join(dir, 'docker.sock'));
  } finally {
    await container.stop({ t: 30 }).catch(() => undefined);
    await container.remove({ force: true, v: true }).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function startFloor(
  options: FloorOptions,
  lib: string
): Promise<{ dir: string; container: Docker.Container; started: number }> {
  const engine = new Docker({ socketPath: '/var/run/docker.sock' });
  const dir = fs.mkdtempSync(path.join(options.workDir, 'floor-'));
  const started = now();
  const container = await engine.createContainer({
    Image: options.image,
    Cmd: ['dockerd', '--host=unix:///bench-socket/docker.sock'],
    Labels: { [options.label]: options.runId },
    HostConfig: { Privileged: true, Binds: [`${dir}:/bench-socket`, `${lib}:/var/lib/docker`] }
  });
  options.onCreated(container.id);
  await container.start();
  return { dir, container, started };
}

async function waitForPing(socket: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    if (fs.existsSync(socket) && (await pingSocket(socket))) return;
    if (Date.now() > deadline) throw new Error(`the floor's dockerd did not answer within ${TIMEOUT_MS / 1000} s`);
    await sleep(POLL_MS);
  }
}

export async function floorStart(options: FloorOptions): Promise<FloorResult> {
  let lib = options.lib;
  let fresh: string | undefined;
  if (lib) await prune(lib);
  else {
    fresh = fs.mkdtempSync(path.join(options.workDir, 'floor-lib-'));
    lib = fresh;
  }
  let started: Awaited<ReturnType<typeof startFloor>> | undefined;
  try {
    started = await startFloor(options, lib);
    await waitForPing(path.join(started.dir, 'docker.sock'));
    return { seconds: now() - started.started, containerId: started.container.id };
  } finally {
    // A populated daemon stops cleanly, as the action's post stops it: its data stays whole for the next start.
    if (started) {
      if (options.lib) await started.container.stop({ t: 30 }).catch(() => undefined);
      await started.container.remove({ force: true, v: true }).catch(() => undefined);
      fs.rmSync(started.dir, { recursive: true, force: true });
    }
    if (fresh) fs.rmSync(fresh, { recursive: true, force: true });
  }
}
