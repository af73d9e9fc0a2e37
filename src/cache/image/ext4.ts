// Just enough of ext4's on-disk format to know which blocks of a filesystem image hold anything: the
// superblock, the group descriptors and the block bitmaps. The daemon's data lives in such an image
// (see daemon/data-image.ts); saving it reads only these blocks, so the image's size and the holes of its
// sparse file cost nothing. Only the layout our own mkfs makes is accepted (see SUPPORTED below).
// The same fields tell whether a restored image may be checked and mounted at all (checkRestored).
import type { FileHandle } from 'node:fs/promises';

const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_BYTES = 1024;
const MAGIC = 0xef53;
const STATE_CLEANLY_UNMOUNTED = 0x1;

const COMPAT_HAS_JOURNAL = 0x4;
const COMPAT_EXT_ATTR = 0x8;
const COMPAT_DIR_INDEX = 0x20;
const COMPAT_ORPHAN_FILE = 0x1000;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_CSUM_SEED = 0x2000;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_LARGE_FILE = 0x2;
const RO_COMPAT_HUGE_FILE = 0x8;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_DIR_NLINK = 0x20;
const RO_COMPAT_EXTRA_ISIZE = 0x40;
const RO_COMPAT_BIGALLOC = 0x200;
const RO_COMPAT_METADATA_CSUM = 0x400;
const RO_COMPAT_ORPHAN_PRESENT = 0x10000;
/** s_default_mount_opts: user_xattr and acl, which mke2fs sets. */
const DEFAULT_MOUNT_XATTR_USER_ACL = 0x4 | 0x8;
const BG_INODE_UNINIT = 0x1;
const BG_BLOCK_UNINIT = 0x2;

/** Block sizes we read; mkfs is always told 4096 (daemon/data-image.ts), the page size chunks align to. */
const SUPPORTED_BLOCK_BYTES = 4096;

/**
 * The features make_filesystem (entrypoint.sh) gives a filesystem with upstream mke2fs.conf's ext4
 * defaults, as Debian's and Alpine's e2fsprogs ship them: a restored one with any other is refused, so
 * the kernel runs no code for a feature we do not use (journal, orphan file, inline data, quota, MMP,
 * encryption, casefolding...).
 */
const RESTORABLE_FEATURES = {
  compat: COMPAT_EXT_ATTR | COMPAT_DIR_INDEX,
  incompat: INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG | INCOMPAT_CSUM_SEED,
  roCompat:
    RO_COMPAT_SPARSE_SUPER |
    RO_COMPAT_LARGE_FILE |
    RO_COMPAT_HUGE_FILE |
    RO_COMPAT_GDT_CSUM |
    RO_COMPAT_DIR_NLINK |
    RO_COMPAT_EXTRA_ISIZE |
    RO_COMPAT_METADATA_CSUM
};

/** Bytes of filesystem per inode at most: make_filesystem's `-i 8192` (entrypoint.sh). */
const BYTES_PER_INODE = 8192;
/**
 * mke2fs counts inodes from the size asked for, then drops a last group too small to hold its own
 * metadata: the groups left share those inodes (16400 per group seen for 16384). An eighth more
 * covers that, and bounds what the check reads all the same.
 */
const INODE_SLACK = 1.125;

/** [start, end) in blocks. */
export type BlockRange = [number, number];

export interface Ext4Layout {
  blockBytes: number;
  blockCount: number;
  /** Unmounted cleanly: nothing waits in the journal, and the bitmaps are the truth. */
  clean: boolean;
  /** Sorted, disjoint, merged ranges of blocks that hold something. */
  used: BlockRange[];
}

export class UnsupportedFilesystemError extends Error {}

/** Whether group `group` carries a copy of the superblock and descriptors (sparse_super: 0, 1 and powers of 3, 5, 7). */
export function hasSuperblockCopy(group: number, sparseSuper: boolean): boolean {
  if (!sparseSuper || group <= 1) return true;
  return [3, 5, 7].some(base => {
    let n = group;
    while (n % base === 0) n /= base;
    return n === 1;
  });
}

