// The daemon's /var/lib/docker across jobs. Main restores it into a directory on the runner before the
// daemon starts (streaming download → zstd → tar); post, once the daemon has stopped cleanly, archives
// it (tar → zstd → streaming upload) under a key derived from its content. Every failure here is a
// warning and a cold daemon, never a failed job and never a half-restored tree.
import * as path from 'node:path';
import { Transform } from 'node:stream';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import {
  archiveFrom,
  detectFileAccess,
  directoryBytes,
  emptyDirectory,
  extractInto,
  hasZstd,
  makeDirectory,
  METADATA_FILE,
  readFileAsRoot,
  writeFileAsRoot,
  type FileAccess
} from './archive';
import { availability, download, lookup, reserve, upload } from './cache-service';
import { cacheKeys, contentFingerprint, keyBase, saveKey, type DaemonContent } from './cache-key';
import { Inputs } from './constants';
import { collectUsage, planEviction, type LastUsed } from './usage';
import type { ActionInputs, CacheSavePolicy } from './inputs';
import type { Instance } from './instance';
import { formatBytes } from './units';

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

/** Build cache not used for this long is not carried on. */
const BUILD_CACHE_MAX_AGE = '168h';

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
    core.warning("Cache off: the daemon's files belong to root, and this job runs as a user without passwordless sudo. Run the job as root or give its user passwordless sudo to cache, or set 'cache: false'.");
    return undefined;
  }
  if (!zstd) {
    core.warning("Cache off: the runner has no 'zstd' (install it, for example apt-get install zstd).");
    return undefined;
  }
  const base = keyBase({ image: inputs.image, arch: process.arch, dockerdArgs: inputs.dockerdArgs, daemonConfig: inputs.daemonConfig });
  const keys = cacheKeys(base, inputs.cacheKey);
  await makeDirectory(access, instance.dataDir);
  return { dataDir: instance.dataDir, access, ...keys, savePolicy: inputs.cacheSave, maxBytes: inputs.cacheMaxSizeBytes, keepUnusedMs: inputs.cacheEvictAfterMs };
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
interface CacheMetadata {
  imageId: string;
  key: string;
  savedAt: string;
  lastUsed?: LastUsed;
}

async function readMetadata(setup: CacheSetup): Promise<Partial<CacheMetadata> | undefined> {
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
  core.warning(`The cache was made by another dind image (${madeBy ?? 'unknown'}, this one is ${imageId}): the daemon starts empty and post saves a new cache.`);
  await discard(setup);
  return false;
}

async function discard(setup: CacheSetup): Promise<void> {
  await emptyDirectory(setup.access, setup.dataDir).catch(error => core.warning(`Could not empty ${setup.dataDir}: ${(error as Error).message}`));
}

/**
 * Clears what the next job should not inherit and returns what the daemon holds: containers and
 * volumes are the job's own state; dangling images and stale build cache are what would otherwise
 * pile up from job to job.
 */
export async function pruneForCache(dind: Docker): Promise<DaemonContent> {
  for (const container of await dind.listContainers({ all: true })) {
    await dind.getContainer(container.Id).remove({ force: true, v: true });
  }
  await dind.pruneVolumes({ filters: { all: ['true'] } });
  await dind.pruneImages({ filters: { dangling: ['true'] } });
  await dind.pruneBuilder({ filters: { until: [BUILD_CACHE_MAX_AGE] } } as Docker.PruneBuilderOptions);
  const images = await dind.listImages();
  const df = (await dind.df()) as { BuildCache?: Array<{ ID: string }> };
  return {
    images: images.map(image => ({ id: image.Id, tags: (image.RepoTags ?? []).filter(tag => tag !== '<none>:<none>') })),
    buildCache: (df.BuildCache ?? []).map(record => record.ID)
  };
}

export interface Eviction {
  /** Tags (or ids) of the images dropped. */
  evicted: string[];
  /** The usage record to save with the data. */
  lastUsed: LastUsed;
  /** Why nothing was dropped although the input allows it. */
  skipped?: string;
}

/**
 * While the daemon runs, before pruning: drops the images no job used for the input's time. Without a
 * full record of the job's image events nothing is dropped: a used image must never be.
 */
export async function evictUnusedImages(setup: CacheSetup, outer: Docker, container: Docker.Container, dind: Docker): Promise<Eviction> {
  const now = Date.now();
  const [usage, metadata] = await Promise.all([collectUsage(outer, container, dind, setup.usageRecorder, setup.usageSince ?? now), readMetadata(setup)]);
  const savedAt = metadata?.savedAt ? Date.parse(metadata.savedAt) : now;
  const keepUnusedMs = usage.partial ? undefined : setup.keepUnusedMs;
  const plan = planEviction(usage.images, usage.used, { lastUsed: metadata?.lastUsed ?? {}, savedAt: Number.isNaN(savedAt) ? now : savedAt }, now, keepUnusedMs);
  const evicted: string[] = [];
  for (const { image, lastUsed } of plan.evict) {
    try {
      // force: one image under several tags goes as a whole.
      await dind.getImage(image.id).remove({ force: true });
      evicted.push(...(image.tags.length > 0 ? image.tags : [image.id.slice(7, 19)]));
    } catch (error) {
      core.info(`Keeping ${image.tags[0] ?? image.id}: ${(error as Error).message}`);
      plan.lastUsed[image.id] = lastUsed;
    }
  }
  const skipped = usage.partial && setup.keepUnusedMs !== undefined ? `${usage.partial}, so the job's use of its images is not fully known` : undefined;
  return { evicted, lastUsed: plan.lastUsed, skipped };
}

