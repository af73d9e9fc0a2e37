// An in-process emulation of the GitHub Actions cache service v2 (the "results" Twirp service) for
// integration tests and benchmarks, talking to the real @actions/cache client. Blobs live in a real
// Azure Blob store (the azurite emulator), reached through a reverse proxy on the service's own port
// so that stats can count blob traffic and faults can be injected into it.
//
// It models what a job feels of the real service: RPC latency, a download rate cap per connection (Azure
// throttles each stream, so parallel ranged GETs add up), the repository quota with least-recently-used
// eviction of whole entries, and the rate-limit answer (HTTP 429).
//
// Plain TypeScript, no jest dependency: benchmark scripts import it too.

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable, Transform, TransformCallback, pipeline } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobSASPermissions,
  StorageSharedKeyCredential,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters
} from '@azure/storage-blob';
import { defined } from './defined';

export type CacheFault =
  | 'none'
  /** Every Twirp call answers 500 `internal` (the client retries it 5 times, ~25-35 s, then gives up). */
  | 'error'
  /**
   * Every Twirp call answers 429 `resource_exhausted` with `Retry-After: 60`, as the service does past
   * its rate limit (the client neither retries nor waits: it warns and throws a RateLimitError).
   */
  | 'rate-limit'
  /** No request (Twirp or blob) is ever answered; the connections are reset by stop(). */
  | 'hang'
  /** Blob downloads are complete responses holding only the first half of the blob. */
  | 'truncate-download'
  /** Blob downloads have bytes flipped in the middle of the blob, length unchanged. */
  | 'corrupt-download'
  /** Blob downloads announce the full length, send the first half, then close the connection. */
  | 'interrupt-download'
  /** Blob uploads are refused with 403 AuthenticationFailed (as for an expired SAS; not retried). */
  | 'upload-error';

/** The Twirp methods of the service. */
export type TwirpMethod = 'CreateCacheEntry' | 'FinalizeCacheEntryUpload' | 'GetCacheEntryDownloadURL';
/** Blob requests, by the name of their Azure REST operation. */
export type BlobOperation = 'GetBlob' | 'GetBlobProperties' | 'GetBlockList' | 'PutBlob' | 'PutBlock' | 'PutBlockList';
export type CacheOperation = TwirpMethod | BlobOperation;

/**
 * Narrows a fault to some requests; a fault still only hits the requests it is about (Twirp calls,
 * blob downloads or blob uploads). Without a scope, it hits them all.
 */
export interface FaultScope {
  /** Only these operations. */
  methods?: readonly CacheOperation[];
  /**
   * Only requests about a key this accepts: a Twirp call's `key` field (the primary key of a lookup),
   * or the key of the entry a blob request's URL belongs to. Requests about no known key are spared.
   */
  keys?: (key: string) => boolean;
}

export interface CacheServerOptions {
  fault?: CacheFault;
  faultScope?: FaultScope;
  /** Rate cap of each blob download response on its own, as Azure caps each stream. Default: none. */
  downloadBytesPerSecond?: number;
  /** Added before answering each Twirp call (the real service is a round trip away). Default: 0. */
  rpcLatencyMs?: number;
  /**
   * The repository's cache quota over finalized entries. Past it, finalizing evicts whole entries,
   * least recently accessed first (the real service's limit is 10 GB). Default: none.
   */
  quotaBytes?: number;
  /** The IPv4 address the service listens on. Default: 127.0.0.1. */
  host?: string;
  /** The host its URLs name, which must resolve to `host`. Default: `host`. */
  hostname?: string;
  /** Serves https with this certificate and key (PEM) instead of http. */
  tls?: { cert: string; key: string };
}

export interface CacheEntryInfo {
  id: number;
  key: string;
  version: string;
  size: number;
  createdAt: Date;
  /** Set at finalize, and again whenever a lookup returns the entry: the order of eviction. */
  lastAccessedAt: Date;
}

export interface CacheServerStats {
  /** Every Twirp call received, including the client's retries and faulted calls. */
  twirpRequests: number;
  /** CreateCacheEntry calls that reserved an entry. */
  creates: number;
  /** CreateCacheEntry calls refused because the key+version exists (finalized or still reserved). */
  createConflicts: number;
  /** Entries finalized. */
  finalizes: number;
  /** GetCacheEntryDownloadURL calls answered, and how many of them matched an entry. */
  lookups: number;
  hits: number;
  /** Blob bytes accepted by the store through Put Blob / Put Block, and how many such requests. */
  uploadedBytes: number;
  uploadRequests: number;
  /** Blob GETs answered with a body, and the bytes sent to clients. */
  downloads: number;
  downloadedBytes: number;
  /** Of those downloads, the ones answered 206 with part of the blob. */
  rangedDownloads: number;
  /** The most blob GETs in flight at once since the server started (a high-water mark, not a count). */
  maxConcurrentDownloads: number;
  /** Finalized entries removed, by the quota or by evict(). */
  evictions: number;
}

