// The daemon's data across jobs, post's side: while the daemon runs, drop what the next job should not
// inherit, fingerprint the rest and decide whether to save; once it has stopped and its filesystem is
// unmounted, save its image as a new state (image/pack.ts). Never a failed job: warnings.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import type { CacheSetup } from './restore';
import { contentFingerprint, saveKey, type DaemonContent } from './key';
import { Inputs } from '../runner/contract';
import { errorMessage } from '../util/errors';
import type { LocalStore } from './stores/local';
import type { Manifest } from './manifest';
import { saveState, SizeLimitError, type SaveResult } from './image/pack';
import { formatBytes } from '../util/units';
import { collectUsage, planEviction, type LastUsed } from './usage';

/**
 * Clears what the next job should not inherit and returns what the daemon holds: containers and
 * volumes are the job's own state; dangling images are what would otherwise pile up from job to job.
 * Build cache goes too: a restore keeps none of BuildKit's records (entrypoint.sh), and the layers
 * they alone hold would stay in the state, named by nothing.
 */
export async function pruneForCache(dind: Docker): Promise<DaemonContent> {
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
export async function evictUnusedImages(
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

export function contentKey(setup: CacheSetup, content: DaemonContent): string {
  return saveKey(setup.exactPrefix, contentFingerprint(content));
}

/**
 * Saves the stopped daemon's image under `key`: to the cache service when `remote`, and to the runner's
 * `store` when there is one (post bounds it once it is done with it). Never throws: a failure is a warning.
 */
export async function saveDaemonData(
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
      remote,
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
