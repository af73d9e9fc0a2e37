// The cache service emulation, driven by the real @actions/cache client in-process.

import * as cache from '@actions/cache';
import { BlockBlobClient } from '@azure/storage-blob';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CacheServer, startCacheServer } from '../support/cache-server';
import { defined } from '../support/defined';

// The client hashes the path strings into the cache version, so every save and restore uses this one,
// relative to the workspace (which is also the cwd: the client globs from cwd, archives from the workspace).
const CACHE_PATH = 'data';
const TWIRP = 'twirp/github.actions.results.api.v1.CacheService';
const SINGLE_SHOT_LIMIT = 128 * 1024 * 1024;
/** The version of entries made by hand, apart from the client's. */
const RAW_VERSION = 'r'.repeat(64);
const MiB = 1024 * 1024;

jest.setTimeout(60_000);

let server: CacheServer;
let workspace: string;
let output: string;
const savedEnv = { ...process.env };
const savedCwd = process.cwd();

beforeAll(async () => {
  server = await startCacheServer();
  workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-server-test-'));
  const runnerTemp = path.join(workspace, '.runner-temp');
  fs.mkdirSync(runnerTemp);
  useServer(server);
  process.env.GITHUB_WORKSPACE = workspace;
  process.env.RUNNER_TEMP = runnerTemp;
  delete process.env.RUNNER_DEBUG;
  process.chdir(workspace);
});

afterAll(async () => {
  process.chdir(savedCwd);
  process.env = savedEnv;
  await server?.stop();
  if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
});

// Keeps the client's workflow commands (::warning:: and friends) out of the jest output, for asserting on.
beforeEach(() => {
  output = '';
  jest.spyOn(process.stdout, 'write').mockImplementation(chunk => {
    output += String(chunk);
    return true;
  });
});

afterEach(() => {
  jest.restoreAllMocks();
  server.setFault('none');
  server.setRpcLatency(0);
  server.setDownloadCap(undefined);
  clearTree();
});

function useServer(s: CacheServer): void {
  Object.assign(process.env, s.env);
}