export interface CacheServer {
  /** ACTIONS_RESULTS_URL: the service root, with a trailing slash as the runner gives it. */
  url: string;
  /** What a step needs for @actions/cache to use this service (cache service v2). */
  env: Record<string, string>;
  /** Finalized entries, in order of creation. */
  entries(): CacheEntryInfo[];
  /**
   * Keys of the entries removed, by the quota or by evict(), in order. Apart from stats() so that
   * stats stay all numbers, which callers subtract field by field.
   */
  evictedKeys(): string[];
  stats(): CacheServerStats;
  /** Replaces the fault and its scope; `setFault('none')` ends it. */
  setFault(fault: CacheFault, scope?: FaultScope): void;
  /** Caps each blob download response from now on, responses in flight included; undefined lifts it. */
  setDownloadCap(bytesPerSecond: number | undefined): void;
  setRpcLatency(ms: number): void;
  /**
   * Removes the finalized entries `predicate` accepts, as the service's eviction does: gone from
   * lookups, their blob deleted, their key free again. Resolves to the entries removed.
   */
  evict(predicate: (entry: CacheEntryInfo) => boolean): Promise<CacheEntryInfo[]>;
  /** Stops the service and azurite and removes their temp dir; resets every open connection. */
  stop(): Promise<void>;
}

// Azurite's single built-in account and its well-known key (public, documented by Microsoft).
const ACCOUNT = 'devstoreaccount1';
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const CONTAINER = 'actions-cache';
// The newest SAS version azurite 3.35 knows; @azure/storage-blob would otherwise sign with a newer one.
const SAS_VERSION = '2025-11-05';
const SAS_TTL_MS = 60 * 60 * 1000;
const TWIRP_PREFIX = '/twirp/github.actions.results.api.v1.CacheService/';
const BLOB_PREFIX = `/${ACCOUNT}/${CONTAINER}/`;
const CORRUPT_SPAN = 16;
const RETRY_AFTER_SECONDS = 60;
// The download throttle sends at least this much at a time (unless less is left), at most the burst.
const THROTTLE_SLICE_SECONDS = 0.02;
const THROTTLE_BURST_SECONDS = 0.05;
const AZURITE_START_TIMEOUT_MS = 30_000;
const AZURITE_STOP_TIMEOUT_MS = 5_000;
const MAX_TWIRP_BODY = 1024 * 1024;
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

interface Entry extends CacheEntryInfo {
  blobName: string;
  finalized: boolean;
  /**
   * A finalized entry's bytes, served from memory: azurite serves about 110 MB/s in all on this
   * machine's 2 cores, below what several capped connections of the real service reach together.
   */
  data?: Buffer;
  /** azurite's headers for the blob (ETag, Last-Modified, x-ms-blob-type…), sent with it. */
  blobHeaders?: http.IncomingHttpHeaders;
  /** Orders accesses strictly, where two in the same millisecond would tie on lastAccessedAt. */
  accessOrder: number;
}

type TwirpCode =
  | 'invalid_argument'
  | 'malformed'
  | 'bad_route'
  | 'not_found'
  | 'already_exists'
  | 'unauthenticated'
  | 'resource_exhausted'
  | 'internal';

const TWIRP_STATUS: Record<TwirpCode, number> = {
  invalid_argument: 400,
  malformed: 400,
  bad_route: 404,
  not_found: 404,
  already_exists: 409,
  unauthenticated: 401,
  resource_exhausted: 429,
  internal: 500
};

class TwirpError extends Error {
  constructor(
    readonly code: TwirpCode,
    message: string
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

export async function startCacheServer(opts: CacheServerOptions = {}): Promise<CacheServer> {
  const tempDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'cache-server-'));
  let azurite: Azurite | undefined;
  let server: http.Server | https.Server | undefined;
  try {
    azurite = await startAzurite(tempDir);
    const credential = new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY);
    await createContainer(azurite, credential);
    const service = new CacheService(azurite, credential, opts);
    const handler: http.RequestListener = (req, res) => service.handle(req, res);
    const listening = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
    server = listening;
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.listen(0, host, resolve);
    });
    const { port } = server.address() as AddressInfo;
    service.baseUrl = `${opts.tls ? 'https' : 'http'}://${opts.hostname ?? host}:${port}/`;
    return api(service, server, azurite, tempDir);
  } catch (error) {
    await shutdown(server, azurite, tempDir);
    throw error;
  }
}

