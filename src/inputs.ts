// Every input is read, parsed and validated here, once. Everything else gets typed values.
import * as path from 'node:path';
import * as core from '@actions/core';
import { parse as parseToml } from 'smol-toml';
import { Inputs } from './runner/contract';
import { parseDuration } from './util/units';
import { CACHE_SAVE_POLICIES, type CacheInputs } from './cache/setup';
import type { PortMapping } from './daemon/container';
import { flagConfigNames, optionName } from './daemon/flags';
import { PULL_POLICIES, type PullPolicy } from './daemon/image';
import type { DaemonInputs } from './daemon/start';
import { BUILDX_DRIVERS } from './handover/buildx';
import type { BuilderInputs, HandoverInputs } from './handover/hand-over';
import { errorMessage } from './util/errors';
import { DAEMON_TLS_PORT, DEFAULT_IMAGE } from './daemon/facts';

/** Every input, typed: the fields each part reads are that part's (CacheInputs, DaemonInputs, ...). */
export interface ActionInputs extends CacheInputs, DaemonInputs, HandoverInputs, BuilderInputs {
  name: string;
  pull: PullPolicy;
  /** Whether later steps' buildx builds in the daemon (BUILDX_BUILDER). */
  buildx: boolean;
}

/** Thrown with every invalid input listed, so a user fixes them all in one go. */
export class InputError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `Invalid inputs:\n- ${problems.join('\n- ')}`);
    this.name = 'InputError';
  }
}

/** The daemon's listeners and TLS are the action's job: letting a user change them could open it up. */
const RESERVED_DAEMON_OPTIONS = ['host', 'hosts', 'tls', 'tlsverify', 'tlscacert', 'tlscert', 'tlskey', 'config-file'];
/** `-H`, alone, with its value attached (`-Htcp://…`) or among combined short flags (`-DH`). */
const SHORT_HOST_FLAG = /^-[A-Za-z]*H/;
const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
// The Docker CLI's own rule (docker context create refuses any other name, a single character too).
const CONTEXT_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$/;
// The Docker reference grammar: [domain[:port]/]path[:tag][@digest], path components lower case.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN =
  '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)';
const IMAGE_REFERENCE = new RegExp(
  `^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`
);
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$/i;
const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

type Reader = (name: string) => string;

export function getInputs(read: Reader = name => core.getInput(name)): ActionInputs {
  const problems: string[] = [];
  const attempt = <T>(parse: () => T, fallback: T): T => {
    try {
      return parse();
    } catch (error) {
      problems.push(errorMessage(error));
      return fallback;
    }
  };
  const dockerdArgs = attempt(() => parseDockerdArgs(read(Inputs.DockerdArgs)), []);
  const daemonConfig = attempt(() => parseDaemonConfig(read(Inputs.DaemonConfig)), {});
  problems.push(...conflictsBetween(dockerdArgs, daemonConfig));
  const inputs: ActionInputs = {
    image: attempt(() => parseImage(read(Inputs.Image)), ''),
    name: attempt(
      () =>
        parseMatching(
          Inputs.Name,
          read(Inputs.Name),
          CONTAINER_NAME,
          'letters, digits, _ . - (starting with a letter or digit, at most 63 characters)'
        ),
      ''
    ),
    pull: attempt(() => parseChoice(Inputs.Pull, read(Inputs.Pull), PULL_POLICIES), 'missing'),
    dockerdArgs,
    daemonConfig,
    waitTimeoutSeconds: attempt(() => parseSeconds(Inputs.WaitTimeout, read(Inputs.WaitTimeout)), 0),
    privileged: attempt(() => parseBoolean(Inputs.Privileged, read(Inputs.Privileged)), true),
    setEnv: attempt(() => parseBoolean(Inputs.SetEnv, read(Inputs.SetEnv)), true),
    context: attempt(() => parseContext(read(Inputs.Context)), ''),
    cache: attempt(() => parseBoolean(Inputs.Cache, read(Inputs.Cache)), false),
    cacheKey: read(Inputs.CacheKey).trim(),
    cacheSave: attempt(() => parseChoice(Inputs.CacheSave, read(Inputs.CacheSave), CACHE_SAVE_POLICIES), 'never'),
    cacheMaxSizeBytes: attempt(() => parseSize(Inputs.CacheMaxSize, read(Inputs.CacheMaxSize)), 0),
    cacheEvictAfterMs: attempt(() => parseEvictAfter(read(Inputs.CacheEvictAfter)), undefined),
    cacheDir: attempt(() => parseCacheDir(read(Inputs.CacheDir)), undefined),
    cacheDirMaxSizeBytes: attempt(() => parseSize(Inputs.CacheDirMaxSize, read(Inputs.CacheDirMaxSize)), 0),
    mounts: attempt(() => parseMounts(read(Inputs.Mounts)), undefined),
    ports: attempt(() => parsePorts(read(Inputs.Ports)), []),
    mtu: attempt(() => parseMtu(read(Inputs.Mtu)), undefined),
    registryMirrors: attempt(() => parseUrls(Inputs.RegistryMirrors, read(Inputs.RegistryMirrors)), []),
    insecureRegistries: parseList(read(Inputs.InsecureRegistries)),
    swarm: attempt(() => parseBoolean(Inputs.Swarm, read(Inputs.Swarm)), false),
    buildx: attempt(() => parseBoolean(Inputs.Buildx, read(Inputs.Buildx)), false),
    buildxDriver: attempt(
      () => parseChoice(Inputs.BuildxDriver, read(Inputs.BuildxDriver), BUILDX_DRIVERS),
      'docker-container'
    ),
    buildxImage: attempt(() => parseImage(read(Inputs.BuildxImage), Inputs.BuildxImage), ''),
    buildkitdConfig: attempt(() => parseBuildkitdConfig(read(Inputs.BuildkitdConfigInline)), {})
  };
  problems.push(...inputConflicts(inputs));
  if (problems.length > 0) throw new InputError(problems);
  return inputs;
}

