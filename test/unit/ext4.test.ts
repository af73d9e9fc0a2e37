// readLayout against real filesystems made by mke2fs (with the options entrypoint.sh uses, and others),
// checked against what dumpe2fs says of the same image: the blocks it does not list as free, minus the
// never-used tails of the inode tables.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  bitmapRanges,
  hasSuperblockCopy,
  normalizeRanges,
  readLayout,
  UnsupportedFilesystemError,
  type BlockRange
} from '../../src/ext4';
import { defined } from '../support/defined';

/** As entrypoint.sh's make_filesystem, minus the features an older mke2fs may not know. */
const ENTRYPOINT_OPTIONS = [
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
  '-E',
  'lazy_itable_init=1,nodiscard',
  '-O',
  '^resize_inode'
];

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ext4-test-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function makeImage(name: string, bytes: number, options: string[], populate?: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  execFileSync('mke2fs', [...options, ...(populate ? ['-d', populate] : []), file], { stdio: 'pipe' });
  return file;
}

/** Used blocks per dumpe2fs: everything not free, minus the inode tables' never-used tails. */
function dumpe2fsUsed(file: string): BlockRange[] {
  const dump = execFileSync('dumpe2fs', [file], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 }).toString();
  const blockCount = Number(defined(/^Block count:\s+(\d+)/m.exec(dump), 'block count')[1]);
  const inodeBytes = Number(defined(/^Inode size:\s+(\d+)/m.exec(dump), 'inode size')[1]);
  const blockBytes = Number(defined(/^Block size:\s+(\d+)/m.exec(dump), 'block size')[1]);
  const free: BlockRange[] = [];
  const tails: BlockRange[] = [];
  for (const group of dump.split(/^Group \d+:/m).slice(1)) {
    const list = defined(/^\s+Free blocks: (.*)$/m.exec(group), 'free blocks of a group')[1].trim();
    for (const item of list ? list.split(', ') : []) {
      const [from, to = from] = item.split('-').map(Number);
      free.push([from, to + 1]);
    }
    const table = defined(/Inode table at (\d+)-(\d+)/.exec(group), 'inode table of a group');
    const unused = Number(/(\d+) unused inodes/.exec(group)?.[1] ?? 0);
    const [start, end] = [Number(table[1]), Number(table[2]) + 1];
    const inodes = ((end - start) * blockBytes) / inodeBytes;
    tails.push([start + Math.ceil(((inodes - unused) * inodeBytes) / blockBytes), end]);
  }
  return normalizeRanges(normalizeRanges([[0, blockCount]], free), tails);
}

async function layoutOf(file: string) {
  const handle = await fs.promises.open(file, 'r');
  try {
    return await readLayout(handle);
  } finally {
    await handle.close();
  }
}

const blocks = (ranges: BlockRange[]) => ranges.reduce((sum, [start, end]) => sum + end - start, 0);

