// Cache keys. A key says what a cache is valid for (the dind image reference, CPU architecture and
// storage settings: a cache is never restored into a daemon that could not read it), whose it is
// (the user's `cache-key`), and what it holds (a fingerprint of the daemon's content, so an unchanged
// daemon maps to a key that already exists and is never uploaded again).
//
//   setup-dind-v<format>-<arch>-<compat>[-<user key>]+<content>
import { createHash } from 'node:crypto';
import { FORMAT_NAME } from './format';

/** Daemon settings that change what /var/lib/docker holds or how it is read. */
const STORAGE_SETTINGS = ['storage-driver', 'storage-opt', 'storage-opts', 'features', 'userns-remap', 'data-root'];

export interface CompatibilityInputs {
  image: string;
  arch: string;
  dockerdArgs: string[];
  daemonConfig: Record<string, unknown>;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The storage-relevant daemon settings, from flags and daemon.json alike. */
export function storageSettings(dockerdArgs: string[], daemonConfig: Record<string, unknown>): string[] {
  const fromArgs = dockerdArgs.filter(word =>
    STORAGE_SETTINGS.some(name => word === `--${name}` || word.startsWith(`--${name}=`))
  );
  // A flag's value may be the next word: keep the word after a bare storage flag too.
  const values = dockerdArgs.flatMap((word, i) =>
    STORAGE_SETTINGS.some(name => word === `--${name}`) && dockerdArgs[i + 1] ? [dockerdArgs[i + 1]] : []
  );
  const fromConfig = STORAGE_SETTINGS.filter(name => name in daemonConfig).map(
    name => `${name}=${JSON.stringify(daemonConfig[name])}`
  );
  return [...fromArgs, ...values, ...fromConfig].sort();
}

/** The values given to any of `flags` (`--flag=value` or `--flag value`), in order. */
function flagValues(args: string[], flags: string[]): string[] {
  return args.flatMap((word, i) => {
    const flag = flags.find(name => word === name || word.startsWith(`${name}=`));
    if (flag === undefined) return [];
    if (word.length > flag.length) return [word.slice(flag.length + 1)];
    return args[i + 1] ? [args[i + 1]] : [];
  });
}

/**
 * Pure: why a restore would carry nothing for these settings, if it would not. A restore keeps only
 * overlay2's image store (the one layout whose every path-bearing entry is checked), so another storage
 * driver, or the containerd image store, starts empty in every job.
 */
export function uncarriedStorage(dockerdArgs: string[], daemonConfig: Record<string, unknown>): string | undefined {
  const driver = flagValues(dockerdArgs, ['--storage-driver', '-s'])[0] ?? daemonConfig['storage-driver'];
  if (driver !== undefined && driver !== 'overlay2') return `the storage driver is '${String(driver)}'`;
  const features = daemonConfig.features as Record<string, unknown> | undefined;
  // dockerd 28's --feature name[=bool]: the name alone turns it on.
  const flaggedOn = flagValues(dockerdArgs, ['--feature']).some(feature =>
    /^containerd-snapshotter(?:=(?:true|1))?$/.test(feature)
  );
  if (flaggedOn || features?.['containerd-snapshotter'] === true)
    return 'the containerd image store is on (containerd-snapshotter)';
  return undefined;
}

export function keyBase(inputs: CompatibilityInputs): string {
  const compat = sha256(
    JSON.stringify({ image: inputs.image, storage: storageSettings(inputs.dockerdArgs, inputs.daemonConfig) })
  ).slice(0, 12);
  return `${FORMAT_NAME}-${inputs.arch}-${compat}`;
}

/** Keys may not hold commas; keep the user's key readable but safe. */
export function sanitizeUserKey(userKey: string): string {
  return userKey.replace(/[^A-Za-z0-9._/=-]/g, '_');
}

export interface CacheKeys {
  /** Prefix of every key saved for this user key: a match means `cache-hit`. */
  exactPrefix: string;
  /** Restore order: this user key's newest cache, then any compatible one. */
  restoreKeys: string[];
}

export function cacheKeys(base: string, userKey: string): CacheKeys {
  const scope = userKey ? `${base}-${sanitizeUserKey(userKey)}` : base;
  // '+' never occurs in a sanitized user key, so one user key's prefix never matches another's.
  const exactPrefix = `${scope}+`;
  // `base` alone: any compatible cache, whoever's (the compat hash has a fixed length, so no other base matches).
  return { exactPrefix, restoreKeys: [exactPrefix, base] };
}

export function saveKey(exactPrefix: string, fingerprint: string): string {
  return `${exactPrefix}${fingerprint}`;
}

/** What the daemon holds that the cache carries: images by id and tags, and build cache records. */
export interface DaemonContent {
  images: Array<{ id: string; tags: string[] }>;
  buildCache: string[];
}

export function contentFingerprint(content: DaemonContent): string {
  const canonical = {
    images: content.images.map(image => `${image.id} ${[...image.tags].sort().join(' ')}`).sort(),
    buildCache: [...content.buildCache].sort()
  };
  return sha256(JSON.stringify(canonical)).slice(0, 16);
}
