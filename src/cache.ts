// The daemon's /var/lib/docker across jobs, main's side and what both sides share. Main restores it
// into a directory on the runner before the daemon starts (streaming download → zstd → tar); post's
// side is cache-save.ts. Every failure here is a warning and a cold daemon, never a failed job and
// never a half-restored tree.
import * as path from 'node:path';
import * as core from '@actions/core';
import {
  detectFileAccess,
  emptyDirectory,
  extractInto,
  hasZstd,
  makeDirectory,
  METADATA_FILE,
  readFileAsRoot,
  type FileAccess
} from './archive';
import { availability, download, lookup } from './cache-service';
import { cacheKeys, keyBase } from './cache-key';
import { Inputs } from './constants';
import type { ActionInputs, CacheSavePolicy } from './inputs';
import type { Instance } from './instance';
import { formatBytes } from './units';
import type { LastUsed } from './usage';

/** What post needs to save the cache; kept in the step state. */
export interface CacheSetup {
  dataDir: string;
  access: FileAccess;
  exactPrefix: string;
  restoreKeys: string[];
  savePolicy: CacheSavePolicy;
  maxBytes: number;
  /** The key restored, if any. */
  restoredKey?: string;
  /** Images unused for this long are dropped before saving; undefined: never. */
  keepUnusedMs?: number;
  /** When the daemon started (ms since the epoch): what happened after is the job's use of its images. */
  usageSince?: number;
  /** The exec that records the daemon's image events (see usage.ts). */
  usageRecorder?: string;
}

export interface RestoreResult {
  key?: string;
  hit: boolean;
  bytes: number;
}

/** Decides whether this job can cache at all, and makes the data directory. Undefined: no cache. */
export async function prepareCache(inputs: ActionInputs, instance: Instance): Promise<CacheSetup | undefined> {
  if (!inputs.cache) {
    core.info(`Cache off (input '${Inputs.Cache}').`);
    return undefined;
  }
  const service = availability();
  if (!service.readable && !service.writable) {
    core.info(`Cache off: ${service.reason}.`);
    return undefined;
  }
  const [access, zstd] = await Promise.all([detectFileAccess(), hasZstd()]);
  if (access === 'none') {
    core.warning(
      "Cache off: the daemon's files belong to root, and this job runs as a user without passwordless sudo. Run the job as root or give its user passwordless sudo to cache, or set 'cache: false'."
    );
    return undefined;
  }
  if (!zstd) {
    core.warning("Cache off: the runner has no 'zstd' (install it, for example apt-get install zstd).");
    return undefined;
  }
  const base = keyBase({
    image: inputs.image,
    arch: process.arch,
    dockerdArgs: inputs.dockerdArgs,
    daemonConfig: inputs.daemonConfig
  });
  const keys = cacheKeys(base, inputs.cacheKey);
  await makeDirectory(access, instance.dataDir);
  return {
    dataDir: instance.dataDir,
    access,
    ...keys,
    savePolicy: inputs.cacheSave,
    maxBytes: inputs.cacheMaxSizeBytes,
    keepUnusedMs: inputs.cacheEvictAfterMs
  };
}

/** Streams the newest matching cache into the data directory. Never throws. */
export async function restoreDaemonData(setup: CacheSetup): Promise<RestoreResult> {
  const miss: RestoreResult = { hit: false, bytes: 0 };
  if (!availability().readable) {
    core.info(`Not restoring: ${availability().reason}.`);
    return miss;
  }
  let bytes = 0;
  try {
    const entry = await lookup(setup.exactPrefix, setup.restoreKeys);
    if (!entry) {
      core.info(`No cache yet for ${setup.exactPrefix}…: the daemon starts empty.`);
      return miss;
    }
    core.info(`Restoring ${entry.key}`);
    const archive = await download(entry.url);
    archive.on('data', (chunk: Buffer) => (bytes += chunk.length));
    await extractInto(setup.access, setup.dataDir, archive);
    const hit = entry.key.startsWith(setup.exactPrefix);
    core.info(`Restored ${formatBytes(bytes)} (${hit ? 'exact key' : 'fallback key'}).`);
    return { key: entry.key, hit, bytes };
  } catch (error) {
    core.warning(`Cache restore failed, the daemon starts empty: ${(error as Error).message}`);
    await discard(setup);
    return miss;
  }
}

/** Saved with the data: what made it, and when each image was last used. */
export interface CacheMetadata {
  imageId: string;
  key: string;
  savedAt: string;
  lastUsed?: LastUsed;
}

export async function readMetadata(setup: CacheSetup): Promise<Partial<CacheMetadata> | undefined> {
  const text = await readFileAsRoot(setup.access, path.join(setup.dataDir, METADATA_FILE));
  try {
    return text ? (JSON.parse(text) as Partial<CacheMetadata>) : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps a restored tree only if the same image made it: another daemon version might misread it. */
export async function verifyRestoredData(setup: CacheSetup, imageId: string): Promise<boolean> {
  const madeBy = (await readMetadata(setup))?.imageId;
  if (madeBy === imageId) return true;
  core.warning(
    `The cache was made by another dind image (${madeBy ?? 'unknown'}, this one is ${imageId}): the daemon starts empty and post saves a new cache.`
  );
  await discard(setup);
  return false;
}

async function discard(setup: CacheSetup): Promise<void> {
  await emptyDirectory(setup.access, setup.dataDir).catch(error =>
    core.warning(`Could not empty ${setup.dataDir}: ${(error as Error).message}`)
  );
}
