// The parts of a restore: how frames become ranged GETs, the check every frame passes before it is written (into a temporary file), and a
// whole state fetched from a ranged HTTP server over fewer connections than ranges.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { LOCAL_ONLY, type Frame, type Manifest } from '../../../../src/cache/manifest';
import { FrameCheckError, planRanges, writeFrame, writeState } from '../../../../src/cache/image/write';
import type { BlobStore } from '../../../../src/cache/stores/store';
import { download } from '../../../../src/cache/stores/blob-download';
import { CHUNK_BYTES } from '../../../../src/daemon/data-image';
import { compressFrame, FrameTooLargeError, sha256 } from '../../../../src/cache/image/zstd';
import { MANIFEST_FORMAT } from '../../../../src/cache/format';

const frame = (part: number, offset: number, length: number): Frame => ({ hash: '0'.repeat(64), part, offset, length });

describe('planRanges', () => {
  const frames = [
    frame(0, 0, 100),
    frame(0, 100, 100),
    frame(0, 1000, 50),
    frame(1, 0, 10),
    frame(0, 200, 100),
    frame(0, 5000, 10)
  ];

  test.each<[string, number[], number, number, Array<[number, number, number, number[]]>]>([
    [
      'neighbours in one range, parts apart',
      [0, 1, 3],
      1 << 20,
      0,
      [
        [0, 0, 200, [0, 1]],
        [1, 0, 10, [3]]
      ]
    ],
    ['in part order whatever the order asked', [4, 1, 0], 1 << 20, 0, [[0, 0, 300, [0, 1, 4]]]],
    ['a small gap is fetched through', [0, 2], 1 << 20, 1000, [[0, 0, 1050, [0, 2]]]],
    [
      'a large gap splits',
      [0, 2, 5],
      1 << 20,
      1000,
      [
        [0, 0, 1050, [0, 2]],
        [0, 5000, 5010, [5]]
      ]
    ],
    [
      'a range stops growing at the range size',
      [0, 1, 4],
      200,
      0,
      [
        [0, 0, 200, [0, 1]],
        [0, 200, 300, [4]]
      ]
    ],
    ['nothing', [], 1 << 20, 0, []]
  ])('%s', (_name, wanted, rangeBytes, maxGap, expected) => {
    expect(planRanges(frames, wanted, rangeBytes, maxGap)).toEqual(
      expected.map(([part, start, end, list]) => ({ part, start, end, frames: list }))
    );
  });
});

describe('writeFrame', () => {
  const chunk = Buffer.alloc(CHUNK_BYTES, 'setup-dind');
  const hash = sha256(chunk);
  let dir: string;
  let image: fs.FileHandle;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'setup-dind-frame-'));
    image = await fs.open(path.join(dir, 'image'), 'w+');
  });
  afterEach(async () => {
    await image.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('a good frame lands as its chunk at each offset', async () => {
    const compressed = await compressFrame(chunk);
    const frame = { hash, part: 0, offset: 0, length: compressed.length };
    await writeFrame(frame, compressed, image, [0, 3 * CHUNK_BYTES]);
    const read = Buffer.alloc(CHUNK_BYTES);
    for (const offset of [0, 3 * CHUNK_BYTES]) {
      await image.read(read, 0, CHUNK_BYTES, offset);
      expect(read.equals(chunk)).toBe(true);
    }
  });

  test('the wrong length, the wrong content, a short chunk, a bomb: refused, nothing written', async () => {
    const write = (length: number, compressed: Buffer) =>
      writeFrame({ hash, part: 0, offset: 0, length }, compressed, image, [0]);
    const compressed = await compressFrame(chunk);
    await expect(write(compressed.length + 1, compressed)).rejects.toThrow(FrameCheckError);
    const other = await compressFrame(Buffer.alloc(CHUNK_BYTES, 'other'));
    await expect(write(other.length, other)).rejects.toThrow(/does not hold the content/);
    const short = await compressFrame(chunk.subarray(1));
    await expect(write(short.length, short)).rejects.toThrow(FrameCheckError);
    const bomb = await compressFrame(Buffer.alloc(4 * CHUNK_BYTES));
    await expect(write(bomb.length, bomb)).rejects.toThrow(FrameTooLargeError);
    await expect(write(4, Buffer.from('junk'))).rejects.toThrow(/^frame [0-9a-f]{12} does not decompress \(.+\)$/);
    expect((await image.stat()).size).toBe(0);
  });
});