/** Fills the cache path with a small tree of random files and returns their contents by relative path. */
function writeTree(sizes: number[] = [1, 4096, 70_000]): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  sizes.forEach((size, i) => files.set(path.join(i % 2 ? 'nested/deeper' : '', `file-${i}.bin`), randomBytes(size)));
  for (const [name, content] of files) {
    const file = path.join(workspace, CACHE_PATH, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
  return files;
}

const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

/** Compares digests rather than contents, to keep failures readable. */
function expectRestored(files: Map<string, Buffer>): void {
  const expected: Record<string, string> = {};
  const actual: Record<string, string | undefined> = {};
  for (const [name, content] of files) {
    const file = path.join(workspace, CACHE_PATH, name);
    expected[name] = sha256(content);
    actual[name] = fs.existsSync(file) ? sha256(fs.readFileSync(file)) : undefined;
  }
  expect(actual).toEqual(expected);
}

function clearTree(): void {
  fs.rmSync(path.join(workspace, CACHE_PATH), { recursive: true, force: true });
}

/** Saves a fresh tree under `key` and returns the tree, asserting the save went through. */
async function saveTree(key: string, sizes?: number[]): Promise<Map<string, Buffer>> {
  const files = writeTree(sizes);
  const id = await cache.saveCache([CACHE_PATH], key);
  expect(id).toBeGreaterThan(0);
  clearTree();
  return files;
}

function warnings(): string[] {
  return output.split('\n').filter(line => line.startsWith('::warning::'));
}

function twirpCall(s: CacheServer, method: string, body: object, token = s.env.ACTIONS_RUNTIME_TOKEN) {
  return fetch(`${s.url}${TWIRP}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body)
  });
}

/** Makes a finalized entry holding exactly `content`, as the client would but without its tar. */
async function putEntry(s: CacheServer, key: string, content: Buffer): Promise<void> {
  const request = { key, version: RAW_VERSION };
  const created = await twirpCall(s, 'CreateCacheEntry', request);
  expect(created.status).toBe(200);
  const { signed_upload_url } = (await created.json()) as { signed_upload_url: string };
  const put = await fetch(signed_upload_url, {
    method: 'PUT',
    headers: { 'x-ms-blob-type': 'BlockBlob' },
    body: new Uint8Array(content)
  });
  expect(put.status).toBe(201);
  const finalized = await twirpCall(s, 'FinalizeCacheEntryUpload', { ...request, size_bytes: String(content.length) });
  expect(finalized.status).toBe(200);
}

/** The download URL of the entry a lookup of `key` returns (which counts as an access), if any. */
async function lookupUrl(s: CacheServer, key: string): Promise<string | undefined> {
  const response = (await (await twirpCall(s, 'GetCacheEntryDownloadURL', { key, version: RAW_VERSION })).json()) as {
    ok: boolean;
    signed_download_url: string;
  };
  return response.ok ? response.signed_download_url : undefined;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return {
    status: response.status,
    contentRange: response.headers.get('content-range'),
    body: Buffer.from(await response.arrayBuffer())
  };
}

/** Milliseconds `run` takes, with its result. */
async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await run();
  return [result, performance.now() - start];
}

test('env selects cache service v2 at this server', () => {
  expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  expect(cache.isFeatureAvailable()).toBe(true);
  const [, payload] = server.env.ACTIONS_RUNTIME_TOKEN.split('.');
  expect(JSON.parse(Buffer.from(payload, 'base64url').toString())).toMatchObject({
    scp: expect.stringMatching(/Actions\.Results:[\w-]+:[\w-]+/)
  });
});

test('round trip of a directory restores identical bytes', async () => {
  const before = server.stats();
  const files = await saveTree('round-trip');

  const [entry] = server.entries().filter(e => e.key === 'round-trip');
  expect(entry).toMatchObject({ key: 'round-trip', version: expect.stringMatching(/^[0-9a-f]{64}$/) });
  const stats = server.stats();
  expect(stats.uploadedBytes - before.uploadedBytes).toBe(entry.size);
  expect(stats.creates - before.creates).toBe(1);
  expect(stats.finalizes - before.finalizes).toBe(1);

  expect(await cache.restoreCache([CACHE_PATH], 'round-trip')).toBe('round-trip');
  expectRestored(files);
  expect(server.stats().downloadedBytes - stats.downloadedBytes).toBe(entry.size);
  expect(warnings()).toEqual([]);
});

test('an archive over 128 MiB goes up in parallel blocks and comes back intact', async () => {
  const before = server.stats();
  // Random bytes do not compress, so the archive stays over the client's single-shot limit.
  const files = await saveTree('large', [SINGLE_SHOT_LIMIT + 4 * 1024 * 1024, 10]);

  const stats = server.stats();
  // 64 MiB blocks (the client's v2 chunk size), then Put Block List, which is not counted.
  expect(stats.uploadRequests - before.uploadRequests).toBe(3);
  expect(stats.uploadedBytes - before.uploadedBytes).toBe(
    defined(
      server.entries().find(e => e.key === 'large'),
      'entry large'
    ).size
  );

  expect(await cache.restoreCache([CACHE_PATH], 'large')).toBe('large');
  expectRestored(files);
});

test('restore keys match as prefixes, newest first, within the same version', async () => {
  await saveTree('deps-linux-aaa');
  const newest = await saveTree('deps-linux-bbb');

  expect(await cache.restoreCache([CACHE_PATH], 'deps-linux-ccc', ['deps-nope-', 'deps-linux-'])).toBe(
    'deps-linux-bbb'
  );
  expectRestored(newest);
  expect(output).toContain('Cache hit for restore-key: deps-linux-bbb');

  // An exact match on the primary key wins over a newer entry it is a prefix of.
  expect(await cache.restoreCache([CACHE_PATH], 'deps-linux-aaa', ['deps-linux-'])).toBe('deps-linux-aaa');
  // The primary key is itself tried as a prefix before the restore keys.
  expect(await cache.restoreCache([CACHE_PATH], 'deps-linux', ['deps-'])).toBe('deps-linux-bbb');
  // Another path list is another version: no match, even for the same key.
  expect(await cache.restoreCache(['other'], 'deps-linux-bbb', ['deps-'])).toBeUndefined();
  expect(await cache.restoreCache([CACHE_PATH], 'nothing-like-it', ['deps-windows-'])).toBeUndefined();
  expect(warnings()).toEqual([]);
});

test('saving an existing key is refused before anything is uploaded', async () => {
  await saveTree('existing');
  const before = server.stats();

  writeTree();
  expect(await cache.saveCache([CACHE_PATH], 'existing')).toBe(-1);

  const stats = server.stats();
  expect(stats.uploadedBytes).toBe(before.uploadedBytes);
  expect(stats.createConflicts - before.createConflicts).toBe(1);
  expect(stats.creates).toBe(before.creates);
  // The client turns the 409 into a ReserveCacheError, reported as info, not as a warning.
  expect(output).toContain(
    'Failed to save: Unable to reserve cache with key existing, another job may be creating this cache.'
  );
  expect(warnings()).toEqual([]);
  expect(server.entries().filter(e => e.key === 'existing')).toHaveLength(1);
});

test('the protocol as the service speaks it: errors, auth, finalize size check, SAS scope, ranges', async () => {
  const call = (method: string, body: object, token = server.env.ACTIONS_RUNTIME_TOKEN) =>
    fetch(`${server.url}${TWIRP}/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body)
    });
  const request = { key: 'raw', version: 'v'.repeat(64) };

  const unauthenticated = await call('GetCacheEntryDownloadURL', request, 'not-the-token');
  expect(unauthenticated.status).toBe(401);
  expect(await unauthenticated.json()).toMatchObject({ code: 'unauthenticated' });
  expect((await call('NoSuchMethod', request)).status).toBe(404);

  const miss = await call('GetCacheEntryDownloadURL', { ...request, restore_keys: ['ra'] });
  expect(await miss.json()).toEqual({ ok: false, signed_download_url: '', matched_key: '' });

  const created = (await (await call('CreateCacheEntry', request)).json()) as { signed_upload_url: string };
  expect(created).toMatchObject({ ok: true, signed_upload_url: expect.stringMatching(/[?&]sig=/) });
  const uploadUrl = new URL(created.signed_upload_url);
  expect(uploadUrl.searchParams.get('sp')).toBe('cw');

  // Nothing uploaded yet: the entry cannot be finalized.
  expect((await call('FinalizeCacheEntryUpload', { ...request, size_bytes: '3' })).status).toBe(404);

  const put = await fetch(uploadUrl, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'abc' });
  expect(put.status).toBe(201);
  // A SAS is only good for the blob it was made for.
  const elsewhere = new URL(uploadUrl);
  elsewhere.pathname += '-other';
  expect(
    (await fetch(elsewhere, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'abc' })).status
  ).toBe(403);

  const wrongSize = await call('FinalizeCacheEntryUpload', { ...request, size_bytes: '4' });
  expect(wrongSize.status).toBe(400);
  expect(await wrongSize.json()).toMatchObject({ code: 'invalid_argument' });
  expect(server.entries().some(e => e.key === 'raw')).toBe(false);

  const finalized: unknown = await (await call('FinalizeCacheEntryUpload', { ...request, size_bytes: '3' })).json();
  expect(finalized).toMatchObject({ ok: true, entry_id: expect.stringMatching(/^\d+$/) });

  const hit = (await (
    await call('GetCacheEntryDownloadURL', { ...request, key: 'r', restore_keys: ['ra'] })
  ).json()) as { signed_download_url: string };
  expect(hit).toMatchObject({ ok: true, matched_key: 'raw' });
  const download = new URL(hit.signed_download_url);
  expect(download.searchParams.get('sp')).toBe('r');
  const ranged = await fetch(download, { headers: { range: 'bytes=1-2' } });
  expect(ranged.status).toBe(206);
  expect(await ranged.text()).toBe('bc');
  // Faults apply to ranged reads by blob offset: truncated, the 3-byte blob holds 1 byte.
  server.setFault('truncate-download');
  const truncated = await fetch(download, { headers: { range: 'bytes=0-2' } });
  expect([truncated.status, truncated.headers.get('content-range'), await truncated.text()]).toEqual([
    206,
    'bytes 0-0/1',
    'a'
  ]);
  expect((await fetch(download, { headers: { range: 'bytes=1-2' } })).status).toBe(416);
  server.setFault('corrupt-download');
  expect(Buffer.from(await (await fetch(download, { headers: { range: 'bytes=1-2' } })).arrayBuffer())).toEqual(
    Buffer.from([0xff ^ 'b'.charCodeAt(0), 0xff ^ 'c'.charCodeAt(0)])
  );
  server.setFault('none');
  // A read-only SAS cannot overwrite the entry.
  expect(
    (await fetch(download, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'xyz' })).status
  ).toBe(403);

  const again = await call('CreateCacheEntry', request);
  expect(again.status).toBe(409);
  expect(await again.json()).toEqual({
    code: 'already_exists',
    msg: 'cache entry with the same key, version, and scope already exists'
  });
});

