// readLayout against real filesystems made by mke2fs (with the options entrypoint.sh uses, and others),
// checked against what dumpe2fs says of the same image: the blocks it does not list as free, minus the
// never-used tails of the inode tables.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  bitmapRanges,
  CHECK_ALLOWANCE_BYTES,
  checkRestored,
  hasSuperblockCopy,
  metadataRefusal,
  normalizeRanges,
  parseSuperblock,
  readLayout,
  superblockRefusal,
  UnsupportedFilesystemError,
  type BlockRange,
  type Superblock
} from '../../../../src/cache/image/ext4';
import { defined } from '../../../support/defined';

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
  '-E',
  'lazy_itable_init=1,nodiscard',
  '-O',
  '^has_journal,^resize_inode'
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

/** Runs a command on an image (debugfs, tune2fs), failing the test if it fails. */
function onImage(command: string, args: string[], file: string): void {
  execFileSync(command, [...args, file], { stdio: 'pipe' });
}

async function refusalOf(file: string, restoredBytes = 0): Promise<string | undefined> {
  const handle = await fs.promises.open(file, 'r');
  try {
    return await checkRestored(handle, fs.statSync(file).size, restoredBytes);
  } finally {
    await handle.close();
  }
}

const GIB = 2 ** 30;

describe('superblockRefusal', () => {
  let base: Superblock;
  beforeAll(() => {
    const file = makeImage('base.img', 4 * GIB, ENTRYPOINT_OPTIONS);
    const fd = fs.openSync(file, 'r');
    const superblock = Buffer.alloc(1024);
    fs.readSync(fd, superblock, 0, 1024, 1024);
    fs.closeSync(fd);
    base = parseSuperblock(superblock);
  });

  test('a filesystem as the entrypoint makes it is taken', () => {
    expect(superblockRefusal(base, 4 * GIB)).toBeUndefined();
  });

  test.each<[string, Partial<Superblock>, RegExp]>([
    ['needs_recovery', { incompat: 0x4 }, /^needs journal recovery$/],
    ['needs_recovery and a journal', { incompat: 0x4, compat: 0x4 | 0x8 | 0x20 }, /^needs journal recovery$/],
    ['an orphan list', { lastOrphan: 12 }, /^has orphan inodes/],
    ['orphan_present', { roCompat: 0x10000 }, /^has orphan inodes/],
    ['an orphan file', { compat: 0x1000 | 0x8 | 0x20 }, /^has orphan inodes or an orphan file$/],
    ['a clean journal', { compat: 0x4 | 0x8 | 0x20 }, /^has a journal/],
    ['fast_commit', { compat: 0x400 | 0x8 | 0x20 }, /^has features .*\(compat 0x400\)$/],
    ['MMP', { incompat: 0x100 | 0x2 | 0x40 }, /\(incompat 0x100\)$/],
    ['inline_data', { incompat: 0x8000 | 0x2 | 0x40 }, /\(incompat 0x8000\)$/],
    ['encrypt and casefold', { incompat: 0x30000 | 0x2 }, /\(incompat 0x30000\)$/],
    ['quota', { roCompat: 0x100 | 0x1 }, /\(ro_compat 0x100\)$/],
    ['state: mounted (VALID clear)', { state: 0 }, /^was not cleanly unmounted or has errors \(state 0, 0 errors/],
    ['state: errors', { state: 0x1 | 0x2 }, /state 3/],
    ['state: orphans being recovered', { state: 0x1 | 0x4 }, /state 5/],
    ['errors recorded', { errorCount: 2 }, /2 errors recorded/],
    ['mount options of its own', { mountOptions: 'errors=panic' }, /^sets mount options of its own \('errors=panic'/],
    ['default mount options beyond xattrs and ACLs', { defaultMountOptions: 0x60 | 0xc }, /defaults 0x6c/],
    ['more blocks than its image', { blockCount: (4 * GIB) / 4096 + 1 }, /^claims 4294971392 bytes in an image of/],
    ['an inode per 4 KiB', { inodesPerGroup: 32768 }, /^has 32768 inodes per group, more than one per 8192 bytes$/]
  ])('refused: %s', (_name, overrides, reason) => {
    expect(superblockRefusal({ ...base, ...overrides }, 4 * GIB)).toMatch(reason);
  });

  test.each<[string, Partial<Superblock>]>([
    ['gdt_csum instead of metadata_csum', { roCompat: 0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x40 }],
    ['user_xattr and acl by default', { defaultMountOptions: 0xc }],
    ['smaller than its image', { blockCount: GIB / 4096 }],
    ['without 64bit and flex_bg', { incompat: 0x2 | 0x40 }],
    // mke2fs's own rounding when it drops a small last group (seen on a runner).
    ['16400 inodes per group', { inodesPerGroup: 16400 }],
    ['an eighth more inodes than one per 8 KiB', { inodesPerGroup: 18432 }]
  ])('taken: %s', (_name, overrides) => {
    expect(superblockRefusal({ ...base, ...overrides }, 4 * GIB)).toBeUndefined();
  });
});

describe('metadataRefusal', () => {
  /** A superblock of `groups` full groups (checksummed descriptors or not) and their descriptors. */
  const layout = (groups: number, checksummed: boolean, descriptor: { flags: number; unused: number }) => {
    const sb = {
      blockBytes: 4096,
      blocksPerGroup: 32768,
      inodesPerGroup: 16384,
      inodeBytes: 256,
      wide: true,
      descriptorBytes: 64,
      checksummedGroups: checksummed,
      groups
    } as Superblock;
    const descriptors = Buffer.alloc(groups * 64);
    for (let group = 0; group < groups; group++) {
      descriptors.writeUInt16LE(descriptor.flags, group * 64 + 0x12);
      descriptors.writeUInt16LE(descriptor.unused & 0xffff, group * 64 + 0x1c);
    }
    return { sb, descriptors };
  };
  // 16384 groups: a 2 TiB filesystem; each group's whole inode table is 1024 blocks (4 MiB).
  const TIB2 = 16384;
  test.each<[string, boolean, number, boolean, { flags: number; unused: number }, number]>([
    ['2 TiB, every group unused (BLOCK_UNINIT, INODE_UNINIT)', false, TIB2, true, { flags: 0x3, unused: 16384 }, 0],
    ['2 TiB, every inode table in use, 16 MiB restored', true, TIB2, true, { flags: 0, unused: 0 }, 16 * 2 ** 20],
    ['2 TiB, the flags of descriptors without checksums', true, TIB2, false, { flags: 0x3, unused: 16384 }, 2 ** 24],
    ['2 TiB, every bitmap initialised, no inode in use', false, TIB2, true, { flags: 0, unused: 16384 }, 0],
    ['64 groups in use, whole tables restored', false, 64, true, { flags: 0, unused: 0 }, 64 * 1026 * 4096]
  ])('%s: refused %s', (_name, refused, groups, checksummed, descriptor, restored) => {
    const { sb, descriptors } = layout(groups, checksummed, descriptor);
    const reason = metadataRefusal(sb, descriptors, restored);
    if (refused) expect(reason).toMatch(/^has \d+ bytes of metadata to check for \d+ bytes restored$/);
    else expect(reason).toBeUndefined();
  });

  test('the allowance covers the bitmaps of every group of the largest filesystem', () => {
    const { sb, descriptors } = layout(32768, true, { flags: 0, unused: 16384 });
    expect(metadataRefusal(sb, descriptors, 0)).toBeUndefined();
    expect(CHECK_ALLOWANCE_BYTES).toBe(32768 * 2 * 4096);
  });
});

describe('checkRestored, on images made and altered by e2fsprogs', () => {
  test.each<[string, string[], Array<[string, string[]]>, RegExp | undefined]>([
    ['the entrypoint options', ENTRYPOINT_OPTIONS, [], undefined],
    [
      'a journal (mke2fs defaults)',
      ['-t', 'ext4', '-q', '-F', '-b', '4096', '-O', '^orphan_file'],
      [],
      /^has a journal/
    ],
    ['an orphan list', ENTRYPOINT_OPTIONS, [['debugfs', ['-w', '-R', 'ssv last_orphan 12']]], /^has orphan inodes/],
    // mke2fs makes an orphan file only with a journal.
    [
      'an orphan file',
      ['-t', 'ext4', '-q', '-F', '-b', '4096', '-O', 'orphan_file'],
      [],
      /^has orphan inodes or an orphan file$/
    ],
    [
      'needs_recovery',
      ['-t', 'ext4', '-q', '-F', '-b', '4096', '-O', '^orphan_file'],
      [['debugfs', ['-w', '-R', 'feature needs_recovery']]],
      /^needs journal recovery$/
    ],
    ['inline_data', [...ENTRYPOINT_OPTIONS, '-O', 'inline_data'], [], /\(incompat 0x8000\)$/],
    [
      'errors=panic in its mount options',
      ENTRYPOINT_OPTIONS,
      [['tune2fs', ['-E', 'mount_opts=errors=panic']]],
      /^sets mount options/
    ],
    ['an inode per 4 KiB', [...ENTRYPOINT_OPTIONS, '-i', '4096'], [], /inodes per group/],
    [
      'meta_bg',
      [...ENTRYPOINT_OPTIONS, '-O', 'meta_bg'],
      [],
      /^is not one the action makes \(meta_bg or journal_dev\)$/
    ]
  ])('%s', async (_name, options, alterations, reason) => {
    const file = makeImage('altered.img', 2 * GIB, options);
    for (const [command, args] of alterations) onImage(command, args, file);
    if (reason) expect(await refusalOf(file)).toMatch(reason);
    else expect(await refusalOf(file)).toBeUndefined();
  });

  test('a size whose last group mke2fs drops (its inodes go to the groups left): taken', async () => {
    // 4 GiB and 1 MiB: 256 blocks past the last full group, too few for a group's own metadata.
    const file = makeImage('odd.img', 4 * GIB + 2 ** 20, ENTRYPOINT_OPTIONS);
    const dumped = execFileSync('dumpe2fs', ['-h', file], { stdio: 'pipe' }).toString();
    expect(Number(/^Inodes per group:\s+(\d+)$/m.exec(dumped)?.[1])).toBeGreaterThan(16384);
    expect(await refusalOf(file)).toBeUndefined();
  });

  test('an image cut short of what its superblock claims, and one that is not ext4', async () => {
    const file = makeImage('claims.img', 2 * GIB, ENTRYPOINT_OPTIONS);
    fs.truncateSync(file, GIB);
    expect(await refusalOf(file)).toBe(`claims ${2 * GIB} bytes in an image of ${GIB}`);
    const plain = path.join(dir, 'plain.img');
    fs.writeFileSync(plain, Buffer.alloc(8192));
    expect(await refusalOf(plain)).toBe('is not one the action makes (not an ext4 filesystem)');
  });
});
