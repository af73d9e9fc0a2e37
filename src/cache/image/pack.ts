// Saves the stopped daemon's filesystem image as a new state: every used chunk is hashed, the ones the
// cache holds already (in the parts of the state restored) are referenced, and only the others are
// compressed into one new part, uploaded while the scan goes on (so under a name of its own, not one
// its content could give). A small manifest lists it all. Parts that hold
// little of what the new state needs are left behind (their chunks go into the new part), so a
// state never spreads over more than MAX_LIVE_PARTS parts and old parts can age out of the cache.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { LOOKUP_CONCURRENCY, type ServiceStore } from '../stores/service';
import type { WriteOutcome } from '../stores/store';
import { CHUNK_BYTES, DataFiles } from '../../daemon/data-image';
import { readLayout } from './ext4';
import { scanImage } from './scan';
import type { LocalStore } from '../stores/local';
import { LOCAL_ONLY, type Frame, type Manifest, type PartRef } from '../manifest';
import type { LastUsed } from '../usage';
import { runAll } from '../../util/run-all';
import { MANIFEST_FORMAT, PART_KEY_PREFIX } from '../format';

/** A state spreads over at most this many parts (the new one included): restores look each up. */
export const MAX_LIVE_PARTS = 8;
/** A part whose bytes are mostly chunks the state no longer uses is not referenced any more. */
const MIN_LIVE_SHARE = 0.5;
/** Where a new frame goes until the new part has its place in the list. */
const NEW_PART = -2;
/** Variants of a key tried when an earlier save reserved it and never committed it. */
const KEY_VARIANTS = 3;

/** A new part's name: 64 hex digits of its own. */
export function partKey(id: string): string {
  return `${PART_KEY_PREFIX}${id}`;
}

/** A part of the restored state and what the new state would still use of it. */
export interface PartUse {
  part: PartRef;
  liveBytes: number;
}

/**
 * Pure: which of the restored state's parts the new state keeps referencing. Parts mostly dead are
 * dropped, then the ones with the least live data until at most MAX_LIVE_PARTS - 1 remain, leaving
 * room for the new part.
 */
export function partsToKeep(uses: PartUse[]): Set<string> {
  const worth = uses.filter(use => use.liveBytes > 0 && use.liveBytes >= use.part.bytes * MIN_LIVE_SHARE);
  const kept = [...worth].sort((a, b) => b.liveBytes - a.liveBytes).slice(0, MAX_LIVE_PARTS - 1);
  return new Set(kept.map(use => use.part.key));
}

/** A frame of the restored state that the new state references again, with its part (none: LOCAL_ONLY). */
export interface ReusedFrame {
  frame: Frame;
  part?: PartRef;
}

/**
 * Pure: the restored state's frames, by content, that a new state references instead of storing them
 * again. `present[i]`: the restored state's part i is still in the cache service. Saved to the cache
 * service (`remote`), a frame is reused only from a present part that partsToKeep keeps (what each part
 * holds of the restored state decides); saved to the runner's store alone, every frame is, whatever its
 * part. A frame only in the runner's store (LOCAL_ONLY) is never referenced from the cache service.
 */
export function reusableFrames(
  restored: Manifest | undefined,
  present: boolean[],
  remote: boolean
): Map<string, ReusedFrame> {
  if (!restored) return new Map();
  const known = new Map<string, Frame>();
  for (const frame of restored.frames) if (frame.part < 0 || present[frame.part]) known.set(frame.hash, frame);
  const liveBytes = new Map<number, number>();
  for (const index of new Set(restored.chunks.map(([, frame]) => frame))) {
    const frame = restored.frames[index];
    if (frame.part >= 0 && present[frame.part])
      liveBytes.set(frame.part, (liveBytes.get(frame.part) ?? 0) + frame.length);
  }
  const keep = remote
    ? partsToKeep(restored.parts.map((part, i) => ({ part, liveBytes: liveBytes.get(i) ?? 0 })))
    : new Set(restored.parts.map(part => part.key));
  const reusable = new Map<string, ReusedFrame>();
  for (const [hash, frame] of known) {
    if (frame.part < 0) {
      if (!remote) reusable.set(hash, { frame });
      continue;
    }
    const part = restored.parts[frame.part];
    if (part && keep.has(part.key)) reusable.set(hash, { frame, part });
  }
  return reusable;
}

export class SizeLimitError extends Error {}

