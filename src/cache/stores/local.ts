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
//
// Another user of the runner may write where the store lives, so what it holds is hostile input. The
// store is used only when each of its directories is a real directory of the job's user that no one
// else may write, and neither `cache-dir` nor a directory above it lets another user swap one of them:
// then only the job's user (and root) can add, rename or remove what is in them. Even so, every file is
// opened without following a link and without waiting on a FIFO, checked on its descriptor to be a
// regular file of the size it may have, and read no further; an image is taken only if it is the job's
// user's alone, with no other link. Nothing is removed but regular files, by name, in those directories;
// a name the store does not write is skipped.
import { randomBytes } from 'node:crypto';
import { constants, readFileSync, type Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import { MAX_IMAGE_BYTES } from '../../daemon/data-image';
import { errorMessage } from '../../util/errors';
import {
  decodeManifest,
  encodeManifest,
  MAX_MANIFEST_BLOB_BYTES,
  type Manifest,
  type ManifestLimits
} from '../manifest';
import type { BlobFile, BlobStore, FoundManifest, ManifestStore, ReadOptions, WriteOutcome } from './store';
import { HOUR_MS } from '../../util/units';
import { FORMAT_NAME } from '../format';

/** A temporary file this old belongs to no running job. */
const STALE_TEMPORARY_MS = HOUR_MS;
/** Manifests are small; these many of the newest are kept. */
const MANIFESTS_KEPT = 64;
/** Whole images are large: these many of the newest at most, within the bound. */
const IMAGES_KEPT = 4;

/** The names the store writes: frames/<shard>/<sha256>.zst, tmp/<pid>-<random>, images/<boot id>/. */
const SHARD_NAME = /^[0-9a-f]{2}$/;
const FRAME_NAME = /^[0-9a-f]{64}\.zst$/;
const TEMPORARY_NAME = /^\d+-[0-9a-f]{12}$/;
const BOOT_NAME = /^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$/;
const MANIFEST_SUFFIX = '.gz';
const IMAGE_SUFFIX = '.img';

const {
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  S_IFLNK,
  S_IFIFO,
  S_IFCHR,
  S_IFBLK,
  S_IFSOCK
} = constants;
/** The sticky bit (Node's constants have none for it). */
const S_ISVTX = 0o1000;
/** A link is not followed (ELOOP), and a FIFO opens at once instead of waiting for a writer. */
const SAFE_OPEN = O_NOFOLLOW | O_NONBLOCK;

export interface StoreUsage {
  frames: number;
  images: number;
  /** Frames' bytes plus the disk space the images take (they are sparse). */
  bytes: number;
}

/** What bounding the store removed, and what it left. */
export interface StoreBound {
  removedFrames: number;
  removedImages: number;
  removedBytes: number;
  left: StoreUsage;
}

/** What the checks read of an entry, as lstat or fstat give it. */
export type EntryStat = Pick<Stats, 'mode' | 'uid' | 'nlink' | 'size'>;

const TYPES = new Map<number, string>([
  [S_IFREG, 'a regular file'],
  [S_IFDIR, 'a directory'],
  [S_IFLNK, 'a symbolic link'],
  [S_IFIFO, 'a FIFO'],
  [S_IFCHR, 'a character device'],
  [S_IFBLK, 'a block device'],
  [S_IFSOCK, 'a socket']
]);
const typeOf = (mode: number) => TYPES.get(mode & S_IFMT) ?? 'of an unknown type';

function writableByOthers(mode: number): string | undefined {
  const who = [mode & 0o020 ? 'its group' : '', mode & 0o002 ? 'others' : ''].filter(Boolean).join(' and ');
  return who ? `is writable by ${who} (mode ${(mode & 0o7777).toString(8).padStart(4, '0')})` : undefined;
}

/**
 * Pure: why a directory of the store may not be used, undefined when it may: it must be a directory
 * (not a link to one) of the job's user (`uid`) that neither its group nor others may write.
 */
export function storeDirProblem(stat: EntryStat, uid: number): string | undefined {
  if ((stat.mode & S_IFMT) !== S_IFDIR) return `is ${typeOf(stat.mode)}, not a directory`;
  if (stat.uid !== uid) return `belongs to uid ${stat.uid}, not to the job's user (uid ${uid})`;
  return writableByOthers(stat.mode);
}

/**
 * Pure: why `cache-dir` (resolved) or a directory above it lets another user than the job's (`uid`)
 * rename or replace what is in it, undefined when it does not: it must be root's or the job's user's,
 * and writable by no one else unless it is sticky (as /tmp is: others may add, not rename or remove).
 */
export function parentDirProblem(stat: EntryStat, uid: number): string | undefined {
  if ((stat.mode & S_IFMT) !== S_IFDIR) return `is ${typeOf(stat.mode)}, not a directory`;
  if (stat.uid !== uid && stat.uid !== 0)
    return `belongs to uid ${stat.uid}, neither root nor the job's user (uid ${uid})`;
  return stat.mode & S_ISVTX ? undefined : writableByOthers(stat.mode);
}

/**
 * Pure: why a file of the store may not be read, undefined when it may: a regular file of at most
 * `maxBytes`; with `owner`, a kept image the job mounts, also that user's alone: no other link to it
 * (another user's hard link could write it later), and writable by no one else.
 */
export function storeFileProblem(stat: EntryStat, maxBytes: number, owner?: number): string | undefined {
  if ((stat.mode & S_IFMT) !== S_IFREG) return `is ${typeOf(stat.mode)}, not a regular file`;
  if (stat.size > maxBytes) return `is ${stat.size} bytes, more than the ${maxBytes} it may be`;
  if (owner === undefined) return undefined;
  if (stat.uid !== owner) return `belongs to uid ${stat.uid}, not to the job's user (uid ${owner})`;
  if (stat.nlink !== 1) return `has ${stat.nlink} links, not 1`;
  return writableByOthers(stat.mode);
}

/**
 * Pure: the key a file name of the store stands for (`encodeURIComponent(key)` and `suffix`), or
 * undefined for a name the store does not write (another form, a bad encoding, a second spelling).
 */
export function keyOfName(name: string, suffix: string): string | undefined {
  if (!name.endsWith(suffix)) return undefined;
  const encoded = name.slice(0, -suffix.length);
  try {
    const key = decodeURIComponent(encoded);
    return key !== '' && encodeURIComponent(key) === encoded ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Pure: whether `name` in frames/`shard` is a frame the store writes there. */
export function isFrameName(shard: string, name: string): boolean {
  return SHARD_NAME.test(shard) && FRAME_NAME.test(name) && name.startsWith(shard);
}

/** This boot of the machine (the same in every container on it). */
const bootId = (() => {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return BOOT_NAME.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
})();

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException).code;
/** The store on another filesystem than the job's data: a rename cannot move an image across. */
const isOtherFilesystem = (error: unknown) => codeOf(error) === 'EXDEV';

type Opened = { handle: fs.FileHandle; stat: Stats } | { problem: string };

/**
 * Opens a file of the store without following a link or waiting on a FIFO and checks, on the
 * descriptor, what it is; undefined when there is none. The caller closes the handle.
 */
async function openChecked(
  file: string,
  flags: number,
  check: (stat: EntryStat) => string | undefined
): Promise<Opened | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, flags | SAFE_OPEN);
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined;
    // Why it could not be opened, in the checks' words where they say it (a link, another user's file).
    const stat = await fs.lstat(file).catch(() => undefined);
    return { problem: (stat && check(stat)) ?? `cannot be opened (${errorMessage(error)})` };
  }
  try {
    const stat = await handle.stat();
    const problem = check(stat);
    if (problem === undefined) return { handle, stat };
    await handle.close();
    return { problem };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * `bytes` of an open file from `position`, or fewer where it ends: never more, whatever it grows to;
 * into the start of `into` when given.
 */
async function readAtMost(handle: fs.FileHandle, bytes: number, position = 0, into?: Buffer): Promise<Buffer> {
  // Its own memory: a view of a pooled buffer would be copied whole where it is posted to a worker.
  const buffer = into ?? Buffer.allocUnsafeSlow(bytes);
  let filled = 0;
  while (filled < bytes) {
    const { bytesRead } = await handle.read(buffer, filled, bytes - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/** Removes a regular file by name (a name in a directory no one else may write); gone already is fine. */
async function removeFile(file: string): Promise<void> {
  await fs.unlink(file).catch((error: unknown) => {
    if (codeOf(error) !== 'ENOENT') throw error;
  });
}

interface StoredFile {
  file: string;
  /** The disk space it takes: an image is sparse. */
  size: number;
  mtimeMs: number;
}

/** The job's user: every directory of the store and every image taken must be theirs. */
function jobUid(): number {
  // Missing only on Windows, where the action does not run; no directory belongs to uid -1.
  return process.getuid?.() ?? -1;
}

export class LocalStore implements BlobStore, ManifestStore {
  /** Shard directories of frames/ checked (or made) by this job. */
  private readonly shards = new Set<string>();

  private constructor(
    private readonly root: string,
    private readonly uid: number
  ) {}

  /**
   * The store in `cacheDir`, its directories made (0700) where missing; undefined, with a warning naming
   * the directory and what is wrong with it, when one of them may not be used: the job goes on without it.
   */
  static async open(cacheDir: string): Promise<LocalStore | undefined> {
    const uid = jobUid();
    const refused = await LocalStore.check(cacheDir, uid).catch(
      (error: unknown) => `it cannot be read (${errorMessage(error)})`
    );
    if (typeof refused !== 'string') return refused;
    core.warning(
      `Not using the cache directory ${cacheDir}: ${refused}. It is used only where each of its directories is the job's user's and no one else may write it or the directories above it; the job goes on without it.`
    );
    return undefined;
  }

  /** The store, or why it may not be used. */
  private static async check(cacheDir: string, uid: number): Promise<LocalStore | string> {
    let real: string;
    try {
      await fs.mkdir(cacheDir, { recursive: true, mode: 0o700 });
      // Links in the path the input gives are its writer's choice; nothing after this resolves one.
      real = await fs.realpath(cacheDir);
    } catch (error) {
      return `it cannot be made (${errorMessage(error)})`;
    }
    for (let dir = real; ; dir = path.dirname(dir)) {
      const problem = parentDirProblem(await fs.lstat(dir), uid);
      if (problem) return `${dir} ${problem}`;
      if (dir === path.dirname(dir)) break;
    }
    const store = new LocalStore(path.join(real, FORMAT_NAME), uid);
    const dirs = [store.root, ...['frames', 'manifests', 'tmp', 'images'].map(name => path.join(store.root, name))];
    const images = store.imagesDir();
    if (images) dirs.push(images);
    for (const dir of dirs) {
      const problem = await store.makeDir(dir);
      if (problem) return `${dir} ${problem}`;
    }
    const frames = path.join(store.root, 'frames');
    for (const shard of (await fs.readdir(frames)).filter(name => SHARD_NAME.test(name))) {
      const dir = path.join(frames, shard);
      const problem = storeDirProblem(await fs.lstat(dir), uid);
      if (problem) return `${dir} ${problem}`;
      store.shards.add(shard);
    }
    return store;
  }

  /** Makes a directory of the store (0700) unless it is there; why it may not be used, if it may not. */
  private async makeDir(dir: string): Promise<string | undefined> {
    try {
      await fs.mkdir(dir, { mode: 0o700 });
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') return `cannot be made (${errorMessage(error)})`;
    }
    return storeDirProblem(await fs.lstat(dir), this.uid);
  }

  private framePath(hash: string): string {
    return path.join(this.root, 'frames', hash.slice(0, 2), `${hash}.zst`);
  }

  private manifestPath(key: string): string {
    return path.join(this.root, 'manifests', `${encodeURIComponent(key)}${MANIFEST_SUFFIX}`);
  }

  /** Images kept since this boot of the machine; undefined where the kernel does not say which boot it is. */
  private imagesDir(): string | undefined {
    return bootId && path.join(this.root, 'images', bootId);
  }

  private imagePath(key: string): string | undefined {
    const dir = this.imagesDir();
    return dir && path.join(dir, `${encodeURIComponent(key)}${IMAGE_SUFFIX}`);
  }

  /** A file of the store that is not used, and why. */
  private skip(file: string, problem: string): void {
    core.warning(`Not using ${file} in the cache directory: it ${problem}.`);
  }

  /**
   * Moves the kept image of the state `key` to `target` and returns it open for reading and writing
   * (what was checked, whatever the names hold later); undefined when there is none (never kept, another
   * job took it), it may not be used (with a warning), or it cannot be moved (the store on another
   * filesystem): the frames hold the same state.
   */
  async takeImage(key: string, target: string): Promise<fs.FileHandle | undefined> {
    const kept = this.imagePath(key);
    if (!kept) return undefined;
    const opened = await openChecked(kept, O_RDWR, stat => storeFileProblem(stat, MAX_IMAGE_BYTES, this.uid));
    if (!opened) return undefined;
    if ('problem' in opened) {
      this.skip(kept, opened.problem);
      return undefined;
    }
    const { handle, stat } = opened;
    try {
      await fs.rename(kept, target);
      // What the rename moved is what was checked, unless the name changed hands in between.
      const moved = await fs.lstat(target);
      if (moved.ino === stat.ino && moved.dev === stat.dev) return handle;
      await removeFile(target);
    } catch {
      // Taken by another job, or on another filesystem.
    }
    await handle.close();
    return undefined;
  }

  /** Whether images can move between `dataDir` and the store by a rename: the same filesystem. */
  async holdsImagesOf(dataDir: string): Promise<boolean> {
    const images = this.imagesDir();
    if (!images) return false;
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

  /** Writes a file whole: to a new temporary name first, then a rename, so that no reader sees it half-written. */
  private async writeWhole(file: string, data: Buffer | BlobFile): Promise<void> {
    const temporary = path.join(this.root, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      // wx and COPYFILE_EXCL: a name that is there (a link among them) is never written through.
      if (Buffer.isBuffer(data)) await fs.writeFile(temporary, data, { flag: 'wx', mode: 0o600 });
      else {
        await fs.copyFile(data.file, temporary, constants.COPYFILE_EXCL);
        await fs.chmod(temporary, 0o600);
      }
      await fs.rename(temporary, file);
    } catch (error) {
      await removeFile(temporary);
      throw error;
    }
  }

  /** Whether the store has the frame `hash` as a regular file; anything else there is not a frame. */
  async has(hash: string): Promise<boolean> {
    const file = this.framePath(hash);
    const stat = await fs.lstat(file).catch(() => undefined);
    if (stat && !stat.isFile()) core.debug(`${file} is ${typeOf(stat.mode)}: not a frame`);
    return stat?.isFile() === true;
  }

  /**
   * The frame `hash`, of at most `maxBytes` (its recorded length), or a range of it of at most that;
   * undefined when it is gone or may not be read.
   */
  async read(hash: string, { maxBytes, range, into }: ReadOptions): Promise<Buffer | undefined> {
    const file = this.framePath(hash);
    if (range && range.length > maxBytes) {
      this.skip(file, `is asked for ${range.length} bytes, more than the ${maxBytes} it may give`);
      return undefined;
    }
    // A range bounds what is read itself, whatever the file's size.
    const opened = await openChecked(file, O_RDONLY, stat => storeFileProblem(stat, range ? Infinity : maxBytes));
    if (!opened) return undefined;
    if ('problem' in opened) {
      this.skip(file, opened.problem);
      return undefined;
    }
    try {
      return await readAtMost(opened.handle, range ? range.length : opened.stat.size, range?.offset, into);
    } finally {
      await opened.handle.close();
    }
  }

  /** Keeps a frame for the next job: one fetched from the cache service, or one a save made. */
  async write(hash: string, frame: Buffer | BlobFile): Promise<WriteOutcome> {
    if (await this.has(hash)) return 'exists';
    const shard = hash.slice(0, 2);
    if (!this.shards.has(shard)) {
      const dir = path.dirname(this.framePath(hash));
      const problem = await this.makeDir(dir);
      if (problem) throw new Error(`${dir} ${problem}`);
      this.shards.add(shard);
    }
    await this.writeWhole(this.framePath(hash), frame);
    return 'written';
  }

  /** Marks frames as used now: the bound removes the least recently used first. */
  async touch(hashes: string[]): Promise<void> {
    const now = new Date();
    // lutimes: a link planted where a frame should be is not followed.
    await Promise.all(hashes.map(hash => fs.lutimes(this.framePath(hash), now, now).catch(() => undefined)));
  }

  async writeManifest(manifest: Manifest): Promise<WriteOutcome> {
    await this.writeWhole(this.manifestPath(manifest.key), await encodeManifest(manifest));
    return 'written';
  }

  /** The manifest of `key`; undefined when there is none or its file may not be read (with a warning). */
  async readManifest(key: string, limits: ManifestLimits): Promise<Manifest | undefined> {
    const file = this.manifestPath(key);
    const opened = await openChecked(file, O_RDONLY, stat => storeFileProblem(stat, MAX_MANIFEST_BLOB_BYTES));
    if (!opened) return undefined;
    if ('problem' in opened) {
      this.skip(file, opened.problem);
      return undefined;
    }
    let blob: Buffer;
    try {
      blob = await readAtMost(opened.handle, opened.stat.size);
    } finally {
      await opened.handle.close();
    }
    return decodeManifest(blob, limits);
  }

  /** The newest manifest for the first of `prefixes` that any key starts with, as the cache service matches. */
  async findManifest(
    prefixes: string[],
    limits: ManifestLimits
  ): Promise<(FoundManifest & { manifest: Manifest }) | undefined> {
    const entries = await this.listFiles(path.join(this.root, 'manifests'), name => keyOfName(name, MANIFEST_SUFFIX));
    for (const prefix of prefixes) {
      // The newest first; one whose file may not be read (with a warning) gives way to the next.
      const matching = entries.filter(entry => entry.key.startsWith(prefix)).sort((a, b) => b.mtimeMs - a.mtimeMs);
      for (const { key } of matching) {
        const manifest = await this.readManifest(key, limits);
        if (manifest) return { key, manifest };
      }
    }
    return undefined;
  }

  /**
   * The regular files of a directory of the store whose names `parse` reads (as what it returns); a
   * name it does not read, or anything but a regular file, is skipped.
   */
  private async listFiles(
    dir: string,
    parse: (name: string) => string | undefined
  ): Promise<Array<StoredFile & { key: string }>> {
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    const files = await Promise.all(
      names.map(async name => {
        const file = path.join(dir, name);
        const key = parse(name);
        if (key === undefined) {
          core.debug(`Skipping ${file}: not a name the store writes`);
          return undefined;
        }
        const stat = await fs.lstat(file).catch(() => undefined);
        if (!stat?.isFile()) {
          if (stat) core.debug(`Skipping ${file}: ${typeOf(stat.mode)}`);
          return undefined;
        }
        return { file, key, size: Math.min(stat.size, stat.blocks * 512), mtimeMs: stat.mtimeMs };
      })
    );
    return files.filter(entry => entry !== undefined);
  }

  /** The directories in `dir` whose names `isName` accepts and that are the store's, checked as `open` checks them. */
  private async listDirs(dir: string, isName: (name: string) => boolean): Promise<string[]> {
    const names = (await fs.readdir(dir).catch(() => [] as string[])).filter(isName);
    const dirs = await Promise.all(
      names.map(async name => {
        const stat = await fs.lstat(path.join(dir, name)).catch(() => undefined);
        const problem = stat ? storeDirProblem(stat, this.uid) : 'is gone';
        if (problem) core.debug(`Skipping ${path.join(dir, name)}: it ${problem}`);
        return problem ? undefined : name;
      })
    );
    return dirs.filter(name => name !== undefined);
  }

  /**
   * Keeps the store within `maxBytes`: removes kept images beyond the newest few, then the oldest images
   * and the least recently used frames while it is over, the manifests beyond the newest few, and
   * temporary files no running job can still be writing.
   */
  async enforceLimit(maxBytes: number): Promise<StoreBound> {
    const now = Date.now();
    const temporaries = await this.listFiles(path.join(this.root, 'tmp'), name =>
      TEMPORARY_NAME.test(name) ? name : undefined
    );
    for (const temporary of temporaries)
      if (now - temporary.mtimeMs > STALE_TEMPORARY_MS) await removeFile(temporary.file);
    const manifests = await this.listFiles(path.join(this.root, 'manifests'), name => keyOfName(name, MANIFEST_SUFFIX));
    for (const old of manifests.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(MANIFESTS_KEPT)) await removeFile(old.file);

    const framesDir = path.join(this.root, 'frames');
    const frames: StoredFile[] = [];
    for (const shard of await this.listDirs(framesDir, name => SHARD_NAME.test(name)))
      frames.push(
        ...(await this.listFiles(path.join(framesDir, shard), name => (isFrameName(shard, name) ? name : undefined)))
      );
    // Images of an earlier boot: each file, then the directory once empty; never a tree.
    const allImages = path.join(this.root, 'images');
    for (const boot of await this.listDirs(allImages, name => name !== bootId && BOOT_NAME.test(name))) {
      const dir = path.join(allImages, boot);
      for (const image of await this.listFiles(dir, name => keyOfName(name, IMAGE_SUFFIX)))
        await removeFile(image.file);
      await fs.rmdir(dir).catch(() => undefined);
    }
    const imagesDir = this.imagesDir();
    const images = (imagesDir ? await this.listFiles(imagesDir, name => keyOfName(name, IMAGE_SUFFIX)) : []).sort(
      (a, b) => b.mtimeMs - a.mtimeMs
    );
    let bytes = [...frames, ...images].reduce((sum, file) => sum + file.size, 0);
    let removedFrames = 0;
    let removedImages = 0;
    let removedBytes = 0;
    const remove = async (file: StoredFile) => {
      await removeFile(file.file);
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
