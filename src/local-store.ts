// The runner's own store of the daemon's states (input `cache-dir`), for self-hosted runners whose disk
// outlives the job: every frame by its hash, every manifest by its key, beside the Actions cache or
// instead of it. Parallel jobs share it without locks: a file appears whole, by a rename of a
// temporary one, so no job reads half of one, and one a killed job left half-written is only ever a
// temporary file, which a later job clears. It is bounded: the least recently used frames go first.
//
// Beside the frames it keeps whole filesystem images, each the state of one manifest as a job left
// it (stopped cleanly): the next job on this disk takes one by a rename, with nothing to decompress
// or write, and no dirty pages for the loop device to flush before the daemon starts. A rename is
// atomic, so of two jobs only one gets it (the other restores from the frames), and an image appears
// here only whole. Nothing syncs them to the disk (that would cost post the seconds a restore saves),
// so they are kept per boot of the machine: after a crash or a reboot an image may have lost writes the
// kernel had not made yet, and the next job does not take it. They are the first to go when the store
// is over its bound: the frames hold the same states.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { decodeManifest, encodeManifest, type Manifest, type ManifestLimits } from './manifest';
import type { LocalFrames } from './restore';
import { HOUR_MS } from './units';

/** Bump with the manifest format: a store of another format is left alone. */
const LAYOUT = 'setup-dind-v2';
/** A temporary file this old belongs to no running job. */
const STALE_TEMPORARY_MS = HOUR_MS;
/** Manifests are small; these many of the newest are kept. */
const MANIFESTS_KEPT = 64;
/** Whole images are large: these many of the newest at most, within the bound. */
const IMAGES_KEPT = 4;

export interface StoreUsage {
  frames: number;
  images: number;
  /** Frames' bytes plus the disk space the images take (they are sparse). */
  bytes: number;
}

export interface Eviction {
  removedFrames: number;
  removedImages: number;
  removedBytes: number;
  left: StoreUsage;
}

/** This boot of the machine (the same in every container on it). */
const bootId = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
})();

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';
/** The store on another filesystem than the job's data: a rename cannot move an image across. */
const isOtherFilesystem = (error: unknown) => (error as NodeJS.ErrnoException).code === 'EXDEV';

export class LocalStore implements LocalFrames {
  private readonly root: string;

  constructor(cacheDir: string) {
    this.root = path.join(cacheDir, LAYOUT);
  }

  private framePath(hash: string): string {
    return path.join(this.root, 'frames', hash.slice(0, 2), `${hash}.zst`);
  }

  private manifestPath(key: string): string {
    return path.join(this.root, 'manifests', `${encodeURIComponent(key)}.gz`);
  }

  /** Images kept since this boot of the machine; undefined where the kernel does not say which boot it is. */
  private imagesDir(): string | undefined {
    return bootId && path.join(this.root, 'images', bootId);
  }

  private imagePath(key: string): string | undefined {
    const dir = this.imagesDir();
    return dir && path.join(dir, `${encodeURIComponent(key)}.img`);
  }

  /**
   * Moves the kept image of the state `key` to `target`; false when there is none (never kept, another
   * job took it) or it cannot be moved (the store on another filesystem, or another runner user's):
   * the frames hold the same state.
   */
  async takeImage(key: string, target: string): Promise<boolean> {
    const kept = this.imagePath(key);
    if (!kept) return false;
    return fs.rename(kept, target).then(
      () => true,
      () => false
    );
  }

  /** Whether images can move between `dataDir` and the store by a rename: the same filesystem. */
  async holdsImagesOf(dataDir: string): Promise<boolean> {
    const images = this.imagesDir();
    if (!images) return false;
    await fs.mkdir(images, { recursive: true });
    const [store, data] = await Promise.all([fs.stat(images), fs.stat(dataDir)]);
    return store.dev === data.dev;
  }

  /**
   * Moves `image`, the cleanly stopped state `key`, into the store for the next job; false when the
   * store is on another filesystem. Replaces an image of the same state another job kept.
   */
  async keepImage(key: string, image: string): Promise<boolean> {
    const kept = this.imagePath(key);
    if (!kept) return false;
    await fs.mkdir(path.dirname(kept), { recursive: true });
    // The bound removes the least recently kept first.
    const now = new Date();
    await fs.utimes(image, now, now);
    try {
      await fs.rename(image, kept);
      return true;
    } catch (error) {
      if (isOtherFilesystem(error)) return false;
      throw error;
    }
  }