describe('faults', () => {
  test('error: the client retries each call 5 times, then restore misses and save gives up', async () => {
    await saveTree('error-fault');
    writeTree();
    server.setFault('error');
    const before = server.stats();

    const [restored, saved] = await Promise.all([
      cache.restoreCache([CACHE_PATH], 'error-fault'),
      cache.saveCache([CACHE_PATH], 'error-fault-new')
    ]);

    expect(restored).toBeUndefined();
    expect(saved).toBe(-1);
    const stats = server.stats();
    expect(stats.twirpRequests - before.twirpRequests).toBe(10);
    expect(stats.uploadedBytes).toBe(before.uploadedBytes);
    expect(stats.downloads).toBe(before.downloads);
    expect(output).toContain('Attempt 1 of 5 failed with error: Failed request: (500) Internal Server Error');
    expect(warnings()).toEqual([
      expect.stringContaining(
        'Failed to restore: Failed to GetCacheEntryDownloadURL: Failed to make request after 5 attempts'
      )
    ]);
    // Any failure of CreateCacheEntry becomes a ReserveCacheError, which the client reports as info.
    expect(output).toContain('Failed to save: Unable to reserve cache with key error-fault-new');
  }, 120_000);

  test('upload-error: the save fails, and the key stays reserved', async () => {
    writeTree();
    server.setFault('upload-error');
    const before = server.stats();

    expect(await cache.saveCache([CACHE_PATH], 'upload-fault')).toBe(-1);
    expect(warnings()).toEqual(
      expect.arrayContaining([expect.stringContaining('uploadCacheArchiveSDK: internal error uploading cache archive')])
    );
    expect(server.stats().uploadedBytes).toBe(before.uploadedBytes);
    expect(server.entries().some(e => e.key === 'upload-fault')).toBe(false);

    // As on the real service, a reservation that was never finalized still blocks the key.
    server.setFault('none');
    output = '';
    expect(await cache.saveCache([CACHE_PATH], 'upload-fault')).toBe(-1);
    expect(output).toContain('Failed to save: Unable to reserve cache with key upload-fault');
    expect(await cache.saveCache([CACHE_PATH], 'upload-fault-2')).toBeGreaterThan(0);
  });

  // The client extracts while it decompresses, so a bad archive that gets as far as tar leaves part
  // of the tree behind although the restore reports no hit.
  test.each([
    ['truncate-download', 'part of the tree', /Failed to restore: "\S*tar" failed with error/],
    ['corrupt-download', 'part of the tree', /Failed to restore: "\S*tar" failed with error/],
    ['interrupt-download', 'nothing', /Failed to restore: (aborted|Premature close)/]
  ] as const)('%s: the restore fails, reports no hit and leaves %s', async (fault, left, message) => {
    const key = `${fault}-key`;
    const files = await saveTree(key, [200_000, 150_000]);
    const entry = defined(
      server.entries().find(e => e.key === key),
      `entry ${key}`
    );
    server.setFault(fault);
    const before = server.stats();

    expect(await cache.restoreCache([CACHE_PATH], key)).toBeUndefined();

    const stats = server.stats();
    expect(stats.downloads - before.downloads).toBe(1);
    const sent = stats.downloadedBytes - before.downloadedBytes;
    expect(sent).toBe(fault === 'corrupt-download' ? entry.size : Math.floor(entry.size / 2));
    expect(warnings().join('\n')).toMatch(message);
    const written = [...files.keys()]
      .map(name => path.join(workspace, CACHE_PATH, name))
      .reduce((sum, file) => sum + (fs.existsSync(file) ? fs.statSync(file).size : 0), 0);
    if (left === 'nothing') {
      expect(written).toBe(0);
    } else {
      expect(written).toBeGreaterThan(0);
      expect(written).toBeLessThan(200_000 + 150_000);
    }
  });

  test('hang: a call waits until the server stops, then the restore misses', async () => {
    const hanging = await startCacheServer({ fault: 'hang' });
    try {
      useServer(hanging);
      let settled = false;
      const restore = cache.restoreCache([CACHE_PATH], 'hang').finally(() => (settled = true));
      await new Promise(resolve => setTimeout(resolve, 2000));
      expect(settled).toBe(false);
      expect(hanging.stats().twirpRequests).toBe(1);

      await hanging.stop();
      expect(await restore).toBeUndefined();
      expect(warnings().join('\n')).toMatch(
        /Failed to restore: Failed to GetCacheEntryDownloadURL: Unable to make request: ECONNRESET/
      );
    } finally {
      useServer(server);
      await hanging.stop();
    }
  });
});

