// Decompressing and hashing the frames of a restore on worker threads, one per core. On the main
// thread they capped a restore at ~2.8 ms a chunk (measured on Node 24, 2 cores): sha256 is
// synchronous, and zlib's asynchronous zstd still spends ~0.6 ms a frame there, so the main thread,
// not the download nor the disk, was the bottleneck. A worker does both in ~1.5 ms of its own core.
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';

/** What a worker hands back: the chunk, and the sha256 of its content. */
export interface OpenedFrame {
  data: Buffer;
  hash: string;
}

export class FrameWorkerError extends Error {
  constructor(
    message: string,
    /** The frame would decompress to more than it may. */
    readonly tooLarge: boolean
  ) {
    super(message);
  }
}

// Only built-in modules, so that the bundle need not ship a file for it. Outputs of at least 64 KiB
// own their memory and are moved to the main thread, not copied.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const zlib = require('node:zlib');
parentPort.on('message', ({ id, frame, maxBytes, chunkSize }) => {
  try {
    const data = zlib.zstdDecompressSync(frame, { maxOutputLength: maxBytes, chunkSize });
    const hash = createHash('sha256').update(data).digest('hex');
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.byteLength >= 65536;
    parentPort.postMessage({ id, data, hash }, own ? [data.buffer] : []);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message), tooLarge: error && error.code === 'ERR_BUFFER_TOO_LARGE' });
  }
});
`;

interface Reply {
  id: number;
  data?: Uint8Array;
  hash?: string;
  error?: string;
  tooLarge?: boolean;
}

interface Pending {
  resolve: (opened: OpenedFrame) => void;
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

  open(frame: Buffer, maxBytes: number, chunkSize: number): Promise<OpenedFrame> {
    const id = this.nextId++;
    // Only a worker with work keeps the process alive.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // A view into a larger buffer (a frame of a downloaded range) would be cloned whole, every
      // time: post a copy of just the frame instead, moved rather than cloned again.
      if (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength)
        this.worker.postMessage({ id, frame, maxBytes, chunkSize });
      else {
        const own = new Uint8Array(frame);
        this.worker.postMessage({ id, frame: own, maxBytes, chunkSize }, [own.buffer]);
      }
    });
  }

  private settle(reply: Reply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.data && reply.hash !== undefined)
      pending.resolve({
        data: Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength),
        hash: reply.hash
      });
    else pending.reject(new FrameWorkerError(reply.error ?? 'no reason given', reply.tooLarge === true));
  }

  private failAll(error: FrameWorkerError): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

let workers: FrameWorker[] | undefined;

/**
 * Decompresses a zstd frame (at most `maxBytes` of output, zlib's output buffer `chunkSize`) and hashes
 * the result, on the least busy worker.
 */
export function openOnWorker(frame: Buffer, maxBytes: number, chunkSize: number): Promise<OpenedFrame> {
  if (!workers?.length)
    workers = Array.from({ length: Math.max(1, os.availableParallelism()) }, () => new FrameWorker());
  const idlest = workers.reduce((best, worker) => (worker.load < best.load ? worker : best));
  return idlest.open(frame, maxBytes, chunkSize);
}
