// The Actions cache service as a store (src/cache/stores/service.ts ServiceStore), against the emulation
// of the service (test/support/cache-server.ts, the real v2 protocol over a real blob store): the
// contract every store keeps, then what only the service has: lookups that match by prefix, and a bound
// that is GitHub's eviction, not the store's.
import * as core from '@actions/core';
import { randomBytes } from 'node:crypto';
import { uploadBlob } from '../../src/cache/stores/blob-upload';
import { DownloadError } from '../../src/cache/stores/blob-download';
import { ServiceStore } from '../../src/cache/stores/service';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { storeContract } from '../support/store-contract';

jest.setTimeout(60_000);

let server: CacheServer;
const savedEnv = { ...process.env };

beforeAll(async () => {
  server = await startCacheServer();
  Object.assign(process.env, server.env);
});
afterAll(async () => {
  process.env = savedEnv;
  await server?.stop();
});
// The service's debug lines stay out of the test's output.
beforeEach(() => jest.spyOn(core, 'debug').mockImplementation(() => undefined));
afterEach(() => jest.restoreAllMocks());

/** Post's store: it uploads. */
const store = () => new ServiceStore(uploadBlob);

describe("the stores' contract", () => {
  storeContract(() => {
    const subject = store();
    return {
      store: subject,
      // Anyone who can write the repository's cache can commit any bytes under a manifest's key.
      plantManifest: async (key, blob) => void (await subject.write(key, blob))
    };
  });
});

test('a lookup of a name finds a variant of it (`<name>.N`, the same bytes a stuck save wrote under another name)', async () => {
  const name = `part-${randomBytes(8).toString('hex')}`;
  const data = randomBytes(1000);
  expect(await store().write(`${name}.2`, data)).toBe('written');
  const reader = new ServiceStore();
  expect(await reader.match(name)).toBe(`${name}.2`);
  expect(await reader.read(name, { maxBytes: data.length })).toEqual(data);
});

test("the service's bound is GitHub's eviction: an evicted entry is gone, and its name free again", async () => {
  const name = `part-${randomBytes(8).toString('hex')}`;
  const data = randomBytes(1000);
  const writer = store();
  await writer.write(name, data);
  const reader = new ServiceStore();
  expect(await reader.has(name)).toBe(true);
  expect(await server.evict(entry => entry.key === name)).toHaveLength(1);
  // The URL looked up before the eviction no longer serves the blob.
  await expect(reader.read(name, { maxBytes: data.length })).rejects.toBeInstanceOf(DownloadError);
  expect(await new ServiceStore().has(name)).toBe(false);
  expect(await new ServiceStore().read(name, { maxBytes: data.length })).toBeUndefined();
  expect(await writer.write(name, data)).toBe('written');
});

test('a streamed write (a save uploading its part while it scans): staged block by block as the pieces come, committed whole; a stream that fails commits nothing', async () => {
  const name = `part-${randomBytes(8).toString('hex')}`;
  // 40 MiB in pieces of about a frame's size: three blocks of the upload.
  const pieces = Array.from({ length: 80 }, () => randomBytes(512 * 1024 + 17));
  const before = server.stats();
  let given = 0;
  let uploadsWhileGiving = 0;
  const uploads = () => server.stats().uploadRequests - before.uploadRequests;
  async function* source(fail?: Error) {
    for (const piece of pieces) {
      given++;
      yield piece;
      if (fail && given === 40) throw fail;
      // Past the first 16 MiB block, the source waits (boundedly) for a block to reach the service:
      // an upload that only starts once the source has ended never gets there.
      if (!fail && given === 48) {
        for (let waited = 0; uploads() === 0 && waited < 20_000; waited += 50) {
          await new Promise(resolve => setTimeout(resolve, 50));
        }
        uploadsWhileGiving = uploads();
      }
    }
  }
  const writer = store();
  expect(await writer.write(name, source())).toBe('written');
  const whole = Buffer.concat(pieces);
  expect(writer.uploadedBytes).toBe(whole.length);
  // Blocks went up before the last piece was made.
  expect(uploadsWhileGiving).toBeGreaterThan(0);
  const reader = new ServiceStore();
  expect((await reader.read(name, { maxBytes: whole.length }))?.equals(whole)).toBe(true);
  expect(await reader.read(name, { maxBytes: 100, range: { offset: 20_000_000, length: 100 } })).toEqual(
    whole.subarray(20_000_000, 20_000_100)
  );

  const failed = `part-${randomBytes(8).toString('hex')}`;
  given = 0;
  await expect(store().write(failed, source(new Error('the scan failed')))).rejects.toThrow('the scan failed');
  expect(await new ServiceStore().has(failed)).toBe(false);
});
