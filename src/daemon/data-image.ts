// The daemon's /var/lib/docker lives in an ext4 filesystem inside one sparse file that the job's user
// owns, in the instance's data directory on the runner. The privileged dind container loop-mounts it
// (entrypoint.sh): no file of the daemon's ever appears on the runner's own filesystem, so caching it
// needs no root or sudo, restoring it writes a few large chunks instead of creating every file, and
// removing it is one unlink whatever it holds.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CONTAINER_SETUP_DIR } from './facts';

/**
 * The image is read and written in chunks of this size: a new one is a whole number of them, and they
 * are what a saved state is made of (the unit of deduplication).
 */
export const CHUNK_BYTES = 1024 * 1024;

/** Where the data directory is mounted in the dind container. */
export const CONTAINER_DATA_DIR = `${CONTAINER_SETUP_DIR}/data`;

/** Files of the data directory: the image, what main asks of the entrypoint, what it reports back. */
export const DataFiles = {
  image: 'docker.img',
  /** What the image holds (DataMode), for the entrypoint; it rewrites `new` to `restored` once made. */
  mode: 'mode',
  /** One line per step the entrypoint took: see DataEvent. */
  events: 'events',
  /** The restored state's manifest, for post to know which chunks the cache has already. */
  manifest: 'manifest.json'
} as const;

/**
 * `filling`: main is writing a restored state into the image, which the entrypoint may attach to a
 * loop device before it is filled (so that attaching writes nothing back) but must not read yet. Then
 * once main is done: `new` (make a filesystem), `restored` (check the one there) or `grown` (check
 * it, then grow it to the image's size: main made the image larger than the saved filesystem).
 */
export type DataMode = 'new' | 'filling' | 'restored' | 'grown';

/**
 * What the entrypoint reports: `attached` (it holds the image main fills on loop devices),
 * `discarded <why>` (a restored image failed its check, a fresh one replaced it), `mounted`,
 * `plain <why>` (no loop device: the daemon's data is a plain directory in the container and nothing
 * is cached), `unmounted` (dockerd stopped and the filesystem is clean).
 */
export interface DataEvents {
  attached: boolean;
  mounted: boolean;
  /** How long checking, growing or making the filesystem and mounting it took, as the entrypoint says. */
  mountedIn?: string;
  plain?: string;
  discarded?: string;
  unmounted: boolean;
}

export function parseDataEvents(text: string): DataEvents {
  const events: DataEvents = { attached: false, mounted: false, unmounted: false };
  for (const line of text.split('\n')) {
    const [word, ...rest] = line.trim().split(' ');
    const reason = rest.join(' ');
    if (word === 'attached') events.attached = true;
    else if (word === 'mounted') {
      events.mounted = true;
      events.mountedIn = reason.replace(/^in /, '') || undefined;
    } else if (word === 'unmounted') events.unmounted = true;
    else if (word === 'plain') events.plain = reason;
    else if (word === 'discarded') events.discarded = reason;
  }
  return events;
}

