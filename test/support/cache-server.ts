// An in-process emulation of the GitHub Actions cache service v2 (the "results" Twirp service) for
// integration tests and benchmarks, talking to the real @actions/cache client. Blobs live in a real
// Azure Blob store (the azurite emulator), reached through a reverse proxy on the service's own port
// so that stats can count blob traffic and faults can be injected into it.
//
// Plain TypeScript, no jest dependency: benchmark scripts import it too.

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Transform, TransformCallback, pipeline } from 'node:stream';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobSASPermissions,
  StorageSharedKeyCredential,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters
} from '@azure/storage-blob';

export type CacheFault =
  | 'none'
  /** Every Twirp call answers 500 `internal` (the client retries it 5 times, ~25-35 s, then gives up). */
  | 'error'
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

export interface CacheServerOptions {
  fault?: CacheFault;
}

export interface CacheEntryInfo {
  id: number;
  key: string;
  version: string;
  size: number;
  createdAt: Date;
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
}

export interface CacheServer {
  /** ACTIONS_RESULTS_URL: the service root, with a trailing slash as the runner gives it. */
  url: string;
  /** What a step needs for @actions/cache to use this service (cache service v2). */
  env: Record<string, string>;
  /** Finalized entries, in order of creation. */
  entries(): CacheEntryInfo[];
  stats(): CacheServerStats;
  setFault(fault: CacheFault): void;
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
const AZURITE_START_TIMEOUT_MS = 30_000;
const AZURITE_STOP_TIMEOUT_MS = 5_000;
const MAX_TWIRP_BODY = 1024 * 1024;
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

interface Entry extends CacheEntryInfo {
  blobName: string;
  finalized: boolean;
}

type TwirpCode =
  'invalid_argument' | 'malformed' | 'bad_route' | 'not_found' | 'already_exists' | 'unauthenticated' | 'internal';

const TWIRP_STATUS: Record<TwirpCode, number> = {
  invalid_argument: 400,
  malformed: 400,
  bad_route: 404,
  not_found: 404,
  already_exists: 409,
  unauthenticated: 401,
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
  let server: http.Server | undefined;
  try {
    azurite = await startAzurite(tempDir);
    const credential = new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY);
    await createContainer(azurite, credential);
    const service = new CacheService(azurite, credential, opts.fault ?? 'none');
    server = http.createServer((req, res) => service.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as AddressInfo;
    service.baseUrl = `http://127.0.0.1:${port}/`;
    return api(service, server, azurite, tempDir);
  } catch (error) {
    await shutdown(server, azurite, tempDir);
    throw error;
  }
}

function api(service: CacheService, server: http.Server, azurite: Azurite, tempDir: string): CacheServer {
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
    entries: () =>
      service.entries
        .filter(e => e.finalized)
        .map(({ id, key, version, size, createdAt }) => ({ id, key, version, size, createdAt })),
    stats: () => ({ ...service.stats }),
    setFault: fault => {
      service.fault = fault;
    },
    stop: () => (stopped ??= shutdown(server, azurite, tempDir))
  };
}

async function shutdown(server: http.Server | undefined, azurite: Azurite | undefined, tempDir: string): Promise<void> {
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
    downloadedBytes: 0
  };
  private nextId = 1;

  constructor(
    private readonly azurite: Azurite,
    private readonly credential: StorageSharedKeyCredential,
    public fault: CacheFault
  ) {}

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.baseUrl);
    if (this.fault === 'hang') {
      // Consume the request so that the server's request timeout never answers for us.
      req.resume();
      if (!url.pathname.startsWith(BLOB_PREFIX)) this.stats.twirpRequests++;
      return;
    }
    if (url.pathname.startsWith(BLOB_PREFIX)) {
      this.proxyBlob(req, res, url).catch(() => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    } else {
      this.twirp(req, res, url.pathname).catch(error => sendTwirpError(res, new TwirpError('internal', String(error))));
    }
  }

  private async twirp(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void> {
    this.stats.twirpRequests++;
    const body = await readBody(req);
    if (this.fault === 'error') {
      sendTwirpError(res, new TwirpError('internal', 'injected fault: internal error'));
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
    const entry: Entry = { id, key, version, size: 0, createdAt: new Date(), blobName, finalized: false };
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
    entry.finalized = true;
    this.stats.finalizes++;
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
    return { ok: true, signed_download_url: this.signedUrl(match, 'r'), matched_key: match.key };
  }

  private signedUrl(entry: Entry, permissions: string): string {
    const sas = generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName: entry.blobName,
        permissions: BlobSASPermissions.parse(permissions),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn: new Date(Date.now() + SAS_TTL_MS),
        version: SAS_VERSION
      },
      this.credential
    );
    return `${this.baseUrl}${ACCOUNT}/${CONTAINER}/${entry.blobName}?${sas.toString()}`;
  }

  private async blobSize(entry: Entry): Promise<number | undefined> {
    const query = generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName: entry.blobName,
        permissions: BlobSASPermissions.parse('r'),
        expiresOn: new Date(Date.now() + SAS_TTL_MS),
        version: SAS_VERSION
      },
      this.credential
    ).toString();
    const res = await this.azurite.request('HEAD', `${BLOB_PREFIX}${entry.blobName}?${query}`);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw new Error(`azurite answered HEAD with ${res.statusCode}`);
    return Number(res.headers['content-length']);
  }

  // Blob requests go to azurite unchanged (the SAS in the query is azurite's to check); download
  // faults are applied on the way back, by absolute offset in the blob, so ranged GETs work too.
  private async proxyBlob(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    if (req.method === 'PUT' && this.fault === 'upload-error') {
      req.resume();
      sendAzureError(
        res,
        403,
        'AuthenticationFailed',
        'Server failed to authenticate the request. Signed expiry time has passed.'
      );
      return;
    }
    const isUpload = req.method === 'PUT' && url.searchParams.get('comp') !== 'blocklist';
    let received = 0;
    if (isUpload) req.on('data', (chunk: Buffer) => (received += chunk.length));
    const upstream = await this.azurite.forward(req);
    const status = upstream.statusCode!;
    const ok = status >= 200 && status < 300;
    if (isUpload && ok) {
      this.stats.uploadedBytes += received;
      this.stats.uploadRequests++;
    }
    const headers = withoutHopByHop(upstream.headers);
    const download = req.method === 'GET' && ok;
    const fault = download ? this.fault : 'none';
    const streams: NodeJS.ReadWriteStream[] = [];
    if (fault === 'truncate-download' || fault === 'corrupt-download' || fault === 'interrupt-download') {
      const { start, end, total } = bodyRange(upstream);
      const transform = new BlobFault(fault === 'corrupt-download' ? 'flip' : 'cut', start, total);
      if (fault === 'truncate-download') {
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
      if (error || fault === 'interrupt-download') socket.destroy();
    });
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

function sendTwirpError(res: http.ServerResponse, error: TwirpError): void {
  res.writeHead(TWIRP_STATUS[error.code], { 'content-type': 'application/json' });
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
    forward: incoming => {
      const headers = { ...withoutHopByHop(incoming.headers), host: `${hostname}:${port}` };
      const req = send(incoming.method!, incoming.url!, headers);
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
    let output = '';
    const timer = setTimeout(() => reject(new Error(`azurite did not start:\n${output}`)), AZURITE_START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /successfully listens on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        // Stop collecting, but keep the pipes flowing so that azurite never blocks on them.
        child.stdout!.off('data', onData);
        child.stderr!.off('data', onData);
        resolve(match[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
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