describe('faults scoped to some operations or keys', () => {
  test('rate-limit: 429 with Retry-After; the client neither retries nor waits, and restore and save give up', async () => {
    await saveTree('rate-limited');
    writeTree();
    server.setFault('rate-limit');
    const before = server.stats();

    expect(await cache.restoreCache([CACHE_PATH], 'rate-limited')).toBeUndefined();
    expect(server.stats().twirpRequests - before.twirpRequests).toBe(1);
    expect(warnings()).toEqual([
      "::warning::You've hit a rate limit, your rate limit will reset in 60 seconds",
      '::warning::Failed to restore: Failed to GetCacheEntryDownloadURL: Rate limited: Failed request: (429) Too Many Requests: injected fault: rate limit exceeded'
    ]);

    // CreateCacheEntry's failure becomes the client's ReserveCacheError, as for an existing key.
    output = '';
    expect(await cache.saveCache([CACHE_PATH], 'rate-limited-save')).toBe(-1);
    expect(server.stats().twirpRequests - before.twirpRequests).toBe(2);
    expect(server.stats().uploadedBytes).toBe(before.uploadedBytes);
    expect(warnings()).toEqual(["::warning::You've hit a rate limit, your rate limit will reset in 60 seconds"]);
    expect(output).toContain(
      'Failed to save: Unable to reserve cache with key rate-limited-save, another job may be creating this cache.'
    );

    const raw = await twirpCall(server, 'GetCacheEntryDownloadURL', { key: 'rate-limited', version: RAW_VERSION });
    expect([raw.status, raw.headers.get('retry-after'), await raw.json()]).toEqual([
      429,
      '60',
      { code: 'resource_exhausted', msg: 'injected fault: rate limit exceeded' }
    ]);
  });

  test('rate-limit on the lookups of one key only: its saves and other keys work', async () => {
    const other = await saveTree('not-limited');
    server.setFault('rate-limit', { methods: ['GetCacheEntryDownloadURL'], keys: key => key === 'limited' });

    const files = await saveTree('limited');
    expect(await cache.restoreCache([CACHE_PATH], 'limited')).toBeUndefined();
    expect(warnings().join('\n')).toContain('Failed to restore: Failed to GetCacheEntryDownloadURL: Rate limited');
    expect(await cache.restoreCache([CACHE_PATH], 'not-limited')).toBe('not-limited');
    expectRestored(other);

    clearTree();
    server.setFault('none');
    expect(await cache.restoreCache([CACHE_PATH], 'limited')).toBe('limited');
    expectRestored(files);
  });

  test('corrupt-download of one entry only: another entry restores intact', async () => {
    const corrupted = await saveTree('corrupted-entry', [100_000]);
    const intact = await saveTree('intact-entry', [100_000]);
    server.setFault('corrupt-download', { methods: ['GetBlob'], keys: key => key === 'corrupted-entry' });

    expect(await cache.restoreCache([CACHE_PATH], 'intact-entry')).toBe('intact-entry');
    expectRestored(intact);
    expect(warnings()).toEqual([]);
    clearTree();

    expect(await cache.restoreCache([CACHE_PATH], 'corrupted-entry')).toBeUndefined();
    expect(warnings().join('\n')).toMatch(/Failed to restore: "\S*tar" failed with error/);
    clearTree();
    server.setFault('none');
    expect(await cache.restoreCache([CACHE_PATH], 'corrupted-entry')).toBe('corrupted-entry');
    expectRestored(corrupted);
  });

  test('a scope that takes in no request leaves every call alone', async () => {
    server.setFault('error', { methods: ['CreateCacheEntry'], keys: key => key === 'some-other-key' });
    const files = await saveTree('unscoped');
    expect(await cache.restoreCache([CACHE_PATH], 'unscoped')).toBe('unscoped');
    expectRestored(files);
    expect(warnings()).toEqual([]);
  });
});

