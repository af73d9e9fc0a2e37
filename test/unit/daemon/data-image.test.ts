// The data image on the runner: its size, what the entrypoint reports, and the chunks a save reads.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { restoredImageBytes } from '../../../src/cache/restore';
import {
  MAX_IMAGE_BYTES,
  maxRestoredImageBytes,
  MIN_IMAGE_BYTES,
  newImageBytes,
  parseDataEvents,
  prepareDataDir,
  scanImage,
  sha256,
  usedChunks
} from '../../../src/daemon/data-image';
import { readLayout, type Ext4Layout } from '../../../src/cache/image/ext4';
import { CHUNK_BYTES } from '../../../src/cache/manifest';
import { defined } from '../../support/defined';

const GIB = 2 ** 30;

test.each<[number, number]>([
  [100 * GIB + 12345, 100 * GIB],
  [1, MIN_IMAGE_BYTES],
  [100_000 * GIB, MAX_IMAGE_BYTES]
])('newImageBytes(%d) = %d, whole chunks', (free, bytes) => {
  expect(newImageBytes(free)).toBe(bytes);
  expect(newImageBytes(free) % CHUNK_BYTES).toBe(0);
});

test.each<[string, number, number]>([
  ['a hosted runner (70 GiB free): twice what it makes', 70 * GIB, 140 * GIB],
  ['a full disk: twice the smallest filesystem', 1, 2 * MIN_IMAGE_BYTES],
  ['a large disk: the largest filesystem, no more', 3000 * GIB, MAX_IMAGE_BYTES]
])('maxRestoredImageBytes: %s', (_name, free, bytes) => {
  expect(maxRestoredImageBytes(free)).toBe(bytes);
  // A state saved on a runner with this much free, or a little more, is within it.
  expect(maxRestoredImageBytes(free)).toBeGreaterThanOrEqual(newImageBytes(free * 1.5));
});

test.each<[string, string, object]>([
  ['nothing yet', '', { mounted: false, unmounted: false }],
  ['a fresh filesystem, mounted and unmounted', 'mounted\nunmounted\n', { mounted: true, unmounted: true }],
  [
    'a restored one that failed its check',
    "discarded the restored filesystem failed e2fsck's check: bad inode\nmounted in 0.21 s (new)\n",
    {
      mounted: true,
      mountedIn: '0.21 s (new)',
      unmounted: false,
      discarded: "the restored filesystem failed e2fsck's check: bad inode"
    }
  ],
  [
    'no loop device',
    'plain no loop device or mke2fs in the dind container\n',
    { mounted: false, unmounted: false, plain: 'no loop device or mke2fs in the dind container' }
  ]
])('parseDataEvents: %s', (_name, text, events) => {
  expect(parseDataEvents(text)).toEqual(events);
});

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

  async function scan(file: string): Promise<Map<number, string>> {
    const handle = await fs.promises.open(file, 'r');
    try {
      const layout = await readLayout(handle);
      const chunks = new Map<number, string>();
      const count = await scanImage(handle, layout, async (position, data, hash) => {
        expect(sha256(data)).toBe(hash);
        expect(data.length).toBe(CHUNK_BYTES);
        // In the image's order, though chunks are read and hashed ahead.
        expect(position).toBeGreaterThan(Math.max(-1, ...chunks.keys()));
        chunks.set(position, hash);
      });
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
  });
});

describe('restoredImageBytes: a restored filesystem keeps its size unless this runner has much more room', () => {
  test.each<[string, number, number, number]>([
    ['as much room: the same size', 20 * GIB, 20 * GIB, 20 * GIB],
    ['less room: the same size (a filesystem does not shrink)', 20 * GIB, 5 * GIB, 20 * GIB],
    ['a little more room: the same size (growing is not free)', 20 * GIB, 24 * GIB, 20 * GIB],
    ['much more room: grown to it', 20 * GIB, 80 * GIB, 80 * GIB]
  ])('%s', (_name, saved, free, bytes) => {
    expect(restoredImageBytes(saved, free)).toBe(bytes);
  });
});
