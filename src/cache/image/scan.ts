// Reading a stopped daemon's filesystem image for a save: its used chunks, each with the blocks no file
// uses zeroed, the hash that names its content and its zstd frame.
import type * as fs from 'node:fs/promises';
import { CHUNK_BYTES } from '../../daemon/data-image';
import type { BlockRange, Ext4Layout } from './ext4';
import { packChunk } from './zstd';

/** A chunk position that holds used blocks, with the used block ranges inside it. */
interface UsedChunk {
  position: number;
  used: BlockRange[];
}

/** Chunk positions that hold used blocks, ascending, with the used block ranges inside each. */
export function usedChunks(layout: Ext4Layout): UsedChunk[] {
  const blocksPerChunk = CHUNK_BYTES / layout.blockBytes;
  const chunks: UsedChunk[] = [];
  for (const [start, end] of layout.used) {
    for (let block = start; block < end;) {
      const position = Math.floor(block / blocksPerChunk);
      const chunkEnd = Math.min(end, (position + 1) * blocksPerChunk);
      const last = chunks[chunks.length - 1];
      const range: BlockRange = [block - position * blocksPerChunk, chunkEnd - position * blocksPerChunk];
      if (last?.position === position) last.used.push(range);
      else chunks.push({ position, used: [range] });
      block = chunkEnd;
    }
  }
  return chunks;
}

/**
 * Chunks read, hashed and compressed ahead of the one visited, on the workers (workers.ts): they then
 * overlap each other and the visits.
 */
const SCAN_AHEAD = 8;

interface ScannedChunk {
  position: number;
  hash: string;
  frame?: Buffer;
}

/**
 * Reads each used chunk of the image, with its unused blocks zeroed (what a free block held is of no
 * use to anyone, and zeroes make the same content hash the same), and hands it to `visit` with its
 * hash and its zstd frame, in the order of the image; a chunk whose hash is `known` comes without its
 * frame (it is not compressed). Chunks of zeroes are skipped: a restore leaves a hole there, which
 * reads the same. Returns the number of chunks visited.
 */
export async function scanImage(
  image: fs.FileHandle,
  layout: Ext4Layout,
  visit: (position: number, hash: string, frame: Buffer | undefined) => Promise<void>,
  known: ReadonlySet<string> = new Set()
): Promise<number> {
  const read = async ({ position, used }: UsedChunk): Promise<ScannedChunk | undefined> => {
    const keep = used.map(([start, end]): [number, number] => [start * layout.blockBytes, end * layout.blockBytes]);
    const packed = await packChunk(image.fd, position * CHUNK_BYTES, keep, known);
    return packed && { position, ...packed };
  };
  const chunks = usedChunks(layout);
  const ahead: Array<Promise<ScannedChunk | undefined>> = [];
  const readNext = (index: number) => {
    if (index >= chunks.length) return;
    const scanned = read(chunks[index]);
    // Awaited in turn below; a failure ahead of a visit that throws first is not news.
    scanned.catch(() => undefined);
    ahead.push(scanned);
  };
  for (let index = 0; index < SCAN_AHEAD; index++) readNext(index);
  let visited = 0;
  for (let index = 0; index < chunks.length; index++) {
    readNext(index + SCAN_AHEAD);
    const chunk = await ahead.shift();
    if (!chunk) continue;
    await visit(chunk.position, chunk.hash, chunk.frame);
    visited++;
  }
  return visited;
}
