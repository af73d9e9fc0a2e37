// The daemon's data across jobs, main's side and what both sides share. Main looks up the newest saved
// state, fetches the chunks of its filesystem image in parallel and writes them into a fresh image
// before the daemon starts; post's side is save.ts. Every failure here is a warning and a cold
// daemon, never a failed job and never a half-restored image: a state whose parts are gone, or one
// that does not check out, gives way to the state it was made from, and that to an empty daemon.
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { startUsageRecorder } from './usage';
import { Outputs } from '../runner/contract';
import { availability, isRateLimit, LOOKUP_CONCURRENCY, ServiceStore } from './stores/service';
import {
  adoptImage,
  DataFiles,
  freeBytes,
  maxRestoredImageBytes,
  newImageBytes,
  prepareDataDir,
  writeBackUntilAttached,
  prepareEmptyData,
  writeMode,
  CHUNK_BYTES,
  type DataEvents
} from '../daemon/data-image';
import { errorMessage } from '../util/errors';
import { checkRestored } from './image/ext4';
import { prepareCache, type CacheInputs, type CacheRecord, type CacheSetup } from './setup';
import type { Instance } from '../daemon/instance';
import { LocalStore } from './stores/local';
import { checkedPart, LOCAL_ONLY, type Manifest, type ManifestLimits } from './manifest';
import { writeState, type WriteProgress } from './image/write';
import { runAll } from '../util/run-all';
import { formatBytes } from '../util/units';
import { formatSeconds, type Timeline } from '../util/report';
import { dataOutcome } from '../daemon/placement';

export interface RestoreResult {
  key?: string;
  hit: boolean;
  /** Bytes of the state's frames, downloaded or read from the runner's store. */
  bytes: number;
  downloadedBytes: number;
  /** Bytes read from the runner's store (cache-dir). */
  localBytes: number;
  /** The runner's store had the state's image whole: it was taken as it is, nothing was written. */
  wholeImage?: boolean;
  /** The image is larger than the filesystem saved: the entrypoint grows the filesystem. */
  grown?: boolean;
  /** The state restored. */
  manifest?: Manifest;
  /** A state restored but refused before the daemon saw it: post saves over it (see decideSave). */
  refusedKey?: string;
  /** What post's save may reuse of it (checkedPart), written to the data directory for post. */
  reusable?: Manifest;
}

const MISS: RestoreResult = { hit: false, bytes: 0, downloadedBytes: 0, localBytes: 0 };
/** States tried when the newest one cannot be restored: it, its parent, the parent's parent. */
const STATES_TRIED = 3;

/**
 * Main's side of the cache for one job: the restore, and what becomes of the state restored. The key of
 * that state has one record, the cache's setup in the step state.
 */
export class MainCache {
  private constructor(
    private readonly record: CacheRecord,
    /** The same object as the record's: it keeps the restored key when the cache goes off for the job. */
    private readonly setup: Readonly<CacheSetup>,
    private restored: RestoreResult,
    /** How long the restore took. */
    private readonly seconds: number
  ) {}

  /**
   * Decides whether this job caches and, when it does, restores the newest state into the data
   * directory; otherwise prepares an empty one. Never throws for the cache's sake: warnings.
   */
  static async restore(
    inputs: CacheInputs,
    instance: Instance,
    imageId: Promise<string>,
    record: CacheRecord
  ): Promise<MainCache | undefined> {
    const setup = await prepareCache(inputs, instance);
    if (!setup) {
      await prepareEmptyData(instance.dataDir);
      return undefined;
    }
    record.setCache(setup);
    const started = performance.now();
    const restored = await restoreDaemonData(setup, imageId);
    record.updateCache({ restoredKey: restored.key, refusedKey: restored.refusedKey });
    return new MainCache(record, setup, restored, (performance.now() - started) / 1000);
  }

  /** The state the daemon starts on; undefined when none was restored, or once it is refused. */
  get restoredKey(): string | undefined {
    return this.setup.restoredKey;
  }

  /**
   * The restored state is not the job's: no cache hit, nothing of it reused by post, which saves over it.
   * `containerGone`: the daemon's container went with it, and its usage recorder too.
   */
  async refuse(options: { containerGone?: boolean } = {}): Promise<void> {
    this.record.updateCache({
      refusedKey: this.setup.restoredKey,
      restoredKey: undefined,
      ...(options.containerGone ? { usageRecorder: undefined } : {})
    });
    this.restored = MISS;
    await fs.rm(path.join(this.setup.dataDir, DataFiles.manifest), { force: true });
  }

  /** The daemon starts now: what happens after is the job's use of its images. */
  daemonStarts(): void {
    this.record.updateCache({ usageSince: Date.now() });
  }