function api(
  service: CacheService,
  server: http.Server | https.Server,
  azurite: Azurite,
  tempDir: string
): CacheServer {
  let stopped: Promise<void> | undefined;
  return {
    url: service.baseUrl,
    env: {
      ACTIONS_CACHE_SERVICE_V2: 'True',
      ACTIONS_RESULTS_URL: service.baseUrl,
      ACTIONS_RUNTIME_TOKEN: service.token,
      // Anything but github.com, *.ghe.com or *.localhost counts as GHES, where the client forces v1.
      GITHUB_SERVER_URL: 'https://github.com'
    },
    entries: () => service.entries.filter(e => e.finalized).map(publicInfo),
    evictedKeys: () => [...service.evictedKeys],
    stats: () => ({ ...service.stats }),
    setFault: (fault, scope = {}) => {
      service.fault = fault;
      service.faultScope = scope;
    },
    setDownloadCap: bytesPerSecond => {
      service.downloadBytesPerSecond = positiveOrUndefined(bytesPerSecond, 'download cap');
    },
    setRpcLatency: ms => {
      service.rpcLatencyMs = Math.max(0, ms);
    },
    evict: async predicate => (await service.evict(e => predicate(publicInfo(e)))).map(publicInfo),
    stop: () => (stopped ??= shutdown(server, azurite, tempDir))
  };
}

function publicInfo({ id, key, version, size, createdAt, lastAccessedAt }: Entry): CacheEntryInfo {
  return { id, key, version, size, createdAt: new Date(createdAt), lastAccessedAt: new Date(lastAccessedAt) };
}