describe('ranged GETs', () => {
  const content = randomBytes(1000);
  let url: string;

  beforeAll(async () => {
    await putEntry(server, 'ranged', content);
    url = defined(await lookupUrl(server, 'ranged'), 'URL of ranged');
  });

  test('pass through the proxy as 206 with Content-Range, and are counted', async () => {
    const before = server.stats();
    expect(await get(url, { range: 'bytes=100-199' })).toEqual({
      status: 206,
      contentRange: 'bytes 100-199/1000',
      body: content.subarray(100, 200)
    });
    expect(await get(url, { range: 'bytes=900-' })).toEqual({
      status: 206,
      contentRange: 'bytes 900-999/1000',
      body: content.subarray(900)
    });
    // The Azure SDK asks with x-ms-range.
    expect(await get(url, { 'x-ms-range': 'bytes=0-9' })).toEqual({
      status: 206,
      contentRange: 'bytes 0-9/1000',
      body: content.subarray(0, 10)
    });
    expect((await get(url, { range: 'bytes=2000-2999' })).status).toBe(416);
    expect(await get(url)).toEqual({ status: 200, contentRange: null, body: content });

    const stats = server.stats();
    expect(stats.downloads - before.downloads).toBe(4);
    expect(stats.rangedDownloads - before.rangedDownloads).toBe(3);
    expect(stats.downloadedBytes - before.downloadedBytes).toBe(100 + 100 + 10 + 1000);
  });

  test('download faults hit them by offset in the blob, whatever the range', async () => {
    const quarters = (headers: (from: number, to: number) => Record<string, string>) =>
      Promise.all([0, 250, 500, 750].map(async from => (await get(url, headers(from, from + 249))).body));

    server.setFault('corrupt-download');
    const whole = (await get(url)).body;
    const differing = [...whole.keys()].filter(i => whole[i] !== content[i]);
    expect(differing).toEqual(Array.from({ length: 16 }, (_, i) => 500 + i));
    expect(Buffer.concat(await quarters((from, to) => ({ range: `bytes=${from}-${to}` })))).toEqual(whole);
    expect(Buffer.concat(await quarters((from, to) => ({ 'x-ms-range': `bytes=${from}-${to}` })))).toEqual(whole);

    // Truncated, the blob is its first 500 bytes: a range across the cut ends there.
    server.setFault('truncate-download');
    expect(await get(url, { range: 'bytes=400-599' })).toEqual({
      status: 206,
      contentRange: 'bytes 400-499/500',
      body: content.subarray(400, 500)
    });

    // Interrupted at the half: a range before it arrives whole, one after it never does.
    server.setFault('interrupt-download');
    expect((await get(url, { range: 'bytes=0-99' })).body).toEqual(content.subarray(0, 100));
    await expect(get(url, { range: 'bytes=600-699' })).rejects.toThrow();
  });
});

