// The daemon's data across jobs, post's side, from one owner (PostCache) that post calls step by step:
// while the daemon runs, drop what the next job should not inherit, fingerprint the rest and decide
// whether to save; once it has stopped and its filesystem is unmounted, save its image as a new state
// (image/pack.ts); once the container is gone, let the runner's store keep the image whole and bound
// the store. Never a failed job: warnings.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { contentFingerprint, saveKey, type DaemonContent } from './key';
import { Inputs } from '../runner/contract';
import { errorMessage } from '../util/errors';
import { LocalStore, type StoreBound } from './stores/local';
import { uploadBlob } from './stores/blob-upload';
import { availability, ServiceStore } from './stores/service';
import { DataFiles, readDataEvents } from '../daemon/data-image';
import { bestEffort } from '../util/best-effort';
import type { Timeline } from '../util/report';
import type { Manifest } from './manifest';
import { saveState, SizeLimitError, type SaveResult } from './image/pack';
import { formatBytes, formatDuration } from '../util/units';
import { collectUsage, planEviction, type LastUsed } from './usage';
import type { CacheSetup } from './setup';

/**
 * Clears what the next job should not inherit and returns what the daemon holds: containers and
 * volumes are the job's own state; dangling images are what would otherwise pile up from job to job.
 * Build cache goes too: a restore keeps none of BuildKit's records (entrypoint.sh), and the layers
 * they alone hold would stay in the state, named by nothing.
 */
async function pruneForCache(dind: Docker): Promise<DaemonContent> {
  for (const container of await dind.listContainers({ all: true })) {
    await dind.getContainer(container.Id).remove({ force: true, v: true });
  }
  await dind.pruneVolumes({ filters: { all: ['true'] } });
  await dind.pruneImages({ filters: { dangling: ['true'] } });
  await pruneBuildCache(dind);
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

/**
 * `POST /build/prune?all=true`: every record of the daemon's BuildKit goes, since a restore does not
 * carry BuildKit's databases (their contents name paths that cannot be checked), and layers only they
 * held would stay in every state. dockerode's pruneBuilder sends no query at all, whatever it is given.
 */
function pruneBuildCache(dind: Docker): Promise<void> {
  return new Promise((resolve, reject) => {
    dind.modem.dial(
      {
        path: '/build/prune?',
        method: 'POST',
        options: { all: true },
        statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' }
      },
      error => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve())
    );
  });
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
async function evictUnusedImages(
  setup: CacheSetup,
  restored: Pick<Manifest, 'lastUsed' | 'savedAt'> | undefined,
  outer: Docker,
  container: Docker.Container,
  dind: Docker
): Promise<Eviction> {
  const now = Date.now();
  const usage = await collectUsage(outer, container, dind, setup.usageRecorder, setup.usageSince ?? now);
  const savedAt = restored ? Date.parse(restored.savedAt) : now;
  const keepUnusedMs = usage.partial ? undefined : setup.keepUnusedMs;
  const plan = planEviction(
    usage.images,
    usage.used,
    { lastUsed: restored?.lastUsed ?? {}, savedAt: Number.isNaN(savedAt) ? now : savedAt },
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
      core.info(`Keeping ${image.tags[0] ?? image.id}: ${errorMessage(error)}`);
      plan.lastUsed[image.id] = lastUsed;
    }
  }
  const skipped =
    usage.partial && setup.keepUnusedMs !== undefined
      ? `${usage.partial}, so the job's use of its images is not fully known`
      : undefined;
  return { evicted, lastUsed: plan.lastUsed, skipped };
}

export type SaveDecision =
  | { save: true; key: string }
  /** `unchanged`: the daemon holds the state main restored. */
  | { save: false; reason: string; unchanged?: boolean };

/**
 * Pure: why post will not save whatever the daemon holds, if it will not. The runner's store (`store`:
 * there is one this job may use) takes a save the service cannot. `jobStatus`: input 'job-status' as
 * post reads it.
 */