describe('readLayout', () => {
  test.each([
    { name: 'the entrypoint options, empty, 4 GiB', bytes: 4 * 2 ** 30, options: ENTRYPOINT_OPTIONS, maxUsedMiB: 16 },
    { name: 'the entrypoint options, empty, 64 GiB', bytes: 64 * 2 ** 30, options: ENTRYPOINT_OPTIONS, maxUsedMiB: 48 },
    {
      name: "mke2fs's own defaults (a 64 MiB journal), 3 GiB",
      bytes: 3 * 2 ** 30,
      options: ['-t', 'ext4', '-q', '-F', '-b', '4096'],
      maxUsedMiB: 96
    },
    {
      name: 'without 64bit and flex_bg, 2 GiB',
      bytes: 2 * 2 ** 30,
      // Without checksums the count of never-used inodes is not trusted: whole inode tables are used.
      options: ['-t', 'ext4', '-q', '-F', '-b', '4096', '-O', '^64bit,^flex_bg,^metadata_csum'],
      maxUsedMiB: 128
    }
  ])('$name: the blocks dumpe2fs does not call free', async ({ bytes, options, maxUsedMiB }) => {
    const file = makeImage('empty.img', bytes, options);
    const layout = await layoutOf(file);
    expect(layout).toMatchObject({ blockBytes: 4096, blockCount: bytes / 4096, clean: true });
    expect(layout.used).toEqual(dumpe2fsUsed(file));
    expect(layout.used[0][0]).toBe(0);
    // Metadata only; with the entrypoint's options a few megabytes, whatever the inode tables' size.
    expect(blocks(layout.used) * 4096).toBeLessThan(maxUsedMiB * 2 ** 20);
  });

  test('a populated filesystem (many files, a sparse file, hard links, a deep tree)', async () => {
    const tree = path.join(dir, 'tree');
    fs.mkdirSync(path.join(tree, 'a/b/c/d'), { recursive: true });
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(tree, 'a', `f${i}`), `file ${i}\n`.repeat(i % 50));
    fs.writeFileSync(path.join(tree, 'a/b/c/d/big'), Buffer.alloc(5 * 2 ** 20, 7));
    fs.writeFileSync(path.join(tree, 'sparse'), '');
    fs.truncateSync(path.join(tree, 'sparse'), 2 ** 30);
    fs.linkSync(path.join(tree, 'a/f1'), path.join(tree, 'hard'));
    const file = makeImage('full.img', 4 * 2 ** 30, ENTRYPOINT_OPTIONS, tree);
    const layout = await layoutOf(file);
    expect(layout.used).toEqual(dumpe2fsUsed(file));
    // The files' data is there (5 MiB of one file), the sparse file's hole is not.
    expect(blocks(layout.used) * 4096).toBeGreaterThan(5 * 2 ** 20);
    expect(blocks(layout.used) * 4096).toBeLessThan(64 * 2 ** 20);
  });

  test('not a filesystem, a truncated one, and layouts it does not read', async () => {
    const plain = path.join(dir, 'plain');
    fs.writeFileSync(plain, Buffer.alloc(8192));
    await expect(layoutOf(plain)).rejects.toThrow(new UnsupportedFilesystemError('not an ext4 filesystem'));
    const full = makeImage('cut.img', 2 ** 30, ENTRYPOINT_OPTIONS);
    fs.truncateSync(full, 4096);
    await expect(layoutOf(full)).rejects.toThrow(UnsupportedFilesystemError);
    const small = makeImage('small.img', 64 * 2 ** 20, ['-t', 'ext4', '-q', '-F', '-b', '1024']);
    await expect(layoutOf(small)).rejects.toThrow('block size 1024');
    const bigalloc = makeImage('bigalloc.img', 2 ** 30, [
      '-t',
      'ext4',
      '-q',
      '-F',
      '-b',
      '4096',
      '-O',
      'bigalloc',
      '-C',
      '65536'
    ]);
    await expect(layoutOf(bigalloc)).rejects.toThrow('bigalloc');
  });

  test('a filesystem marked as needing recovery is not clean', async () => {
    const file = makeImage('dirty.img', 2 ** 30, ENTRYPOINT_OPTIONS);
    const fd = fs.openSync(file, 'r+');
    const incompat = Buffer.alloc(4);
    fs.readSync(fd, incompat, 0, 4, 1024 + 0x60);
    incompat.writeUInt32LE(incompat.readUInt32LE(0) | 0x4);
    fs.writeSync(fd, incompat, 0, 4, 1024 + 0x60);
    fs.closeSync(fd);
    expect((await layoutOf(file)).clean).toBe(false);
  });
});

describe('helpers', () => {
  test.each<[number, boolean, boolean]>([
    [0, true, true],
    [1, true, true],
    [2, true, false],
    [3, true, true],
    [9, true, true],
    [25, true, true],
    [49, true, true],
    [15, true, false],
    [2, false, true]
  ])('group %i, sparse_super %s: a superblock copy %s', (group, sparse, expected) => {
    expect(hasSuperblockCopy(group, sparse)).toBe(expected);
  });

  test.each<[string, number[], number, BlockRange[]]>([
    ['empty', [0, 0], 16, []],
    ['full', [0xff, 0xff], 16, [[100, 116]]],
    [
      'partial bytes',
      [0b00000110, 0b10000000],
      16,
      [
        [101, 103],
        [115, 116]
      ]
    ],
    ['a run across bytes', [0b11110000, 0b00001111], 16, [[104, 112]]],
    ['fewer bits than bytes', [0xff, 0xff], 12, [[100, 112]]]
  ])('bitmapRanges: %s', (_name, bytes, bits, expected) => {
    expect(bitmapRanges(Buffer.from(bytes), bits, 100)).toEqual(expected);
  });

  test.each<[string, BlockRange[], BlockRange[], BlockRange[]]>([
    [
      'merges and sorts',
      [
        [5, 7],
        [0, 2],
        [1, 3],
        [7, 8]
      ],
      [],
      [
        [0, 3],
        [5, 8]
      ]
    ],
    [
      'drops empty ranges',
      [
        [3, 3],
        [4, 5]
      ],
      [],
      [[4, 5]]
    ],
    [
      'cuts holes',
      [[0, 10]],
      [
        [2, 4],
        [6, 7]
      ],
      [
        [0, 2],
        [4, 6],
        [7, 10]
      ]
    ],
    [
      'a hole over a whole range',
      [
        [0, 2],
        [5, 8]
      ],
      [[4, 9]],
      [[0, 2]]
    ],
    [
      'holes across ranges',
      [
        [0, 4],
        [6, 10]
      ],
      [[3, 7]],
      [
        [0, 3],
        [7, 10]
      ]
    ]
  ])('normalizeRanges: %s', (_name, ranges, holes, expected) => {
    expect(normalizeRanges(ranges, holes)).toEqual(expected);
  });
});