  /** Records which images the job uses, for post to drop the ones no job uses any more. */
  async recordUsage(container: Docker.Container): Promise<void> {
    const { usageSince, keepUnusedMs } = this.record.cache ?? {};
    if (usageSince === undefined || keepUnusedMs === undefined) return;
    const usageRecorder = await startUsageRecorder(container, usageSince).catch(error => {
      core.warning(
        `Cannot record which images the job uses (${errorMessage(error)}): post will not drop unused images from the cache.`
      );
      return undefined;
    });
    this.record.updateCache({ usageRecorder });
  }

  /** The action's outputs: cache-hit, cache-key (the exact key's prefix when nothing was restored), cache-size. */
  get outputs(): { hit: boolean; key: string; bytes: number } {
    const { hit, bytes } = this.restored;
    return { hit, key: this.restoredKey ?? this.setup.exactPrefix, bytes };
  }

  /**
   * What the entrypoint did with the data: without a filesystem image nothing is cached for the job, and
   * a restored state that failed its check is not the cache's any more. Adds the summary's line.
   */
  async checkData(events: DataEvents, timeline: Timeline): Promise<void> {
    const outcome = dataOutcome(events, this.restoredKey);
    if (outcome.kind === 'plain') {
      core.warning(`Cache off: the daemon's data could not be kept in a filesystem image (${outcome.reason}).`);
      this.record.setCache(undefined);
    } else if (outcome.kind === 'discarded') {
      core.warning(`The cache ${this.restoredKey} was not used: ${outcome.reason}. The daemon started empty.`);
      await this.refuse();
    }
    const summary = this.summary();
    if (summary) timeline.fact('Cache restored', summary);
  }

  /** The summary's line; undefined once the cache is off for the job. */
  private summary(): string | undefined {
    if (!this.record.cache) return undefined;
    const { restored, seconds } = this;
    const key = this.restoredKey;
    const { refusedKey } = this.setup;
    return key
      ? `${formatBytes(restored.bytes)} in ${formatSeconds(seconds)} (${restored.hit ? 'hit' : 'fallback key'}; ${formatBytes(restored.downloadedBytes)} downloaded, ${formatBytes(restored.localBytes)} from the cache directory${restored.wholeImage ? ', as its kept filesystem image' : ''}): ${key}`
      : refusedKey
        ? `not used: ${refusedKey}; the daemon started empty`
        : 'nothing to restore';
  }
}