describe('download cap and RPC latency', () => {
  const CAP = MiB; // bytes per second
  const content = randomBytes(2 * MiB);
  let capped: CacheServer;
  let url: string;

  beforeAll(async () => {
    capped = await startCacheServer({ downloadBytesPerSecond: CAP, rpcLatencyMs: 200 });
    await putEntry(capped, 'capped', content);
    url = defined(await lookupUrl(capped, 'capped'), 'URL of capped');
  });

  afterAll(() => capped?.stop());

  // Only lower bounds on time: the machine may be slow, never faster than the cap allows.
  test('one stream of B bytes takes at least B / cap', async () => {
    const [response, ms] = await timed(() => get(url));
    expect(response.body.equals(content)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual((content.length / CAP) * 1000);
  });

  test('each ranged response has a bucket of its own, and the Azure SDK fetches four at once', async () => {
    const before = capped.stats();
    const client = new BlockBlobClient(url);
    const [buffer, ms] = await timed(() =>
      client.downloadToBuffer(0, content.length, { blockSize: content.length / 4, concurrency: 4 })
    );

    expect(buffer.equals(content)).toBe(true);
    const stats = capped.stats();
    expect(stats.rangedDownloads - before.rangedDownloads).toBe(4);
    expect(stats.maxConcurrentDownloads).toBe(4);
    // A quarter each, throttled on its own: the lower bound of one quarter (a shared cap would need four).
    expect(ms).toBeGreaterThanOrEqual((content.length / 4 / CAP) * 1000);
  });

  test('the real client restores through one plain GET, so the cap bounds it from below', async () => {
    useServer(capped);
    try {
      const files = await saveTree('capped-client', [300_000]);
      const entry = defined(
        capped.entries().find(e => e.key === 'capped-client'),
        'entry capped-client'
      );
      const before = capped.stats();
      const [restored, ms] = await timed(() => cache.restoreCache([CACHE_PATH], 'capped-client'));
      expect(restored).toBe('capped-client');
      expectRestored(files);
      const stats = capped.stats();
      // Its parallel ranged path is only for hosts under .blob.core.windows.net.
      expect([stats.downloads - before.downloads, stats.rangedDownloads - before.rangedDownloads]).toEqual([1, 0]);
      expect(ms).toBeGreaterThanOrEqual((entry.size / CAP) * 1000);
    } finally {
      useServer(server);
    }
  });

  test('the cap can change at run time, for responses in flight too', async () => {
    capped.setDownloadCap(1024);
    try {
      // At 1 KiB/s this would take over half an hour: lifting the cap is what lets it finish.
      const download = new Promise<Buffer>((resolve, reject) => {
        http
          .get(url, response => {
            const chunks: Buffer[] = [];
            response.once('data', () => capped.setDownloadCap(undefined));
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => resolve(Buffer.concat(chunks)));
            response.on('error', reject);
          })
          .on('error', reject);
      });
      expect((await download).equals(content)).toBe(true);
    } finally {
      capped.setDownloadCap(CAP);
    }
  });

  test('every Twirp call waits rpcLatencyMs, changeable at run time', async () => {
    const [, ms] = await timed(() => lookupUrl(capped, 'capped'));
    expect(ms).toBeGreaterThanOrEqual(200);

    server.setRpcLatency(300);
    const [, slower] = await timed(() => lookupUrl(server, 'no-such-key'));
    expect(slower).toBeGreaterThanOrEqual(300);
  });
});