export function saveBlocker(
  setup: CacheSetup,
  jobStatus: string,
  writable: boolean,
  store: boolean,
  writableReason?: string
): string | undefined {
  if (setup.savePolicy === 'never') return `input '${Inputs.CacheSave}' is 'never'`;
  if (setup.savePolicy === 'on-success' && jobStatus !== 'success')
    return `the job's status is '${jobStatus || 'unknown'}' and input '${Inputs.CacheSave}' is 'on-success'`;
  if (!writable && !store) return writableReason ?? 'the cache is read-only for this job';
  return undefined;
}

/**
 * Pure: whether to upload the daemon's content under `key`. Over a state main refused, always, and under
 * `key.<unique>`: an entry named `key` may exist already (the refused one itself may bear the name an
 * empty daemon's content has), and only a new entry becomes the newest of its keys.
 */
export function decideSave(setup: CacheSetup, key: string, unique: string): SaveDecision {
  if (setup.refusedKey !== undefined) return { save: true, key: `${key}.${unique}` };
  const unchanged =
    setup.restoredKey !== undefined && (setup.restoredKey === key || setup.restoredKey.startsWith(`${key}.`));
  if (setup.savePolicy !== 'always' && unchanged)
    return { save: false, reason: 'the daemon holds what was restored: nothing changed', unchanged: true };
  return { save: true, key };
}

/**
 * Pure: whether post stops this container before removing it. A save, and an image the runner's store
 * keeps whole, need the daemon's filesystem unmounted cleanly; otherwise the removal ends it all at
 * once, without waiting for dockerd.
 */
export function stopsGracefully(
  containerState: string,
  decision: SaveDecision | undefined,
  keepsImage: boolean
): boolean {
  return containerState === 'running' && (decision?.save === true || keepsImage);
}

/** Pure: whether the runner's store can keep the daemon's image whole once it stops (see keptImageKey). */
export function mayKeepImage(decision: SaveDecision | undefined, storeOnSameFilesystem: boolean): boolean {
  return storeOnSameFilesystem && decision !== undefined && (decision.save || decision.unchanged === true);
}

/**
 * Pure: the state the stopped daemon's image holds, for the runner's store to keep whole; undefined
 * when the filesystem was not unmounted cleanly, or the image is no saved state (nothing saved, or
 * the save failed).
 */
export function keptImageKey(
  decision: SaveDecision,
  unmounted: boolean,
  restoredKey: string | undefined,
  saved: { saved: boolean; key?: string } | undefined
): string | undefined {
  if (!unmounted) return undefined;
  if (decision.save) return saved?.saved ? saved.key : undefined;
  return decision.unchanged ? restoredKey : undefined;
}

/** Pure: the decision once the daemon has stopped; a filesystem not unmounted cleanly is never saved. */
export function decideAfterStop(decision: SaveDecision, unmounted: boolean): SaveDecision & { warn?: boolean } {
  if (!decision.save || unmounted) return decision;
  return { save: false, reason: "the daemon's filesystem was not unmounted cleanly", warn: true };
}

function contentKey(setup: CacheSetup, content: DaemonContent): string {
  return saveKey(setup.exactPrefix, contentFingerprint(content));
}

/**
 * Saves the stopped daemon's image under `key`: to the cache service when `remote`, and to the runner's
 * `store` when there is one (post bounds it once it is done with it). Never throws: a failure is a warning.
 */
async function saveDaemonData(
  setup: CacheSetup,
  key: string,
  imageId: string,
  lastUsed: LastUsed,
  restored: Manifest | undefined,
  remote: boolean,
  store: LocalStore | undefined
): Promise<SaveResult | undefined> {
  try {
    return await saveState({
      dataDir: setup.dataDir,
      key,
      imageId,
      lastUsed,
      restored,
      maxBytes: setup.maxBytes,
      service: remote ? new ServiceStore(uploadBlob) : undefined,
      store
    });
  } catch (error) {
    if (error instanceof SizeLimitError) {
      core.warning(
        `Not saving the cache: the daemon's data compresses to more than '${Inputs.CacheMaxSize}' (${formatBytes(setup.maxBytes)}). Raise '${Inputs.CacheMaxSize}' or keep fewer images in the daemon.`
      );
    } else {
      core.warning(`Cache save failed (the job is not affected): ${errorMessage(error)}`);
    }
    return undefined;
  }
}

