// A saved state's bytes as standard tools would move them: the frames its chunks use, where they are in
// which part, grouped into byte ranges of the parts for N parallel `curl -r` streams (each cut at frame
// boundaries, so that `zstd -d` decodes each stream's bytes on their own: a part is a plain
// concatenation of zstd frames, one per 1 MiB chunk).
import { decodeManifest, type Manifest } from '../../src/cache/manifest';
import { CHUNK_BYTES } from '../../src/daemon/data-image';

/** Bytes [start, end) of one part. */
export interface Span {
  part: number;
  start: number;
  end: number;
}

export interface StatePlan {
  manifest: Manifest;
  /** Every frame the chunks use, once, in part and offset order. */
  frames: number;
  /** Their compressed bytes: what a restore without a local store downloads. */
  compressedBytes: number;
  /** Their bytes decompressed (frames × 1 MiB): what standard tools write. */
  uniqueBytes: number;
  /** Chunks × 1 MiB: what the action writes into the image (a frame used at two positions is written twice). */
  writtenBytes: number;
}

export async function readManifest(blob: Buffer): Promise<Manifest> {
  return decodeManifest(blob, { maxImageBytes: 2 ** 42, maxWriteBytes: 2 ** 42 });
}

/** The frames the state's chunks use, sorted by part and offset. */
function usedFrames(manifest: Manifest): number[] {
  const used = [...new Set(manifest.chunks.map(([, frame]) => frame))];
  if (used.some(index => manifest.frames[index].part < 0))
    throw new Error(`${manifest.key} has frames in no part (saved to a runner's store only)`);
  return used.sort(
    (a, b) => manifest.frames[a].part - manifest.frames[b].part || manifest.frames[a].offset - manifest.frames[b].offset
  );
}

export function describeState(manifest: Manifest): StatePlan {
  const used = usedFrames(manifest);
  return {
    manifest,
    frames: used.length,
    compressedBytes: used.reduce((sum, index) => sum + manifest.frames[index].length, 0),
    uniqueBytes: used.length * CHUNK_BYTES,
    writtenBytes: manifest.chunks.length * CHUNK_BYTES
  };
}

/**
 * The used frames in `streams` groups of consecutive frames with about the same compressed bytes each,
 * every group as the fewest contiguous spans of the parts.
 */
export function splitSpans(manifest: Manifest, streams: number): Span[][] {
  const used = usedFrames(manifest);
  const total = used.reduce((sum, index) => sum + manifest.frames[index].length, 0);
  const groups: Span[][] = [];
  let group: Span[] = [];
  let done = 0;
  for (const index of used) {
    const frame = manifest.frames[index];
    const last = group[group.length - 1];
    if (last && last.part === frame.part && last.end === frame.offset) last.end = frame.offset + frame.length;
    else group.push({ part: frame.part, start: frame.offset, end: frame.offset + frame.length });
    done += frame.length;
    // Close the group once it holds its share of what has been done so far.
    if (groups.length < streams - 1 && done >= (total * (groups.length + 1)) / streams) {
      groups.push(group);
      group = [];
    }
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** One line per span: `<first byte>-<last byte> <url>`, for the curl loops of bench/run.ts. */
export function spanLines(spans: Span[], urls: string[]): string {
  return spans.map(span => `${span.start}-${span.end - 1} ${urls[span.part]}\n`).join('');
}
