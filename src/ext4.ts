// Just enough of ext4's on-disk format to know which blocks of a filesystem image hold anything: the
// superblock, the group descriptors and the block bitmaps. The daemon's data lives in such an image
// (see data-image.ts); saving it reads only these blocks, so the image's size and the holes of its
// sparse file cost nothing. Only the layout our own mkfs makes is accepted (see SUPPORTED below).
import type { FileHandle } from 'node:fs/promises';

const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_BYTES = 1024;
const MAGIC = 0xef53;
const STATE_CLEANLY_UNMOUNTED = 0x1;

const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_BIGALLOC = 0x200;
const RO_COMPAT_METADATA_CSUM = 0x400;
const BG_BLOCK_UNINIT = 0x2;

/** Block sizes we read; mkfs is always told 4096 (data-image.ts), the page size chunks align to. */
const SUPPORTED_BLOCK_BYTES = 4096;

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

/**
 * The blocks in use: every block the bitmaps mark, the superblock and descriptor copies, and every
 * group's bitmaps and inode table, except the tail of each inode table that was never used (the
 * kernel and e2fsck never read it, and mkfs leaves it unwritten).
 */
export async function readLayout(file: FileHandle): Promise<Ext4Layout> {
  const sb = await readExactly(file, SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES);
  if (sb.readUInt16LE(0x38) !== MAGIC) throw new UnsupportedFilesystemError('not an ext4 filesystem');
  const blockBytes = 1024 << sb.readUInt32LE(0x18);
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
  const reservedGdtBlocks = sb.readUInt16LE(0xce);
  const descriptorBytes = wide ? sb.readUInt16LE(0xfe) : 32;
  if (blocksPerGroup !== blockBytes * 8 || inodeBytes < 128 || descriptorBytes < 32 || blockCount === 0) {
    throw new UnsupportedFilesystemError('an unusual geometry');
  }
  const clean = (sb.readUInt16LE(0x3a) & STATE_CLEANLY_UNMOUNTED) !== 0 && (incompat & INCOMPAT_RECOVER) === 0;
  const sparseSuper = (roCompat & RO_COMPAT_SPARSE_SUPER) !== 0;
  // Only group descriptors with checksums carry a trustworthy count of never-used inodes.
  const knowsUnusedInodes = (roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0;
  const groups = Math.ceil((blockCount - firstDataBlock) / blocksPerGroup);
  const descriptorBlocks = Math.ceil((groups * descriptorBytes) / blockBytes);
  const descriptors = await readExactly(file, (firstDataBlock + 1) * blockBytes, descriptorBlocks * blockBytes);
  const tableBlocks = Math.ceil((inodesPerGroup * inodeBytes) / blockBytes);
  const inRange = (block: number) => block >= firstDataBlock && block < blockCount;

  const used: BlockRange[] = [];
  const neverUsed: BlockRange[] = [];
  for (let group = 0; group < groups; group++) {
    const d = descriptors.subarray(group * descriptorBytes, (group + 1) * descriptorBytes);
    const high = (offset: number) => (wide && descriptorBytes >= 64 ? d.readUInt32LE(offset) * 2 ** 32 : 0);
    const blockBitmap = d.readUInt32LE(0x00) + high(0x20);
    const inodeBitmap = d.readUInt32LE(0x04) + high(0x24);
    const inodeTable = d.readUInt32LE(0x08) + high(0x28);
    const flags = d.readUInt16LE(0x12);
    const unusedInodes = knowsUnusedInodes
      ? d.readUInt16LE(0x1c) + (wide && descriptorBytes >= 64 ? d.readUInt16LE(0x32) * 0x10000 : 0)
      : 0;
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
    if (hasSuperblockCopy(group, sparseSuper)) used.push([start, start + 1 + descriptorBlocks + reservedGdtBlocks]);
    used.push([blockBitmap, blockBitmap + 1], [inodeBitmap, inodeBitmap + 1]);
    const usedTableBlocks = Math.ceil(((inodesPerGroup - unusedInodes) * inodeBytes) / blockBytes);
    used.push([inodeTable, inodeTable + usedTableBlocks]);
    neverUsed.push([inodeTable + usedTableBlocks, inodeTable + tableBlocks]);
  }
  return { blockBytes, blockCount, clean, used: normalizeRanges(used, normalizeRanges(neverUsed)) };
}
