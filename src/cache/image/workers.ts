// Frames on worker threads, one per core: a restore's worker decompresses a frame, checks its sha256
// and writes the chunk into the image itself; a save's worker reads a chunk of the image, hashes it and
// compresses it (a file descriptor is the process's, so any thread can read and write through it). The
// main thread only fetches and uploads: decompressing, compressing and hashing there would bound a
// restore or a save by one core, and chunks handed to it would cost it the garbage collection of their
// memory. Frames to open arrive as views of shared memory (write.ts).
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';

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

/** A chunk read, with its sha256 (hex): its zstd frame, or where zstd is not built in, the chunk itself. */
export interface PackedChunk {
  hash: string;
  frame?: Buffer;
  data?: Buffer;
}

export class FrameWorkerError extends Error {
  constructor(
    message: string,
    /** The frame would decompress to more than it may. */
    readonly tooLarge: boolean,
    /** The frame is not one zstd decompresses: its bytes are corrupt, not the worker. */
    readonly undecodable = false
  ) {
    super(message);
  }
}

// Only built-in modules, so that the bundle need not ship a file for it. A frame is decompressed, and a
// chunk read and compressed, into buffers of the worker's own, used again and again, through the zstd
// stream's handle as zlib's own synchronous path does: zstdDecompressSync and zstdCompressSync make a
// fresh 1 MiB buffer per frame, which the kernel must fault in, the CPU fetch from memory again for the
// hash and the write, and the garbage collector reclaim (a third of a restore's CPU here, half of a
// save's). Where the handle is not as expected (another Node), the synchronous calls do the same job;
// where zstd is not built in (Node 20), a save's chunk goes back to be compressed by the zstd CLI.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { readSync, writeSync } = require('node:fs');
const zlib = require('node:zlib');
let decoder;
let output = Buffer.alloc(0);
let encoder;
let packed = Buffer.alloc(0);
let chunk = Buffer.alloc(0);
let zeroes = Buffer.alloc(0);
let known = new Set();
function tooLarge(maxBytes) {
  return Object.assign(new Error('a frame decompresses to more than ' + maxBytes + ' bytes'), { code: 'ERR_BUFFER_TOO_LARGE' });
}
function decompress(frame, maxBytes, chunkSize) {
  if (decoder === undefined) {
    decoder = zlib.createZstdDecompress();
    // Its failure is read from 'errored' right away; the event that follows is no news.
    decoder.on('error', () => undefined);
  } else if (decoder !== null) decoder.reset();
  const handle = decoder && decoder._handle;
  const state = decoder && decoder._writeState;
  if (!handle || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array)) {
    decoder = null;
    return zlib.zstdDecompressSync(frame, { maxOutputLength: maxBytes, chunkSize });
  }
  // One byte more than allowed: a frame that fills it is too large.
  if (output.length !== maxBytes + 1) output = Buffer.allocUnsafe(maxBytes + 1);
  handle.writeSync(zlib.constants.ZSTD_e_end, frame, 0, frame.length, output, 0, output.length);
  const failed = decoder.errored;
  const produced = output.length - state[0];
  const left = state[1];
  if (failed) {
    decoder = undefined;
    throw failed;
  }
  if (produced > maxBytes) throw tooLarge(maxBytes);
  if (left > 0) throw new Error(left + ' bytes follow the frame');
  return output.subarray(0, produced);
}
function compress(data, level, maxBytes) {
  if (typeof zlib.zstdCompressSync !== 'function') return undefined;
  const params = { [zlib.constants.ZSTD_c_compressionLevel]: level };
  if (encoder === undefined) {
    encoder = zlib.createZstdCompress({ params });
    encoder.on('error', () => undefined);
  } else if (encoder !== null) encoder.reset();
  const handle = encoder && encoder._handle;
  const state = encoder && encoder._writeState;
  if (!handle || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array)) {
    encoder = null;
    return zlib.zstdCompressSync(data, { params, maxOutputLength: maxBytes });
  }
  if (packed.length !== maxBytes) packed = Buffer.allocUnsafe(maxBytes);
  handle.writeSync(zlib.constants.ZSTD_e_end, data, 0, data.length, packed, 0, packed.length);
  const failed = encoder.errored;
  if (failed) {
    encoder = undefined;
    throw failed;
  }
  // Input left, or the output full: the frame did not fit.
  if (state[1] > 0 || state[0] === 0) {
    encoder = undefined;
    throw new Error('a chunk compresses to more than ' + maxBytes + ' bytes');
  }
  return packed.subarray(0, packed.length - state[0]);
}
function pack({ id, request, known: next }) {
  if (next) known = new Set(next);
  const { fd, offset, bytes, keep, level, maxFrameBytes } = request;
  if (chunk.length !== bytes) {
    chunk = Buffer.allocUnsafe(bytes);
    zeroes = Buffer.alloc(bytes);
  }
  let read = 0;
  for (let got = -1; got !== 0 && read < bytes; read += got) got = readSync(fd, chunk, read, bytes - read, offset + read);
  let from = 0;
  for (const [start, end] of keep) {
    chunk.fill(0, from, start);
    from = end;
  }
  chunk.fill(0, Math.min(from, read));
  if (chunk.equals(zeroes)) return parentPort.postMessage({ id });
  const hash = createHash('sha256').update(chunk).digest('hex');
  if (known.has(hash)) return parentPort.postMessage({ id, hash });
  const frame = compress(chunk, level, maxFrameBytes);
  // Its own copy, moved to the main thread: the worker's buffers serve the next chunk.
  const own = new Uint8Array(frame || chunk);
  parentPort.postMessage(frame ? { id, hash, frame: own } : { id, hash, data: own }, [own.buffer]);
}
parentPort.on('message', message => {
  if (message.kind === 'pack') {
    try {
      pack(message);
    } catch (error) {
      parentPort.postMessage({ id: message.id, error: String(error && error.message) });
    }
    return;
  }
  const { id, frame, maxBytes, chunkSize, target } = message;
  try {
    let data;
    try {
      data = decompress(frame, maxBytes, chunkSize);
    } catch (error) {
      const tooLarge = error && error.code === 'ERR_BUFFER_TOO_LARGE';
      parentPort.postMessage({ id, error: String(error && error.message), tooLarge, undecodable: !tooLarge });
      return;
    }
    if (data.length !== target.bytes || createHash('sha256').update(data).digest('hex') !== target.hash) {
      parentPort.postMessage({ id, mismatch: true });
      return;
    }
    for (const offset of target.offsets)
      for (let done = 0; done < data.length; ) done += writeSync(target.fd, data, done, data.length - done, offset + done);
    parentPort.postMessage({ id });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message), tooLarge: error && error.code === 'ERR_BUFFER_TOO_LARGE' });
  }
});
`;

/** What a worker did with a frame: wrote its chunk, or found other content than named (nothing written). */
export type FrameOutcome = 'written' | 'mismatch';

interface Reply {
  id: number;
  mismatch?: boolean;
  error?: string;
  tooLarge?: boolean;
  undecodable?: boolean;
  /** A chunk read: its hash (none: all zeroes), and its frame or itself unless its hash is known. */
  hash?: string;
  frame?: Uint8Array;
  data?: Uint8Array;
}

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (error: FrameWorkerError) => void;
}

class FrameWorker {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** The hashes whose chunks this worker does not compress, as last sent to it. */
  private known?: ReadonlySet<string>;

  constructor() {
    this.worker.on('message', (reply: Reply) => this.settle(reply));
    this.worker.on('error', error => this.failAll(new FrameWorkerError(error.message, false)));
    this.worker.on('exit', code => {
      this.failAll(new FrameWorkerError(`a frame worker exited (code ${code})`, false));
      // The next frame gets a new one.
      workers = workers?.filter(worker => worker !== this);
    });
    this.worker.unref();
  }

  get load(): number {
    return this.pending.size;
  }

  async write(frame: Buffer, maxBytes: number, chunkSize: number, target: FrameTarget): Promise<FrameOutcome> {
    // Shared memory (a downloaded range, see write.ts) goes as it is; any other view into a larger
    // buffer would be cloned whole, every time: post a copy of just the frame instead, moved rather
    // than cloned again.
    let reply: Reply;
    if (
      frame.buffer instanceof SharedArrayBuffer ||
      (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength)
    )
      reply = await this.post(id => ({ id, frame, maxBytes, chunkSize, target }));
    else {
      const own = new Uint8Array(frame);
      reply = await this.post(id => ({ id, frame: own, maxBytes, chunkSize, target }), [own.buffer]);
    }
    return reply.mismatch ? 'mismatch' : 'written';
  }

  async pack(request: PackRequest, known: ReadonlySet<string>): Promise<PackedChunk | undefined> {
    // The set goes once to each worker, not with every chunk.
    const next = known === this.known ? undefined : [...known];
    this.known = known;
    const { hash, frame, data } = await this.post(id => ({ kind: 'pack', id, request, known: next }));
    if (hash === undefined) return undefined;
    const view = (bytes?: Uint8Array) => bytes && Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return { hash, frame: view(frame), data: view(data) };
  }

  private post(message: (id: number) => object, transfer: ArrayBuffer[] = []): Promise<Reply> {
    const id = this.nextId++;
    // Only a worker with work keeps the process alive.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message(id), transfer);
    });
  }

  private settle(reply: Reply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.error === undefined) pending.resolve(reply);
    else pending.reject(new FrameWorkerError(reply.error, reply.tooLarge === true, reply.undecodable === true));
  }

  private failAll(error: FrameWorkerError): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

let workers: FrameWorker[] | undefined;

/** The least busy worker; the workers start with the first frame. */
function idlest(): FrameWorker {
  if (!workers?.length)
    workers = Array.from({ length: Math.max(1, os.availableParallelism()) }, () => new FrameWorker());
  return workers.reduce((best, worker) => (worker.load < best.load ? worker : best));
}

/**
 * Decompresses a zstd frame (at most `maxBytes` of output, zlib's output buffer `chunkSize`) and, if it
 * is the chunk `target` names, writes it at the target's offsets, on the least busy worker.
 */
export function writeOnWorker(
  frame: Buffer,
  maxBytes: number,
  chunkSize: number,
  target: FrameTarget
): Promise<FrameOutcome> {
  return idlest().write(frame, maxBytes, chunkSize, target);
}

/**
 * Reads a chunk of an image, zeroes what it does not keep, and hashes it, on the least busy worker;
 * compresses it unless its hash is `known`. Undefined: the chunk is all zeroes.
 */
export function packOnWorker(request: PackRequest, known: ReadonlySet<string>): Promise<PackedChunk | undefined> {
  return idlest().pack(request, known);
}
