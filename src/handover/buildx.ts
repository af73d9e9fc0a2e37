// A buildx builder on the daemon for later steps. They select it through BUILDX_BUILDER, per job:
// `docker buildx use` would write per-user state in ~/.docker/buildx that parallel jobs of the runner's
// user fight over. buildx keeps its builders there too, shared by all those jobs: post removes ours.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as core from '@actions/core';
import { stringify as stringifyToml } from 'smol-toml';
import { Inputs } from '../runner/contract';
import { dockerCli } from './docker-cli';
import type { Instance } from '../daemon/instance';

export const BUILDX_DRIVERS = ['docker-container', 'docker'] as const;
export type BuildxDriver = (typeof BUILDX_DRIVERS)[number];

/** BuildKit for buildx's docker-container driver, pinned so a new release never lands unannounced. */
export const DEFAULT_BUILDX_IMAGE = 'moby/buildkit:v0.32.2';

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
  /** buildkitd.toml's text (buildkitdConfig); undefined: BuildKit's defaults. */
  config?: string;
}

/**
 * `--bootstrap` starts BuildKit now, so that an image the daemon cannot pull fails this step rather than
 * the first build. buildx copies the config file into its record of the builder at once.
 */
export function builderCreateArgs(request: Omit<BuilderRequest, 'config'>, configFile?: string): string[] {
  return [
    'buildx',
    'create',
    '--name',
    request.name,
    '--driver',
    'docker-container',
    '--driver-opt',
    `image=${request.image}`,
    ...(configFile ? ['--buildkitd-config', configFile] : []),
    '--bootstrap',
    request.context
  ];
}

export interface BuildkitdConfig {
  /** The file's text; undefined when there is nothing to set. */
  toml?: string;
  /** What BuildKit cannot take: insecure registries given as CIDRs (it names registries by host only), mirrors that are not http(s) URLs. */
  skipped: string[];
}

const CIDR = /^[0-9a-fA-F:.]+\/\d{1,3}$/;

/**
 * Pure: buildkitd.toml for the docker-container builder, so that it pulls as the daemon does: the
 * registry settings of the daemon's daemon.json (the inputs' and daemon-config's), and the user's
 * buildkitd-config-inline. A mirror is host[:port][/path] for BuildKit (no scheme), with `http = true`
 * on its host when it is http://. An insecure registry gets `http = true` and `insecure = true`:
 * BuildKit then tries HTTPS without verification, then plain HTTP, as dockerd does. A registry's table
 * in the user's text replaces the action's whole; the user's other settings are kept as given.
 */
export function buildkitdConfig(daemonJson: Record<string, unknown>, inline: Record<string, unknown>): BuildkitdConfig {
  const strings = (key: string) => {
    const value = daemonJson[key];
    return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
  };
  const registries: Record<string, Record<string, unknown>> = {};
  const table = (host: string) => (registries[host] ??= {});
  const mirrors: string[] = [];
  const skipped: string[] = [];
  for (const mirror of strings('registry-mirrors')) {
    const url = URL.canParse(mirror) ? new URL(mirror) : undefined;
    if (!url || !['http:', 'https:'].includes(url.protocol) || url.host === '') {
      skipped.push(mirror);
      continue;
    }
    const hostPath = `${url.host}${url.pathname.replace(/\/+$/, '')}`;
    if (!mirrors.includes(hostPath)) mirrors.push(hostPath);
    if (url.protocol === 'http:') table(url.host).http = true;
  }
  if (mirrors.length > 0) table('docker.io').mirrors = mirrors;
  for (const entry of strings('insecure-registries')) {
    const host = entry.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    if (CIDR.test(host)) {
      skipped.push(entry);
      continue;
    }
    Object.assign(table(host), { http: true, insecure: true });
  }
  const userRegistries = (inline.registry ?? {}) as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...inline };
  const registry = { ...registries, ...userRegistries };
  if (Object.keys(registry).length > 0) merged.registry = registry;
  const toml = Object.keys(merged).length > 0 ? stringifyToml(merged) : undefined;
  return { toml, skipped };
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
  // Read by buildx while it creates the builder, then kept in its record: the file goes at once.
  const temp = process.env.RUNNER_TEMP || os.tmpdir();
  const dir = request.config ? await fs.mkdtemp(path.join(temp, 'setup-dind-buildkitd-')) : undefined;
  const configFile = dir ? path.join(dir, 'buildkitd.toml') : undefined;
  let created: Awaited<ReturnType<typeof dockerCli>>;
  try {
    if (configFile) {
      await fs.writeFile(configFile, request.config ?? '', { mode: 0o600 });
      core.debug(`buildkitd.toml of builder ${request.name}:\n${request.config}`);
    }
    const args = builderCreateArgs(request, configFile);
    core.debug(`docker ${args.join(' ')}`);
    created = await dockerCli(args);
  } finally {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  }
  core.debug(`docker buildx create exited ${created.exitCode}: ${created.stderr.trim() || created.stdout.trim()}`);
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
  core.debug(`docker buildx rm ${name} exited ${removed.exitCode}: ${removed.stderr.trim()}; asking again`);
  // buildx drops its records even when it cannot reach the daemon to remove the BuildKit container
  // (which goes with the daemon anyway): asking again tells whether they are gone.
  const again = await dockerCli(['buildx', 'rm', name]);
  if (again.exitCode === 0 || NOT_FOUND.test(again.stderr)) {
    core.debug(`buildx has no record of ${name} any more: ${again.stderr.trim() || 'removed'}`);
    return;
  }
  throw new Error(`docker buildx rm ${name} failed: ${removed.stderr.trim()}`);
}