/**
 * Post's one input: the job's status when post runs (action.yml's default `${{ job.status }}` is
 * evaluated for each step, post's included). Not validated: post never fails; `cache-save:
 * on-success` saves only on exactly 'success'.
 */
export function getJobStatus(read: Reader = name => core.getInput(name)): string {
  return read(Inputs.JobStatus).trim();
}

function required(name: string, raw: string): string {
  const value = raw.trim();
  if (value === '') throw new Error(`Input '${name}' is required.`);
  return value;
}

function parseChoice<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const value = required(name, raw);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`Input '${name}' must be one of ${allowed.join(', ')}; got '${value}'.`);
  }
  return value as T;
}

function parseBoolean(name: string, raw: string): boolean {
  const value = required(name, raw);
  if (/^(true|True|TRUE)$/.test(value)) return true;
  if (/^(false|False|FALSE)$/.test(value)) return false;
  throw new Error(`Input '${name}' must be true or false; got '${value}'.`);
}

function parseMatching(name: string, raw: string, pattern: RegExp, allowed: string): string {
  const value = required(name, raw);
  if (!pattern.test(value)) throw new Error(`Input '${name}' may contain only ${allowed}; got '${value}'.`);
  return value;
}

function parseImage(raw: string, name: string = Inputs.Image): string {
  const value = required(name, raw);
  if (!IMAGE_REFERENCE.test(value)) {
    throw new Error(
      `Input '${name}' is not a valid image reference (like ${DEFAULT_IMAGE} or registry.example.com/team/dind:1.2); got '${value}'.`
    );
  }
  return value;
}

function parseContext(raw: string): string {
  const value = raw.trim();
  if (value === '') return '';
  if (value === 'default')
    throw new Error(`Input '${Inputs.Context}' cannot be 'default': the Docker CLI reserves that name.`);
  return parseMatching(
    Inputs.Context,
    value,
    CONTEXT_NAME,
    'letters, digits, _ . + - (at least two characters, starting with a letter or digit), or be empty for no context'
  );
}

function parseSeconds(name: string, raw: string): number {
  const value = required(name, raw);
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(seconds > 0)) throw new Error(`Input '${name}' must be a positive number of seconds; got '${value}'.`);
  return seconds;
}

/** `4g`, `500M`, `1.5GiB`, `1073741824`: binary units, as Docker prints sizes. */
function parseSize(name: string, raw: string): number {
  const value = required(name, raw);
  const match = SIZE.exec(value);
  const bytes = match ? Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? '').toLowerCase()]) : NaN;
  if (!(bytes > 0))
    throw new Error(`Input '${name}' must be a size such as 4g, 500m or 1073741824 (bytes); got '${value}'.`);
  return bytes;
}

/** A duration such as 7d, 12h or 30m; `0`: at once; `never`: undefined. */
function parseEvictAfter(raw: string): number | undefined {
  const value = required(Inputs.CacheEvictAfter, raw).toLowerCase();
  if (value === 'never') return undefined;
  if (value === '0') return 0;
  const ms = parseDuration(value);
  if (!(ms > 0))
    throw new Error(
      `Input '${Inputs.CacheEvictAfter}' must be a duration such as 7d, 12h, 30m or 2w, 0 (drop what this job did not use) or never; got '${raw.trim()}'.`
    );
  return ms;
}

