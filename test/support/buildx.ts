// The docker buildx CLI plugin for jobs of the emulated runner: the host's docker CLI has none. Debian's
// docker-buildx package (a static binary) is installed in an image built from debian:trixie-slim, and
// the plugin copied out of it once; each job's HOME links it into ~/.docker/cli-plugins.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, NESTED_BASE_IMAGE, outer, outerOk } from './engine';

const BUILDX_IMAGE = 'setup-dind-test/buildx:trixie';
const PLUGIN_PATH = '/usr/libexec/docker/cli-plugins/docker-buildx';
const DOCKERFILE = `FROM ${NESTED_BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-buildx \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \\
 && ${PLUGIN_PATH} version
`;

/** Builds the image if needed and copies the plugin into a new directory; returns the plugin's path there. */
export async function extractBuildxPlugin(): Promise<string> {
  await buildImage(BUILDX_IMAGE, DOCKERFILE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-buildx-plugin-'));
  const container = await outerOk(['create', BUILDX_IMAGE, 'true']);
  try {
    await outerOk(['cp', `${container}:${PLUGIN_PATH}`, dir]);
  } finally {
    await outer(['rm', container]);
  }
  return path.join(dir, path.basename(PLUGIN_PATH));
}

/** Makes `plugin` a CLI plugin of the docker CLI run with this HOME. */
export function installBuildxPlugin(home: string, plugin: string): void {
  const plugins = path.join(home, '.docker', 'cli-plugins');
  fs.mkdirSync(plugins, { recursive: true });
  fs.symlinkSync(plugin, path.join(plugins, path.basename(plugin)));
}