/** The manifest main restored, from the data directory; undefined when none was. */
async function readRestoredManifest(dataDir: string): Promise<Manifest | undefined> {
  const text = await fs
    .readFile(path.join(dataDir, DataFiles.manifest), 'utf8')
    .catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
  return text === undefined ? undefined : (JSON.parse(text) as Manifest);
}

/** What post knows of the job when it comes to the cache. */
export interface PostCacheContext {
  setup: CacheSetup;
  /** The instance's unique id: a save over a refused state is named apart with it. */
  instanceId: string;
  /** The dind image's id, recorded with the state. */
  imageId: string;
  /** The running dind container, if any: a daemon that is not running may have died mid-write. */
  daemonContainerId?: string;
  /** Input 'job-status' as post reads it. */
  jobStatus: string;
  /** The outer engine, and a client of the daemon itself (over mutual TLS) when this job can reach it. */
  docker: Docker;
  connectDaemon?: () => Promise<Docker>;
  timeline: Timeline;
}

interface Plan {
  decision: SaveDecision;
  eviction?: Eviction;
  restored?: Manifest;
}

/**
 * Post's side of the cache. Post calls it in this order: `plan` while the daemon runs, then stops the
 * daemon (gracefully when `stopsGracefully` says), `save`, removes the container, `keepImage`, `bound`.
 */
export class PostCache {
  /** The state the daemon's image holds, once stopped cleanly, for the runner's store to keep whole. */
  private keptKey?: string;
  /** Whether post wrote to the runner's store (a save, or a kept image): it then bounds it, once. */
  private storeWritten = false;

  private constructor(
    private readonly context: PostCacheContext,
    private readonly store: LocalStore | undefined,
    private readonly plan: Plan,
    private readonly keepsImage: boolean
  ) {}

  static async plan(context: PostCacheContext): Promise<PostCache> {
    const { setup, timeline } = context;
    const store = setup.cacheDir ? await LocalStore.open(setup.cacheDir) : undefined;
    const plan = await timeline.phase('Decide whether to save the cache', () => planSave(context, store !== undefined));
    const { decision } = plan;
    core.info(
      decision.save
        ? `Saving the cache as ${decision.key} once the daemon has stopped.`
        : `Not saving the cache: ${decision.reason}.`
    );
    if (plan.eviction) reportEviction(plan.eviction, setup.keepUnusedMs, timeline);
    const keepsImage =
      store !== undefined &&
      mayKeepImage(
        decision,
        await bestEffort('check the cache directory', () => store.holdsImagesOf(setup.dataDir), false)
      );
    return new PostCache(context, store, plan, keepsImage);
  }

  /** Whether post stops a container in this state before removing it (see stopsGracefully). */
  stopsGracefully(containerState: string): boolean {
    return stopsGracefully(containerState, this.plan.decision, this.keepsImage);
  }

  /** Once the daemon has stopped: saves its image as a new state, when that was decided and it unmounted cleanly. */
  async save(): Promise<void> {
    const { setup, timeline, imageId } = this.context;
    const { decision, eviction, restored } = this.plan;
    const unmounted = (decision.save || this.keepsImage) && (await readDataEvents(setup.dataDir)).unmounted;
    const final = decideAfterStop(decision, unmounted);
    let saved: SaveResult | undefined;
    if (final.save) {
      const remote = availability().writable;
      saved = await timeline.phase('Save the cache', () =>
        saveDaemonData(setup, final.key, imageId, eviction?.lastUsed ?? {}, restored, remote, this.store)
      );
      this.storeWritten = this.store !== undefined;
      timeline.fact('Cache', saved ? describeSave(saved, remote) : 'not saved: the save failed (see the warning)');
    } else {
      if (final.warn) core.warning(`Not saving the cache: ${final.reason}.`);
      timeline.fact('Cache', `not saved: ${final.reason}`);
    }
    if (this.keepsImage) this.keptKey = keptImageKey(final, unmounted, setup.restoredKey, saved);
  }