describe('writeState', () => {
  // Incompressible chunks: 40 MiB of frames make several 8 MiB ranges for 2 connections, so range
  // buffers are used again; chunk 0 also fills position 60, past a hole.
  const chunks = Array.from({ length: 40 }, () => randomBytes(CHUNK_BYTES));
  let dir: string;
  let image: fs.FileHandle;
  let server: http.Server;
  let part: Buffer;
  let manifest: Manifest;
  /** Range starts asked for; the ones whose answer is cut off after 1.5 frames. */
  let asked: number[] = [];
  let cutOff = new Set<number>();

  beforeAll(async () => {
    const frames = await Promise.all(chunks.map(chunk => compressFrame(chunk)));
    part = Buffer.concat(frames);
    let offset = 0;
    manifest = {
      format: MANIFEST_FORMAT,
      key: 'state',
      savedAt: new Date(0).toISOString(),
      imageId: 'sha256:' + '1'.repeat(64),
      lastUsed: {},
      filesystem: { type: 'ext4', bytes: 64 * CHUNK_BYTES },
      chunkBytes: CHUNK_BYTES,
      parts: [{ key: 'part', bytes: part.length }],
      frames: frames.map((frame, i) => ({
        hash: sha256(chunks[i]),
        part: 0,
        offset: (offset += frame.length) - frame.length,
        length: frame.length
      })),
      chunks: [...chunks.map((_, i): [number, number] => [i, i]), [60, 0]]
    };
    server = http.createServer((req, res) => {
      const [, start, end] = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '') ?? [];
      const body = part.subarray(Number(start), Number(end) + 1);
      asked.push(Number(start));
      res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes ${start}-${end}/${part.length}` });
      const frame = manifest.frames.find(frame => frame.offset === Number(start));
      if (cutOff.has(Number(start)) && frame)
        res.write(body.subarray(0, frame.length * 1.5), () => res.socket?.destroy());
      else res.end(body);
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise(resolve => server.close(resolve)));
  beforeEach(async () => {
    asked = [];
    cutOff = new Set();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'setup-dind-state-'));
    image = await fs.open(path.join(dir, 'image'), 'w+');
  });
  afterEach(async () => {
    await image.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const url = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/part`;
  /** The part, read over HTTP by ranges as the cache service's store reads it. */
  const locate = async (): Promise<Pick<BlobStore, 'read'>> => ({
    read: (_key, { range, maxBytes, into, received }) =>
      download(url(), { range: range && [range.offset, range.offset + range.length - 1], maxBytes, into, received })
  });

  test('every chunk lands at its positions, fetched in ranges over 2 connections', async () => {
    const progress = await writeState(image, manifest, locate, undefined, 2);
    expect(progress).toEqual({
      downloadedBytes: part.length,
      localBytes: 0,
      writtenBytes: 41 * CHUNK_BYTES,
      checked: new Map(manifest.frames.map((frame, i) => [i, frame]))
    });
    const read = Buffer.alloc(CHUNK_BYTES);
    for (const [position, frame] of manifest.chunks) {
      await image.read(read, 0, CHUNK_BYTES, position * CHUNK_BYTES);
      expect(read.equals(chunks[frame])).toBe(true);
    }
  });

  test('a range cut off is asked again from its first frame not yet opened: the frames already in stay as they are', async () => {
    const ranges = planRanges(
      manifest.frames,
      manifest.frames.map((_, i) => i)
    );
    cutOff = new Set(ranges.map(range => range.start));
    const progress = await writeState(image, manifest, locate, undefined, 2);
    expect(progress.downloadedBytes).toBe(part.length);
    const read = Buffer.alloc(CHUNK_BYTES);
    for (const [position, frame] of manifest.chunks) {
      await image.read(read, 0, CHUNK_BYTES, position * CHUNK_BYTES);
      expect(read.equals(chunks[frame])).toBe(true);
    }
    // Each range's first answer brought its first frame whole and half the second.
    expect(asked.sort((x, y) => x - y)).toEqual(
      ranges.flatMap(range => [range.start, manifest.frames[range.frames[1]].offset]).sort((x, y) => x - y)
    );
  });

  test("each frame checked at its place: in its part when fetched, in no part when the runner's store gave it; frames no chunk needs are not checked", async () => {
    const frames = await Promise.all(chunks.map(chunk => compressFrame(chunk)));
    const stored = new Map([0, 7].map(i => [manifest.frames[i].hash, frames[i]]));
    const local: BlobStore = {
      has: async hash => stored.has(hash),
      read: async hash => stored.get(hash),
      write: async () => 'exists'
    };
    // Chunks 30 to 39 gone: their frames are in the manifest still, unused.
    const fewer = { ...manifest, chunks: manifest.chunks.filter(([position]) => position < 30 || position === 60) };
    const progress = await writeState(image, fewer, locate, local, 2);
    expect([...progress.checked.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    for (const [i, reference] of progress.checked)
      expect(reference).toEqual(
        i === 0 || i === 7 ? { ...manifest.frames[i], part: LOCAL_ONLY, offset: 0 } : manifest.frames[i]
      );
    expect(progress.localBytes).toBe(frames[0].length + frames[7].length);
  });

  test('a frame that is not the chunk its hash names fails the restore', async () => {
    const changed = structuredClone(manifest);
    changed.frames[25].hash = sha256(chunks[24]);
    await expect(writeState(image, changed, locate, undefined, 2)).rejects.toThrow(FrameCheckError);
  });
});