describe('repository quota', () => {
  const SIZE = 40_000;
  let quota: CacheServer;

  beforeEach(async () => {
    quota = await startCacheServer({ quotaBytes: 100_000 });
  });

  afterEach(() => quota?.stop());

  const keys = () => quota.entries().map(e => e.key);

  test('past the quota, finalizing evicts the least recently accessed entry, blob and all', async () => {
    await putEntry(quota, 'first', randomBytes(SIZE));
    const firstUrl = defined(await lookupUrl(quota, 'first'), 'URL of first');
    await putEntry(quota, 'second', randomBytes(SIZE));
    expect(quota.stats().evictions).toBe(0);

    await putEntry(quota, 'third', randomBytes(SIZE));
    expect(keys()).toEqual(['second', 'third']);
    expect([quota.stats().evictions, quota.evictedKeys()]).toEqual([1, ['first']]);
    expect(await lookupUrl(quota, 'first')).toBeUndefined();
    // A URL handed out before the eviction no longer works: the blob is gone.
    expect((await get(firstUrl)).status).toBe(404);
    // As on the service, the key is free again.
    await putEntry(quota, 'first', randomBytes(SIZE));
    expect(keys()).toEqual(['third', 'first']);
    expect(quota.evictedKeys()).toEqual(['first', 'second']);
  });

  test('a lookup counts as an access: it spares the entry and the next one goes', async () => {
    await putEntry(quota, 'first', randomBytes(SIZE));
    await putEntry(quota, 'second', randomBytes(SIZE));
    const [first] = quota.entries();
    // Finalizing is the first access.
    expect(first.lastAccessedAt.getTime()).toBeGreaterThanOrEqual(first.createdAt.getTime());

    const beforeLookup = Date.now();
    expect(await lookupUrl(quota, 'first')).toBeDefined();
    expect(quota.entries()[0].lastAccessedAt.getTime()).toBeGreaterThanOrEqual(beforeLookup);

    await putEntry(quota, 'third', randomBytes(SIZE));
    expect(keys()).toEqual(['first', 'third']);
    expect(quota.evictedKeys()).toEqual(['second']);
  });
});

