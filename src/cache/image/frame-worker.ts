// The code of a frame worker's thread (workers.ts starts one per core): it opens a restore's frames
// and writes their chunks into the image, and reads, hashes and compresses a save's chunks.
//
// It runs in a thread that has only Node's built-in modules: in dist/ it is a bundle of its own, beside
// each action bundle (scripts/build.ts fails when it holds any module but this one), so from the
// project it imports types only. The unit tests run this very file, Node stripping its types: it holds
// only TypeScript that erases (no enum, namespace or parameter property; `import type` for types), and
// takes Node's modules with require, so that Node runs it as CommonJS, as package.json's lack of a
// "type" says (an `import` would have Node parse it twice and warn).
//
// A frame is decompressed, and a chunk read and compressed, into buffers of the worker's own, used
// again and again, through the zstd stream's handle as zlib's own synchronous path does:
// zstdDecompressSync and zstdCompressSync make a fresh 1 MiB buffer per frame, which the kernel must
// fault in, the CPU fetch from memory again for the hash and the write, and the garbage collector
// reclaim (a third of a restore's CPU here, half of a save's). Where the handle is not as expected
// (another Node), the synchronous calls do the same job; where zstd is not built in (Node 20), a save's
// chunk goes back to be compressed by the zstd CLI.
import type { MessagePort } from 'node:worker_threads';

const { createHash } = require('node:crypto') as typeof import('node:crypto');
const { readSync, writeSync } = require('node:fs') as typeof import('node:fs');
const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
const zstd = require('node:zlib') as unknown as ZstdZlib;

/**
 * A chunk goes into the image in writes of at most this much. The page cache takes a folio the size of
 * the write, and on a VM that hands free memory back to its host (free page reporting) large ones come
 * from the blocks handed back, each first touch a fault on the host: ten times slower to fill than
 * small ones. Elsewhere eight calls instead of one cost nothing measurable.
 */
const WRITE_SLICE_BYTES = 128 * 1024;

/** Where a worker writes a frame's chunk, once it is the content named. */
export interface FrameTarget {
  /** A file descriptor open for writing: the image. */
  fd: number;
  /** Byte offsets in the file: the chunk is written at each. */
  offsets: number[];
  /** The chunk's sha256 (hex) and length: a frame that decompresses to anything else is not written. */
  hash: string;
  bytes: number;
}

/** A chunk for a worker to read from an image, hash and compress. */
export interface PackRequest {
  /** A file descriptor open for reading: the image. */
  fd: number;
  /** Byte offset of the chunk in the file, and its length. */
  offset: number;
  bytes: number;
  /** Byte ranges of the chunk to keep, ascending, `[start, end)`: everything else is zeroed. */
  keep: Array<[number, number]>;
  /** zstd's level, and the most a frame may take. */
  level: number;
  maxFrameBytes: number;
}

/** A frame to open (at most `maxBytes` of output, zlib's output buffer `chunkSize`) and write to `target`. */
interface WriteMessage {
  kind: 'write';
  id: number;
  frame: Uint8Array;
  maxBytes: number;
  chunkSize: number;
  target: FrameTarget;
}

/** A chunk to pack; `known`, when the set changed: the hashes whose chunks are not compressed. */
interface PackMessage {
  kind: 'pack';
  id: number;
  request: PackRequest;
  known?: string[];
}

export type FrameRequest = WriteMessage | PackMessage;

/** The answer to the request of the same id; `error`: it failed. */
export interface FrameReply {
  id: number;
  /** A frame of other content than named: nothing was written. */
  mismatch?: boolean;
  error?: string;
  /** The frame would decompress to more than it may. */
  tooLarge?: boolean;
  /** The frame is not one zstd decompresses. */
  undecodable?: boolean;
  /** A chunk read: its hash (none: all zeroes), and its frame or itself unless its hash is known. */
  hash?: string;
  frame?: Uint8Array;
  data?: Uint8Array;
}

/** zlib's zstd as this worker uses it: Node 24's, which @types/node 20 does not describe. */
interface ZstdZlib {
  createZstdDecompress(): ZstdStream;
  createZstdCompress(options: { params: Record<number, number> }): ZstdStream;
  zstdDecompressSync(frame: Uint8Array, options: { maxOutputLength: number; chunkSize: number }): Buffer;
  zstdCompressSync?: (data: Uint8Array, options: { params: Record<number, number>; maxOutputLength: number }) => Buffer;
  constants: { ZSTD_e_end: number; ZSTD_c_compressionLevel: number };
}

/** A zstd stream, with the internals that zlib's synchronous path uses. */
interface ZstdStream {
  reset(): void;
  on(event: 'error', listener: () => void): unknown;
  readonly errored: Error | null;
  _handle?: { writeSync?: unknown } | null;
  _writeState?: unknown;
}

/** The stream's native handle, and what its writeSync leaves: [output bytes left, input bytes left]. */
interface FastPath {
  stream: ZstdStream;
  handle: {
    writeSync(
      flush: number,
      input: Uint8Array,
      inOffset: number,
      inLength: number,
      output: Uint8Array,
      outOffset: number,
      outLength: number
    ): void;
  };
  state: Uint32Array;
}

if (!parentPort) throw new Error('frame-worker runs in a worker thread (workers.ts starts it)');
const port: MessagePort = parentPort;

