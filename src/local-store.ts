// The runner's own store of the daemon's states (input `cache-dir`), for self-hosted runners whose disk
// outlives the job: every frame by its hash, every manifest by its key, beside the Actions cache or
// instead of it. Parallel jobs share it without locks: a file appears whole, by a rename of a
// temporary one, so no job reads half of one, and one a killed job left half-written is only ever a
// temporary file, which a later job clears. It is bounded: the least recently used frames go first.
import { randomBytes } from 'node:crypto';
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

export interface StoreUsage {
  frames: number;
  bytes: number;
}

export interface Eviction {
  removedFrames: number;
  removedBytes: number;
  left: StoreUsage;
}

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

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
   * Keeps the store within `maxBytes`: removes the least recently used frames, the manifests beyond the
   * newest few, and temporary files no running job can still be writing.
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
    const frames: Array<{ file: string; size: number; mtimeMs: number }> = [];
    for (const shard of await fs.readdir(framesDir).catch(() => [] as string[])) {
      const dir = path.join(framesDir, shard);
      frames.push(...(await statAll(dir, await fs.readdir(dir).catch(() => [] as string[]))));
    }
    let bytes = frames.reduce((sum, frame) => sum + frame.size, 0);
    let removedFrames = 0;
    let removedBytes = 0;
    for (const frame of frames.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      if (bytes <= maxBytes) break;
      await fs.rm(frame.file, { force: true });
      bytes -= frame.size;
      removedBytes += frame.size;
      removedFrames++;
    }
    return { removedFrames, removedBytes, left: { frames: frames.length - removedFrames, bytes } };
  }
}

async function statAll(dir: string, names: string[]): Promise<Array<{ file: string; size: number; mtimeMs: number }>> {
  const stats = await Promise.all(
    names.map(async name => {
      const file = path.join(dir, name);
      const stat = await fs.stat(file).catch(() => undefined);
      return stat?.isFile() ? { file, size: stat.size, mtimeMs: stat.mtimeMs } : undefined;
    })
  );
  return stats.filter((entry): entry is { file: string; size: number; mtimeMs: number } => entry !== undefined);
}
