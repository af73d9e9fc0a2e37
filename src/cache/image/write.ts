// Writes a saved state into a fresh filesystem image: the frames it needs are fetched over several
// connections at once (byte ranges of the parts that hold them, or files of the runner's own store),
// each decompressed, checked against its hash and written at its chunks' offsets while the others
// still arrive. The first failure stops everything; the caller then throws the image away.
import type { FileHandle } from 'node:fs/promises';
import * as core from '@actions/core';
import { DownloadError } from '../stores/blob-download';
import { LOCAL_ONLY, type Frame, type Manifest } from '../manifest';
import { writeFrameData } from './zstd';
import { FrameWorkerError } from './workers';
import type { BlobStore, ReadOptions } from '../stores/store';
import { runAll } from '../../util/run-all';
import { shortId } from '../../util/units';
import { CHUNK_BYTES } from '../../daemon/data-image';

/** Parallel ranged GETs: a blob store serves each connection well below what several reach together. */
export const RESTORE_CONNECTIONS = 8;
/** One ranged GET asks for about this much, so that the connections share the work evenly. */
const RANGE_BYTES = 8 * 1024 * 1024;
/** Frames of a part that no chunk needs are skipped over when the gap is larger than this. */
const MAX_GAP_BYTES = 256 * 1024;

export interface FrameRange {
  part: number;
  /** Byte offsets in the part, `end` exclusive. */
  start: number;
  end: number;
  frames: number[];
}

/** Groups the frames to fetch into ranged GETs: neighbours in a part together, up to RANGE_BYTES each. */
export function planRanges(
  frames: Frame[],
  wanted: number[],
  rangeBytes = RANGE_BYTES,
  maxGap = MAX_GAP_BYTES
): FrameRange[] {
  const sorted = [...wanted].sort((a, b) => frames[a].part - frames[b].part || frames[a].offset - frames[b].offset);
  const ranges: FrameRange[] = [];
  for (const index of sorted) {
    const frame = frames[index];
    const last = ranges[ranges.length - 1];
    const end = frame.offset + frame.length;
    if (
      last &&
      last.part === frame.part &&
      frame.offset >= last.end &&
      frame.offset - last.end <= maxGap &&
      end - last.start <= rangeBytes
    ) {
      last.end = end;
      last.frames.push(index);
    } else {
      ranges.push({ part: frame.part, start: frame.offset, end, frames: [index] });
    }
  }
  return ranges;
}

export interface WriteProgress {
  /** Bytes downloaded from the cache service. */
  downloadedBytes: number;
  /** Bytes of frames read from the runner's own store. */
  localBytes: number;
  /** Bytes written into the image. */
  writtenBytes: number;
  /**
   * The frames checked against their hash, by index, each with the reference it was checked at: the
   * frame itself when fetched from its part, LOCAL_ONLY when the runner's store gave it.
   */
  checked: Map<number, Frame>;
}

export class FrameCheckError extends Error {}

/**
 * Buffers for the ranges in flight, used again and again: each is written by its download and read by
 * the workers in place, being shared memory. No buffer per range, and no copy per frame: their copies,
 * page faults and garbage collection would cost the main thread more than the HTTP parsing does.
 */
class RangeBuffers {
  private readonly idle: Buffer[] = [];

  /** A buffer of at least `bytes`: an idle one, or a new one. */
  take(bytes: number): Buffer {
    const index = this.idle.findIndex(buffer => buffer.length >= bytes);
    if (index >= 0) return this.idle.splice(index, 1)[0];
    return Buffer.from(new SharedArrayBuffer(Math.max(bytes, RANGE_BYTES)));
  }

  /** Only once nothing reads it any more. */
  give(buffer: Buffer): void {
    this.idle.push(buffer);
  }
}

/** Decompresses a frame, checks it is the chunk the manifest says, and writes that at each of `offsets`. */
export async function writeFrame(
  frame: Frame,
  compressed: Buffer,
  image: FileHandle,
  offsets: number[]
): Promise<void> {
  if (compressed.length !== frame.length)
    throw new FrameCheckError(`frame ${shortId(frame.hash)} is ${compressed.length} bytes, not ${frame.length}`);
  const outcome = await writeFrameData(compressed, { hash: frame.hash, bytes: CHUNK_BYTES }, image, offsets).catch(
    (error: unknown) => {
      // Corrupt bytes may break the frame itself before its content can be compared.
      if (error instanceof FrameWorkerError && error.undecodable)
        throw new FrameCheckError(`frame ${shortId(frame.hash)} does not decompress (${error.message})`, {
          cause: error
        });
      throw error;
    }
  );
  if (outcome === 'mismatch')
    throw new FrameCheckError(`frame ${shortId(frame.hash)} does not hold the content its hash names`);
}

/**
 * Fetches every frame the manifest's chunks need and writes each chunk into `image`. `locate` finds
 * the parts that hold frames the runner's store does not (by index in the manifest's parts) and gives
 * the store that reads them by key; it throws when one cannot be had.
 */