  /** Writes a file whole: to a temporary name first, then a rename, so that no reader sees it half-written. */
  private async writeWhole(file: string, data: Buffer): Promise<void> {
    const temporary = path.join(this.root, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(path.dirname(temporary), { recursive: true });
    await fs.mkdir(path.dirname(file), { recursive: true });
    try {
      await fs.writeFile(temporary, data);
      await fs.rename(temporary, file);
    } catch (error) {
      await fs.rm(temporary, { force: true });
      throw error;
    }
  }

  async has(hash: string): Promise<boolean> {
    return fs.access(this.framePath(hash)).then(
      () => true,
      () => false
    );
  }

  async read(hash: string): Promise<Buffer | undefined> {
    return fs.readFile(this.framePath(hash)).catch((error: unknown) => {
      if (isMissing(error)) return undefined;
      throw error;
    });
  }

  async write(hash: string, frame: Buffer): Promise<void> {
    if (!(await this.has(hash))) await this.writeWhole(this.framePath(hash), frame);
  }

  /** Marks frames as used now: the bound removes the least recently used first. */
  async touch(hashes: string[]): Promise<void> {
    const now = new Date();
    await Promise.all(hashes.map(hash => fs.utimes(this.framePath(hash), now, now).catch(() => undefined)));
  }

  async writeManifest(manifest: Manifest): Promise<void> {
    await this.writeWhole(this.manifestPath(manifest.key), await encodeManifest(manifest));
  }

  async readManifest(key: string, limits: ManifestLimits): Promise<Manifest | undefined> {
    const blob = await fs.readFile(this.manifestPath(key)).catch((error: unknown) => {
      if (isMissing(error)) return undefined;
      throw error;
    });
    return blob && decodeManifest(blob, limits);
  }

  /** The newest manifest for the first of `prefixes` that any key starts with, as the cache service matches. */
  async findManifest(prefixes: string[], limits: ManifestLimits): Promise<Manifest | undefined> {
    const dir = path.join(this.root, 'manifests');
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    const entries = await Promise.all(
      names
        .filter(name => name.endsWith('.gz'))
        .map(async name => ({
          key: decodeURIComponent(name.slice(0, -3)),
          mtime: (await fs.stat(path.join(dir, name)).catch(() => undefined))?.mtimeMs
        }))
    );
    for (const prefix of prefixes) {
      const newest = entries
        .filter(
          (entry): entry is { key: string; mtime: number } => entry.mtime !== undefined && entry.key.startsWith(prefix)
        )
        .sort((a, b) => b.mtime - a.mtime)[0];
      if (newest) return this.readManifest(newest.key, limits);
    }
    return undefined;
  }

  /**
   * Keeps the store within `maxBytes`: removes kept images beyond the newest few, then the oldest images
   * and the least recently used frames while it is over, the manifests beyond the newest few, and
   * temporary files no running job can still be writing.
   */
  async enforceLimit(maxBytes: number): Promise<Eviction> {
    const now = Date.now();
    const temporaries = path.join(this.root, 'tmp');
    for (const name of await fs.readdir(temporaries).catch(() => [] as string[])) {
      const file = path.join(temporaries, name);
      const stats = await fs.stat(file).catch(() => undefined);
      if (stats && now - stats.mtimeMs > STALE_TEMPORARY_MS) await fs.rm(file, { force: true });
    }
    const manifests = path.join(this.root, 'manifests');
    const manifestFiles = await statAll(manifests, await fs.readdir(manifests).catch(() => [] as string[]));
    for (const old of manifestFiles.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(MANIFESTS_KEPT))
      await fs.rm(old.file, { force: true });

    const framesDir = path.join(this.root, 'frames');
    const frames: StoredFile[] = [];
    for (const shard of await fs.readdir(framesDir).catch(() => [] as string[])) {
      const dir = path.join(framesDir, shard);
      frames.push(...(await statAll(dir, await fs.readdir(dir).catch(() => [] as string[]))));
    }
    const allImages = path.join(this.root, 'images');
    for (const boot of await fs.readdir(allImages).catch(() => [] as string[]))
      if (boot !== bootId) await fs.rm(path.join(allImages, boot), { recursive: true, force: true });
    const imagesDir = this.imagesDir();
    const imageNames = imagesDir ? await fs.readdir(imagesDir).catch(() => [] as string[]) : [];
    const images = (imagesDir ? await statAll(imagesDir, imageNames) : []).sort((a, b) => b.mtimeMs - a.mtimeMs);
    let bytes = [...frames, ...images].reduce((sum, file) => sum + file.size, 0);
    let removedFrames = 0;
    let removedImages = 0;
    let removedBytes = 0;
    const remove = async (file: StoredFile) => {
      await fs.rm(file.file, { force: true });
      bytes -= file.size;
      removedBytes += file.size;
    };
    // Newest first: the ones past the count, then from the oldest while over the bound.
    for (const [i, image] of [...images.entries()].reverse()) {
      if (i < IMAGES_KEPT && bytes <= maxBytes) break;
      await remove(image);
      removedImages++;
    }
    for (const frame of frames.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      if (bytes <= maxBytes) break;
      await remove(frame);
      removedFrames++;
    }
    return {
      removedFrames,
      removedImages,
      removedBytes,
      left: { frames: frames.length - removedFrames, images: images.length - removedImages, bytes }
    };
  }
}

interface StoredFile {
  file: string;
  /** The disk space it takes: an image is sparse. */
  size: number;
  mtimeMs: number;
}

async function statAll(dir: string, names: string[]): Promise<StoredFile[]> {
  const stats = await Promise.all(
    names.map(async name => {
      const file = path.join(dir, name);
      const stat = await fs.stat(file).catch(() => undefined);
      return stat?.isFile() ? { file, size: Math.min(stat.size, stat.blocks * 512), mtimeMs: stat.mtimeMs } : undefined;
    })
  );
  return stats.filter((entry): entry is StoredFile => entry !== undefined);
}
