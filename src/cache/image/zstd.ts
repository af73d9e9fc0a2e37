// zstd frames, one per chunk of the daemon's data. Node 24 (the action's runtime: runs.using node24)
// has zstd in zlib: a save reads, hashes and compresses chunks, and a restore opens and writes
// frames, on worker threads (workers.ts); older Nodes (development machines) spawn the zstd CLI per
// frame, which is slower but makes the same frames.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { CHUNK_BYTES } from '../../daemon/data-image';
import { MAX_FRAME_BYTES } from '../manifest';
import { FrameWorkerError, packOnWorker, writeOnWorker, type FrameOutcome } from './workers';

/** zstd's default level: ratio within a few percent of level 9, several times its speed. */
const ZSTD_LEVEL = 3;

type Callback = (error: Error | null, result: Buffer) => void;
interface ZstdZlib {
  zstdCompress(data: Buffer, options: object, callback: Callback): void;
  zstdDecompress(data: Buffer, options: object, callback: Callback): void;
  constants: { ZSTD_c_compressionLevel: number };
}

const builtIn =
  typeof (zlib as unknown as Partial<ZstdZlib>).zstdCompress === 'function' ? (zlib as unknown as ZstdZlib) : undefined;

export class FrameTooLargeError extends Error {}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Whether frames can be made and read here: built in, or the zstd CLI. */
export async function zstdAvailable(): Promise<boolean> {
  if (builtIn) return true;
  return cli(['--version'], Buffer.alloc(0), 1024).then(
    () => true,
    () => false
  );
}

/**
 * zlib's output buffer for one frame: the whole chunk at once. zlib's default (16 KiB) makes a 1 MiB
 * chunk take 64 round trips through the thread pool, which doubles its time.
 */
function bufferBytes(bytes: number): number {
  return Math.max(64 * 1024, Math.min(bytes, 4 * 1024 * 1024));
}

export function compressFrame(data: Buffer): Promise<Buffer> {
  if (!builtIn) return cli([`-${ZSTD_LEVEL}`, '--quiet', '--stdout', '--no-check'], data, data.length + 65536);
  const zstd = builtIn;
  return new Promise((resolve, reject) =>
    zstd.zstdCompress(
      data,
      { chunkSize: bufferBytes(data.length), params: { [zstd.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } },
      (error, result) => (error ? reject(error) : resolve(result))
    )
  );
}

/** Decompresses one frame; a frame that would grow beyond `maxBytes` is refused before it does. */
export function decompressFrame(frame: Buffer, maxBytes: number): Promise<Buffer> {
  if (!builtIn) return cli(['--decompress', '--quiet', '--stdout'], frame, maxBytes);
  const zstd = builtIn;
  return new Promise((resolve, reject) =>
    zstd.zstdDecompress(frame, { maxOutputLength: maxBytes, chunkSize: bufferBytes(maxBytes) }, (error, result) => {
      if (!error) resolve(result);
      else if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
        reject(new FrameTooLargeError(`a frame decompresses to more than ${maxBytes} bytes`));
      else reject(error);
    })
  );
}

/**
 * Decompresses one frame and, when it holds the chunk named (`bytes` long, sha256 `hash`), writes that
 * at each of `offsets` of `file`: on worker threads where zstd is built in, else with the CLI and on
 * this thread. 'mismatch': it holds something else, and nothing was written.
 */
export async function writeFrameData(
  frame: Buffer,
  chunk: { hash: string; bytes: number },
  file: FileHandle,
  offsets: number[]
): Promise<FrameOutcome> {
  if (!builtIn) {
    const data = await decompressFrame(frame, chunk.bytes);
    if (data.length !== chunk.bytes || sha256(data) !== chunk.hash) return 'mismatch';
    for (const offset of offsets) await file.write(data, 0, data.length, offset);
    return 'written';
  }
  try {
    return await writeOnWorker(frame, chunk.bytes, bufferBytes(chunk.bytes), { fd: file.fd, offsets, ...chunk });
  } catch (error) {
    if (error instanceof FrameWorkerError && error.tooLarge)
      throw new FrameTooLargeError(`a frame decompresses to more than ${chunk.bytes} bytes`, { cause: error });
    throw error;
  }
}

/**
 * Reads the chunk at `offset` of the image `fd`, keeping only the byte ranges `keep` (the rest is
 * zeroed), and hashes it; compresses it into a frame unless its hash is `known`. Undefined: the
 * chunk is all zeroes.
 */
export async function packChunk(
  fd: number,
  offset: number,
  keep: Array<[number, number]>,
  known: ReadonlySet<string>
): Promise<{ hash: string; frame?: Buffer } | undefined> {
  const request = { fd, offset, bytes: CHUNK_BYTES, keep, level: ZSTD_LEVEL, maxFrameBytes: MAX_FRAME_BYTES };
  const packed = await packOnWorker(request, known);
  if (!packed?.data) return packed && { hash: packed.hash, frame: packed.frame };
  return { hash: packed.hash, frame: await compressFrame(packed.data) };
}

/** The zstd CLI on `input`, its output capped at `maxBytes`. */
function cli(args: string[], input: Buffer, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let tooLarge = false;
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        tooLarge = true;
        child.kill('SIGKILL');
      } else chunks.push(chunk);
    });
    child.stderr.on('data', chunk => (stderr += chunk));
    child.on('error', reject);
    child.on('close', code => {
      if (tooLarge) reject(new FrameTooLargeError(`a frame decompresses to more than ${maxBytes} bytes`));
      else if (code === 0) resolve(Buffer.concat(chunks));
      else reject(new Error(`zstd ${args[0]} failed (exit ${code}): ${stderr.trim()}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}
