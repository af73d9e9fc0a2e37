// Frames on worker threads, one per core: a restore's worker decompresses a frame, checks its sha256
// and writes the chunk into the image itself; a save's worker reads a chunk of the image, hashes it and
// compresses it (a file descriptor is the process's, so any thread can read and write through it). The
// main thread only fetches and uploads: decompressing, compressing and hashing there would bound a
// restore or a save by one core, and chunks handed to it would cost it the garbage collection of their
// memory. Frames to open arrive as views of shared memory (write.ts).
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FrameReply, FrameRequest, FrameTarget, PackRequest } from './frame-worker';

// The workers' code, beside this module: frame-worker.ts in src/ (Node strips its types), and in
// dist/ frame-worker.js beside each bundle (scripts/build.ts).
const WORKER_FILE = path.join(__dirname, `frame-worker${path.extname(__filename)}`);

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

/** What a worker did with a frame: wrote its chunk, or found other content than named (nothing written). */
export type FrameOutcome = 'written' | 'mismatch';

interface Pending {
  resolve: (reply: FrameReply) => void;
  reject: (error: FrameWorkerError) => void;
}

class FrameWorker {
  private readonly worker = new Worker(WORKER_FILE);
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** The hashes whose chunks this worker does not compress, as last sent to it. */
  private known?: ReadonlySet<string>;

  constructor() {
    this.worker.on('message', (reply: FrameReply) => this.settle(reply));
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
    let reply: FrameReply;
    if (
      frame.buffer instanceof SharedArrayBuffer ||
      (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength)
    )
      reply = await this.post(id => ({ kind: 'write', id, frame, maxBytes, chunkSize, target }));
    else {
      const own = new Uint8Array(frame);
      reply = await this.post(id => ({ kind: 'write', id, frame: own, maxBytes, chunkSize, target }), [own.buffer]);
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

  private post(message: (id: number) => FrameRequest, transfer: ArrayBuffer[] = []): Promise<FrameReply> {
    const id = this.nextId++;
    // Only a worker with work keeps the process alive.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message(id), transfer);
    });
  }

  private settle(reply: FrameReply): void {
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
