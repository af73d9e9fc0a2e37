// The daemon's data across jobs, main's side and what both sides share. Main looks up the newest saved
// state, fetches the chunks of its filesystem image in parallel and writes them into a fresh image
// before the daemon starts; post's side is cache-save.ts. Every failure here is a warning and a cold
// daemon, never a failed job and never a half-restored image: a state whose parts are gone, or one
// that does not check out, gives way to the state it was made from, and that to an empty daemon.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import { download } from './blob-download';
import { availability, isRateLimit, lookup } from './cache-service';
import { cacheKeys, keyBase } from './cache-key';
import { Inputs } from './constants';
import { DataFiles, freeBytes, MAX_IMAGE_BYTES, newImageBytes, prepareDataDir } from './data-image';
import { errorMessage } from './errors';
import type { ActionInputs, CacheSavePolicy } from './inputs';
import type { Instance } from './instance';
import { decodeManifest, type Manifest } from './manifest';
import { runAll, writeState, type WriteProgress } from './restore';
import { formatBytes } from './units';
import { zstdAvailable } from './zstd';

/** What post needs to save the cache; kept in the step state. */
export interface CacheSetup {
  dataDir: string;
  exactPrefix: string;
  restoreKeys: string[];
  savePolicy: CacheSavePolicy;
  maxBytes: number;
  /** The key of the state restored, if any. */
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
  /** Bytes of the state's frames, downloaded or read from the runner's store. */
  bytes: number;
  downloadedBytes: number;
  /** The state restored, also written to the data directory for post. */
  manifest?: Manifest;
}

const MISS: RestoreResult = { hit: false, bytes: 0, downloadedBytes: 0 };
/** States tried when the newest one cannot be restored: it, its parent, the parent's parent. */
const STATES_TRIED = 3;
/** Parts looked up at once. */
const LOOKUP_CONCURRENCY = 4;
const MAX_MANIFEST_BLOB_BYTES = 32 * 1024 * 1024;

/** Decides whether this job can cache at all. Undefined: no cache. */
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
  if (!(await zstdAvailable())) {
    core.warning(
      "Cache off: this Node has no zstd and the runner has no 'zstd' command (install it, for example apt-get install zstd)."
    );
    return undefined;
  }
  const base = keyBase({
    image: inputs.image,
    arch: process.arch,
    dockerdArgs: inputs.dockerdArgs,
    daemonConfig: inputs.daemonConfig
  });
  return {
    dataDir: instance.dataDir,
    ...cacheKeys(base, inputs.cacheKey),
    savePolicy: inputs.cacheSave,
    maxBytes: inputs.cacheMaxSizeBytes,
    keepUnusedMs: inputs.cacheEvictAfterMs
  };
}

/** A fresh, empty data directory (no cache, or nothing to restore): the entrypoint makes the filesystem. */
export async function prepareEmptyData(dataDir: string): Promise<void> {
  await prepareDataDir(dataDir, newImageBytes(await freeBytes(path.dirname(dataDir))), 'new');
}

class StateUnavailableError extends Error {
  constructor(
    message: string,
    /** The state this one was made from. */
    readonly parent?: string
  ) {
    super(message);
  }
}

/**
 * Restores the newest state saved for the keys into the data directory, or prepares an empty one.
 * `imageId` is the dind image's id once known: a state made by another image is not used. Never throws.
 */
export async function restoreDaemonData(setup: CacheSetup, imageId: Promise<string>): Promise<RestoreResult> {
  let result = MISS;
  try {
    result = await restoreNewestState(setup, imageId);
  } catch (error) {
    core.warning(`Cache restore failed, the daemon starts empty: ${errorMessage(error)}`);
  }
  if (!result.key) await prepareEmptyData(setup.dataDir);
  return result;
}

async function restoreNewestState(setup: CacheSetup, imageId: Promise<string>): Promise<RestoreResult> {
  const service = availability();
  if (!service.readable) {
    core.info(`Not restoring: ${service.reason}.`);
    return MISS;
  }
  let entry = await lookup(setup.exactPrefix, setup.restoreKeys);
  if (!entry) {
    core.info(`No cache yet for ${setup.exactPrefix}…: the daemon starts empty.`);
    return MISS;
  }
  for (let tried = 1; entry; tried++) {
    try {
      const restored = await restoreState(setup, entry.key, entry.url);
      const madeBy = restored.manifest?.imageId;
      const current = await imageId;
      if (madeBy !== current) {
        core.warning(
          `The cache was made by another dind image (${madeBy}, this one is ${current}): the daemon starts empty and post saves a new cache.`
        );
        return MISS;
      }
      await fs.writeFile(path.join(setup.dataDir, DataFiles.manifest), JSON.stringify(restored.manifest));
      return restored;
    } catch (error) {
      if (isRateLimit(error))
        throw new Error(`the cache service limits this repository's requests now (${error.message})`);
      if (!(error instanceof StateUnavailableError) || tried >= STATES_TRIED || !error.parent) throw error;
      core.warning(`${error.message}; trying the state it was made from, ${error.parent}.`);
      entry = await lookup(error.parent);
      if (!entry) throw new Error(`${error.parent} is gone too`);
    }
  }
  return MISS;
}

/** Restores one state; a state that cannot be restored throws StateUnavailableError naming its parent. */
async function restoreState(setup: CacheSetup, key: string, url: string): Promise<RestoreResult> {
  const started = performance.now();
  core.info(`Restoring ${key}`);
  const free = await freeBytes(path.dirname(setup.dataDir));
  const manifest = await decodeManifest(await download(url, { maxBytes: MAX_MANIFEST_BLOB_BYTES }), {
    maxImageBytes: MAX_IMAGE_BYTES,
    maxWriteBytes: free
  });
  if (manifest.key !== key) throw new Error(`the entry ${key} holds the manifest of ${manifest.key}`);
  const partUrls = new Array<string | undefined>(manifest.parts.length);
  await runAll(
    manifest.parts.map((part, index) => async () => void (partUrls[index] = (await lookup(part.key))?.url)),
    LOOKUP_CONCURRENCY
  );
  const missing = manifest.parts.filter((_, index) => !partUrls[index]);
  if (missing.length > 0) {
    throw new StateUnavailableError(
      `${missing.length} of the ${manifest.parts.length} parts of ${key} are gone from the cache`,
      manifest.parent
    );
  }
  const image = await prepareDataDir(setup.dataDir, manifest.filesystem.bytes, 'restored');
  const handle = await fs.open(image, 'r+');
  let progress: WriteProgress;
  try {
    progress = await writeState(handle, manifest, partUrls, undefined);
  } catch (error) {
    throw new StateUnavailableError(`${key} could not be restored (${errorMessage(error)})`, manifest.parent);
  } finally {
    await handle.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = progress.downloadedBytes + progress.localBytes;
  core.info(
    `Restored ${formatBytes(progress.writtenBytes)} of data from ${formatBytes(bytes)} in ${seconds.toFixed(1)} s (${manifest.parts.length} part(s), ${formatBytes(progress.downloadedBytes)} downloaded).`
  );
  return { key, hit: key.startsWith(setup.exactPrefix), bytes, downloadedBytes: progress.downloadedBytes, manifest };
}

/** The manifest main restored, from the data directory; undefined when none was. */
export async function readRestoredManifest(dataDir: string): Promise<Manifest | undefined> {
  const text = await fs
    .readFile(path.join(dataDir, DataFiles.manifest), 'utf8')
    .catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
  return text === undefined ? undefined : (JSON.parse(text) as Manifest);
}
