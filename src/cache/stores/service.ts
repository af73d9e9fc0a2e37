// The GitHub Actions cache service (v2), the one place that touches @actions/cache's internals (its
// generated Twirp client and its reading of the runner's configuration), pinned to an exact version in
// package.json and checked by test/unit/cache/stores/service.test.ts. The library's public restoreCache and
// saveCache wrap one payload in a tar of their own through temporary files; the daemon's data is
// many content-addressed entries fetched by ranges, so this module makes the calls itself: with
// the HTTP status of each answer at hand (a conflict, a rate limit), and a time limit on each call.
// ServiceStore puts the calls and the blob transfers behind the stores' interfaces (store.ts).
import * as http from 'node:http';
import * as https from 'node:https';
import { createHash } from 'node:crypto';
import * as core from '@actions/core';
import {
  getCacheMode,
  getCacheServiceVersion,
  isCacheReadable,
  isCacheWritable
} from '@actions/cache/lib/internal/config';
import { CacheServiceClientJSON } from '@actions/cache/lib/generated/results/api/v1/cache.twirp-client';
import { errorMessage } from '../../util/errors';
import { agentFor, limitConnect } from './http-agents';
import { download } from './blob-download';
import type { BlobFile, BlobStore, FoundManifest, ManifestStore, ReadOptions, WriteOutcome } from './store';
import { SERVICE_SCOPE } from '../format';
import {
  decodeManifest,
  encodeManifest,
  MAX_MANIFEST_BLOB_BYTES,
  type Manifest,
  type ManifestLimits
} from '../manifest';

/** Scopes our entries apart from other caches: the service matches keys only within one version. */
export const CACHE_VERSION = createHash('sha256').update(SERVICE_SCOPE).digest('hex');
/** Entries looked up at once (a state's parts). */
export const LOOKUP_CONCURRENCY = 4;

/** The client sets no time-out on its calls: a service that never answers must not hold the step. */
const RPC_TIMEOUT_MS = 30_000;
/** Server errors and refused connections are retried once (a call with no answer is not): a cache is not worth waiting long for. */
const RPC_ATTEMPTS = 2;
const RPC_RETRY_DELAY_MS = 1000;

export type Availability = { readable: boolean; writable: boolean; reason?: string };

export function availability(): Availability {
  // As the library's isFeatureAvailable decides for v2, without loading the rest of the library.
  if (getCacheServiceVersion() !== 'v2') {
    return {
      readable: false,
      writable: false,
      reason:
        'the Actions cache service v2 is not available to this job (GitHub Enterprise Server has only the legacy service)'
    };
  }
  if (!process.env.ACTIONS_RESULTS_URL || !process.env.ACTIONS_RUNTIME_TOKEN) {
    return { readable: false, writable: false, reason: 'the Actions cache service is not available to this job' };
  }
  const mode = getCacheMode();
  return {
    readable: isCacheReadable(mode),
    writable: isCacheWritable(mode),
    reason: mode ? `ACTIONS_CACHE_MODE is '${mode}'` : undefined
  };
}

/** An answer of the service that is not a success, with its HTTP status (0: no answer). */
export class CacheServiceError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** Seconds, from Retry-After, on a rate limit. */
    readonly retryAfter?: number
  ) {
    super(message);
  }
}

const HTTP_CONFLICT = 409;
const HTTP_TOO_MANY_REQUESTS = 429;

export function isRateLimit(error: unknown): error is CacheServiceError {
  return error instanceof CacheServiceError && error.status === HTTP_TOO_MANY_REQUESTS;
}

class TimeoutError extends Error {}

function isRetryable(status: number): boolean {
  return status === 0 || status >= 500;
}

