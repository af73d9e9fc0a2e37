// A saved state of the daemon's data: which chunk of the filesystem image holds which content, and
// where each content is stored (a zstd frame at an offset of a part). Parts are cache entries named by
// the hash of their bytes, shared by every state that uses them; a manifest is small, one per save.
// Any branch of a repository can write the cache, so a manifest read back is checked field by field,
// and bounded, before anything is written for it.
import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { LastUsed } from './usage';
import { errorMessage } from '../util/errors';
import { CHUNK_BYTES } from '../daemon/data-image';
import { MANIFEST_FORMAT } from './format';

/** zstd never grows a chunk by more than a few hundred bytes; anything larger is not a frame of ours. */
export const MAX_FRAME_BYTES = CHUNK_BYTES + 64 * 1024;
/** A restore looks up each part: the number of calls to the cache service stays in the tens. */
export const MAX_PARTS = 24;
/** A manifest as stored (gzip): read no more than this of one, from the cache service or the runner's store. */
export const MAX_MANIFEST_BLOB_BYTES = 32 * 1024 * 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface PartRef {
  key: string;
  bytes: number;
}

/** The part of a frame saved while the cache service was off: it is in the runner's store alone. */
export const LOCAL_ONLY = -1;

/** One stored content: its sha256, and where its frame is. */
export interface Frame {
  hash: string;
  /** Index in `parts`, or LOCAL_ONLY. */
  part: number;
  offset: number;
  length: number;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  key: string;
  /** The state this one was made from, tried when one of this one's parts is gone. */
  parent?: string;
  savedAt: string;
  /** The dind image that made it: another daemon version might misread its data. */
  imageId: string;
  lastUsed: LastUsed;
  filesystem: { type: 'ext4'; bytes: number };
  chunkBytes: number;
  parts: PartRef[];
  frames: Frame[];
  /** Chunk positions (index of the CHUNK_BYTES-sized piece of the image) and the frame that fills each, ascending. */
  chunks: Array<[position: number, frame: number]>;
}

export class ManifestError extends Error {}

export interface ManifestLimits {
  /** The largest filesystem image a restore may create (it is sparse: only chunks are written). */
  maxImageBytes: number;
  /** The most a restore may write (the free space where it writes). */
  maxWriteBytes: number;
}

/**
 * What a state may expand to, by what it stores: a saved state's chunks compress 3 to 5 times (its
 * chunks of zeroes are not stored at all); a small one's metadata more. A few kilobytes that claim to
 * fill gigabytes are not a state that save wrote.
 */
export const MAX_EXPANSION = 64;
export const EXPANSION_ALLOWANCE_BYTES = 256 * 1024 * 1024;

/**
 * The JSON of a manifest per chunk a restore may write, at its longest: the chunk's pair (18 bytes,
 * 3 values), one frame (97 bytes, 5 values) and one image's usage record (101 bytes, 2 values).
 */
const BYTES_PER_CHUNK = 256;
const VALUES_PER_CHUNK = 10;
/**
 * And beyond that: its other fields, MAX_PARTS parts and the usage records of a thousand images more
 * (a state of few chunks may hold many small images), keys as long as MAX_STRING_BYTES.
 */
const BASE_BYTES = 256 * 1024;
const BASE_VALUES = 4096;
/** The object, its lists (and `filesystem`, `lastUsed`), and in those a chunk's pair, a frame or a part. */
const MAX_DEPTH = 3;
/** A cache key is the longest string: the cache service takes keys of up to 512 characters. */
export const MAX_STRING_BYTES = 1024;

const BEYOND_STATES = 'more than that of any state this runner can restore';

/** What a manifest's JSON may hold, checked before it is parsed: see manifestBounds and checkShape. */
export interface ShapeBounds {
  bytes: number;
  /** Objects, arrays, strings (keys among them), numbers and literals. */
  values: number;
  depth: number;
  stringBytes: number;
}

/**
 * Pure: the bounds of the manifest of a state with the most chunks a restore may write (each is
 * written, and none beyond the filesystem). Parsed, that takes a few hundred bytes of memory per
 * chunk: a manifest cannot take more memory than the largest state this runner could restore.
 */