export async function readDataEvents(dataDir: string): Promise<DataEvents> {
  const text = await fs.readFile(path.join(dataDir, DataFiles.events), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return parseDataEvents(text);
}

export interface Writeback {
  /** Stops writing back, once the writeback under way has ended. */
  stop(): Promise<void>;
  /** Stops, then writes back what is left unless the entrypoint holds the image. */
  finish(): Promise<void>;
}

/**
 * Writes the image main fills back to disk while the entrypoint has not attached it: attaching a
 * file, or checking it, first writes back all its dirty pages (0.5 s for 100 MB here), which would
 * then delay the daemon's start; written meanwhile, that overlaps the restore. Once the entrypoint
 * holds the image on loop devices, nothing needs writing back.
 */
export function writeBackUntilAttached(dataDir: string, image: fs.FileHandle, periodMs = 50): Writeback {
  let attached = false;
  let running: Promise<void> | undefined;
  const writeBack = async () => {
    attached ||= (await readDataEvents(dataDir)).attached;
    if (attached) clearInterval(timer);
    else await image.datasync();
  };
  const timer = setInterval(() => {
    // A failure here is the final one's to report.
    running ??= writeBack()
      .catch(() => undefined)
      .finally(() => (running = undefined));
  }, periodMs);
  const stop = async () => {
    clearInterval(timer);
    await running;
  };
  return {
    stop,
    async finish() {
      await stop();
      await writeBack();
    }
  };
}

const GIB = 1024 ** 3;
/** Below this a daemon can hardly pull an image; above it, inode tables and bitmaps only grow. */
export const MIN_IMAGE_BYTES = 2 * GIB;
export const MAX_IMAGE_BYTES = 4096 * GIB;

/**
 * The size of a new filesystem: as large as the free space of the runner's disk where it lives (the
 * file is sparse, so the daemon can use what the runner has, as it could without the image), in whole
 * chunks, within sane bounds.
 */
export function newImageBytes(freeBytes: number): number {
  const bounded = Math.min(MAX_IMAGE_BYTES, Math.max(MIN_IMAGE_BYTES, freeBytes));
  return Math.floor(bounded / CHUNK_BYTES) * CHUNK_BYTES;
}

/**
 * The largest filesystem a restore takes on a runner with `freeBytes` free: twice the one it would
 * make. Checking a filesystem costs with its size whatever it holds (e2fsck -fn of an empty 2 TiB
 * one: 2.8 s of CPU, 4 TiB: twice that), so an entry cannot choose that cost beyond what this
 * runner's own filesystem costs; a state saved on a runner of the same kind is always within it.
 */
export function maxRestoredImageBytes(freeBytes: number): number {
  return Math.min(MAX_IMAGE_BYTES, 2 * newImageBytes(freeBytes));
}

export async function freeBytes(dir: string): Promise<number> {
  const stats = await fs.statfs(dir);
  return stats.bavail * stats.bsize;
}

/**
 * The data directory with a new sparse image of `bytes` and the mode for the entrypoint. The image is
 * made aside and renamed over the name: the entrypoint may hold an earlier image (a state whose
 * restore failed, mode still `filling`) on loop devices, and emptying that file in place would show
 * them a file of another size and content under the same inode, which they would keep.
 */
export async function prepareDataDir(dataDir: string, bytes: number, mode: DataMode): Promise<string> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o755 });
  const image = path.join(dataDir, DataFiles.image);
  const aside = `${image}.new`;
  await fs.rm(aside, { force: true });
  const handle = await fs.open(aside, 'wx', 0o644);
  try {
    await handle.truncate(bytes);
  } finally {
    await handle.close();
  }
  await fs.rename(aside, image);
  await writeMode(dataDir, mode);
  return image;
}

/**
 * The data directory around an image `take` moves into place whole (a state the runner's store kept)
 * and hands back open, grown to `bytes` if smaller; false when there was none to take.
 */
export async function adoptImage(
  dataDir: string,
  bytes: number,
  take: (image: string) => Promise<fs.FileHandle | undefined>
): Promise<boolean> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o755 });
  const handle = await take(path.join(dataDir, DataFiles.image));
  if (!handle) return false;
  try {
    // Through the descriptor the store checked, not by its name.
    if ((await handle.stat()).size < bytes) await handle.truncate(bytes);
  } finally {
    await handle.close();
  }
  await writeMode(dataDir, 'filling');
  return true;
}

/** A fresh, empty data directory (no cache, or nothing to restore): the entrypoint makes the filesystem. */
export async function prepareEmptyData(dataDir: string): Promise<void> {
  await prepareDataDir(dataDir, newImageBytes(await freeBytes(path.dirname(dataDir))), 'new');
}

/** Whole or not at all (the entrypoint polls it): written aside, then renamed over. */
export async function writeMode(dataDir: string, mode: DataMode): Promise<void> {
  const aside = path.join(dataDir, `${DataFiles.mode}.new`);
  await fs.writeFile(aside, `${mode}\n`);
  await fs.rename(aside, path.join(dataDir, DataFiles.mode));
}