  /** Once the container is gone, and nothing has the image open any more: the runner's store keeps it whole. */
  async keepImage(): Promise<void> {
    const store = this.store;
    const key = this.keptKey;
    if (!store || key === undefined) return;
    const image = path.join(this.context.setup.dataDir, DataFiles.image);
    if (
      await bestEffort('keep the filesystem image in the cache directory', () => store.keepImage(key, image), false)
    ) {
      this.storeWritten = true;
      core.info(
        `Kept the daemon's filesystem image in the cache directory as ${key}: the next job here takes it whole.`
      );
    }
  }

  /** Last: bounds the runner's store, once, when post wrote to it. */
  async bound(): Promise<void> {
    const store = this.store;
    const { cacheDir, cacheDirMaxBytes } = this.context.setup;
    if (!store || !cacheDir || !this.storeWritten) return;
    const bounded = await bestEffort(
      'bound the cache directory',
      () => store.enforceLimit(cacheDirMaxBytes),
      undefined
    );
    if (bounded) this.context.timeline.fact('Cache directory', describeDirectory(cacheDir, bounded));
  }
}

/**
 * While the daemon still runs: drop what the next job should not inherit (its containers and volumes,
 * images no job uses any more), fingerprint the rest, and decide. A daemon that is not running may have
 * died mid-write: its data is never saved.
 */
async function planSave(context: PostCacheContext, store: boolean): Promise<Plan> {
  const { setup, docker, daemonContainerId, connectDaemon, jobStatus } = context;
  const service = availability();
  core.debug(
    `Save policy '${setup.savePolicy}', job status '${jobStatus}', cache service writable: ${service.writable}, runner's store: ${store}`
  );
  const blocker = saveBlocker(setup, jobStatus, service.writable, store, service.reason);
  if (blocker) return { decision: { save: false, reason: blocker } };
  if (!daemonContainerId || !connectDaemon)
    return {
      decision: {
        save: false,
        reason: 'the daemon was not running at the end of the job, so its data may be inconsistent'
      }
    };
  try {
    const [dind, restored] = await Promise.all([connectDaemon(), readRestoredManifest(setup.dataDir)]);
    const eviction = await evictUnusedImages(setup, restored, docker, docker.getContainer(daemonContainerId), dind);
    const content = await pruneForCache(dind);
    return { decision: decideSave(setup, contentKey(setup, content), context.instanceId), eviction, restored };
  } catch (error) {
    return { decision: { save: false, reason: `the daemon could not be read (${errorMessage(error)})` } };
  }
}

function describeSave(result: SaveResult, remote: boolean): string {
  const local = result.localBytes > 0 ? `, ${formatBytes(result.localBytes)} written to the cache directory` : '';
  const sizes = `${formatBytes(result.storedBytes)} in ${result.chunks} chunks: ${remote ? `${formatBytes(result.uploadedBytes)} uploaded, ` : ''}${formatBytes(result.reusedBytes)} reused${local}`;
  return result.saved ? `saved ${sizes}, as ${result.key}` : `not saved: ${result.reason} (${sizes})`;
}

function reportEviction(eviction: Eviction, keepUnusedMs: number | undefined, timeline: Timeline): void {
  if (eviction.skipped) {
    core.warning(`Not dropping unused images from the cache: ${eviction.skipped}.`);
    timeline.fact('Unused images', `kept: ${eviction.skipped}`);
  } else if (eviction.evicted.length > 0) {
    const after = keepUnusedMs === 0 ? 'not used by this job' : `not used for ${formatDuration(keepUnusedMs ?? 0)}`;
    core.info(`Dropped from the cache, ${after}: ${eviction.evicted.join(', ')}`);
    timeline.fact('Unused images', `dropped ${eviction.evicted.length}, ${after}: ${eviction.evicted.join(', ')}`);
  }
}

function describeDirectory(cacheDir: string, { left, removedFrames, removedImages, removedBytes }: StoreBound): string {
  const removed = [
    removedFrames > 0 ? `${removedFrames} chunks` : '',
    removedImages > 0 ? `${removedImages} kept images` : ''
  ].filter(Boolean);
  return `${cacheDir}: ${formatBytes(left.bytes)} in ${left.frames} chunks and ${left.images} kept images${removed.length > 0 ? `; removed the least recently used ${removed.join(' and ')} (${formatBytes(removedBytes)})` : ''}`;
}
