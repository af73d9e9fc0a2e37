// One suite for every store the cache keeps its blobs and manifests in (src/cache/stores/store.ts): the
// runner's store runs it in test/unit/cache/stores/local.test.ts, the cache service's in
// test/integration/service-store.test.ts. What only one store has (the runner's bound) is tested beside it.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MANIFEST_FORMAT } from '../../src/cache/format';
import { encodeManifest, MAX_MANIFEST_BLOB_BYTES, type Manifest } from '../../src/cache/manifest';
import { sha256 } from '../../src/cache/image/zstd';
import type { BlobStore, ManifestStore } from '../../src/cache/stores/store';

export interface StoreSubject {
  store: BlobStore & ManifestStore;
  /** Puts `blob` where the store keeps the manifest of `key`, past its checks, as a hostile writer would. */
  plantManifest(key: string, blob: Buffer): Promise<void>;
}

const LIMITS = { maxImageBytes: 2 ** 40, maxWriteBytes: 2 ** 40 };
/** Stores order manifests by the time they were written, which a filesystem keeps to a few milliseconds. */
const APART_MS = 20;

/** A blob and its name, the hash of what it holds (as frames and parts are named), apart from every other test's. */
function blob(bytes = 4096): { name: string; data: Buffer } {
  const data = randomBytes(bytes);
  return { name: sha256(data), data };
}

/** A manifest of no chunks under `key`. */
export function emptyManifest(key: string): Manifest {
  return {
    format: MANIFEST_FORMAT,
    key,
    savedAt: new Date().toISOString(),
    imageId: 'sha256:x',
    lastUsed: {},
    filesystem: { type: 'ext4', bytes: 1 << 20 },
    chunkBytes: 1 << 20,
    parts: [],
    frames: [],
    chunks: []
  };
}

/** Resolves to what a read gave, or to undefined when the store refused it with an error. */
const refusedOrRead = (read: Promise<Buffer | undefined>) => read.catch(() => undefined);

/** Declares the contract's tests against the store `open` gives (called in each test). */
export function storeContract(open: () => StoreSubject): void {
  /** Keys apart from every other test's, for stores that outlive a test. */
  const keyPrefix = () => `contract-${randomBytes(6).toString('hex')}-`;

  test('a name never written: not there, nothing to read', async () => {
    const { store } = open();
    const { name } = blob();
    expect(await store.has(name)).toBe(false);
    expect(await store.read(name, { maxBytes: 1 << 20 })).toBeUndefined();
  });

  test('a blob written is there, and read back whole', async () => {
    const { store } = open();
    const { name, data } = blob();
    expect(await store.write(name, data)).toBe('written');
    expect(await store.has(name)).toBe(true);
    expect(await store.read(name, { maxBytes: data.length })).toEqual(data);
  });

  test('a blob written from a file is read back whole', async () => {
    const { store } = open();
    const { name, data } = blob();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-contract-'));
    try {
      const file = path.join(dir, 'part');
      fs.writeFileSync(file, data);
      expect(await store.write(name, { file, bytes: data.length })).toBe('written');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(await store.read(name, { maxBytes: data.length })).toEqual(data);
  });

  test('a range is read alone, into the buffer given', async () => {
    const { store } = open();
    const { name, data } = blob();
    await store.write(name, data);
    const into = Buffer.alloc(200, 0xff);
    const read = await store.read(name, { range: { offset: 1000, length: 100 }, maxBytes: 100, into });
    expect(read).toEqual(data.subarray(1000, 1100));
    expect(into.subarray(0, 100)).toEqual(data.subarray(1000, 1100));
  });

  test('a blob larger than the reader allows is refused, not read whole', async () => {
    const { store } = open();
    const { name, data } = blob();
    await store.write(name, data);
    expect(await refusedOrRead(store.read(name, { maxBytes: data.length - 1 }))).toBeUndefined();
    expect(await refusedOrRead(store.read(name, { range: { offset: 0, length: 200 }, maxBytes: 100 }))).toBeUndefined();
  });

  test('a name is written once: a second write finds it taken and changes nothing', async () => {
    const { store } = open();
    const { name, data } = blob();
    expect(await store.write(name, data)).toBe('written');
    expect(await store.write(name, randomBytes(data.length))).toBe('exists');
    expect(await store.read(name, { maxBytes: data.length })).toEqual(data);
  });

  test('a manifest written is read back; a key never written has none', async () => {
    const { store } = open();
    const written = emptyManifest(`${keyPrefix()}1`);
    expect(await store.writeManifest(written)).toBe('written');
    expect(await store.readManifest(written.key, LIMITS)).toEqual(written);
    expect(await store.readManifest(`${written.key}-none`, LIMITS)).toBeUndefined();
  });

  test('the newest manifest of the first prefix that any key starts with is found', async () => {
    const { store } = open();
    const prefix = keyPrefix();
    await store.writeManifest(emptyManifest(`${prefix}a-1`));
    await sleep(APART_MS);
    await store.writeManifest(emptyManifest(`${prefix}a-2`));
    await sleep(APART_MS);
    await store.writeManifest(emptyManifest(`${prefix}b-1`));
    const found = await store.findManifest([`${prefix}a-`, `${prefix}b-`], LIMITS);
    expect(found?.key).toBe(`${prefix}a-2`);
    expect(found?.manifest ?? (await store.readManifest(`${prefix}a-2`, LIMITS))).toEqual(
      expect.objectContaining({ key: `${prefix}a-2` })
    );
    expect((await store.findManifest([`${prefix}c-`, `${prefix}b-`], LIMITS))?.key).toBe(`${prefix}b-1`);
    expect(await store.findManifest([`${prefix}c-`], LIMITS)).toBeUndefined();
  });

  test('a manifest that is not one is refused', async () => {
    const subject = open();
    const key = `${keyPrefix()}1`;
    await subject.plantManifest(key, Buffer.from('not a manifest'));
    await expect(subject.store.readManifest(key, LIMITS)).rejects.toThrow();
  });

  test('a manifest larger than one may be is refused, not read', async () => {
    const subject = open();
    const key = `${keyPrefix()}1`;
    // A well-formed manifest, padded past the bound (gunzip reads a first member and ignores nothing after).
    const padded = Buffer.concat([await encodeManifest(emptyManifest(key)), Buffer.alloc(MAX_MANIFEST_BLOB_BYTES)]);
    await subject.plantManifest(key, padded);
    const read = await subject.store.readManifest(key, LIMITS).catch(() => undefined);
    expect(read).toBeUndefined();
  });
}
