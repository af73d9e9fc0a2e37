// The chunks a save reads from the data image: which hold used blocks, and what a scan visits.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHUNK_BYTES, prepareDataDir } from '../../../../src/daemon/data-image';
import { readLayout, type Ext4Layout } from '../../../../src/cache/image/ext4';
import { scanImage, usedChunks } from '../../../../src/cache/image/scan';
import { decompressFrame, sha256 } from '../../../../src/cache/image/zstd';
import { defined } from '../../../support/defined';

const GIB = 2 ** 30;

test('usedChunks: the chunks that hold used blocks, with the blocks inside each', () => {
  const blocksPerChunk = CHUNK_BYTES / 4096;
  const layout: Ext4Layout = {
    blockBytes: 4096,
    blockCount: 10 * blocksPerChunk,
    clean: true,
    used: [
      [0, 3],
      [10, 20],
      [blocksPerChunk - 1, blocksPerChunk + 2],
      [5 * blocksPerChunk, 7 * blocksPerChunk]
    ]
  };
  expect(usedChunks(layout)).toEqual([
    {
      position: 0,
      used: [
        [0, 3],
        [10, 20],
        [blocksPerChunk - 1, blocksPerChunk]
      ]
    },
    { position: 1, used: [[0, 2]] },
    { position: 5, used: [[0, blocksPerChunk]] },
    { position: 6, used: [[0, blocksPerChunk]] }
  ]);
});

describe('scanImage on a real filesystem', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'data-image-test-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function scan(file: string, known?: Set<string>): Promise<Map<number, string>> {
    const handle = await fs.promises.open(file, 'r');
    try {
      const layout = await readLayout(handle);
      const chunks = new Map<number, string>();
      const count = await scanImage(
        handle,
        layout,
        async (position, hash, frame) => {
          // A known chunk comes without its frame; every other with the frame of what was hashed.
          if (known?.has(hash)) expect(frame).toBeUndefined();
          else expect(sha256(await decompressFrame(defined(frame, 'frame'), CHUNK_BYTES))).toBe(hash);
          // In the image's order, though chunks are read and hashed ahead.
          expect(position).toBeGreaterThan(Math.max(-1, ...chunks.keys()));
          chunks.set(position, hash);
        },
        known
      );
      expect(count).toBe(chunks.size);
      return chunks;
    } finally {
      await handle.close();
    }
  }

  test('what free blocks held does not change a chunk; data does; chunks of zeroes are not visited', async () => {
    const tree = path.join(dir, 'tree');
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, 'file'), Buffer.alloc(3 * CHUNK_BYTES, 9));
    const image = await prepareDataDir(path.join(dir, 'data'), 4 * GIB, 'new');
    execFileSync('mke2fs', [
      '-t',
      'ext4',
      '-q',
      '-F',
      '-b',
      '4096',
      '-m',
      '0',
      '-i',
      '8192',
      '-J',
      'size=4',
      '-d',
      tree,
      image
    ]);
    const before = await scan(image);
    // Every visited chunk holds something; the file's three full chunks are there by content.
    expect(before.size).toBeGreaterThan(3);
    expect([...before.values()]).toContain(sha256(Buffer.alloc(CHUNK_BYTES, 9)));
    // Garbage in free blocks (a chunk far past anything used) is not seen at all.
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.alloc(CHUNK_BYTES, 0xee), 0, CHUNK_BYTES, 3 * GIB);
    // Garbage in a free block of a used chunk is zeroed.
    const handle = await fs.promises.open(image, 'r');
    const partly = defined(
      usedChunks(await readLayout(handle)).find(chunk => chunk.used[0][1] < CHUNK_BYTES / 4096),
      'chunk used in part'
    );
    await handle.close();
    const freeBlock = partly.used[0][1];
    fs.writeSync(fd, Buffer.alloc(4096, 0xee), 0, 4096, partly.position * CHUNK_BYTES + freeBlock * 4096);
    fs.closeSync(fd);
    expect(await scan(image)).toEqual(before);
    // Chunks of known content are hashed, not compressed.
    const file = sha256(Buffer.alloc(CHUNK_BYTES, 9));
    expect(await scan(image, new Set([file]))).toEqual(before);
  });
});
