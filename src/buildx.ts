// A buildx builder on the daemon for later steps. They select it through BUILDX_BUILDER, per job:
// `docker buildx use` would write per-user state in ~/.docker/buildx that parallel jobs of the runner's
// user fight over. buildx keeps its builders there too, shared by all those jobs: post removes ours.
import { Inputs } from './constants';
import { dockerCli } from './docker-cli';
import type { Instance } from './instance';

/**
 * The builder of the docker driver. buildx refuses a docker-driver builder named after a context that
 * is not the current one ("use `docker --context=… buildx`"), and with DOCKER_HOST exported the current
 * context is `default`, whose builder is the daemon's own BuildKit.
 */
export const DOCKER_DRIVER_BUILDER = 'default';

/**
 * The instance's names are unique even beside the records of a job that was killed before its post.
 * Lower case: buildx stores names so, but keeps the given case for its activity records, which
 * `buildx rm` then misses.
 */
export function builderName(instance: Instance): string {
  return instance.containerName.toLowerCase();
}

export interface BuilderRequest {
  name: string;
  /** The Docker CLI context of the daemon: the builder's endpoint. */
  context: string;
  /** The BuildKit image, which the daemon pulls. */
  image: string;
}

/** `--bootstrap` starts BuildKit now, so that an image the daemon cannot pull fails this step rather than the first build. */
export function builderCreateArgs(request: BuilderRequest): string[] {
  return [
    'buildx',
    'create',
    '--name',
    request.name,
    '--driver',
    'docker-container',
    '--driver-opt',
    `image=${request.image}`,
    '--bootstrap',
    request.context
  ];
}

/** The buildx plugin's version line; fails, saying what is missing, on a runner without it. */
export async function buildxVersion(): Promise<string> {
  const version = await dockerCli(['buildx', 'version']).catch((error: Error) => ({
    exitCode: -1,
    stdout: '',
    stderr: error.message
  }));
  if (version.exitCode !== 0) {
    throw new Error(
      `${Inputs.Buildx}: true needs the docker buildx CLI plugin on the runner, and \`docker buildx version\` failed: ${version.stderr.trim() || `exit code ${version.exitCode}`}. Install the plugin (GitHub's ubuntu runners have it; docker/setup-buildx-action installs it in an earlier step), or set '${Inputs.Buildx}' to false.`
    );
  }
  return version.stdout.trim();
}

export async function createBuilder(request: BuilderRequest): Promise<void> {
  const created = await dockerCli(builderCreateArgs(request));
  if (created.exitCode !== 0) {
    throw new Error(
      `buildx could not start the docker-container builder '${request.name}' on context '${request.context}' (BuildKit image ${request.image}, which the daemon pulls: see '${Inputs.BuildxImage}' and '${Inputs.RegistryMirrors}', or '${Inputs.BuildxDriver}: docker' to build without it):\n${created.stderr.trim() || created.stdout.trim()}`
    );
  }
}

const NOT_FOUND = /no builder ".*" found/;

/**
 * Removes the builder: its BuildKit container, and buildx's records of it (instances/, activity/ and
 * refs/ in ~/.docker/buildx). A builder that is not there (main failed before buildx recorded it) is fine.
 */
export async function removeBuilder(name: string): Promise<void> {
  const removed = await dockerCli(['buildx', 'rm', name]);
  if (removed.exitCode === 0) return;
  // buildx drops its records even when it cannot reach the daemon to remove the BuildKit container
  // (which goes with the daemon anyway): asking again tells whether they are gone.
  const again = await dockerCli(['buildx', 'rm', name]);
  if (again.exitCode === 0 || NOT_FOUND.test(again.stderr)) return;
  throw new Error(`docker buildx rm ${name} failed: ${removed.stderr.trim()}`);
}
