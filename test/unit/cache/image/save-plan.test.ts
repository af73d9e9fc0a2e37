// saveState's plan against in-memory stores: what a save uploads, what it references of the state
// restored, and what it writes to the runner's store, on real ext4 images made by mke2fs. The stores
// are fakes of the roles the save uses; the images, the scan, the workers and the frames are real.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  saveState,
  SizeLimitError,
  type SaveInput,
  type SaveService,
  type SaveStore
} from '../../../../src/cache/image/pack';
import { decompressFrame, sha256 } from '../../../../src/cache/image/zstd';
import { LOCAL_ONLY, MAX_FRAME_BYTES, type Manifest } from '../../../../src/cache/manifest';
import type { BlobFile, WriteOutcome } from '../../../../src/cache/stores/store';
import { CHUNK_BYTES, DataFiles } from '../../../../src/daemon/data-image';
import { defined } from '../../../support/defined';

const MIB = 1024 * 1024;

/** The cache service as the save uses it: write-once names, a name's `.N` variants, the bytes sent. */
class MemoryService implements SaveService {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, Manifest>();
  uploadedBytes = 0;

  async match(name: string): Promise<string | undefined> {
    const names = [...this.blobs.keys(), ...this.manifests.keys()];
    return names.find(taken => taken === name || taken.startsWith(`${name}.`));
  }
  async has(name: string): Promise<boolean> {
    return (await this.match(name)) !== undefined;
  }
  async write(name: string, data: Buffer | BlobFile | AsyncIterable<Buffer>): Promise<WriteOutcome> {
    if (this.blobs.has(name)) return 'exists';
    let bytes: Buffer;
    if (Buffer.isBuffer(data)) bytes = data;
    else if ('file' in data) bytes = fs.readFileSync(data.file);
    else {
      const pieces: Buffer[] = [];
      for await (const piece of data) pieces.push(Buffer.from(piece));
      bytes = Buffer.concat(pieces);
    }
    this.blobs.set(name, bytes);
    this.uploadedBytes += bytes.length;
    return 'written';
  }
  async writeManifest(manifest: Manifest): Promise<WriteOutcome> {
    if (this.manifests.has(manifest.key)) return 'exists';
    this.manifests.set(manifest.key, structuredClone(manifest));
    this.uploadedBytes += JSON.stringify(manifest).length;
    return 'written';
  }
}

/** The runner's store as the save uses it: frames by hash, manifests by key. */
class MemoryStore implements SaveStore {
  readonly frames = new Map<string, Buffer>();
  readonly manifests = new Map<string, Manifest>();

  async has(name: string): Promise<boolean> {
    return this.frames.has(name);
  }
  async write(name: string, data: Buffer | BlobFile): Promise<WriteOutcome> {
    if (this.frames.has(name)) return 'exists';
    this.frames.set(name, Buffer.isBuffer(data) ? Buffer.from(data) : fs.readFileSync(data.file));
    return 'written';
  }
  async writeManifest(manifest: Manifest): Promise<'written'> {
    this.manifests.set(manifest.key, structuredClone(manifest));
    return 'written';
  }
}

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'save-plan-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/**
 * A data directory whose image (`imageBytes`) holds `files` (name → fill byte and size, or the bytes),
 * as entrypoint.sh makes it.
 */
function dataDirWith(name: string, files: Record<string, [number, number] | Buffer>, imageBytes = 64 * MIB): string {
  const tree = fs.mkdtempSync(path.join(root, `${name}-tree-`));
  for (const [file, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(tree, file), Buffer.isBuffer(content) ? content : Buffer.alloc(content[1], content[0]));
  }
  const dataDir = fs.mkdtempSync(path.join(root, `${name}-`));
  const image = path.join(dataDir, DataFiles.image);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, imageBytes);
  execFileSync(
    'mke2fs',
    [
      ...['-t', 'ext4', '-q', '-F', '-b', '4096', '-m', '0', '-i', '8192'],
      ...['-E', 'lazy_itable_init=1,nodiscard', '-O', '^has_journal,^resize_inode', '-d', tree, image]
    ],
    { stdio: 'pipe' }
  );
  return dataDir;
}