/** One Twirp JSON call, as the generated client asks for it. */
function post(url: URL, body: string): Promise<{ status: number; text: string; retryAfter?: number }> {
  const get = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const request = get(
      url,
      {
        method: 'POST',
        agent: agentFor(url),
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${process.env.ACTIONS_RUNTIME_TOKEN ?? ''}`,
          'user-agent': 'setup-dind'
        },
        timeout: RPC_TIMEOUT_MS
      },
      response => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', chunk => (text += chunk));
        response.on('end', () => {
          const retryAfter = Number(response.headers['retry-after']);
          resolve({ status: response.statusCode ?? 0, text, retryAfter: retryAfter > 0 ? retryAfter : undefined });
        });
        response.on('error', reject);
      }
    );
    const noAnswer = () => new TimeoutError(`no answer in ${RPC_TIMEOUT_MS / 1000} s`);
    limitConnect(request, RPC_TIMEOUT_MS, noAnswer);
    request.on('timeout', () => request.destroy(noAnswer()));
    request.on('error', reject);
    request.end(body);
  });
}

const rpc = {
  async request(service: string, method: string, _contentType: string, data: object | Uint8Array): Promise<object> {
    const base = process.env.ACTIONS_RESULTS_URL ?? '';
    const url = new URL(`twirp/${service}/${method}`, base.endsWith('/') ? base : `${base}/`);
    let lastError: CacheServiceError | undefined;
    for (let attempt = 1; attempt <= RPC_ATTEMPTS; attempt++) {
      let answer: Awaited<ReturnType<typeof post>>;
      const started = Date.now();
      try {
        answer = await post(url, JSON.stringify(data));
        core.debug(`${method} (attempt ${attempt}): HTTP ${answer.status} in ${Date.now() - started} ms`);
      } catch (error) {
        core.debug(`${method} (attempt ${attempt}): ${errorMessage(error)} after ${Date.now() - started} ms`);
        lastError = new CacheServiceError(`${method}: ${errorMessage(error)}`, 0);
        if (error instanceof TimeoutError) break;
        if (attempt < RPC_ATTEMPTS) await new Promise(resolve => setTimeout(resolve, RPC_RETRY_DELAY_MS));
        continue;
      }
      if (answer.status >= 200 && answer.status < 300) return JSON.parse(answer.text) as object;
      const detail = (() => {
        try {
          return (JSON.parse(answer.text) as { msg?: string }).msg ?? answer.text;
        } catch {
          return answer.text;
        }
      })();
      lastError = new CacheServiceError(
        `${method} answered HTTP ${answer.status}: ${detail.trim()}`,
        answer.status,
        answer.retryAfter
      );
      if (!isRetryable(answer.status)) break;
      if (attempt < RPC_ATTEMPTS) await new Promise(resolve => setTimeout(resolve, RPC_RETRY_DELAY_MS));
    }
    throw lastError ?? new CacheServiceError(`${method} failed`, 0);
  }
};

const client = new CacheServiceClientJSON(rpc);

interface CacheEntry {
  key: string;
  url: string;
}

/** The newest entry for the first key that matches (exact for `key`, by prefix for `restoreKeys`). */
async function lookup(key: string, restoreKeys: string[] = []): Promise<CacheEntry | undefined> {
  const response = await client.GetCacheEntryDownloadURL({ key, restoreKeys, version: CACHE_VERSION });
  core.debug(
    `Lookup of ${key} (restore keys: ${restoreKeys.join(', ') || 'none'}): ${response.ok ? response.matchedKey : 'no entry'}`
  );
  return response.ok ? { key: response.matchedKey, url: response.signedDownloadUrl } : undefined;
}

/** Reserves `key` for an upload; undefined when it exists already (or another job is writing it). */
async function reserve(key: string): Promise<string | undefined> {
  try {
    const response = await client.CreateCacheEntry({ key, version: CACHE_VERSION });
    return response.ok ? response.signedUploadUrl : undefined;
  } catch (error) {
    if (error instanceof CacheServiceError && error.status === HTTP_CONFLICT) return undefined;
    throw error;
  }
}

/** Commits the entry once its blob is uploaded. */
async function finalize(key: string, sizeBytes: number): Promise<void> {
  const finalized = await client.FinalizeCacheEntryUpload({
    key,
    version: CACHE_VERSION,
    sizeBytes: String(sizeBytes)
  });
  if (!finalized.ok)
    throw new CacheServiceError(
      `the cache service did not commit ${key}: ${finalized.message || 'no reason given'}`,
      200
    );
}

/** Uploads a blob to a signed URL: blob-upload.ts, which only post loads (the Azure SDK is a third of a bundle). */
/** Uploads a blob to a signed URL and gives the bytes it sent. */
export type Upload = (url: string, data: Buffer | BlobFile | AsyncIterable<Buffer>) => Promise<number>;

/**
 * The cache service as a store: every blob and every manifest is an entry, named by its key, that no
 * one can change once committed (or while another job is writing it). A lookup of a name matches by
 * prefix too, as the service does: `<name>.N`, a variant a save wrote when `<name>` was stuck, holds the
 * same bytes. Main's store only reads; post's, given `upload`, also writes.
 */
export class ServiceStore implements BlobStore, ManifestStore {
  /** Bytes of the entries this store committed. */
  uploadedBytes = 0;
  /** The signed download URL of each name looked up: reads of its ranges follow without another lookup. */
  private readonly urls = new Map<string, string>();

  constructor(private readonly upload?: Upload) {}

  /** The key of the entry a lookup of `name` finds (`name`, or a variant of it); undefined when none. */
  async match(name: string): Promise<string | undefined> {
    const entry = await lookup(name);
    if (entry) this.urls.set(name, entry.url).set(entry.key, entry.url);
    return entry?.key;
  }

  async has(name: string): Promise<boolean> {
    return (await this.match(name)) !== undefined;
  }

  /** The blob `name`, or a range of it; a DownloadError when the service's answer is not what was asked for. */
  async read(name: string, { maxBytes, range, into, received }: ReadOptions): Promise<Buffer | undefined> {
    if (!this.urls.has(name)) await this.match(name);
    const url = this.urls.get(name);
    if (!url) return undefined;
    return download(url, { range: range && [range.offset, range.offset + range.length - 1], maxBytes, into, received });
  }

  /**
   * Reserves the entry, uploads the blob and commits it. A blob whose bytes come as they are made (a
   * save's new part, while the image is scanned) is reserved before its first piece and uploaded as
   * they come; committed once `data` ends, never if it throws.
   */
  async write(name: string, data: Buffer | BlobFile | AsyncIterable<Buffer>): Promise<WriteOutcome> {
    if (!this.upload) throw new Error(`${name} cannot be stored: this step only reads the cache service`);
    const uploadUrl = await reserve(name);
    if (!uploadUrl) return 'exists';
    const bytes = await this.upload(uploadUrl, data);
    await finalize(name, bytes);
    this.uploadedBytes += bytes;
    return 'written';
  }

  /** The newest entry for the first of `prefixes` that matches: its key; its manifest is read when asked for. */
  async findManifest(prefixes: string[]): Promise<FoundManifest | undefined> {
    const [key, ...restoreKeys] = prefixes;
    const entry = await lookup(key, restoreKeys);
    if (entry) this.urls.set(entry.key, entry.url);
    return entry && { key: entry.key };
  }

  async readManifest(key: string, limits: ManifestLimits): Promise<Manifest | undefined> {
    const blob = await this.read(key, { maxBytes: MAX_MANIFEST_BLOB_BYTES });
    return blob && decodeManifest(blob, limits);
  }

  async writeManifest(manifest: Manifest): Promise<WriteOutcome> {
    return this.write(manifest.key, await encodeManifest(manifest));
  }
}