/** The action's cache outputs; without a cache: no hit, no key, no size. */
export function setCacheOutputs(cache: MainCache | undefined): void {
  core.setOutput(Outputs.CacheHit, String(cache?.outputs.hit ?? false));
  core.setOutput(Outputs.CacheKey, cache?.outputs.key ?? '');
  core.setOutput(Outputs.CacheSize, String(cache?.outputs.bytes ?? 0));
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
async function restoreDaemonData(setup: CacheSetup, imageId: Promise<string>): Promise<RestoreResult> {
  let result = MISS;
  try {
    result = await restoreNewestState(setup, imageId);
  } catch (error) {
    const why = isRateLimit(error)
      ? `the cache service limits this repository's requests now (${error.message})`
      : errorMessage(error);
    core.warning(`Cache restore failed, the daemon starts empty: ${why}`);
  }
  // Only now may the entrypoint read the image: whatever was restored has passed every check of main's.
  if (result.key) await writeMode(setup.dataDir, result.grown ? 'grown' : 'restored');
  else await prepareEmptyData(setup.dataDir);
  return result;
}

/** Grows a filesystem by more than this share only: growing makes new groups' metadata. */
const GROW_SHARE = 1.25;

/**
 * Pure: the size of a restored image. The filesystem keeps the size it was saved with, unless this
 * runner has much more room (the first job to save may have had little): then the entrypoint grows it.
 */
export function restoredImageBytes(savedBytes: number, freeBytes: number): number {
  const room = newImageBytes(freeBytes);
  return room > savedBytes * GROW_SHARE ? room : savedBytes;
}

/**
 * Pure: which of the newest states that the cache service (`remote`) and the runner's store (`local`)
 * name for the same prefixes to restore: the one of the earlier prefix (the exact key before the
 * restore keys); of the same prefix, the one saved last (`newer`: compare when each was saved); the
 * service's when both name the same state. Undefined: neither names one.
 */
export function chooseState(
  prefixes: string[],
  remote: string | undefined,
  local: string | undefined
): 'remote' | 'local' | 'newer' | undefined {
  if (remote === undefined) return local === undefined ? undefined : 'local';
  if (local === undefined || local === remote) return 'remote';
  const level = (key: string) => prefixes.findIndex(prefix => key.startsWith(prefix));
  if (level(local) === level(remote)) return 'newer';
  return level(local) > level(remote) ? 'remote' : 'local';
}

/** Pure: of two states of the same prefix, the one saved last; the service's when the times tie. */
export function newerSaved(localSavedAt: string, remoteSavedAt: string): 'local' | 'remote' {
  return Date.parse(localSavedAt) > Date.parse(remoteSavedAt) ? 'local' : 'remote';
}

/** A state to try: its key, and its manifest when the runner's store has it (or it was fetched to compare). */
interface Candidate {
  key: string;
  manifest?: Manifest;
  /** The manifest is the runner's store's. */
  stored: boolean;
}

async function restoreNewestState(setup: CacheSetup, imageId: Promise<string>): Promise<RestoreResult> {
  const service = availability();
  const remote = new ServiceStore();
  const store = setup.cacheDir ? await LocalStore.open(setup.cacheDir) : undefined;
  const free = await freeBytes(path.dirname(setup.dataDir));
  const limits = { maxImageBytes: maxRestoredImageBytes(free), maxWriteBytes: free };
  /**
   * The newest state for the first of the keys that matches, from the cache service and the runner's
   * store (where a job that could not upload saved a newer one); its manifest from the store if it has it.
   */
  const find = async (key: string, restoreKeys: string[]): Promise<Candidate | undefined> => {
    const prefixes = [key, ...restoreKeys];
    const [entry, local] = await Promise.all([
      service.readable ? remote.findManifest(prefixes) : undefined,
      store?.findManifest(prefixes, limits)
    ]);
    core.debug(
      `Newest state for ${prefixes.join(' | ')}: the cache service ${entry?.key ?? (service.readable ? 'none' : 'not asked')}, the runner's store ${local?.key ?? (store ? 'none' : 'not used')}`
    );
    const choice = chooseState(prefixes, entry?.key, local?.key);
    if (!entry || choice === 'local') return local && { key: local.key, manifest: local.manifest, stored: true };
    const manifest = await store?.readManifest(entry.key, limits);
    const newest: Candidate = { key: entry.key, manifest, stored: manifest !== undefined };
    if (choice === 'remote' || !local) return newest;
    // The service's needs its manifest to say when it was saved.
    newest.manifest ??= await readServiceManifest(newest.key);
    return newerSaved(local.manifest.savedAt, newest.manifest.savedAt) === 'local'
      ? { key: local.key, manifest: local.manifest, stored: true }
      : newest;
  };
  const readServiceManifest = async (key: string) => {
    const manifest = await remote.readManifest(key, limits);
    if (!manifest) throw new Error(`the entry ${key} is gone from the cache service`);
    return manifest;
  };
  if (!service.readable && !store) {
    core.info(`Not restoring: ${service.reason}.`);
    return MISS;
  }
  let candidate = await find(setup.exactPrefix, setup.restoreKeys);
  if (!candidate) {
    core.info(`No cache yet for ${setup.exactPrefix}…: the daemon starts empty.`);
    return MISS;
  }
  for (let tried = 1; candidate; tried++) {
    try {
      // Only the cache service's entries come without a manifest.
      const manifest = candidate.manifest ?? (await readServiceManifest(candidate.key));
      if (manifest.key !== candidate.key)
        throw new Error(`the entry ${candidate.key} holds the manifest of ${manifest.key}`);
      const restored = await restoreState(
        setup,
        manifest,
        store,
        service.readable ? remote : undefined,
        limits,
        candidate.stored
      );
      const current = await imageId;
      if (manifest.imageId !== current) {
        core.warning(
          `The cache was made by another dind image (${manifest.imageId}, this one is ${current}): the daemon starts empty and post saves a new cache.`
        );
        return MISS;
      }
      const refused = await checkRestoredImage(setup.dataDir, manifest);
      if (refused) {
        core.warning(
          `The cache ${manifest.key} was not used: the restored filesystem ${refused}. The daemon starts empty.`
        );
        return { ...MISS, refusedKey: manifest.key };
      }
      const { reusable } = restored;
      await fs.writeFile(path.join(setup.dataDir, DataFiles.manifest), JSON.stringify(reusable));
      if (store) {
        await store.touch(manifest.frames.map(frame => frame.hash));
        // A copy for the store only when the restore checked every reference its chunks use (see fromStore).
        const checkedAll =
          reusable.chunks.length === manifest.chunks.length &&
          reusable.frames.every(frame => frame.part !== LOCAL_ONLY);
        if (!candidate.stored && checkedAll) await store.writeManifest(manifest);
      }
      return restored;
    } catch (error) {
      if (isRateLimit(error))
        throw new Error(`the cache service limits this repository's requests now (${error.message})`, { cause: error });
      if (!(error instanceof StateUnavailableError) || tried >= STATES_TRIED || !error.parent) throw error;
      core.warning(`${error.message}; trying the state it was made from, ${error.parent}.`);
      const parent = error.parent;
      candidate = await find(parent, []);
      if (candidate?.key !== parent) throw new Error(`${parent} is gone too`, { cause: error });
    }
  }
  return MISS;
}

/** Restores one state; a state that cannot be restored throws StateUnavailableError naming its parent. */
async function restoreState(
  setup: CacheSetup,
  manifest: Manifest,
  store: LocalStore | undefined,
  /** The cache service, where this job may read it. */
  remote: ServiceStore | undefined,
  limits: ManifestLimits,
  /**
   * Read from the runner's store, which holds only manifests whose references were checked (see
   * checkedPart): their frames' references hold whether this restore fetched them or not.
   */
  fromStore: boolean
): Promise<RestoreResult & { reusable: Manifest }> {
  const used = new Map(manifest.chunks.map(([, frame]) => [frame, manifest.frames[frame]]));
  const started = performance.now();
  const { key } = manifest;
  core.info(`Restoring ${key}`);
  const locate = async (parts: number[]) => {
    const found = new Array<boolean>(manifest.parts.length).fill(false);
    if (remote)
      await runAll(
        parts.map(index => async () => void (found[index] = await remote.has(manifest.parts[index].key))),
        LOOKUP_CONCURRENCY
      );
    const missing = parts.filter(index => !found[index]);
    if (!remote || missing.length > 0) {
      const where = remote ? 'are gone from the cache' : "are not in the runner's store, and the cache service is off";
      throw new StateUnavailableError(
        `${missing.length} of the ${manifest.parts.length} parts of ${key} ${where}`,
        manifest.parent
      );
    }
    return remote;
  };
  const imageBytes = restoredImageBytes(manifest.filesystem.bytes, limits.maxWriteBytes);
  // A job that never saves would not give the image back: the next job would restore from the frames.
  const takesImage = store !== undefined && setup.savePolicy !== 'never';
  if (takesImage && (await adoptImage(setup.dataDir, imageBytes, image => store.takeImage(key, image)))) {
    const bytes = storedBytes(manifest);
    core.info(
      `Took the state's filesystem image whole from the runner's store in ${((performance.now() - started) / 1000).toFixed(2)} s: nothing to fetch or write.`
    );
    const hit = key.startsWith(setup.exactPrefix);
    const reusable = checkedPart(manifest, fromStore ? used : new Map());
    const grown = imageBytes > manifest.filesystem.bytes;
    return { key, hit, bytes, downloadedBytes: 0, localBytes: bytes, wholeImage: true, grown, manifest, reusable };
  }
  const image = await prepareDataDir(setup.dataDir, imageBytes, 'filling');
  const handle = await fs.open(image, 'r+');
  const writeback = writeBackUntilAttached(setup.dataDir, handle);
  let progress: WriteProgress;
  try {
    progress = await writeState(handle, manifest, locate, store);
    await writeback.finish();
  } catch (error) {
    if (error instanceof StateUnavailableError) throw error;
    throw new StateUnavailableError(`${key} could not be restored (${errorMessage(error)})`, manifest.parent);
  } finally {
    await writeback.stop();
    await handle.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = progress.downloadedBytes + progress.localBytes;
  core.info(
    `Restored ${formatBytes(progress.writtenBytes)} of data from ${formatBytes(bytes)} in ${seconds.toFixed(1)} s: ${formatBytes(progress.localBytes)} from the runner's store, ${formatBytes(progress.downloadedBytes)} downloaded.`
  );
  return {
    key,
    hit: key.startsWith(setup.exactPrefix),
    bytes,
    downloadedBytes: progress.downloadedBytes,
    localBytes: progress.localBytes,
    manifest,
    grown: imageBytes > manifest.filesystem.bytes,
    reusable: checkedPart(manifest, fromStore ? used : progress.checked)
  };
}

/**
 * Why the restored image must not reach the kernel (ext4.ts checkRestored), or undefined; a refused
 * image is removed (a kept one need not be writable by this user), for a fresh one in its place.
 */
async function checkRestoredImage(dataDir: string, manifest: Manifest): Promise<string | undefined> {
  const image = path.join(dataDir, DataFiles.image);
  // Never blocks on a FIFO nor follows a link: a kept image came from a directory others may write.
  const handle = await fs.open(image, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  let refused: string | undefined;
  try {
    const stats = await handle.stat();
    refused = stats.isFile()
      ? await checkRestored(handle, stats.size, manifest.chunks.length * CHUNK_BYTES)
      : 'is not a regular file';
  } finally {
    await handle.close();
  }
  if (refused) await fs.rm(image, { force: true });
  return refused;
}

/** The bytes of the frames a state's chunks use, each counted once. */
function storedBytes(manifest: Manifest): number {
  return [...new Set(manifest.chunks.map(([, frame]) => frame))].reduce(
    (sum, frame) => sum + manifest.frames[frame].length,
    0
  );
}