const FILES = { base: [9, 3 * MIB], layer: [7, MIB] } satisfies Record<string, [number, number]>;

/** A copy of a data directory whose file of 7s holds 8s instead: the same filesystem, one file's data changed. */
function changedCopy(dataDir: string): string {
  const copy = fs.mkdtempSync(path.join(root, 'changed-'));
  const image = fs.readFileSync(path.join(dataDir, DataFiles.image));
  const block = Buffer.alloc(4096, 7);
  let changed = 0;
  for (let at = 0; at < image.length; at += 4096)
    if (image.subarray(at, at + 4096).equals(block)) {
      image.fill(8, at, at + 4096);
      changed++;
    }
  expect(changed).toBe(MIB / 4096);
  fs.writeFileSync(path.join(copy, DataFiles.image), image);
  return copy;
}

function input(dataDir: string, key: string, more: Partial<SaveInput>): SaveInput {
  return { dataDir, key, imageId: 'sha256:dind', lastUsed: {}, maxBytes: 2 ** 40, ...more };
}

/** Every chunk the manifest lists, read back from where it says and compared with the image. */
async function expectRestorable(manifest: Manifest, dataDir: string, service?: MemoryService, store?: MemoryStore) {
  const image = fs.readFileSync(path.join(dataDir, DataFiles.image));
  for (const [position, index] of manifest.chunks) {
    const frame = defined(manifest.frames[index], `frame ${index}`);
    const bytes =
      frame.part === LOCAL_ONLY
        ? defined(store?.frames.get(frame.hash), `frame ${frame.hash} in the store`)
        : defined(
            service?.blobs.get(manifest.parts[frame.part].key),
            `part ${manifest.parts[frame.part].key}`
          ).subarray(frame.offset, frame.offset + frame.length);
    const chunk = await decompressFrame(bytes, MAX_FRAME_BYTES);
    expect(sha256(chunk)).toBe(frame.hash);
    expect(chunk.equals(image.subarray(position * CHUNK_BYTES, position * CHUNK_BYTES + chunk.length))).toBe(true);
  }
}

