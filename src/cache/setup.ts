// The cache's settings for one job: whether it caches at all, under which keys, and how post saves.
// Main decides them once; post reads them back from the step state.
import * as core from '@actions/core';
import { Inputs } from '../runner/contract';
import type { Instance } from '../daemon/instance';
import { cacheKeys, keyBase, uncarriedStorage } from './key';
import { zstdAvailable } from './image/zstd';
import { availability } from './stores/service';

export const CACHE_SAVE_POLICIES = ['on-change', 'on-success', 'always', 'never'] as const;
export type CacheSavePolicy = (typeof CACHE_SAVE_POLICIES)[number];

/** What post needs to save the cache; kept in the step state. */
export interface CacheSetup {
  dataDir: string;
  exactPrefix: string;
  restoreKeys: string[];
  savePolicy: CacheSavePolicy;
  maxBytes: number;
  /** The key of the state restored, if any. */
  restoredKey?: string;
  /**
   * A state main restored and then did not use (it failed its check, or the daemon did not start on
   * it): it stays the newest entry of its keys until post saves a state of this job's over it.
   */
  refusedKey?: string;
  /** Images unused for this long are dropped before saving; undefined: never. */
  keepUnusedMs?: number;
  /** The runner's own store of states (input cache-dir), and its bound. */
  cacheDir?: string;
  cacheDirMaxBytes: number;
  /** When the daemon started (ms since the epoch): what happened after is the job's use of its images. */
  usageSince?: number;
  /** The exec that records the daemon's image events (see usage.ts). */
  usageRecorder?: string;
}

/** The inputs the cache reads. */
export interface CacheInputs {
  cache: boolean;
  image: string;
  dockerdArgs: string[];
  daemonConfig: Record<string, unknown>;
  cacheKey: string;
  cacheSave: CacheSavePolicy;
  cacheMaxSizeBytes: number;
  /** Images no job used for this long are not saved again; undefined: never dropped. */
  cacheEvictAfterMs?: number;
  /** The runner's own store of states; undefined: none. */
  cacheDir?: string;
  cacheDirMaxSizeBytes: number;
}

/** Decides whether this job can cache at all. Undefined: no cache. */
export async function prepareCache(inputs: CacheInputs, instance: Instance): Promise<CacheSetup | undefined> {
  if (!inputs.cache) {
    core.info(`Cache off (input '${Inputs.Cache}').`);
    return undefined;
  }
  const service = availability();
  if (!service.readable && !service.writable && !inputs.cacheDir) {
    core.info(`Cache off: ${service.reason}.`);
    return undefined;
  }
  const uncarried = uncarriedStorage(inputs.dockerdArgs, inputs.daemonConfig);
  if (uncarried) {
    core.warning(
      `Cache off: ${uncarried}, and the cache carries only the overlay2 storage driver's images (set '${Inputs.Cache}: false' to say so).`
    );
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
    keepUnusedMs: inputs.cacheEvictAfterMs,
    cacheDir: inputs.cacheDir,
    cacheDirMaxBytes: inputs.cacheDirMaxSizeBytes
  };
}

/**
 * Where main keeps the cache's setup for post (the step state, which saves itself at every change): the
 * one record of the state restored, refused, and the job's image use.
 */
export interface CacheRecord {
  readonly cache: Readonly<CacheSetup> | undefined;
  setCache(cache: CacheSetup | undefined): void;
  updateCache(patch: Partial<CacheSetup>): void;
}
