// Frames opened on worker threads (Node 24, where zstd is in zlib): the chunk and its sha256 come back
// intact, many at once; errors reach the caller; idle workers do not keep a process alive.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { sha256 } from '../../src/data-image';
import { FrameWorkerError, openOnWorker } from '../../src/frame-workers';
import { CHUNK_BYTES } from '../../src/manifest';
import { compressFrame } from '../../src/zstd';

// Node 20 has no zstd in zlib: there the CLI opens frames (restore.test.ts covers both through openFrame).
const zstdBuiltIn = typeof (zlib as unknown as { zstdDecompressSync?: unknown }).zstdDecompressSync === 'function';

(zstdBuiltIn ? describe : describe.skip)('openOnWorker (Node 24)', () => {
  const chunks = Array.from({ length: 24 }, (_, i) => Buffer.alloc(CHUNK_BYTES, `chunk ${i} `));

  test('many frames at once: each comes back as its chunk, with its hash', async () => {
    const frames = await Promise.all(chunks.map(chunk => compressFrame(chunk)));
    const opened = await Promise.all(frames.map(frame => openOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES)));
    opened.forEach(({ data, hash }, i) => {
      expect(data.equals(chunks[i])).toBe(true);
      expect(hash).toBe(sha256(chunks[i]));
    });
  });

  test('frames that are views into one larger buffer (a downloaded range), as the restore hands them over', async () => {
    const frames = await Promise.all(chunks.slice(0, 4).map(chunk => compressFrame(chunk)));
    const range = Buffer.concat(frames);
    let offset = 0;
    const views = frames.map(frame => range.subarray(offset, (offset += frame.length)));
    const opened = await Promise.all(views.map(view => openOnWorker(view, CHUNK_BYTES, CHUNK_BYTES)));
    opened.forEach(({ data }, i) => expect(data.equals(chunks[i])).toBe(true));
    // The range itself is left as it was: the restore may still keep its frames in the runner's store.
    expect(range.equals(Buffer.concat(frames))).toBe(true);
  });

  test('a frame larger than allowed and a frame that is not zstd are refused, and the workers go on', async () => {
    const frame = await compressFrame(chunks[0]);
    await expect(openOnWorker(frame, CHUNK_BYTES - 1, CHUNK_BYTES)).rejects.toMatchObject({ tooLarge: true });
    await expect(openOnWorker(Buffer.from('not a frame'), CHUNK_BYTES, CHUNK_BYTES)).rejects.toThrow(FrameWorkerError);
    expect((await openOnWorker(frame, CHUNK_BYTES, CHUNK_BYTES)).hash).toBe(sha256(chunks[0]));
  });

  test('a process whose workers are idle exits by itself', () => {
    const script = `const { openOnWorker } = require(${JSON.stringify(path.resolve('src/frame-workers.ts'))});
      openOnWorker(require('node:zlib').zstdCompressSync(Buffer.alloc(1000)), 1000, 65536).then(o => console.log(o.data.length));`;
    const output = execFileSync(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], {
      encoding: 'utf8',
      timeout: 20_000
    });
    expect(output.trim()).toBe('1000');
  });
});
