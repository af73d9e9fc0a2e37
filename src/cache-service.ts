// The Actions cache service (v2), through @actions/cache's own client. Its public restoreCache and
// saveCache wrap the payload in a tar of their own and go through temporary files; the daemon's data
// is already a tar, so it is streamed: the download straight into extraction (here), the archiver's
// output straight into the blob upload (blob-upload.ts). Lookup, reservation and finalization are the
// library's calls. Nothing here loads the Azure SDK, which only post needs: main starts faster.
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import {
  getCacheMode,
  getCacheServiceVersion,
  isCacheReadable,
  isCacheWritable
} from '@actions/cache/lib/internal/config';
import { internalCacheTwirpClient } from '@actions/cache/lib/internal/shared/cacheTwirpClient';

/** Scopes our entries apart from other caches: the service matches keys only within one version. */
export const CACHE_VERSION = createHash('sha256').update('setup-dind daemon data, tar+zstd, v1').digest('hex');

/** A download that delivers nothing for this long has stalled. */
const STALL_MS = 60_000;
/** The library retries failing calls with backoff; a cache is not worth waiting long for. */
const RPC_ATTEMPTS = 2;
/** The client sets no time-out on its calls: a service that never answers would hold the step. */
const RPC_TIMEOUT_MS = 30_000;

/** Rejects when `promise` takes too long. The request itself goes on: entry points exit explicitly. */
function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} got no answer in ${RPC_TIMEOUT_MS / 1000} s`)), RPC_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export type Availability = { readable: boolean; writable: boolean; reason?: string };

export function availability(): Availability {
  // As the library's isFeatureAvailable decides, without loading the rest of the library.
  if (getCacheServiceVersion() !== 'v2')
    return {
      readable: false,
      writable: false,
      reason:
        'the Actions cache service v2 is not available to this job (GitHub Enterprise Server has only the legacy service)'
    };
  if (!process.env.ACTIONS_RESULTS_URL)
    return { readable: false, writable: false, reason: 'the Actions cache service is not available to this job' };
  const mode = getCacheMode();
  return {
    readable: isCacheReadable(mode),
    writable: isCacheWritable(mode),
    reason: mode ? `ACTIONS_CACHE_MODE is '${mode}'` : undefined
  };
}

function client() {
  return internalCacheTwirpClient({ maxAttempts: RPC_ATTEMPTS });
}

export interface CacheEntry {
  key: string;
  url: string;
}

/** The newest entry for the first key that matches (exact for `key`, prefix for `restoreKeys`). */
export async function lookup(key: string, restoreKeys: string[]): Promise<CacheEntry | undefined> {
  const response = await withTimeout(
    client().GetCacheEntryDownloadURL({ key, restoreKeys, version: CACHE_VERSION }),
    'looking up the cache'
  );
  return response.ok ? { key: response.matchedKey, url: response.signedDownloadUrl } : undefined;
}

/**
 * Opens the entry's archive as a stream. A connection that closes early makes the stream error, and
 * the archive's own checksums catch the rest: the caller discards whatever it extracted then.
 */
export function download(url: string): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const request = get(url, response => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`download answered HTTP ${response.statusCode}`));
        return;
      }
      resolve(response);
    });
    request.setTimeout(STALL_MS, () => request.destroy(new Error(`download stalled for ${STALL_MS / 1000} s`)));
    request.on('error', reject);
  });
}

/** Reserves `key`; undefined when it exists already (or another job is writing it). */
export async function reserve(key: string): Promise<string | undefined> {
  try {
    const response = await withTimeout(
      client().CreateCacheEntry({ key, version: CACHE_VERSION }),
      'reserving the cache entry'
    );
    return response.ok ? response.signedUploadUrl : undefined;
  } catch (error) {
    // The service answers an existing key with HTTP 409 (Twirp already_exists), which the client throws.
    if (/\b409\b|already_exists|already exists/i.test((error as Error).message)) return undefined;
    throw error;
  }
}

/** Commits the entry once its blob is uploaded. */
export async function finalize(key: string, sizeBytes: number): Promise<void> {
  const finalized = await withTimeout(
    client().FinalizeCacheEntryUpload({ key, version: CACHE_VERSION, sizeBytes: String(sizeBytes) }),
    'committing the cache entry'
  );
  if (!finalized.ok)
    throw new Error(`the cache service did not commit ${key}: ${finalized.message || 'no reason given'}`);
}