/** Sorts and merges ranges, then removes `holes` from them (both in linear passes once sorted). */
export function normalizeRanges(ranges: BlockRange[], holes: BlockRange[] = []): BlockRange[] {
  const merge = (list: BlockRange[]) => {
    const merged: BlockRange[] = [];
    for (const [start, end] of list.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0])) {
      const last = merged[merged.length - 1];
      if (last && start <= last[1]) last[1] = Math.max(last[1], end);
      else merged.push([start, end]);
    }
    return merged;
  };
  const cuts = merge(holes);
  const result: BlockRange[] = [];
  let cut = 0;
  for (const range of merge(ranges)) {
    let [start] = range;
    const end = range[1];
    while (cut < cuts.length && cuts[cut][1] <= start) cut++;
    for (let i = cut; i < cuts.length && cuts[i][0] < end; i++) {
      if (cuts[i][0] > start) result.push([start, cuts[i][0]]);
      start = Math.max(start, cuts[i][1]);
    }
    if (start < end) result.push([start, end]);
  }
  return result;
}

/** Runs of set bits in a block bitmap, as block ranges starting at `firstBlock`; at most `bits` bits. */
export function bitmapRanges(bitmap: Buffer, bits: number, firstBlock: number): BlockRange[] {
  const ranges: BlockRange[] = [];
  let runStart = -1;
  for (let bit = 0; bit < bits;) {
    const byte = bitmap[bit >> 3];
    // Whole bytes at once where they are all set or all clear.
    if ((bit & 7) === 0 && bit + 8 <= bits && (byte === 0 || byte === 0xff)) {
      if (byte === 0xff && runStart < 0) runStart = bit;
      if (byte === 0 && runStart >= 0) {
        ranges.push([firstBlock + runStart, firstBlock + bit]);
        runStart = -1;
      }
      bit += 8;
      continue;
    }
    const set = (byte & (1 << (bit & 7))) !== 0;
    if (set && runStart < 0) runStart = bit;
    if (!set && runStart >= 0) {
      ranges.push([firstBlock + runStart, firstBlock + bit]);
      runStart = -1;
    }
    bit++;
  }
  if (runStart >= 0) ranges.push([firstBlock + runStart, firstBlock + bits]);
  return ranges;
}

async function readExactly(file: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, offset);
  if (bytesRead !== length) throw new UnsupportedFilesystemError(`the image ends before byte ${offset + length}`);
  return buffer;
}

/** The superblock's fields this module reads, of a layout it reads (others throw UnsupportedFilesystemError). */
export interface Superblock {
  blockBytes: number;
  blockCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeBytes: number;
  reservedGdtBlocks: number;
  /** 64-bit block numbers (and 64-byte group descriptors). */
  wide: boolean;
  descriptorBytes: number;
  sparseSuper: boolean;
  /** Group descriptors carry checksums, and so a trustworthy count of never-used inodes and uninit flags. */
  checksummedGroups: boolean;
  groups: number;
  descriptorBlocks: number;
  /** s_state: STATE_CLEANLY_UNMOUNTED alone, once cleanly unmounted with no error found. */
  state: number;
  compat: number;
  incompat: number;
  roCompat: number;
  /** s_default_mount_opts, flags the kernel mounts with unless told otherwise. */
  defaultMountOptions: number;
  /** s_mount_opts, options the kernel parses at every mount as if given to mount. */
  mountOptions: string;
  /** The head of the orphan inode list; 0 without one. */
  lastOrphan: number;
  /** Errors the kernel recorded since the last e2fsck. */
  errorCount: number;
}