/** What a save needs of the cache service: its blobs and manifests, a name's committed variant, the bytes sent. */
export type SaveService = Pick<ServiceStore, 'has' | 'match' | 'write' | 'writeManifest' | 'uploadedBytes'>;
/** What a save needs of the runner's store. */
export type SaveStore = Pick<LocalStore, 'has' | 'write' | 'writeManifest'>;

export interface SaveInput {
  dataDir: string;
  /** The cache service to upload to; none: save to the runner's store alone. */
  service?: SaveService;
  /** The runner's own store (input cache-dir), which gets every frame of the state and its manifest. */
  store?: SaveStore;
  /** The manifest key: the content key, with variants tried if it is stuck. */
  key: string;
  imageId: string;
  lastUsed: LastUsed;
  /** The state main restored, whose parts may be referenced again. */
  restored?: Manifest;
  /** Refuse to save a state whose frames take more than this. */
  maxBytes: number;
}

export interface SaveResult {
  saved: boolean;
  key?: string;
  reason: string;
  /** Bytes sent to the cache service: the new part and the manifest. */
  uploadedBytes: number;
  /** Bytes of the state stored in parts that were there already. */
  reusedBytes: number;
  /** Bytes of the state's frames in all. */
  storedBytes: number;
  /** Bytes of frames written to the runner's store. */
  localBytes: number;
  chunks: number;
}

/**
 * Writes under `key` or one of its variants (`write` stores the blob under the name it is given);
 * `existing` when an entry with this name is committed.
 */
async function writeSlot(
  service: SaveService,
  key: string,
  write: (name: string) => Promise<WriteOutcome>
): Promise<{ key: string } | { existing: string } | { stuck: string }> {
  for (let variant = 1; variant <= KEY_VARIANTS; variant++) {
    const candidate = variant === 1 ? key : `${key}.${variant}`;
    // A lookup by key also matches by prefix: an entry `<key>.N` is the same thing.
    const existing = await service.match(candidate);
    if (existing) return { existing };
    if ((await write(candidate)) === 'written') return { key: candidate };
  }
  return { stuck: `${key} is reserved by earlier saves that did not finish` };
}

/** Bytes of frames waiting for the upload, at most: beyond, the scan waits (memory stays bounded). */
const PART_QUEUE_BYTES = 64 * 1024 * 1024;

/** The new part's frames, in order, for an upload that starts with the first and reads as they come. */
class PartStream implements AsyncIterable<Buffer> {
  /** Bytes appended so far. */
  bytes = 0;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure?: { error: unknown };
  private wakeReader?: () => void;
  private wakeWriter?: () => void;

  /** Appends a frame and gives its offset; waits while the upload is far behind, throws once it failed. */
  async append(frame: Buffer): Promise<number> {
    this.throwIfFailed();
    const offset = this.bytes;
    this.bytes += frame.length;
    this.queue.push(frame);
    this.queued += frame.length;
    this.wake();
    for (;;) {
      this.throwIfFailed();
      if (this.queued <= PART_QUEUE_BYTES) return offset;
      await new Promise<void>(resolve => (this.wakeWriter = resolve));
    }
  }