describe('saveState against in-memory stores', () => {
  let first: Manifest;
  const service = new MemoryService();
  let originalDir: string;
  const original = () => (originalDir ??= dataDirWith('original', FILES));

  test('a first save uploads one part with every used chunk and a manifest that restores the image', async () => {
    const result = await saveState(input(original(), 'state-1', { service }));
    expect(result).toMatchObject({ saved: true, key: 'state-1', reusedBytes: 0, localBytes: 0 });
    first = defined(service.manifests.get('state-1'), 'manifest');
    expect(first.parts).toHaveLength(1);
    expect(first.frames.every(frame => frame.part === 0)).toBe(true);
    // Each content once: chunks that hold the same bytes share a frame.
    const hashes = first.frames.map(frame => frame.hash);
    expect(new Set(hashes).size).toBe(hashes.length);
    expect(result.uploadedBytes).toBe(service.uploadedBytes);
    expect(result.storedBytes).toBe(first.parts[0].bytes);
    await expectRestorable(first, originalDir, service);
  });

  test('the same content saved again references the restored part and uploads only its manifest', async () => {
    const before = service.uploadedBytes;
    const result = await saveState(input(original(), 'state-2', { service, restored: first }));
    const second = defined(service.manifests.get('state-2'), 'manifest');
    expect(second.parts).toEqual(first.parts);
    expect(second.parent).toBe('state-1');
    expect(result.reusedBytes).toBe(result.storedBytes);
    expect(result.uploadedBytes - before).toBe(JSON.stringify(second).length);
  });

  test('one changed file: only its chunks go into a new part, the rest is referenced', async () => {
    const changedDir = changedCopy(original());
    const result = await saveState(input(changedDir, 'state-3', { service, restored: first }));
    const third = defined(service.manifests.get('state-3'), 'manifest');
    expect(third.parts).toHaveLength(2);
    const fresh = third.frames.filter(frame => frame.part === 1);
    // The file's data may straddle a chunk boundary, so at most two new chunks.
    expect(fresh.length).toBeGreaterThanOrEqual(1);
    expect(fresh.length).toBeLessThanOrEqual(2);
    expect(result.reusedBytes).toBeGreaterThan(0);
    expect(result.reusedBytes + fresh.reduce((sum, frame) => sum + frame.length, 0)).toBe(result.storedBytes);
    await expectRestorable(third, changedDir, service);
  });

  test('a restored part gone from the service: its chunks are compressed into the new part again', async () => {
    const gone = new MemoryService();
    const result = await saveState(input(original(), 'state-4', { service: gone, restored: first }));
    const fourth = defined(gone.manifests.get('state-4'), 'manifest');
    expect(fourth.parts).toHaveLength(1);
    // Uploaded again, as a part of its own.
    expect(gone.blobs.has(fourth.parts[0].key)).toBe(true);
    expect(fourth.parts[0].key).not.toBe(first.parts[0].key);
    expect(gone.uploadedBytes).toBeGreaterThan(fourth.parts[0].bytes);
    expect(result.reusedBytes).toBe(0);
  });

  test('a manifest of this content committed by another job: not saved, and said so', async () => {
    const result = await saveState(input(original(), 'state-1', { service, restored: first }));
    expect(result.saved).toBe(false);
    expect(result.reason).toMatch(/exists already \(state-1\)/);
  });

  test('more than maxBytes of frames: refused with SizeLimitError; the part under way is never committed', async () => {
    const bounded = new MemoryService();
    await expect(saveState(input(original(), 'state-5', { service: bounded, maxBytes: 100 }))).rejects.toThrow(
      SizeLimitError
    );
    expect(bounded.blobs.size).toBe(0);
    expect(bounded.manifests.size).toBe(0);
  });

  test('a part the service reserves no entry for: the save fails at once, not waiting for an upload that never reads (more frames than the queue holds)', async () => {
    // 96 MiB that do not compress: more than the frames the scan queues for the upload.
    const dataDir = dataDirWith('random', { random: randomBytes(96 * MIB) }, 160 * MIB);
    const refusing = new MemoryService();
    refusing.write = async () => 'exists';
    await expect(saveState(input(dataDir, 'state-8', { service: refusing }))).rejects.toThrow(
      /the cache service reserved no entry for setup-dind-v2-part-[0-9a-f]{64}$/
    );
    expect(refusing.manifests.size).toBe(0);
  }, 60_000);

  test('an upload that fails while the scan goes on: the save fails with its error, no manifest', async () => {
    const failing = new MemoryService();
    let pieces = 0;
    failing.write = async (_name, data) => {
      if (Buffer.isBuffer(data) || 'file' in data) throw new Error('a part is uploaded as it is made');
      for await (const piece of data) {
        if (piece.length > 0 && ++pieces === 2) throw new Error('the blob store went away');
      }
      return 'written';
    };
    await expect(saveState(input(original(), 'state-7', { service: failing }))).rejects.toThrow(
      'the blob store went away'
    );
    expect(pieces).toBe(2);
    expect(failing.manifests.size).toBe(0);
  });

  test("without the service: every frame to the runner's store, referenced as local only", async () => {
    const store = new MemoryStore();
    const dir = original();
    const result = await saveState(input(dir, 'state-6', { store }));
    const local = defined(store.manifests.get('state-6'), 'manifest');
    expect(local.parts).toEqual([]);
    expect(local.frames.every(frame => frame.part === LOCAL_ONLY)).toBe(true);
    expect(result).toMatchObject({ saved: true, uploadedBytes: 0 });
    expect(result.localBytes).toBe(result.storedBytes);
    await expectRestorable(local, dir, undefined, store);
  });

  test("with both: the part uploaded, and every frame kept in the runner's store too", async () => {
    const store = new MemoryStore();
    const both = new MemoryService();
    const result = await saveState(input(original(), 'state-7', { service: both, store }));
    const manifest = defined(both.manifests.get('state-7'), 'manifest');
    expect(store.manifests.get('state-7')).toEqual(manifest);
    expect([...store.frames.keys()].sort()).toEqual(manifest.frames.map(frame => frame.hash).sort());
    expect(result.localBytes).toBe(result.storedBytes);
  });
});