/** An absolute directory on the runner, or empty for none. */
export function parseCacheDir(raw: string): string | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  if (!value.startsWith('/')) {
    throw new Error(
      `Input '${Inputs.CacheDir}' takes an absolute directory on the runner (for example /var/cache/setup-dind), or nothing; got '${value}'.`
    );
  }
  return path.posix.normalize(value);
}

/** Items separated by newlines or commas, as YAML block scalars make them easy to write. */
export function parseList(raw: string): string[] {
  return raw
    .split(/[\n,]/)
    .map(item => item.trim())
    .filter(item => item !== '');
}

/** Empty: the defaults (workspace and RUNNER_TEMP); `none`: nothing; else absolute paths. */
export function parseMounts(raw: string): string[] | undefined {
  const items = parseList(raw);
  if (items.length === 0) return undefined;
  if (items.length === 1 && items[0] === 'none') return [];
  const relative = items.filter(item => !item.startsWith('/'));
  if (relative.length > 0)
    throw new Error(
      `Input '${Inputs.Mounts}' takes absolute paths (one per line), or 'none'; got ${relative.map(item => `'${item}'`).join(', ')}.`
    );
  return items.map(item => path.posix.normalize(item));
}

function parsePort(name: string, text: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535))
    throw new Error(`Input '${name}' takes ports from 1 to 65535, as PORT or RUNNER_PORT:DIND_PORT; got '${text}'.`);
  return port;
}

export function parsePorts(raw: string): PortMapping[] {
  const mappings = parseList(raw).map(item => {
    const [host, container = host, ...rest] = item.split(':');
    if (rest.length > 0)
      throw new Error(
        `Input '${Inputs.Ports}' takes PORT or RUNNER_PORT:DIND_PORT (always on 127.0.0.1); got '${item}'.`
      );
    return { host: parsePort(Inputs.Ports, host), container: parsePort(Inputs.Ports, container) };
  });
  if (mappings.some(mapping => mapping.container === DAEMON_TLS_PORT)) {
    throw new Error(
      `Input '${Inputs.Ports}' cannot publish port ${DAEMON_TLS_PORT}: it is the daemon's, published already (see the 'host' output).`
    );
  }
  return mappings;
}

export function parseMtu(raw: string): number | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  const mtu = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(mtu >= 576 && mtu <= 65535))
    throw new Error(
      `Input '${Inputs.Mtu}' must be an MTU from 576 to 65535, or empty for the runner's; got '${value}'.`
    );
  return mtu;
}

function parseUrls(name: string, raw: string): string[] {
  const urls = parseList(raw);
  const bad = urls.filter(url => !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(url));
  if (bad.length > 0)
    throw new Error(`Input '${name}' takes http:// or https:// URLs; got ${bad.map(url => `'${url}'`).join(', ')}.`);
  return urls;
}

/** Splits like a POSIX shell (quotes and backslashes), without expanding anything. */
export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`Input '${Inputs.DockerdArgs}' has an unclosed ${quote} quote.`);
  if (inWord) words.push(word);
  return words;
}

function parseDockerdArgs(raw: string): string[] {
  const args = splitShellWords(raw);
  for (const word of args) {
    const short = SHORT_HOST_FLAG.test(word) ? '-H' : undefined;
    const option = optionName(word);
    if (short || (option && RESERVED_DAEMON_OPTIONS.includes(option))) {
      throw new Error(
        `Input '${Inputs.DockerdArgs}' cannot set '${short ?? '--' + option}': the daemon listens only on its mutual-TLS port, which the action configures. Remove it (to reach the daemon use the exported DOCKER_HOST or the '${Inputs.Context}' context).`
      );
    }
  }
  return args;
}

function parseDaemonConfig(raw: string): Record<string, unknown> {
  const text = raw.trim();
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `Input '${Inputs.DaemonConfig}' is not valid JSON (${errorMessage(error)}); it must be a JSON object such as {"features":{"containerd-snapshotter":true}}.`,
      { cause: error }
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(
      `Input '${Inputs.DaemonConfig}' must be a JSON object (daemon.json settings); got ${Array.isArray(parsed) ? 'an array' : JSON.stringify(parsed)}.`
    );
  }
  const config = parsed as Record<string, unknown>;
  const reserved = Object.keys(config).filter(key => RESERVED_DAEMON_OPTIONS.includes(key));
  if (reserved.length > 0) {
    throw new Error(
      `Input '${Inputs.DaemonConfig}' cannot set ${reserved.map(key => `'${key}'`).join(', ')}: the daemon listens only on its mutual-TLS port, which the action configures.`
    );
  }
  return config;
}