  /** No more frames: the upload ends with the last one queued. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** The part will not be complete (the scan failed, or the upload did): both sides stop. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      this.throwIfFailed();
      const next = this.queue.shift();
      if (next) {
        this.queued -= next.length;
        if (this.queued <= PART_QUEUE_BYTES) this.wake();
        yield next;
      } else if (this.ended) return;
      else await new Promise<void>(resolve => (this.wakeReader = resolve));
    }
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  private wake(): void {
    const waiting = [this.wakeReader, this.wakeWriter];
    this.wakeReader = this.wakeWriter = undefined;
    for (const resume of waiting) resume?.();
  }
}

/** A new part on its way to the cache service: its frames go up while the scan makes them. */
interface NewPart {
  key: string;
  stream: PartStream;
  written: Promise<WriteOutcome>;
}

function refused(key: string): Error {
  return new Error(`the new part cannot be stored: the cache service reserved no entry for ${key}`);
}

function startPart(service: SaveService): NewPart {
  const key = partKey(randomBytes(32).toString('hex'));
  const stream = new PartStream();
  const written = service.write(key, stream);
  // An upload that fails, or never starts (the service reserved no entry), stops the scan at its next
  // frame: nothing would read the frames, and the scan would wait for it forever.
  written.then(
    outcome => outcome === 'written' || stream.fail(refused(key)),
    (error: unknown) => stream.fail(error)
  );
  return { key, stream, written };
}

/** Saves the image of the stopped daemon. Throws on failure (the caller warns). */
export async function saveState(input: SaveInput): Promise<SaveResult> {
  const image = await fs.open(path.join(input.dataDir, DataFiles.image), 'r');
  let part: NewPart | undefined;
  const { restored, store, service } = input;
  const remote = service !== undefined;
  try {
    const layout = await readLayout(image);
    if (!layout.clean) throw new Error('the filesystem was not unmounted cleanly');
    // Which restored parts are still in the cache service; in the runner's store only, where it is off.
    const present = new Array<boolean>(restored?.parts.length ?? 0).fill(!remote);
    if (restored && service) {
      await runAll(
        restored.parts.map((part, i) => async () => void (present[i] = await service.has(part.key))),
        LOOKUP_CONCURRENCY
      );
    }
    const reusable = reusableFrames(restored, present, remote);

    const parts: PartRef[] = [];
    const partIndex = new Map<string, number>();
    const frames: Frame[] = [];
    const frameOf = new Map<string, number>();
    const chunks: Array<[number, number]> = [];
    let storedBytes = 0;
    let reusedBytes = 0;
    let localBytes = 0;
    /** The index of an old part in the new manifest's parts, added on its first frame. */
    const partAt = (part: PartRef) => {
      let at = partIndex.get(part.key);
      if (at === undefined) {
        at = parts.push(part) - 1;
        partIndex.set(part.key, at);
      }
      return at;
    };
    const count = (length: number) => {
      storedBytes += length;
      if (storedBytes > input.maxBytes) throw new SizeLimitError();
    };
    // Chunks whose frames the state has already are not compressed again, unless the runner's store lost them.
    const known = new Set<string>();
    await Promise.all(
      [...reusable.keys()].map(async hash => {
        if (!store || (await store.has(hash))) known.add(hash);
      })
    );
    await scanImage(
      image,
      layout,
      async (position, hash, frame) => {
        let index = frameOf.get(hash);
        if (index === undefined) {
          index = frames.length;
          frameOf.set(hash, index);
          const old = reusable.get(hash);
          if (old) {
            frames.push({
              hash,
              part: old.part ? partAt(old.part) : LOCAL_ONLY,
              offset: old.frame.offset,
              length: old.frame.length
            });
            reusedBytes += old.frame.length;
            count(old.frame.length);
            // A frame of the state that the runner's store lost: written there again.
            if (store && frame) await store.write(hash, frame);
          } else {
            if (!frame) throw new Error(`the chunk ${hash} came without its frame`);
            let offset = 0;
            if (service) {
              part ??= startPart(service);
              offset = await part.stream.append(frame);
            }
            frames.push({ hash, part: remote ? NEW_PART : LOCAL_ONLY, offset, length: frame.length });
            count(frame.length);
            if (store) {
              await store.write(hash, frame);
              localBytes += frame.length;
            }
          }
        }
        chunks.push([position, index]);
      },
      known
    );

    if (part) {
      part.stream.end();
      if ((await part.written) !== 'written') throw refused(part.key);
      for (const frame of frames) if (frame.part === NEW_PART) frame.part = parts.length;
      parts.push({ key: part.key, bytes: part.stream.bytes });
    }

    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      key: input.key,
      parent: restored?.key,
      savedAt: new Date().toISOString(),
      imageId: input.imageId,
      lastUsed: input.lastUsed,
      filesystem: { type: 'ext4', bytes: layout.blockCount * layout.blockBytes },
      chunkBytes: CHUNK_BYTES,
      parts,
      frames,
      chunks
    };
    const sizes = () => ({
      uploadedBytes: service?.uploadedBytes ?? 0,
      reusedBytes,
      storedBytes,
      localBytes,
      chunks: chunks.length
    });
    if (service) {
      const slot = await writeSlot(service, input.key, name => service.writeManifest({ ...manifest, key: name }));
      if ('stuck' in slot) throw new Error(slot.stuck);
      if ('existing' in slot) {
        return { saved: false, reason: `a cache with this content exists already (${slot.existing})`, ...sizes() };
      }
      manifest.key = slot.key;
    }
    if (store) await store.writeManifest(manifest);
    return { saved: true, key: manifest.key, reason: `saved as ${manifest.key}`, ...sizes() };
  } catch (error) {
    // Never committed: the upload stops, and is over before the save's failure is told.
    if (part) {
      part.stream.fail(error);
      await part.written.catch(() => undefined);
    }
    throw error;
  } finally {
    await image.close();
  }
}
