// Reading a stopped daemon's filesystem image for a save: its used chunks, each with the blocks no file
// uses zeroed, and the hash that names its content.
import { createHash, webcrypto } from 'node:crypto';
import type * as fs from 'node:fs/promises';
import { CHUNK_BYTES } from '../../daemon/data-image';
import type { BlockRange, Ext4Layout } from './ext4';

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

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const ZERO_CHUNK = Buffer.alloc(CHUNK_BYTES);
/**
 * Chunks read and hashed ahead of the one visited: reads and sha256 (WebCrypto's digest runs on libuv's
 * pool) then overlap each other and the visits, where one chunk at a time left a core idle.
 */
const SCAN_AHEAD = 4;

interface ScannedChunk {
  position: number;
  data: Buffer;
  hash: string;
}

/**
 * Reads each used chunk of the image, with its unused blocks zeroed (what a free block held is of no
 * use to anyone, and zeroes make the same content hash the same), and hands it to `visit` with its
 * hash, in the order of the image. Chunks of zeroes are skipped: a restore leaves a hole there, which
 * reads the same. `visit` may keep the buffer: every chunk gets its own. Returns the number of chunks
 * visited.
 */
export async function scanImage(
  image: fs.FileHandle,
  layout: Ext4Layout,
  visit: (position: number, data: Buffer, hash: string) => Promise<void>
): Promise<number> {
  const read = async ({ position, used }: UsedChunk) => {
    const data = Buffer.allocUnsafe(CHUNK_BYTES);
    const { bytesRead } = await image.read(data, 0, CHUNK_BYTES, position * CHUNK_BYTES);
    let from = 0;
    for (const [start, end] of used) {
      data.fill(0, from * layout.blockBytes, start * layout.blockBytes);
      from = end;
    }
    data.fill(0, Math.min(from * layout.blockBytes, bytesRead));
    if (data.equals(ZERO_CHUNK)) return undefined;
    const hash = Buffer.from(await webcrypto.subtle.digest('SHA-256', data)).toString('hex');
    return { position, data, hash };
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
    await visit(chunk.position, chunk.data, chunk.hash);
    visited++;
  }
  return visited;
}
