// Frames written and chunks packed by worker threads that run src/cache/image/frame-worker.ts itself
// (Node 24 strips its types): each chunk lands at its offsets intact, many at once; a frame of other
// content is not written; errors reach the caller; idle workers do not keep a process alive.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { CHUNK_BYTES } from '../../../../src/daemon/data-image';
import { FrameWorkerError, packOnWorker, writeOnWorker } from '../../../../src/cache/image/workers';
import { compressFrame, decompressFrame, packChunk, sha256 } from '../../../../src/cache/image/zstd';
import { defined } from '../../../support/defined';
import { MAX_FRAME_BYTES } from '../../../../src/cache/manifest';

describe('frame workers (Node 24)', () => {
  const chunks = Array.from({ length: 24 }, (_, i) => Buffer.alloc(CHUNK_BYTES, `chunk ${i} `));
  let dir: string;
  let file: string;
  let fd: number;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-workers-'));
    file = path.join(dir, 'image');
    fd = fs.openSync(file, 'w+');
  });
  afterEach(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const target = (i: number, offsets: number[]) => ({ fd, offsets, hash: sha256(chunks[i]), bytes: CHUNK_BYTES });
  const at = (offset: number) => {
    const data = Buffer.alloc(CHUNK_BYTES);
    fs.readSync(fd, data, 0, CHUNK_BYTES, offset);
    return data;
  };

  test('this Node strips types and has zstd in zlib, as the workers need (Node 24: CONTRIBUTING.md)', () => {
    const { typescript } = process.features as typeof process.features & { typescript?: 'strip' | 'transform' | false };
    const { zstdCompressSync } = zlib as unknown as { zstdCompressSync?: unknown };
    expect({ typescript: Boolean(typescript), zstd: typeof zstdCompressSync }).toEqual({
      typescript: true,
      zstd: 'function'
    });
  });

  test('many frames at once: each chunk lands at its offsets', async () => {
    const frames = await Promise.all(chunks.map(chunk => compressFrame(chunk)));
    // Chunk i at i and, for the even ones, again past the end of the others (a chunk used twice).
    const outcomes = await Promise.all(
      frames.map((frame, i) =>
        writeOnWorker(
          frame,
          CHUNK_BYTES,
          CHUNK_BYTES,
          target(i, i % 2 === 0 ? [i * CHUNK_BYTES, (24 + i) * CHUNK_BYTES] : [i * CHUNK_BYTES])
        )
      )
    );
    expect(outcomes).toEqual(frames.map(() => 'written'));
    chunks.forEach((chunk, i) => {
      expect(at(i * CHUNK_BYTES).equals(chunk)).toBe(true);
      if (i % 2 === 0) expect(at((24 + i) * CHUNK_BYTES).equals(chunk)).toBe(true);
    });
  });

  test('frames that are views into one larger buffer (a downloaded range), as the restore hands them over', async () => {
    const frames = await Promise.all(chunks.slice(0, 4).map(chunk => compressFrame(chunk)));
    const range = Buffer.concat(frames);
    let offset = 0;
    const views = frames.map(frame => range.subarray(offset, (offset += frame.length)));
    await Promise.all(
      views.map((view, i) => writeOnWorker(view, CHUNK_BYTES, CHUNK_BYTES, target(i, [i * CHUNK_BYTES])))
    );
    chunks.slice(0, 4).forEach((chunk, i) => expect(at(i * CHUNK_BYTES).equals(chunk)).toBe(true));
    // The range itself is left as it was: the restore may still keep its frames in the runner's store.
    expect(range.equals(Buffer.concat(frames))).toBe(true);
  });

  test('a frame of other content than named, or of another length, is not written', async () => {
    const other = await compressFrame(chunks[1]);
    expect(await writeOnWorker(other, CHUNK_BYTES, CHUNK_BYTES, target(0, [0]))).toBe('mismatch');
    const short = await compressFrame(chunks[0].subarray(1));
    expect(await writeOnWorker(short, CHUNK_BYTES, CHUNK_BYTES, target(0, [0]))).toBe('mismatch');
    expect(fs.statSync(file).size).toBe(0);
  });

  test('a frame larger than allowed and a frame that is not zstd are refused, and the workers go on', async () => {
    const frame = await compressFrame(chunks[0]);
    await expect(writeOnWorker(frame, CHUNK_BYTES - 1, CHUNK_BYTES, target(0, [0]))).rejects.toMatchObject({
      tooLarge: true
    });
    await expect(writeOnWorker(Buffer.from('not a frame'), CHUNK_BYTES, CHUNK_BYTES, target(0, [0]))).rejects.toThrow(
      FrameWorkerError
    );
    expect(await writeOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES, target(0, [0]))).toBe('written');
  });

  test('a truncated frame and bytes after a frame are refused; every worker then opens good frames again', async () => {
    const frames = await Promise.all(chunks.slice(0, 8).map(chunk => compressFrame(chunk)));
    const truncated = frames[0].subarray(0, frames[0].length - 4);
    const trailing = Buffer.concat([frames[0], Buffer.from('more')]);
    const twoFrames = Buffer.concat([frames[0], frames[1]]);
    // As many bad frames as workers and more, all at once, so that every worker gets some.
    const bad = [truncated, trailing, twoFrames].flatMap(frame => Array.from({ length: 4 }, () => frame));
    const refused = await Promise.allSettled(
      bad.map(frame => writeOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES, target(0, [0])))
    );
    expect(refused.map(outcome => outcome.status)).toEqual(bad.map(() => 'rejected'));
    expect(fs.statSync(file).size).toBe(0);
    const outcomes = await Promise.all(
      frames.map((frame, i) => writeOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES, target(i, [i * CHUNK_BYTES])))
    );
    expect(outcomes).toEqual(frames.map(() => 'written'));
    chunks.slice(0, 8).forEach((chunk, i) => expect(at(i * CHUNK_BYTES).equals(chunk)).toBe(true));
  });

  test('a write that fails (a descriptor not open for writing) reaches the caller', async () => {
    const readOnly = fs.openSync(file, 'r');
    try {
      const frame = await compressFrame(chunks[0]);
      await expect(writeOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES, { ...target(0, [0]), fd: readOnly })).rejects.toThrow(
        FrameWorkerError
      );
    } finally {
      fs.closeSync(readOnly);
    }
  });

  test('chunks packed, many at once: each hashed and compressed, with only what it keeps', async () => {
    chunks.forEach((chunk, i) => fs.writeSync(fd, chunk, 0, CHUNK_BYTES, i * CHUNK_BYTES));
    // The first half of each chunk kept, but for the last 4 KiB of it.
    const keep: Array<[number, number]> = [
      [0, CHUNK_BYTES / 2 - 8192],
      [CHUNK_BYTES / 2 - 4096, CHUNK_BYTES / 2]
    ];
    const kept = (chunk: Buffer) => {
      const copy = Buffer.from(chunk);
      copy.fill(0, CHUNK_BYTES / 2 - 8192, CHUNK_BYTES / 2 - 4096);
      return copy.fill(0, CHUNK_BYTES / 2);
    };
    const packed = await Promise.all(chunks.map((_, i) => packChunk(fd, i * CHUNK_BYTES, keep, new Set())));
    for (const [i, chunk] of chunks.entries()) {
      expect(packed[i]?.hash).toBe(sha256(kept(chunk)));
      expect((await decompressFrame(defined(packed[i]?.frame, 'frame'), CHUNK_BYTES)).equals(kept(chunk))).toBe(true);
    }
  });

  test('a chunk packed: a known one is hashed only, one of zeroes (in keep or past the end) is nothing, a failure reaches the caller', async () => {
    fs.writeSync(fd, chunks[0], 0, CHUNK_BYTES, 0);
    const all: Array<[number, number]> = [[0, CHUNK_BYTES]];
    expect(await packChunk(fd, 0, all, new Set([sha256(chunks[0])]))).toEqual({ hash: sha256(chunks[0]) });
    expect(await packChunk(fd, 0, [], new Set())).toBeUndefined();
    expect(await packChunk(fd, 8 * CHUNK_BYTES, all, new Set())).toBeUndefined();
    const request = { fd, offset: 0, bytes: CHUNK_BYTES, keep: all, level: 3 };
    await expect(packOnWorker({ ...request, maxFrameBytes: 100 }, new Set())).rejects.toThrow(FrameWorkerError);
    expect((await packOnWorker({ ...request, maxFrameBytes: MAX_FRAME_BYTES }, new Set()))?.hash).toBe(
      sha256(chunks[0])
    );
  });

  test('a process whose workers are idle exits by itself', () => {
    const script = `const { writeOnWorker } = require(${JSON.stringify(path.resolve('src/cache/image/workers.ts'))});
      const fs = require('node:fs');
      const file = require('node:path').join(${JSON.stringify(os.tmpdir())}, 'setup-dind-idle-' + process.pid);
      const fd = fs.openSync(file, 'w+');
      const data = Buffer.alloc(1000, 'x');
      const hash = require('node:crypto').createHash('sha256').update(data).digest('hex');
      writeOnWorker(require('node:zlib').zstdCompressSync(data), 1000, 65536, { fd, offsets: [0], hash, bytes: 1000 })
        .then(o => { console.log(o, fs.statSync(file).size); fs.rmSync(file); });`;
    const output = execFileSync(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], {
      encoding: 'utf8',
      timeout: 20_000
    });
    expect(output.trim()).toBe('written 1000');
  });
});
