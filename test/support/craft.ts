// Cache entries made as anyone who can write a repository's cache could make them: a filesystem image
// of one's own saved as a state with the action's own code, or entries written byte for byte.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { uploadBlob } from '../../src/cache/stores/blob-upload';
import { ServiceStore } from '../../src/cache/stores/service';
import { DataFiles, CHUNK_BYTES } from '../../src/daemon/data-image';
import { readLayout } from '../../src/cache/image/ext4';
import { encodeManifest, type Frame } from '../../src/cache/manifest';
import { saveState, type SaveResult } from '../../src/cache/image/pack';
import type { CacheServer } from './cache-server';
import { MANIFEST_FORMAT } from '../../src/cache/format';
import { scanImage } from '../../src/cache/image/scan';
import { sha256 } from '../../src/cache/image/zstd';
import { defined } from './defined';

/** Runs `body` with this process's environment pointing the action's cache code at `server`. */
async function against<T>(server: CacheServer, body: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, server.env);
  try {
    return await body();
  } finally {
    process.env = saved;
  }
}

/** Saves a filesystem image (a copy of it, sparse) as the state `key`, with the action's own save. */
export async function saveImageAs(
  server: CacheServer,
  image: string,
  key: string,
  imageId: string
): Promise<SaveResult> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-craft-'));
  try {
    // cp keeps the holes (a plain copy would write the whole apparent size).
    execFileSync('cp', ['--sparse=always', image, path.join(dataDir, DataFiles.image)]);
    return await against(server, () =>
      saveState({ dataDir, key, imageId, lastUsed: {}, maxBytes: 2 ** 40, service: new ServiceStore(uploadBlob) })
    );
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Writes a filesystem image as the state `key`, one part and its manifest, whatever state the
 * filesystem is in (the action's own save takes only cleanly unmounted ones): its used chunks by its
 * bitmaps, as the action's save picks them.
 */
export async function writeImageEntry(server: CacheServer, image: string, key: string, imageId: string): Promise<void> {
  const handle = await fs.promises.open(image, 'r');
  const frames: Frame[] = [];
  const chunks: Array<[number, number]> = [];
  const data: Buffer[] = [];
  let offset = 0;
  try {
    await scanImage(handle, await readLayout(handle), async (position, hash, compressed) => {
      const frame = defined(compressed, `the frame of chunk ${position}`);
      chunks.push([position, frames.push({ hash, part: 0, offset, length: frame.length }) - 1]);
      data.push(frame);
      offset += frame.length;
    });
  } finally {
    await handle.close();
  }
  const part = Buffer.concat(data);
  const partKey = `setup-dind-v2-part-${sha256(part)}`;
  await writeEntry(server, partKey, part);
  const manifest = await encodeManifest({
    format: MANIFEST_FORMAT,
    key,
    savedAt: new Date().toISOString(),
    imageId,
    lastUsed: {},
    filesystem: { type: 'ext4', bytes: fs.statSync(image).size },
    chunkBytes: CHUNK_BYTES,
    parts: [{ key: partKey, bytes: part.length }],
    frames,
    chunks
  });
  await writeEntry(server, key, manifest);
}

/** Writes an entry of the action's cache version byte for byte. */
export async function writeEntry(server: CacheServer, key: string, blob: Buffer): Promise<void> {
  await against(server, async () => {
    if ((await new ServiceStore(uploadBlob).write(key, blob)) === 'exists') throw new Error(`${key} exists already`);
  });
}

/** The blob of the action's entry `key`, byte for byte (a manifest, to read what a save wrote). */
export async function readEntry(server: CacheServer, key: string): Promise<Buffer> {
  return against(server, async () => {
    const service = new ServiceStore();
    const blob = (await service.match(key)) === key && (await service.read(key, { maxBytes: 64 * 1024 * 1024 }));
    if (!blob) throw new Error(`no entry ${key}`);
    return blob;
  });
}

/** Writes an entry of any cache version (another tool's, or an older format of this action's). */
export async function writeForeignEntry(
  server: CacheServer,
  key: string,
  version: string,
  blob: Buffer
): Promise<void> {
  const twirp = (method: string, body: object) =>
    fetch(`${server.url}twirp/github.actions.results.api.v1.CacheService/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${server.env.ACTIONS_RUNTIME_TOKEN}` },
      body: JSON.stringify(body)
    }).then(response => response.json() as Promise<Record<string, string>>);
  const created = await twirp('CreateCacheEntry', { key, version });
  await uploadBlob(created.signed_upload_url, blob);
  await twirp('FinalizeCacheEntryUpload', { key, version, size_bytes: String(blob.length) });
}
