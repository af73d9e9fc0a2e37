// The daemon's /var/lib/docker across jobs, post's side: while the daemon runs, drop what the next job
// should not inherit and fingerprint the rest; once it has stopped, archive it (tar → zstd → streaming
// upload) under a key derived from its content. Never a failed job: warnings.
import * as path from 'node:path';
import { Transform } from 'node:stream';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { archiveFrom, directoryBytes, METADATA_FILE, writeFileAsRoot } from './archive';
import { uploadBlob } from './blob-upload';
import { readMetadata, type CacheMetadata, type CacheSetup } from './cache';
import { contentFingerprint, saveKey, type DaemonContent } from './cache-key';
import { finalize, lookup, reserve } from './cache-service';
import { Inputs } from './constants';
import { formatBytes } from './units';
import { collectUsage, planEviction, type LastUsed } from './usage';

/** Build cache not used for this long is not carried on. */
const BUILD_CACHE_MAX_AGE = '168h';

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
    images: images.map(image => ({
      id: image.Id,
      tags: (image.RepoTags ?? []).filter(tag => tag !== '<none>:<none>')
    })),
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
export async function evictUnusedImages(
  setup: CacheSetup,
  outer: Docker,
  container: Docker.Container,
  dind: Docker
): Promise<Eviction> {
  const now = Date.now();
  const [usage, metadata] = await Promise.all([
    collectUsage(outer, container, dind, setup.usageRecorder, setup.usageSince ?? now),
    readMetadata(setup)
  ]);
  const savedAt = metadata?.savedAt ? Date.parse(metadata.savedAt) : now;
  const keepUnusedMs = usage.partial ? undefined : setup.keepUnusedMs;
  const plan = planEviction(
    usage.images,
    usage.used,
    { lastUsed: metadata?.lastUsed ?? {}, savedAt: Number.isNaN(savedAt) ? now : savedAt },
    now,
    keepUnusedMs
  );
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
  const skipped =
    usage.partial && setup.keepUnusedMs !== undefined
      ? `${usage.partial}, so the job's use of its images is not fully known`
      : undefined;
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
  const unchanged =
    setup.restoredKey !== undefined && (setup.restoredKey === key || setup.restoredKey.startsWith(`${key}.`));
  if (setup.savePolicy === 'on-change' && unchanged)
    return { save: false, reason: 'the daemon holds what was restored: nothing changed' };
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
export async function saveDaemonData(
  setup: CacheSetup,
  contentKey: string,
  imageId: string,
  lastUsed: LastUsed
): Promise<SaveResult> {
  let bytes = 0;
  try {
    const slot = await reserveSlot(contentKey);
    if ('existing' in slot)
      return { saved: false, bytes: 0, reason: `a cache with this content exists already (${slot.existing})` };
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
      await Promise.all([uploadBlob(uploadUrl, limit).then(() => finalize(key, bytes)), archiver.done]);
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