function positiveOrUndefined(value: number | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${what} must be a positive number: ${value}`);
  return value;
}

async function shutdown(
  server: http.Server | https.Server | undefined,
  azurite: Azurite | undefined,
  tempDir: string
): Promise<void> {
  if (server?.listening) {
    const closed = new Promise<void>(resolve => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }
  await azurite?.stop();
  await fs.promises.rm(tempDir, { recursive: true, force: true });
}

class CacheService {
  baseUrl = '';
  readonly token = fakeRuntimeToken();
  readonly entries: Entry[] = [];
  readonly evictedKeys: string[] = [];
  readonly stats: CacheServerStats = {
    twirpRequests: 0,
    creates: 0,
    createConflicts: 0,
    finalizes: 0,
    lookups: 0,
    hits: 0,
    uploadedBytes: 0,
    uploadRequests: 0,
    downloads: 0,
    downloadedBytes: 0,
    rangedDownloads: 0,
    maxConcurrentDownloads: 0,
    evictions: 0
  };
  fault: CacheFault;
  faultScope: FaultScope;
  downloadBytesPerSecond: number | undefined;
  rpcLatencyMs: number;
  private readonly quotaBytes: number | undefined;
  private nextId = 1;
  private accessClock = 0;
  private downloadsInFlight = 0;

  constructor(
    private readonly azurite: Azurite,
    private readonly credential: StorageSharedKeyCredential,
    opts: CacheServerOptions
  ) {
    this.fault = opts.fault ?? 'none';
    this.faultScope = opts.faultScope ?? {};
    this.downloadBytesPerSecond = positiveOrUndefined(opts.downloadBytesPerSecond, 'downloadBytesPerSecond');
    this.rpcLatencyMs = Math.max(0, opts.rpcLatencyMs ?? 0);
    this.quotaBytes = opts.quotaBytes;
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.baseUrl);
    if (url.pathname.startsWith(BLOB_PREFIX)) {
      this.proxyBlob(req, res, url).catch(() => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    } else {
      this.twirp(req, res, url.pathname).catch(error => sendTwirpError(res, new TwirpError('internal', String(error))));
    }
  }

  /** The fault for this request: the current one if its scope takes in the operation and the key. */
  private faultFor(operation: string, key: string | undefined): CacheFault {
    const { methods, keys } = this.faultScope;
    if (methods && !methods.includes(operation as CacheOperation)) return 'none';
    if (keys && (key === undefined || !keys(key))) return 'none';
    return this.fault;
  }

  private async twirp(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void> {
    this.stats.twirpRequests++;
    // Read before deciding anything, also for a hang: the server's request timeout must never answer for us.
    const body = await readBody(req);
    const method = pathname.startsWith(TWIRP_PREFIX) ? pathname.slice(TWIRP_PREFIX.length) : pathname;
    const fault = this.faultFor(method, requestedKey(body));
    if (fault === 'hang') return;
    if (this.rpcLatencyMs > 0) await sleep(this.rpcLatencyMs);
    if (fault === 'error') {
      sendTwirpError(res, new TwirpError('internal', 'injected fault: internal error'));
      return;
    }
    if (fault === 'rate-limit') {
      sendTwirpError(res, new TwirpError('resource_exhausted', 'injected fault: rate limit exceeded'), {
        'retry-after': String(RETRY_AFTER_SECONDS)
      });
      return;
    }
    try {
      const reply = await this.dispatch(req, pathname, body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply));
    } catch (error) {
      if (!(error instanceof TwirpError)) throw error;
      sendTwirpError(res, error);
    }
  }

  private async dispatch(req: http.IncomingMessage, pathname: string, body: Buffer): Promise<Json> {
    if (!pathname.startsWith(TWIRP_PREFIX) || req.method !== 'POST') {
      throw new TwirpError('bad_route', `no handler for ${req.method} ${pathname}`);
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      throw new TwirpError('unauthenticated', 'invalid or missing runtime token');
    }
    if (!req.headers['content-type']?.startsWith('application/json')) {
      throw new TwirpError('bad_route', `unsupported content type ${req.headers['content-type']}`);
    }
    let request: Json;
    try {
      request = JSON.parse(body.toString('utf8')) as Json;
    } catch {
      throw new TwirpError('malformed', 'the request body is not valid JSON');
    }
    switch (pathname.slice(TWIRP_PREFIX.length)) {
      case 'CreateCacheEntry':
        return this.create(request);
      case 'FinalizeCacheEntryUpload':
        return this.finalize(request);
      case 'GetCacheEntryDownloadURL':
        return this.lookup(request);
      default:
        throw new TwirpError('bad_route', `no such method ${pathname}`);
    }
  }

  private create(request: Json): Json {
    const { key, version } = keyAndVersion(request);
    // A reservation that is never finalized keeps the key for 24 hours on the real service.
    if (this.entries.some(e => e.key === key && e.version === version)) {
      this.stats.createConflicts++;
      throw new TwirpError('already_exists', 'cache entry with the same key, version, and scope already exists');
    }
    const id = this.nextId++;
    const blobName = `${id}/${randomUUID()}`;
    const createdAt = new Date();
    const entry: Entry = {
      id,
      key,
      version,
      size: 0,
      createdAt,
      lastAccessedAt: createdAt,
      accessOrder: 0,
      blobName,
      finalized: false
    };
    this.entries.push(entry);
    this.stats.creates++;
    return { ok: true, signed_upload_url: this.signedUrl(entry, 'cw'), message: '' };
  }

  private async finalize(request: Json): Promise<Json> {
    const { key, version } = keyAndVersion(request);
    const sizeBytes = Number(request.size_bytes ?? 0);
    const entry = this.entries.find(e => e.key === key && e.version === version && !e.finalized);
    if (!entry) throw new TwirpError('not_found', 'cache entry not found');
    const blobSize = await this.blobSize(entry);
    if (blobSize === undefined) throw new TwirpError('not_found', 'cache entry not found: nothing was uploaded');
    if (blobSize !== sizeBytes) {
      throw new TwirpError('invalid_argument', `size_bytes ${sizeBytes} does not match the uploaded size ${blobSize}`);
    }
    entry.size = blobSize;
    const blob = await this.azurite.read(`${BLOB_PREFIX}${entry.blobName}?${this.sasQuery(entry, 'r')}`);
    entry.data = blob.data;
    entry.blobHeaders = blob.headers;
    entry.finalized = true;
    this.touch(entry);
    this.stats.finalizes++;
    await this.enforceQuota();
    return { ok: true, entry_id: String(entry.id), message: '' };
  }

  private lookup(request: Json): Json {
    const { key, version } = keyAndVersion(request);
    const restoreKeys = Array.isArray(request.restore_keys) ? request.restore_keys.map(String) : [];
    this.stats.lookups++;
    const candidates = this.entries
      .filter(e => e.finalized && e.version === version)
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id - a.id);
    // Exact primary key first, then each of primary key and restore keys as a prefix, newest first.
    const match =
      candidates.find(e => e.key === key) ??
      [key, ...restoreKeys].map(prefix => candidates.find(e => e.key.startsWith(prefix))).find(e => e !== undefined);
    if (!match) return { ok: false, signed_download_url: '', matched_key: '' };
    this.stats.hits++;
    this.touch(match);
    return { ok: true, signed_download_url: this.signedUrl(match, 'r'), matched_key: match.key };
  }

  private touch(entry: Entry): void {
    entry.lastAccessedAt = new Date();
    entry.accessOrder = ++this.accessClock;
  }

  // The newly finalized entry was touched last, so it goes only if it alone is over the quota.
  private async enforceQuota(): Promise<void> {
    if (this.quotaBytes === undefined) return;
    const byAccess = this.entries.filter(e => e.finalized).sort((a, b) => a.accessOrder - b.accessOrder);
    let used = byAccess.reduce((sum, e) => sum + e.size, 0);
    const victims: Entry[] = [];
    for (const entry of byAccess) {
      if (used <= this.quotaBytes) break;
      victims.push(entry);
      used -= entry.size;
    }
    await this.remove(victims);
  }

  async evict(predicate: (entry: Entry) => boolean): Promise<Entry[]> {
    const victims = this.entries.filter(e => e.finalized && predicate(e));
    await this.remove(victims);
    return victims;
  }

  // Out of the list at once (so concurrent calls never pick the same victim), then the blobs go, so that
  // a download URL handed out before fails as it would on the service.
  private async remove(victims: Entry[]): Promise<void> {
    for (const victim of victims) {
      this.entries.splice(this.entries.indexOf(victim), 1);
      this.evictedKeys.push(victim.key);
      this.stats.evictions++;
    }
    await Promise.all(victims.map(victim => this.deleteBlob(victim)));
  }

  private sasQuery(entry: Entry, permissions: string): string {
    return generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName: entry.blobName,
        permissions: BlobSASPermissions.parse(permissions),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn: new Date(Date.now() + SAS_TTL_MS),
        version: SAS_VERSION
      },
      this.credential
    ).toString();
  }

  private signedUrl(entry: Entry, permissions: string): string {
    return `${this.baseUrl}${ACCOUNT}/${CONTAINER}/${entry.blobName}?${this.sasQuery(entry, permissions)}`;
  }

  private async blobSize(entry: Entry): Promise<number | undefined> {
    const res = await this.azurite.request('HEAD', `${BLOB_PREFIX}${entry.blobName}?${this.sasQuery(entry, 'r')}`);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw new Error(`azurite answered HEAD with ${res.statusCode}`);
    return Number(res.headers['content-length']);
  }

  private async deleteBlob(entry: Entry): Promise<void> {
    const res = await this.azurite.request('DELETE', `${BLOB_PREFIX}${entry.blobName}?${this.sasQuery(entry, 'd')}`);
    if (res.statusCode !== 202 && res.statusCode !== 404) {
      throw new Error(`azurite answered DELETE with ${res.statusCode}`);
    }
  }

  // Blob requests go to azurite unchanged (the SAS in the query is azurite's to check); download
  // faults are applied on the way back, by absolute offset in the blob, so ranged GETs work too.
  private async proxyBlob(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const operation = blobOperation(req.method ?? '', url.searchParams);
    const blobName = decodeURIComponent(url.pathname.slice(BLOB_PREFIX.length));
    const fault = this.faultFor(operation, this.entries.find(e => e.blobName === blobName)?.key);
    if (operation === 'GetBlob') {
      this.downloadsInFlight++;
      this.stats.maxConcurrentDownloads = Math.max(this.stats.maxConcurrentDownloads, this.downloadsInFlight);
      res.once('close', () => this.downloadsInFlight--);
    }
    if (fault === 'hang') {
      // Consume the request so that the server's request timeout never answers for us.
      req.resume();
      return;
    }
    if (req.method === 'PUT' && fault === 'upload-error') {
      req.resume();
      sendAzureError(
        res,
        403,
        'AuthenticationFailed',
        'Server failed to authenticate the request. Signed expiry time has passed.'
      );
      return;
    }
    const isUpload = operation === 'PutBlob' || operation === 'PutBlock';
    let received = 0;
    if (isUpload) req.on('data', (chunk: Buffer) => (received += chunk.length));
    const entry = this.entries.find(e => e.blobName === blobName);
    const upstream =
      operation === 'GetBlob' && entry?.data
        ? fromMemory(req, url, entry.data, entry.blobHeaders ?? {}, this.credential)
        : await this.azurite.forward(req);
    const status = defined(upstream.statusCode, 'status of the upstream response');
    const ok = status >= 200 && status < 300;
    if (isUpload && ok) {
      this.stats.uploadedBytes += received;
      this.stats.uploadRequests++;
    }
    const headers = withoutHopByHop(upstream.headers);
    const download = operation === 'GetBlob' && ok;
    const downloadFault = download ? fault : 'none';
    const streams: NodeJS.ReadWriteStream[] = [];
    if (
      downloadFault === 'truncate-download' ||
      downloadFault === 'corrupt-download' ||
      downloadFault === 'interrupt-download'
    ) {
      const { start, end, total } = bodyRange(upstream);
      const transform = new BlobFault(downloadFault === 'corrupt-download' ? 'flip' : 'cut', start, total);
      if (downloadFault === 'truncate-download') {
        const kept = Math.max(0, Math.min(end + 1, transform.limit) - start);
        if (status === 206 && kept === 0) {
          upstream.resume();
          res.writeHead(416, { 'content-range': `bytes */${transform.limit}` }).end();
          return;
        }
        headers['content-length'] = String(kept);
        if (status === 206) headers['content-range'] = `bytes ${start}-${start + kept - 1}/${transform.limit}`;
      }
      streams.push(transform);
    }
    if (download) {
      this.stats.downloads++;
      if (status === 206) this.stats.rangedDownloads++;
      // Each response gets its own bucket: N parallel ranged GETs get N times the rate of one.
      streams.push(new Throttle(() => this.downloadBytesPerSecond));
      streams.push(
        new Transform({
          transform: (chunk: Buffer, _encoding, callback) => {
            this.stats.downloadedBytes += chunk.length;
            callback(null, chunk);
          }
        })
      );
    }
    res.writeHead(status, headers);
    const socket = req.socket;
    pipeline([upstream, ...streams, res], error => {
      // The body fell short of the announced length: closing is how the client learns it is over.
      if (error || downloadFault === 'interrupt-download') socket.destroy();
    });
  }
}

/**
 * Paces one response to a rate read afresh for every slice (so a change applies to responses in
 * flight): a token bucket that starts empty, so by any moment t after its creation it has passed at
 * most rate × t bytes, and a body of B bytes takes at least B / rate seconds.
 */
class Throttle extends Transform {
  private tokens = 0;
  private refilledAt = performance.now();

  constructor(private readonly rate: () => number | undefined) {
    super();
  }

  _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pace(chunk).then(() => callback(), callback);
  }

  private async pace(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length && !this.destroyed) {
      const rate = this.rate();
      if (rate === undefined) {
        this.push(chunk.subarray(offset));
        return;
      }
      this.refill(rate);
      // Wait for a slice's worth rather than trickling out a few bytes per timer tick.
      const wanted = Math.min(chunk.length - offset, Math.max(1, Math.floor(rate * THROTTLE_SLICE_SECONDS)));
      if (this.tokens < wanted) {
        await sleep(Math.max(1, ((wanted - this.tokens) / rate) * 1000));
        continue;
      }
      const sent = Math.min(chunk.length - offset, Math.floor(this.tokens));
      this.tokens -= sent;
      this.push(chunk.subarray(offset, offset + sent));
      offset += sent;
    }
  }

  private refill(rate: number): void {
    const now = performance.now();
    const burst = Math.max(1, rate * THROTTLE_BURST_SECONDS);
    this.tokens = Math.min(burst, this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
  }
}

function blobOperation(method: string, query: URLSearchParams): string {
  const comp = query.get('comp');
  if (method === 'GET') return comp === 'blocklist' ? 'GetBlockList' : comp ? `GET ${comp}` : 'GetBlob';
  if (method === 'HEAD') return 'GetBlobProperties';
  if (method === 'PUT') return comp === 'block' ? 'PutBlock' : comp === 'blocklist' ? 'PutBlockList' : 'PutBlob';
  return method;
}

/** The `key` of a Twirp request body, if it has one. */
function requestedKey(body: Buffer): string | undefined {
  try {
    const { key } = JSON.parse(body.toString('utf8')) as Json;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

// Cuts the blob at half its length, or flips bytes just after that point; `start` is the blob
// offset this response body begins at.
class BlobFault extends Transform {
  readonly limit: number;
  private offset: number;

  constructor(
    private readonly mode: 'cut' | 'flip',
    start: number,
    total: number
  ) {
    super();
    this.offset = start;
    this.limit = Math.floor(total / 2);
  }

  _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const from = this.offset;
    this.offset += chunk.length;
    if (this.mode === 'cut') {
      callback(null, chunk.subarray(0, Math.max(0, this.limit - from)));
      return;
    }
    const out = Buffer.from(chunk);
    const until = Math.min(this.offset, this.limit + CORRUPT_SPAN);
    for (let i = Math.max(from, this.limit); i < until; i++) out[i - from] ^= 0xff;
    callback(null, out);
  }
}

/**
 * A GET of a finalized blob answered as Azure does, from its bytes in memory: the SAS checked (the
 * signature of the very parameters the URL carries, unexpired), `Range` or `x-ms-range` honoured.
 * Shaped as the response from azurite would be, so faults and the cap apply the same.
 */
function fromMemory(
  req: http.IncomingMessage,
  url: URL,
  data: Buffer,
  blobHeaders: http.IncomingHttpHeaders,
  credential: StorageSharedKeyCredential
): http.IncomingMessage {
  const answer = (statusCode: number, headers: http.IncomingHttpHeaders, body: Buffer) => {
    const pieces = function* () {
      for (let offset = 0; offset < body.length; offset += 64 * 1024) yield body.subarray(offset, offset + 64 * 1024);
    };
    return Object.assign(Readable.from(pieces()), { statusCode, headers }) as unknown as http.IncomingMessage;
  };
  const query = url.searchParams;
  const startsOn = query.get('st');
  const expected = generateBlobSASQueryParameters(
    {
      containerName: CONTAINER,
      blobName: decodeURIComponent(url.pathname.slice(BLOB_PREFIX.length)),
      permissions: BlobSASPermissions.parse(query.get('sp') ?? ''),
      startsOn: startsOn ? new Date(startsOn) : undefined,
      expiresOn: new Date(query.get('se') ?? 0),
      version: query.get('sv') ?? SAS_VERSION
    },
    credential
  ).signature;
  if (
    query.get('sig') !== expected ||
    Date.parse(query.get('se') ?? '') < Date.now() ||
    !query.get('sp')?.includes('r')
  ) {
    return answer(403, { 'x-ms-error-code': 'AuthenticationFailed' }, Buffer.alloc(0));
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers['x-ms-range'] ?? req.headers.range ?? ''));
  const common = { ...blobHeaders, 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
  if (!range) return answer(200, { ...common, 'content-length': String(data.length) }, data);
  const start = Number(range[1]);
  const end = Math.min(data.length - 1, range[2] === '' ? data.length - 1 : Number(range[2]));
  if (start >= data.length || end < start) {
    return answer(416, { 'content-range': `bytes */${data.length}` }, Buffer.alloc(0));
  }
  const body = data.subarray(start, end + 1);
  return answer(
    206,
    { ...common, 'content-length': String(body.length), 'content-range': `bytes ${start}-${end}/${data.length}` },
    body
  );
}

function bodyRange(res: http.IncomingMessage): { start: number; end: number; total: number } {
  const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''));
  if (range) return { start: Number(range[1]), end: Number(range[2]), total: Number(range[3]) };
  const length = Number(res.headers['content-length']);
  return { start: 0, end: length - 1, total: length };
}

function keyAndVersion(request: Json): { key: string; version: string } {
  const key = typeof request.key === 'string' ? request.key : '';
  const version = typeof request.version === 'string' ? request.version : '';
  if (!key) throw new TwirpError('invalid_argument', 'key is required');
  if (!version) throw new TwirpError('invalid_argument', 'version is required');
  return { key, version };
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_TWIRP_BODY) req.destroy(new Error('request body too large'));
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendTwirpError(res: http.ServerResponse, error: TwirpError, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(TWIRP_STATUS[error.code], { ...headers, 'content-type': 'application/json' });
  res.end(JSON.stringify({ code: error.code, msg: error.message }));
}

function sendAzureError(res: http.ServerResponse, status: number, code: string, message: string): void {
  const requestId = randomUUID();
  res.writeHead(status, { 'content-type': 'application/xml', 'x-ms-error-code': code, 'x-ms-request-id': requestId });
  res.end(
    `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code>` +
      `<Message>${message}\nRequestId:${requestId}\nTime:${new Date().toISOString()}</Message></Error>`
  );
}

function withoutHopByHop(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...headers };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

// Shaped like the runner's token (an RS256 JWT with the Actions scopes) so that code which decodes
// it works; the signature is random, as only this service checks the token, by equality.
function fakeRuntimeToken(): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'RS256', x5t: randomBytes(20).toString('base64url') };
  const payload = {
    nameid: randomUUID(),
    scp: `Actions.GenericRead:${randomUUID()} Actions.Results:${randomUUID()}:${randomUUID()}`,
    ac: JSON.stringify([{ Scope: 'refs/heads/main', Permission: 3 }]),
    iss: 'vstoken.actions.githubusercontent.com',
    aud: `vso:${randomUUID()}`,
    iat: now,
    nbf: now - 60,
    exp: now + 6 * 3600
  };
  return `${encode(header)}.${encode(payload)}.${randomBytes(256).toString('base64url')}`;
}

interface Azurite {
  request(method: string, pathAndQuery: string): Promise<http.IncomingMessage>;
  /** A blob's bytes and the headers azurite sends with them. */
  read(pathAndQuery: string): Promise<{ data: Buffer; headers: http.IncomingHttpHeaders }>;
  forward(req: http.IncomingMessage): Promise<http.IncomingMessage>;
  stop(): Promise<void>;
}

// Runs azurite's blob service as a child process: on an ephemeral 127.0.0.1 port, data in memory,
// accepting the newer API version the Azure SDK sends, and never phoning home.
async function startAzurite(cwd: string): Promise<Azurite> {
  const main = require.resolve('azurite/dist/src/blob/main.js');
  const child = spawn(
    process.execPath,
    [
      main,
      ...['--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence'],
      ...['--silent', '--loose', '--skipApiVersionCheck', '--disableTelemetry']
    ],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'] }
  );
  const origin = await azuriteOrigin(child).catch(async error => {
    await stopChild(child);
    throw error;
  });
  const { hostname, port } = new URL(origin);
  // Plain node:http on a private agent, not the Azure SDK pipeline, which would honour HTTP(S)_PROXY.
  const agent = new http.Agent({ keepAlive: true });
  const send = (method: string, pathAndQuery: string, headers: http.OutgoingHttpHeaders) =>
    http.request({ host: hostname, port, method, path: pathAndQuery, headers, agent });
  const response = (req: http.ClientRequest) =>
    new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject));
  return {
    request: (method, pathAndQuery) => {
      const req = send(method, pathAndQuery, {});
      req.end();
      return response(req).then(res => res.resume());
    },
    read: async pathAndQuery => {
      const req = send('GET', pathAndQuery, {});
      req.end();
      const res = await response(req);
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      if (res.statusCode !== 200) throw new Error(`azurite answered GET with ${res.statusCode}`);
      const headers = Object.fromEntries(
        Object.entries(res.headers).filter(
          ([name]) => name === 'etag' || name === 'last-modified' || name.startsWith('x-ms-')
        )
      );
      return { data: Buffer.concat(chunks), headers };
    },
    forward: incoming => {
      const headers = { ...withoutHopByHop(incoming.headers), host: `${hostname}:${port}` };
      const req = send(defined(incoming.method, 'request method'), defined(incoming.url, 'request URL'), headers);
      pipeline(incoming, req, () => undefined);
      return response(req);
    },
    stop: async () => {
      agent.destroy();
      await stopChild(child);
    }
  };
}

function azuriteOrigin(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    // Spawned with piped stdout and stderr.
    const stdout = defined(child.stdout, "azurite's stdout");
    const stderr = defined(child.stderr, "azurite's stderr");
    let output = '';
    const timer = setTimeout(() => reject(new Error(`azurite did not start:\n${output}`)), AZURITE_START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /successfully listens on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        // Stop collecting, but keep the pipes flowing so that azurite never blocks on them.
        stdout.off('data', onData);
        stderr.off('data', onData);
        resolve(match[1]);
      }
    };
    stdout.on('data', onData);
    stderr.on('data', onData);
    child.once('error', error => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', code => {
      clearTimeout(timer);
      reject(new Error(`azurite exited with ${code}:\n${output}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), AZURITE_STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

async function createContainer(azurite: Azurite, credential: StorageSharedKeyCredential): Promise<void> {
  const sas = generateAccountSASQueryParameters(
    {
      services: AccountSASServices.parse('b').toString(),
      resourceTypes: AccountSASResourceTypes.parse('c').toString(),
      permissions: AccountSASPermissions.parse('c'),
      expiresOn: new Date(Date.now() + SAS_TTL_MS),
      version: SAS_VERSION
    },
    credential
  ).toString();
  const res = await azurite.request('PUT', `/${ACCOUNT}/${CONTAINER}?restype=container&${sas}`);
  if (res.statusCode !== 201) throw new Error(`azurite refused to create the container: ${res.statusCode}`);
}
