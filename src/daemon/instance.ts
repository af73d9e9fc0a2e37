// One dind daemon of one job step: its unique id and the names of everything made for it.
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Instance {
  /** Random, so parallel jobs on one host and several steps in one job never collide. */
  id: string;
  /** The `name` input: the daemon's host name on its network and the base of the names below. */
  name: string;
  containerName: string;
  networkName: string;
  /**
   * The container's /var/lib/docker: a volume of its own, labelled as the container, so that post finds
   * and removes it even when the container went without its volumes (the image declares the path a
   * VOLUME, and an anonymous one would stay behind).
   */
  volumeName: string;
  /** The client's certificate directory (DOCKER_CERT_PATH). */
  certDir: string;
  /** The daemon's /var/lib/docker on the runner, when the cache is on. */
  dataDir: string;
}

export function newInstance(
  name: string,
  tempDir = process.env.RUNNER_TEMP || os.tmpdir(),
  id = randomBytes(4).toString('hex')
): Instance {
  const base = `setup-dind-${name}-${id}`;
  return {
    id,
    name,
    containerName: base,
    networkName: base,
    volumeName: base,
    certDir: path.join(tempDir, base),
    dataDir: path.join(tempDir, `${base}-data`)
  };
}