// On the server without a quota, where nothing else evicts.
describe('eviction on demand', () => {
  test('evict() removes entries on demand: gone from lookups, blob and all; the others restore', async () => {
    await saveTree('evicted-part');
    const kept = await saveTree('kept-part');
    const before = server.stats();
    const [entry] = server.entries().filter(e => e.key === 'evicted-part');
    // The client's entries have the client's version: ask for its download URL by that.
    const lookup = await twirpCall(server, 'GetCacheEntryDownloadURL', { key: 'evicted-part', version: entry.version });
    const { signed_download_url } = (await lookup.json()) as { signed_download_url: string };

    const evicted = await server.evict(e => e.key === 'evicted-part');

    expect(evicted).toEqual([{ ...entry, lastAccessedAt: expect.any(Date) }]);
    expect(server.stats().evictions - before.evictions).toBe(1);
    expect(server.evictedKeys()).toContain('evicted-part');
    expect(server.entries().map(e => e.key)).not.toContain('evicted-part');
    expect((await get(signed_download_url)).status).toBe(404);
    expect(await cache.restoreCache([CACHE_PATH], 'evicted-part')).toBeUndefined();
    expect(await cache.restoreCache([CACHE_PATH], 'kept-part')).toBe('kept-part');
    expectRestored(kept);
    expect(await server.evict(() => false)).toEqual([]);
  });
});