// Undefined: not made yet (or dropped after a failure); null: this Node's stream has no fast path.
let decoder: ZstdStream | null | undefined;
let output = Buffer.alloc(0);
let encoder: ZstdStream | null | undefined;
let packed = Buffer.alloc(0);
let chunk = Buffer.alloc(0);
let zeroes = Buffer.alloc(0);
let known = new Set<string>();

function reply(message: FrameReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isTooLarge(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
}

function tooLarge(maxBytes: number): Error {
  return Object.assign(new Error(`a frame decompresses to more than ${maxBytes} bytes`), {
    code: 'ERR_BUFFER_TOO_LARGE'
  });
}

function fastPath(stream: ZstdStream | null): FastPath | undefined {
  const handle = stream?._handle;
  const state = stream?._writeState;
  if (!stream || !handle || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array)) return undefined;
  return { stream, handle: handle as FastPath['handle'], state };
}

function decompress(frame: Uint8Array, maxBytes: number, chunkSize: number): Uint8Array {
  if (decoder === undefined) {
    decoder = zstd.createZstdDecompress();
    // Its failure is read from 'errored' right away; the event that follows is no news.
    decoder.on('error', () => undefined);
  } else if (decoder !== null) decoder.reset();
  const fast = fastPath(decoder);
  if (!fast) {
    decoder = null;
    return zstd.zstdDecompressSync(frame, { maxOutputLength: maxBytes, chunkSize });
  }
  // One byte more than allowed: a frame that fills it is too large.
  if (output.length !== maxBytes + 1) output = Buffer.allocUnsafe(maxBytes + 1);
  fast.handle.writeSync(zstd.constants.ZSTD_e_end, frame, 0, frame.length, output, 0, output.length);
  const failed = fast.stream.errored;
  const produced = output.length - fast.state[0];
  const left = fast.state[1];
  if (failed) {
    decoder = undefined;
    throw failed;
  }
  if (produced > maxBytes) throw tooLarge(maxBytes);
  if (left > 0) throw new Error(`${left} bytes follow the frame`);
  return output.subarray(0, produced);
}

function compress(data: Buffer, level: number, maxBytes: number): Buffer | undefined {
  if (typeof zstd.zstdCompressSync !== 'function') return undefined;
  const params = { [zstd.constants.ZSTD_c_compressionLevel]: level };
  if (encoder === undefined) {
    encoder = zstd.createZstdCompress({ params });
    encoder.on('error', () => undefined);
  } else if (encoder !== null) encoder.reset();
  const fast = fastPath(encoder);
  if (!fast) {
    encoder = null;
    return zstd.zstdCompressSync(data, { params, maxOutputLength: maxBytes });
  }
  if (packed.length !== maxBytes) packed = Buffer.allocUnsafe(maxBytes);
  fast.handle.writeSync(zstd.constants.ZSTD_e_end, data, 0, data.length, packed, 0, packed.length);
  const failed = fast.stream.errored;
  if (failed) {
    encoder = undefined;
    throw failed;
  }
  // Input left, or the output full: the frame did not fit.
  if (fast.state[1] > 0 || fast.state[0] === 0) {
    encoder = undefined;
    throw new Error(`a chunk compresses to more than ${maxBytes} bytes`);
  }
  return packed.subarray(0, packed.length - fast.state[0]);
}

function pack({ id, request, known: next }: PackMessage): void {
  if (next) known = new Set(next);
  const { fd, offset, bytes, keep, level, maxFrameBytes } = request;
  if (chunk.length !== bytes) {
    chunk = Buffer.allocUnsafe(bytes);
    zeroes = Buffer.alloc(bytes);
  }
  let read = 0;
  for (let got = -1; got !== 0 && read < bytes; read += got)
    got = readSync(fd, chunk, read, bytes - read, offset + read);
  let from = 0;
  for (const [start, end] of keep) {
    chunk.fill(0, from, start);
    from = end;
  }
  chunk.fill(0, Math.min(from, read));
  if (chunk.equals(zeroes)) {
    reply({ id });
    return;
  }
  const hash = createHash('sha256').update(chunk).digest('hex');
  if (known.has(hash)) {
    reply({ id, hash });
    return;
  }
  const frame = compress(chunk, level, maxFrameBytes);
  // Its own copy, moved to the main thread: the worker's buffers serve the next chunk.
  const own = new Uint8Array(frame ?? chunk);
  reply(frame ? { id, hash, frame: own } : { id, hash, data: own }, [own.buffer]);
}

function write({ id, frame, maxBytes, chunkSize, target }: WriteMessage): void {
  let data: Uint8Array;
  try {
    data = decompress(frame, maxBytes, chunkSize);
  } catch (error) {
    const large = isTooLarge(error);
    reply({ id, error: messageOf(error), tooLarge: large, undecodable: !large });
    return;
  }
  if (data.length !== target.bytes || createHash('sha256').update(data).digest('hex') !== target.hash) {
    reply({ id, mismatch: true });
    return;
  }
  for (const offset of target.offsets)
    for (let done = 0; done < data.length;) {
      const length = Math.min(WRITE_SLICE_BYTES, data.length - done);
      done += writeSync(target.fd, data, done, length, offset + done);
    }
  reply({ id });
}

port.on('message', (message: FrameRequest) => {
  try {
    if (message.kind === 'pack') pack(message);
    else write(message);
  } catch (error) {
    reply({ id: message.id, error: messageOf(error), tooLarge: isTooLarge(error) });
  }
});