/** A buildkitd.toml: valid TOML, and its `registry` a table of tables (the shape main merges the mirrors into). */
function parseBuildkitdConfig(raw: string): Record<string, unknown> {
  if (raw.trim() === '') return {};
  let config: Record<string, unknown>;
  try {
    config = parseToml(raw);
  } catch (error) {
    throw new Error(
      `Input '${Inputs.BuildkitdConfigInline}' is not valid TOML: ${errorMessage(error).split('\n')[0]}. It takes the text of a buildkitd.toml, such as [registry."docker.io"] with mirrors = ["mirror.gcr.io"].`,
      { cause: error }
    );
  }
  const registries = config.registry;
  if (registries === undefined) return config;
  const isTable = (value: unknown) => value !== null && typeof value === 'object' && !Array.isArray(value);
  const bad = isTable(registries)
    ? Object.entries(registries as Record<string, unknown>)
        .filter(([, value]) => !isTable(value))
        .map(([name]) => name)
    : ['registry'];
  if (bad.length > 0)
    throw new Error(
      `Input '${Inputs.BuildkitdConfigInline}': 'registry' must hold one table per registry ([registry."docker.io"] …); got ${bad.map(name => `'${name}'`).join(', ')}.`
    );
  return config;
}

/** dockerd refuses to start when a setting is given both as a flag and in daemon.json: say so up front. */
function conflictsBetween(args: string[], config: Record<string, unknown>): string[] {
  const names = [...flagConfigNames(args)].filter(name => name in config);
  return names.map(
    name =>
      `Inputs '${Inputs.DockerdArgs}' and '${Inputs.DaemonConfig}' both set '${name}'; dockerd refuses to start when a setting is given both ways. Keep one.`
  );
}

/** The inputs that become daemon.json settings must not be given as flags (or, for the MTU, twice). */
function inputConflicts(inputs: ActionInputs): string[] {
  const flags = flagConfigNames(inputs.dockerdArgs);
  const problems: string[] = [];
  const clash = (input: string, key: string, given: boolean) => {
    if (given && flags.has(key))
      problems.push(
        `Inputs '${input}' and '${Inputs.DockerdArgs}' both set '${key}'; dockerd refuses to start when a setting is given both ways. Keep one.`
      );
  };
  clash(Inputs.Mtu, 'mtu', inputs.mtu !== undefined);
  clash(Inputs.RegistryMirrors, 'registry-mirrors', inputs.registryMirrors.length > 0);
  clash(Inputs.InsecureRegistries, 'insecure-registries', inputs.insecureRegistries.length > 0);
  if (inputs.mtu !== undefined && 'mtu' in inputs.daemonConfig)
    problems.push(`Inputs '${Inputs.Mtu}' and '${Inputs.DaemonConfig}' both set the MTU. Keep one.`);
  return [...problems, ...buildxConflicts(inputs)];
}

/** What each buildx driver needs to reach the daemon. */
function buildxConflicts(inputs: ActionInputs): string[] {
  if (!inputs.buildx)
    return Object.keys(inputs.buildkitdConfig).length > 0
      ? [
          `Input '${Inputs.BuildkitdConfigInline}' is set but '${Inputs.Buildx}' is false: only the buildx builder the action makes reads it. Remove it, or set '${Inputs.Buildx}' to true.`
        ]
      : [];
  if (inputs.buildxDriver === 'docker-container' && !inputs.context) {
    return [
      `Input '${Inputs.Buildx}' is true but '${Inputs.Context}' is empty: the docker-container builder is made on the daemon's context. Give '${Inputs.Context}' a name (the default is dind), or set '${Inputs.BuildxDriver}' to docker.`
    ];
  }
  if (inputs.buildxDriver === 'docker' && Object.keys(inputs.buildkitdConfig).length > 0) {
    return [
      `Input '${Inputs.BuildkitdConfigInline}' is for the docker-container builder, and '${Inputs.BuildxDriver}' is docker: the daemon's own BuildKit reads daemon.json (the '${Inputs.RegistryMirrors}', '${Inputs.InsecureRegistries}' and '${Inputs.DaemonConfig}' inputs). Remove it, or set '${Inputs.BuildxDriver}' to docker-container.`
    ];
  }
  // buildx refuses a docker-driver builder whose context is not the current one, and DOCKER_HOST is what makes the daemon current.
  if (inputs.buildxDriver === 'docker' && !inputs.setEnv) {
    return [
      `Inputs '${Inputs.BuildxDriver}' docker and '${Inputs.SetEnv}' false do not go together: buildx uses the daemon's own BuildKit only as the current Docker endpoint, which the exported DOCKER_HOST makes it. Set '${Inputs.SetEnv}' to true, or '${Inputs.BuildxDriver}' to docker-container.`
    ];
  }
  return [];
}