export function manifestBounds(limits: ManifestLimits): ShapeBounds {
  const chunks = Math.floor(Math.min(limits.maxImageBytes, limits.maxWriteBytes) / CHUNK_BYTES);
  return {
    bytes: BASE_BYTES + chunks * BYTES_PER_CHUNK,
    values: BASE_VALUES + chunks * VALUES_PER_CHUNK,
    depth: MAX_DEPTH,
    stringBytes: MAX_STRING_BYTES
  };
}

/** A table of which bytes are among `chars`. */
function byteSet(chars: string): Uint8Array {
  const set = new Uint8Array(256);
  for (const char of chars) set[char.charCodeAt(0)] = 1;
  return set;
}
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPENING = byteSet('[{');
const CLOSING = byteSet(']}');
const DIGITS = '0123456789';
/** The first bytes of a number, `true`, `false` and `null`; and what may follow in one. */
const SCALAR_START = byteSet(`-${DIGITS}tfn`);
const SCALAR_PART = byteSet(`-+.${DIGITS}abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ`);

/**
 * Throws ManifestError unless `json` is within `bounds`, reading its bytes once and allocating nothing:
 * every value JSON.parse would make begins with a byte counted here (outside a string: a quote, a
 * bracket, a brace, or a number's or literal's first), so a shape bomb is refused before it is parsed.
 * What is not JSON passes on to JSON.parse, which refuses it.
 */
export function checkShape(json: Buffer, bounds: ShapeBounds): void {
  let depth = 0;
  let values = 0;
  for (let i = 0; i < json.length; i++) {
    const byte = json[i];
    if (byte === QUOTE) {
      const start = i;
      for (i++; i < json.length && json[i] !== QUOTE; i++) if (json[i] === BACKSLASH) i++;
      check(i - start - 1 <= bounds.stringBytes, `a manifest with a string of more than ${bounds.stringBytes} bytes`);
    } else if (OPENING[byte]) {
      check(++depth <= bounds.depth, `a manifest nested more than ${bounds.depth} deep`);
    } else if (CLOSING[byte]) {
      depth--;
      continue;
    } else if (SCALAR_START[byte]) {
      while (i + 1 < json.length && SCALAR_PART[json[i + 1]]) i++;
    } else continue;
    check(++values <= bounds.values, `a manifest of more than ${bounds.values} values: ${BEYOND_STATES}`);
  }
}

/**
 * Pure: what a save may take of a restored state: the chunks whose frames the restore checked, each
 * frame at the reference it was checked at (`checked`, by index in `manifest.frames`). A frame no chunk
 * needed, or one never checked, names content at a place nobody looked: a save that referenced it
 * again could point at junk.
 */
export function checkedPart(manifest: Manifest, checked: ReadonlyMap<number, Frame>): Manifest {
  const frames: Frame[] = [];
  const indexOf = new Map<number, number>();
  const chunks: Array<[number, number]> = [];
  for (const [position, index] of manifest.chunks) {
    const frame = checked.get(index);
    if (!frame) continue;
    let at = indexOf.get(index);
    if (at === undefined) {
      at = frames.push(frame) - 1;
      indexOf.set(index, at);
    }
    chunks.push([position, at]);
  }
  return { ...manifest, frames, chunks };
}

export async function encodeManifest(manifest: Manifest): Promise<Buffer> {
  const json = {
    ...manifest,
    frames: manifest.frames.map(frame => [frame.hash, frame.part, frame.offset, frame.length])
  };
  return promisify(gzip)(Buffer.from(JSON.stringify(json)));
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new ManifestError(what);
}