export type SaveDecision = { save: true; key: string } | { save: false; reason: string };

/** Pure: why post will not save whatever the daemon holds, if it will not. */
export function saveBlocker(setup: CacheSetup, writable: boolean, writableReason?: string): string | undefined {
  if (setup.savePolicy === 'never') return `input '${Inputs.CacheSave}' is 'never'`;
  if (!writable) return writableReason ?? 'the cache is read-only for this job';
  return undefined;
}

/** Pure: whether to upload the daemon's content under `key`. */
export function decideSave(setup: CacheSetup, key: string): SaveDecision {
  const unchanged = setup.restoredKey !== undefined && (setup.restoredKey === key || setup.restoredKey.startsWith(`${key}.`));
  if (setup.savePolicy === 'on-change' && unchanged) return { save: false, reason: 'the daemon holds what was restored: nothing changed' };
  return { save: true, key };
}

export function contentKey(setup: CacheSetup, content: DaemonContent): string {
  return saveKey(setup.exactPrefix, contentFingerprint(content));
}

export interface SaveResult {
  saved: boolean;
  bytes: number;
  /** The key saved under: the content key, or a variant of it when that one is stuck (see reserveSlot). */
  key?: string;
  reason: string;
}

/** Variants of a content key tried when an earlier save reserved it and never committed. */
const KEY_VARIANTS = 3;

/**
 * Reserves the content key, or says which entry with this content exists. The service keeps a key
 * reserved by a save that failed or was cut short (an upload error, the size limit) for a day and
 * refuses it meanwhile: then `<key>.2`, `<key>.3` hold the same content.
 */
async function reserveSlot(key: string): Promise<{ key: string; uploadUrl: string } | { existing: string }> {
  for (let variant = 1; variant <= KEY_VARIANTS; variant++) {
    const candidate = variant === 1 ? key : `${key}.${variant}`;
    // A lookup by key also matches by prefix: an entry `<key>.N` holds the same content too.
    const existing = await lookup(candidate, []);
    if (existing) return { existing: existing.key };
    const uploadUrl = await reserve(candidate);
    if (uploadUrl) return { key: candidate, uploadUrl };
  }
  return { existing: `${key} (reserved by earlier saves that did not finish)` };
}

class SizeLimitError extends Error {}

/** Archives the stopped daemon's data and uploads it under `key`. Never throws. */
export async function saveDaemonData(setup: CacheSetup, contentKey: string, imageId: string, lastUsed: LastUsed): Promise<SaveResult> {
  let bytes = 0;
  try {
    const slot = await reserveSlot(contentKey);
    if ('existing' in slot) return { saved: false, bytes: 0, reason: `a cache with this content exists already (${slot.existing})` };
    const { key, uploadUrl } = slot;
    const metadata: CacheMetadata = { imageId, key, savedAt: new Date().toISOString(), lastUsed };
    await writeFileAsRoot(setup.access, path.join(setup.dataDir, METADATA_FILE), JSON.stringify(metadata) + '\n');
    const archiver = archiveFrom(setup.access, setup.dataDir);
    const limit = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        if (bytes > setup.maxBytes) callback(new SizeLimitError());
        else callback(null, chunk);
      }
    });
    archiver.stream.on('error', error => limit.destroy(error));
    archiver.stream.pipe(limit);
    try {
      await Promise.all([upload(key, uploadUrl, limit, () => bytes), archiver.done]);
    } finally {
      archiver.kill();
    }
    return { saved: true, bytes, key, reason: `saved as ${key}` };
  } catch (error) {
    if (error instanceof SizeLimitError) {
      const dataBytes = await directoryBytes(setup.access, setup.dataDir).catch(() => NaN);
      const message = `Not saving the cache: the daemon's ${formatBytes(dataBytes)} of data compress to more than '${Inputs.CacheMaxSize}' (${formatBytes(setup.maxBytes)}). Raise '${Inputs.CacheMaxSize}' or keep fewer images in the daemon.`;
      core.warning(message);
      return { saved: false, bytes: 0, reason: message };
    }
    core.warning(`Cache save failed (the job is not affected): ${(error as Error).message}`);
    return { saved: false, bytes: 0, reason: `failed: ${(error as Error).message}` };
  }
}
