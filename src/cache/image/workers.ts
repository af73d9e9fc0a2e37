// Opening the frames of a restore on worker threads, one per core: each worker decompresses a frame,
// checks its sha256 and writes the chunk into the image itself (a file descriptor is the process's,
// so any thread can write through it). The main thread only fetches: decompressing and hashing there
// would bound a restore by one core, and chunks handed back to it to write would cost it the garbage
// collection of their memory. Frames arrive as views of shared memory (write.ts).
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

// Only built-in modules, so that the bundle need not ship a file for it. A frame is decompressed into
// the worker's one output buffer, through the decoder's handle as zlib's own synchronous path does:
// zstdDecompressSync makes a fresh 1 MiB buffer per frame, which the kernel must fault in and the CPU
// fetch from memory again for the hash and the write (a third of a restore's CPU here). Where the
// handle is not as expected (another Node), zstdDecompressSync does the same job.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { writeSync } = require('node:fs');
const zlib = require('node:zlib');
let decoder;
let output = Buffer.alloc(0);
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
parentPort.on('message', ({ id, frame, maxBytes, chunkSize, target }) => {
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
}

interface Pending {
  resolve: (outcome: FrameOutcome) => void;
  reject: (error: FrameWorkerError) => void;
}

class FrameWorker {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

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

  write(frame: Buffer, maxBytes: number, chunkSize: number, target: FrameTarget): Promise<FrameOutcome> {
    const id = this.nextId++;
    // Only a worker with work keeps the process alive.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Shared memory (a downloaded range, see write.ts) goes as it is; any other view into a
      // larger buffer would be cloned whole, every time: post a copy of just the frame instead, moved
      // rather than cloned again.
      if (
        frame.buffer instanceof SharedArrayBuffer ||
        (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength)
      )
        this.worker.postMessage({ id, frame, maxBytes, chunkSize, target });
      else {
        const own = new Uint8Array(frame);
        this.worker.postMessage({ id, frame: own, maxBytes, chunkSize, target }, [own.buffer]);
      }
    });
  }

  private settle(reply: Reply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.error === undefined) pending.resolve(reply.mismatch ? 'mismatch' : 'written');
    else pending.reject(new FrameWorkerError(reply.error, reply.tooLarge === true, reply.undecodable === true));
  }

  private failAll(error: FrameWorkerError): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

let workers: FrameWorker[] | undefined;

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
  if (!workers?.length)
    workers = Array.from({ length: Math.max(1, os.availableParallelism()) }, () => new FrameWorker());
  const idlest = workers.reduce((best, worker) => (worker.load < best.load ? worker : best));
  return idlest.write(frame, maxBytes, chunkSize, target);
}