/** Parses and checks a manifest blob; throws ManifestError saying what is wrong. */
export async function decodeManifest(blob: Buffer, limits: ManifestLimits): Promise<Manifest> {
  const bounds = manifestBounds(limits);
  const text = await promisify(gunzip)(blob, { maxOutputLength: bounds.bytes }).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw new ManifestError(`a manifest of more than ${bounds.bytes} bytes: ${BEYOND_STATES}`);
    throw new ManifestError(`not a manifest (${errorMessage(error)})`);
  });
  checkShape(text, bounds);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text.toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new ManifestError(`not a manifest (${errorMessage(error)})`);
  }
  check(json && typeof json === 'object', 'not a JSON object');
  check(json.format === MANIFEST_FORMAT, `format ${JSON.stringify(json.format)}`);
  check(typeof json.key === 'string' && json.key !== '', 'no key');
  check(json.parent === undefined || typeof json.parent === 'string', 'a parent that is not a key');
  check(typeof json.savedAt === 'string' && !Number.isNaN(Date.parse(json.savedAt)), 'no save time');
  check(typeof json.imageId === 'string', 'no image id');
  check(json.chunkBytes === CHUNK_BYTES, `chunks of ${String(json.chunkBytes)} bytes`);
  const lastUsed = json.lastUsed ?? {};
  check(
    typeof lastUsed === 'object' && Object.values(lastUsed).every(time => typeof time === 'string'),
    'a malformed usage record'
  );
  const filesystem = json.filesystem as { type?: unknown; bytes?: unknown } | undefined;
  check(filesystem?.type === 'ext4' && isCount(filesystem.bytes) && filesystem.bytes > 0, 'no filesystem size');
  check(filesystem.bytes % CHUNK_BYTES === 0, 'a filesystem size that is not a whole number of chunks');
  check(
    filesystem.bytes <= limits.maxImageBytes,
    `a filesystem of ${filesystem.bytes} bytes, more than the ${limits.maxImageBytes} a restore takes here`
  );

  check(Array.isArray(json.parts) && json.parts.length <= MAX_PARTS, 'a bad list of parts');
  const parts = (json.parts as unknown[]).map((part, i) => {
    const p = part as { key?: unknown; bytes?: unknown };
    check(typeof p?.key === 'string' && p.key !== '' && isCount(p.bytes), `part ${i} is malformed`);
    return { key: p.key, bytes: p.bytes };
  });
  check(Array.isArray(json.frames), 'no frames');
  const frames = (json.frames as unknown[]).map((frame, i): Frame => {
    check(Array.isArray(frame) && frame.length === 4, `frame ${i} is malformed`);
    const [hash, part, offset, length] = frame as unknown[];
    check(typeof hash === 'string' && SHA256_HEX.test(hash), `frame ${i} has no sha256`);
    check(part === LOCAL_ONLY || (isCount(part) && part < parts.length), `frame ${i} names no part`);
    check(isCount(offset) && isCount(length) && length > 0 && length <= MAX_FRAME_BYTES, `frame ${i} has a bad extent`);
    check(part === LOCAL_ONLY || offset + length <= parts[part].bytes, `frame ${i} lies beyond its part`);
    return { hash, part, offset, length };
  });
  check(Array.isArray(json.chunks), 'no chunks');
  const positions = filesystem.bytes / CHUNK_BYTES;
  const chunks = json.chunks as unknown[];
  const writes = chunks.length * CHUNK_BYTES;
  check(writes <= limits.maxWriteBytes, `${writes} bytes to write, more than the ${limits.maxWriteBytes} free`);
  const referenced = new Set<number>();
  for (const chunk of chunks) if (Array.isArray(chunk) && isCount(chunk[1])) referenced.add(chunk[1]);
  const stored = [...referenced].reduce((sum, index) => sum + (frames[index]?.length ?? 0), 0);
  check(
    writes <= stored * MAX_EXPANSION + EXPANSION_ALLOWANCE_BYTES,
    `${writes} bytes to write from ${stored} stored, more than a saved state expands to`
  );
  let previous = -1;
  for (const [i, chunk] of chunks.entries()) {
    check(Array.isArray(chunk) && chunk.length === 2, `chunk ${i} is malformed`);
    const [position, frame] = chunk as unknown[];
    check(isCount(position) && position > previous && position < positions, `chunk ${i} is out of order or range`);
    check(isCount(frame) && frame < frames.length, `chunk ${i} names no frame`);
    previous = position;
  }
  return {
    format: MANIFEST_FORMAT,
    key: json.key,
    parent: json.parent,
    savedAt: json.savedAt,
    imageId: json.imageId,
    lastUsed: lastUsed as LastUsed,
    filesystem: { type: 'ext4', bytes: filesystem.bytes },
    chunkBytes: CHUNK_BYTES,
    parts,
    frames,
    chunks: chunks as Array<[number, number]>
  };
}