export async function writeState(
  image: FileHandle,
  manifest: Manifest,
  locate: (parts: number[]) => Promise<Pick<BlobStore, 'read'>>,
  local: BlobStore | undefined,
  connections = RESTORE_CONNECTIONS
): Promise<WriteProgress> {
  const progress: WriteProgress = { downloadedBytes: 0, localBytes: 0, writtenBytes: 0, checked: new Map() };
  const positions = new Map<number, number[]>();
  for (const [position, frame] of manifest.chunks) {
    const list = positions.get(frame);
    if (list) list.push(position);
    else positions.set(frame, [position]);
  }
  const wanted = [...positions.keys()];
  const kept = local
    ? await Promise.all(wanted.map(async index => ((await local.has(manifest.frames[index].hash)) ? index : -1)))
    : [];
  const localIndexes = new Set(kept.filter(index => index >= 0));
  const remote = wanted.filter(index => !localIndexes.has(index));
  const nowhere = remote.filter(index => manifest.frames[index].part === LOCAL_ONLY);
  if (nowhere.length > 0)
    throw new Error(`${nowhere.length} of its frames are in no part and not in the runner's store`);
  const ranges = planRanges(manifest.frames, remote);
  core.debug(
    `Restore plan: ${wanted.length} frames for ${manifest.chunks.length} chunks; ${localIndexes.size} from the runner's store, ${remote.length} in ${ranges.length} ranges from the cache service, ${connections} at a time`
  );
  const located = new Set(ranges.map(range => range.part));
  let parts = located.size > 0 ? await locate([...located]) : undefined;
  const read = async (part: number, options: ReadOptions) => {
    const body = await parts?.read(manifest.parts[part].key, options);
    if (!body) throw new Error(`part ${manifest.parts[part].key} cannot be downloaded`);
    return body;
  };

  const put = async (index: number, compressed: Buffer) => {
    // Every frame written is one of `wanted`, the keys of `positions`.
    const at = positions.get(index);
    if (!at) throw new Error(`frame ${index} is at no position of the image`);
    await writeFrame(
      manifest.frames[index],
      compressed,
      image,
      at.map(position => position * CHUNK_BYTES)
    );
    progress.writtenBytes += at.length * CHUNK_BYTES;
  };
  const buffers = new RangeBuffers();
  const fetch = async (range: FrameRange) => {
    const bytes = range.end - range.start;
    const into = buffers.take(bytes);
    const frames = range.frames.map(index => manifest.frames[index]);
    // Each frame goes to the workers as soon as its last byte is in, so that a range's download and its
    // frames' decompression overlap. Every one settles before the range does, so nothing writes after
    // a failed restore has moved on, and nothing reads the buffer once it is given back.
    const opened: Array<Promise<void>> = [];
    const open = (received: number) => {
      for (let next = opened.length; next < frames.length; next = opened.length) {
        const frame = frames[next];
        const at = frame.offset - range.start;
        if (at + frame.length > received) return;
        const compressed = into.subarray(at, at + frame.length);
        const opening = put(range.frames[next], compressed).then(async () => {
          progress.checked.set(range.frames[next], frame);
          if (local) await local.write(frame.hash, compressed);
        });
        // Its failure is read once the download is over (allSettled below); until then a rejection
        // with no handler would end the process.
        opening.catch(() => undefined);
        opened.push(opening);
      }
    };
    // From the first frame not yet opened: a second try leaves the bytes the workers read alone.
    const get = () => {
      const from = opened.length < frames.length ? frames[opened.length].offset - range.start : bytes;
      if (from === bytes) return Promise.resolve();
      return read(range.part, {
        range: { offset: range.start + from, length: bytes - from },
        maxBytes: bytes - from,
        into: into.subarray(from),
        received: received => open(from + received)
      }).then(body => open(from + body.length));
    };
    let failure: { reason: unknown } | undefined;
    // A connection the store closed under a reused socket, or a server error: one more try.
    await get()
      .catch((error: unknown) => {
        if (!(error instanceof DownloadError) || !(error.status === 0 || error.status >= 500)) throw error;
        return get();
      })
      .catch((error: unknown) => (failure = { reason: error }));
    // No frame is opened once the download is over.
    const outcomes = await Promise.allSettled(opened);
    buffers.give(into);
    failure ??= outcomes.find(outcome => outcome.status === 'rejected');
    if (failure) throw failure.reason;
    progress.downloadedBytes += bytes;
  };
  const jobs: Array<() => Promise<void>> = [
    // localIndexes is empty without a local store.
    ...[...localIndexes].map(index => async () => {
      if (!local) throw new Error(`frame ${index} is read from the runner's store, but there is none`);
      const frame = manifest.frames[index];
      const compressed = await local.read(frame.hash, { maxBytes: frame.length });
      // Gone since `has` (another job's bound), or not a frame to read: from the cache service, if it holds it.
      if (!compressed) {
        if (frame.part === LOCAL_ONLY) throw new Error(`frame ${shortId(frame.hash)} left the runner's store`);
        const [range] = planRanges(manifest.frames, [index]);
        if (!located.has(range.part)) {
          parts = await locate([range.part]);
          located.add(range.part);
        }
        return fetch(range);
      }
      progress.localBytes += compressed.length;
      await put(index, compressed);
      progress.checked.set(index, { hash: frame.hash, part: LOCAL_ONLY, offset: 0, length: frame.length });
    }),
    ...ranges.map(range => () => fetch(range))
  ];
  await runAll(jobs, connections);
  return progress;
}