export function parseSuperblock(sb: Buffer): Superblock {
  if (sb.length < SUPERBLOCK_BYTES || sb.readUInt16LE(0x38) !== MAGIC)
    throw new UnsupportedFilesystemError('not an ext4 filesystem');
  const blockBytes = 1024 * 2 ** sb.readUInt32LE(0x18);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  if (blockBytes !== SUPPORTED_BLOCK_BYTES) throw new UnsupportedFilesystemError(`block size ${blockBytes}`);
  if (incompat & (INCOMPAT_META_BG | INCOMPAT_JOURNAL_DEV))
    throw new UnsupportedFilesystemError('meta_bg or journal_dev');
  if (roCompat & RO_COMPAT_BIGALLOC) throw new UnsupportedFilesystemError('bigalloc');
  const wide = (incompat & INCOMPAT_64BIT) !== 0;
  const blockCount = sb.readUInt32LE(0x04) + (wide ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const inodesPerGroup = sb.readUInt32LE(0x28);
  const inodeBytes = sb.readUInt16LE(0x58);
  const descriptorBytes = wide ? sb.readUInt16LE(0xfe) : 32;
  // One bitmap block per group for its blocks and one for its inodes, as the kernel requires.
  if (
    blocksPerGroup !== blockBytes * 8 ||
    inodesPerGroup === 0 ||
    inodesPerGroup > blockBytes * 8 ||
    inodeBytes < 128 ||
    inodeBytes > blockBytes ||
    descriptorBytes < 32 ||
    blockCount <= firstDataBlock
  ) {
    throw new UnsupportedFilesystemError('an unusual geometry');
  }
  const groups = Math.ceil((blockCount - firstDataBlock) / blocksPerGroup);
  return {
    blockBytes,
    blockCount,
    firstDataBlock,
    blocksPerGroup,
    inodesPerGroup,
    inodeBytes,
    reservedGdtBlocks: sb.readUInt16LE(0xce),
    wide,
    descriptorBytes,
    sparseSuper: (roCompat & RO_COMPAT_SPARSE_SUPER) !== 0,
    checksummedGroups: (roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0,
    groups,
    descriptorBlocks: Math.ceil((groups * descriptorBytes) / blockBytes),
    state: sb.readUInt16LE(0x3a),
    compat: sb.readUInt32LE(0x5c),
    incompat,
    roCompat,
    defaultMountOptions: sb.readUInt32LE(0x100),
    mountOptions: sb.subarray(0x200, 0x240).toString('latin1').replace(/\0.*$/s, ''),
    lastOrphan: sb.readUInt32LE(0xe8),
    errorCount: sb.readUInt32LE(0x194)
  };
}

interface GroupDescriptor {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  /** The tail of the inode table never used; 0 where descriptors carry no checksums (nothing to trust). */
  unusedInodes: number;
}

function parseDescriptor(sb: Superblock, descriptors: Buffer, group: number): GroupDescriptor {
  const d = descriptors.subarray(group * sb.descriptorBytes, (group + 1) * sb.descriptorBytes);
  const long = sb.wide && sb.descriptorBytes >= 64;
  const high = (offset: number) => (long ? d.readUInt32LE(offset) * 2 ** 32 : 0);
  return {
    blockBitmap: d.readUInt32LE(0x00) + high(0x20),
    inodeBitmap: d.readUInt32LE(0x04) + high(0x24),
    inodeTable: d.readUInt32LE(0x08) + high(0x28),
    flags: d.readUInt16LE(0x12),
    unusedInodes: sb.checksummedGroups ? d.readUInt16LE(0x1c) + (long ? d.readUInt16LE(0x32) * 0x10000 : 0) : 0
  };
}

async function readSuperblock(file: FileHandle): Promise<Superblock> {
  return parseSuperblock(await readExactly(file, SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES));
}

function readDescriptors(file: FileHandle, sb: Superblock): Promise<Buffer> {
  return readExactly(file, (sb.firstDataBlock + 1) * sb.blockBytes, sb.descriptorBlocks * sb.blockBytes);
}

/**
 * The blocks in use: every block the bitmaps mark, the superblock and descriptor copies, and every
 * group's bitmaps and inode table, except the tail of each inode table that was never used (the
 * kernel and e2fsck never read it, and mkfs leaves it unwritten).
 */
export async function readLayout(file: FileHandle): Promise<Ext4Layout> {
  const sb = await readSuperblock(file);
  const { blockBytes, blockCount, firstDataBlock, blocksPerGroup, inodesPerGroup, inodeBytes } = sb;
  const clean = (sb.state & STATE_CLEANLY_UNMOUNTED) !== 0 && (sb.incompat & INCOMPAT_RECOVER) === 0;
  const descriptors = await readDescriptors(file, sb);
  const tableBlocks = Math.ceil((inodesPerGroup * inodeBytes) / blockBytes);
  const inRange = (block: number) => block >= firstDataBlock && block < blockCount;

  const used: BlockRange[] = [];
  const neverUsed: BlockRange[] = [];
  for (let group = 0; group < sb.groups; group++) {
    const { blockBitmap, inodeBitmap, inodeTable, flags, unusedInodes } = parseDescriptor(sb, descriptors, group);
    if (
      ![blockBitmap, inodeBitmap, inodeTable, inodeTable + tableBlocks - 1].every(inRange) ||
      unusedInodes > inodesPerGroup
    ) {
      throw new UnsupportedFilesystemError(`group ${group}'s descriptor points outside the filesystem`);
    }
    const start = firstDataBlock + group * blocksPerGroup;
    const end = Math.min(blockCount, start + blocksPerGroup);
    if (!(flags & BG_BLOCK_UNINIT)) {
      used.push(...bitmapRanges(await readExactly(file, blockBitmap * blockBytes, blockBytes), end - start, start));
    }
    // A group whose bitmap was never initialized holds only these (the kernel reasons the same way).
    if (hasSuperblockCopy(group, sb.sparseSuper))
      used.push([start, start + 1 + sb.descriptorBlocks + sb.reservedGdtBlocks]);
    used.push([blockBitmap, blockBitmap + 1], [inodeBitmap, inodeBitmap + 1]);
    const usedTableBlocks = Math.ceil(((inodesPerGroup - unusedInodes) * inodeBytes) / blockBytes);
    used.push([inodeTable, inodeTable + usedTableBlocks]);
    neverUsed.push([inodeTable + usedTableBlocks, inodeTable + tableBlocks]);
  }
  return { blockBytes, blockCount, clean, used: normalizeRanges(used, normalizeRanges(neverUsed)) };
}

/**
 * Bytes of metadata e2fsck reads whatever the files hold: the bitmaps of every group whose bitmaps
 * were initialised, and the inode table of every group up to its never-used tail (the whole table
 * where descriptors carry no checksums, or a group's inodes were initialised with no tail kept).
 */
function checkedMetadataBytes(sb: Superblock, descriptors: Buffer): number {
  let blocks = 0;
  for (let group = 0; group < sb.groups; group++) {
    const { flags, unusedInodes } = parseDescriptor(sb, descriptors, group);
    const trusted = sb.checksummedGroups ? flags : 0;
    if (!(trusted & BG_BLOCK_UNINIT)) blocks++;
    if (!(trusted & BG_INODE_UNINIT)) {
      const inodes = sb.inodesPerGroup - Math.min(unusedInodes, sb.inodesPerGroup);
      blocks += 1 + Math.ceil((inodes * sb.inodeBytes) / sb.blockBytes);
    }
  }
  return blocks * sb.blockBytes;
}

/**
 * Metadata e2fsck may read beyond the data restored: bitmaps and inode tables that are zeroes and so
 * were never saved (all of a 4 TiB filesystem's bitmaps are 256 MiB), at the cost of reading holes.
 */
export const CHECK_ALLOWANCE_BYTES = 256 * 1024 * 1024;

/** Feature bits outside what the action's filesystems have, as `compat 0x…`, or undefined. */
function unknownFeatures(sb: Superblock): string | undefined {
  const extra = (
    [
      ['compat', sb.compat & ~RESTORABLE_FEATURES.compat],
      ['incompat', sb.incompat & ~RESTORABLE_FEATURES.incompat],
      ['ro_compat', sb.roCompat & ~RESTORABLE_FEATURES.roCompat]
    ] as const
  ).filter(([, bits]) => bits !== 0);
  return extra.length > 0 ? extra.map(([name, bits]) => `${name} 0x${bits.toString(16)}`).join(', ') : undefined;
}

/**
 * Pure: why a restored filesystem must not be checked or mounted, by its superblock, or undefined.
 * The action's filesystems have no journal and post saves only cleanly unmounted ones, so anything
 * the kernel would replay or process at mount was put there to be: a journal (replayed, or scanned
 * when not empty, and `e2fsck -n` skips both), orphan inodes (truncated and freed), mount options of
 * the filesystem's own. Its size is bound by its image, its inodes by what make_filesystem makes.
 */
export function superblockRefusal(sb: Superblock, imageBytes: number): string | undefined {
  if (sb.incompat & INCOMPAT_RECOVER) return 'needs journal recovery';
  if (sb.lastOrphan !== 0 || sb.roCompat & RO_COMPAT_ORPHAN_PRESENT || sb.compat & COMPAT_ORPHAN_FILE)
    return 'has orphan inodes or an orphan file';
  if (sb.compat & COMPAT_HAS_JOURNAL) return "has a journal (the action's filesystems have none)";
  const unknown = unknownFeatures(sb);
  if (unknown) return `has features the action's filesystems do not (${unknown})`;
  if (sb.state !== STATE_CLEANLY_UNMOUNTED || sb.errorCount !== 0)
    return `was not cleanly unmounted or has errors (state ${sb.state}, ${sb.errorCount} errors recorded)`;
  if (sb.mountOptions !== '' || sb.defaultMountOptions & ~DEFAULT_MOUNT_XATTR_USER_ACL)
    return `sets mount options of its own ('${sb.mountOptions}', defaults 0x${sb.defaultMountOptions.toString(16)})`;
  const claimed = sb.blockCount * sb.blockBytes;
  if (claimed > imageBytes) return `claims ${claimed} bytes in an image of ${imageBytes}`;
  if (sb.inodesPerGroup * BYTES_PER_INODE > sb.blocksPerGroup * sb.blockBytes * INODE_SLACK)
    return `has ${sb.inodesPerGroup} inodes per group, more than one per ${BYTES_PER_INODE} bytes`;
  return undefined;
}

/**
 * Pure: why checking a restored filesystem would cost more than its data restored warrants, or
 * undefined: e2fsck's reading of metadata is bound by what was restored, so no entry chooses its time.
 */
export function metadataRefusal(sb: Superblock, descriptors: Buffer, restoredBytes: number): string | undefined {
  const metadata = checkedMetadataBytes(sb, descriptors);
  if (metadata > restoredBytes + CHECK_ALLOWANCE_BYTES)
    return `has ${metadata} bytes of metadata to check for ${restoredBytes} bytes restored`;
  return undefined;
}

/** Why the restored image at `file` must not be checked or mounted, or undefined; a layout we do not read is refused too. */
export async function checkRestored(
  file: FileHandle,
  imageBytes: number,
  restoredBytes: number
): Promise<string | undefined> {
  try {
    const sb = await readSuperblock(file);
    return superblockRefusal(sb, imageBytes) ?? metadataRefusal(sb, await readDescriptors(file, sb), restoredBytes);
  } catch (error) {
    if (error instanceof UnsupportedFilesystemError) return `is not one the action makes (${error.message})`;
    throw error;
  }
}
