// Manifests as save writes them, and as an attacker might: every field is checked before a restore
// writes anything, and what a state may expand to is bounded by what it stores.
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  decodeManifest,
  encodeManifest,
  EXPANSION_ALLOWANCE_BYTES,
  MAX_EXPANSION,
  MAX_FRAME_BYTES,
  MAX_PARTS,
  ManifestError,
  manifestBounds,
  checkShape,
  checkedPart,
  LOCAL_ONLY,
  type Frame,
  MAX_STRING_BYTES,
  type Manifest,
  type ManifestLimits,
  type ShapeBounds
} from '../../../src/cache/manifest';
import { CHUNK_BYTES } from '../../../src/daemon/data-image';
import { MANIFEST_FORMAT } from '../../../src/cache/format';

const HASH = (n: number) => n.toString(16).padStart(64, '0');
const LIMITS = { maxImageBytes: 2 ** 40, maxWriteBytes: 2 ** 36 };

function manifest(overrides: Partial<Manifest> = {}): Manifest {
  return {
    format: MANIFEST_FORMAT,
    key: 'setup-dind-v2-x64-0123456789ab+0123456789abcdef',
    parent: 'setup-dind-v2-x64-0123456789ab+fedcba9876543210',
    savedAt: '2026-11-30T12:00:00.000Z',
    imageId: 'sha256:' + HASH(1),
    lastUsed: { ['sha256:' + HASH(2)]: '2026-11-29T12:00:00.000Z' },
    filesystem: { type: 'ext4', bytes: 1024 * CHUNK_BYTES },
    chunkBytes: CHUNK_BYTES,
    parts: [
      { key: 'setup-dind-v2-part-' + HASH(3), bytes: 3000 },
      { key: 'setup-dind-v2-part-' + HASH(4), bytes: 1000 }
    ],
    frames: [
      { hash: HASH(5), part: 0, offset: 0, length: 1000 },
      { hash: HASH(6), part: 0, offset: 1000, length: 2000 },
      { hash: HASH(7), part: 1, offset: 0, length: 1000 }
    ],
    chunks: [
      [0, 0],
      [1, 1],
      [7, 2],
      [1023, 0]
    ],
    ...overrides
  };
}

/** The JSON save would upload, changed by `edit`, gzipped. */
async function blob(edit: (json: Record<string, unknown>) => void = () => undefined): Promise<Buffer> {
  const json = JSON.parse(gunzipSync(await encodeManifest(manifest())).toString()) as Record<string, unknown>;
  edit(json);
  return gzipSync(JSON.stringify(json));
}

test('what save encodes decodes to the same manifest', async () => {
  expect(await decodeManifest(await encodeManifest(manifest()), LIMITS)).toEqual(manifest());
  const noParent = manifest({ parent: undefined, lastUsed: {} });
  expect(await decodeManifest(await encodeManifest(noParent), LIMITS)).toEqual(noParent);
});

test.each<[string, (json: Record<string, unknown>) => void, RegExp]>([
  ['another format', json => (json.format = 'setup-dind/1'), /format "setup-dind\/1"/],
  ['no key', json => delete json.key, /no key/],
  ['a parent that is not a string', json => (json.parent = 7), /parent/],
  ['no save time', json => (json.savedAt = 'yesterday'), /save time/],
  ['another chunk size', json => (json.chunkBytes = 4096), /chunks of 4096 bytes/],
  ['a usage record with numbers', json => (json.lastUsed = { a: 1 }), /usage record/],
  ['no filesystem', json => delete json.filesystem, /no filesystem size/],
  [
    'a filesystem of another type',
    json => (json.filesystem = { type: 'xfs', bytes: CHUNK_BYTES }),
    /no filesystem size/
  ],
  [
    'a size not in whole chunks',
    json => (json.filesystem = { type: 'ext4', bytes: CHUNK_BYTES + 1 }),
    /whole number of chunks/
  ],
  [
    'a filesystem over the limit',
    json => (json.filesystem = { type: 'ext4', bytes: 2 ** 41 }),
    /more than the \d+ a restore takes here/
  ],
  ['no parts for the frames', json => (json.parts = []), /frame 0 names no part/],
  ['parts that are not a list', json => (json.parts = {}), /list of parts/],
  [
    "a frame in no part (the runner's store alone) is fine only as -1",
    json => ((json.frames as unknown[][])[0][1] = -2),
    /frame 0 names no part/
  ],
  [
    'too many parts',
    json => (json.parts = Array.from({ length: MAX_PARTS + 1 }, (_, i) => ({ key: `p${i}`, bytes: 1 }))),
    /list of parts/
  ],
  ['a part without a size', json => ((json.parts as object[])[1] = { key: 'p' }), /part 1 is malformed/],
  ['a frame without a sha256', json => ((json.frames as unknown[][])[0][0] = 'abc'), /frame 0 has no sha256/],
  ['a frame naming no part', json => ((json.frames as unknown[][])[0][1] = 2), /frame 0 names no part/],
  [
    'a frame larger than a chunk can compress to',
    json => ((json.frames as unknown[][])[2][3] = MAX_FRAME_BYTES + 1),
    /frame 2 has a bad extent/
  ],
  ['a frame beyond its part', json => ((json.frames as unknown[][])[1][2] = 1001), /frame 1 lies beyond its part/],
  ['a negative offset', json => ((json.frames as unknown[][])[1][2] = -1), /frame 1 has a bad extent/],
  [
    'chunks out of order',
    json =>
      (json.chunks = [
        [1, 0],
        [0, 1]
      ]),
    /chunk 1 is out of order/
  ],
  [
    'a chunk twice',
    json =>
      (json.chunks = [
        [1, 0],
        [1, 1]
      ]),
    /chunk 1 is out of order/
  ],
  ['a chunk beyond the filesystem', json => (json.chunks = [[1024, 0]]), /chunk 0 is out of order or range/],
  ['a chunk naming no frame', json => (json.chunks = [[0, 3]]), /chunk 0 names no frame/],
  ['a chunk that is not a pair', json => (json.chunks = [[0]]), /chunk 0 is malformed/]
])('refuses %s', async (_name, edit, message) => {
  await expect(decodeManifest(await blob(edit), LIMITS)).rejects.toThrow(message);
  await expect(decodeManifest(await blob(edit), LIMITS)).rejects.toBeInstanceOf(ManifestError);
});

test('refuses what is not a gzipped JSON object, and a gzip bomb, before parsing it', async () => {
  await expect(decodeManifest(Buffer.from('not gzip'), LIMITS)).rejects.toThrow(/not a manifest/);
  await expect(decodeManifest(gzipSync('[1,2'), LIMITS)).rejects.toThrow(/not a manifest/);
  const { bytes } = manifestBounds(LIMITS);
  await expect(decodeManifest(gzipSync(Buffer.alloc(bytes + 1, 32)), LIMITS)).rejects.toThrow(
    `a manifest of more than ${bytes} bytes`
  );
  await expect(decodeManifest(gzipSync(Buffer.alloc(bytes, 32)), LIMITS)).rejects.toThrow(/not a manifest/);
});

describe('the shape of a manifest, bounded before it is parsed', () => {
  const BOUNDS: ShapeBounds = { bytes: 1000, values: 10, depth: 3, stringBytes: 8 };

  const GIB = 2 ** 30;
  test.each<[string, ManifestLimits, number]>([
    ['a runner with 14 GiB free', { maxImageBytes: 4096 * GIB, maxWriteBytes: 14 * GIB }, 14 * 1024],
    ['a filesystem limit below the free space', { maxImageBytes: 14 * GIB, maxWriteBytes: 4096 * GIB }, 14 * 1024],
    ['part of a chunk free', { maxImageBytes: 4096 * GIB, maxWriteBytes: CHUNK_BYTES - 1 }, 0],
    ['nothing free', { maxImageBytes: 4096 * GIB, maxWriteBytes: 0 }, 0]
  ])('the bounds follow the most chunks a restore may write: %s', (_name, limits, chunks) => {
    expect(manifestBounds(limits)).toEqual({
      bytes: 256 * 1024 + chunks * 256,
      values: 4096 + chunks * 10,
      depth: 3,
      stringBytes: MAX_STRING_BYTES
    });
  });

  test.each<[string, string]>([
    ['a manifest-like object', '{"a":[[1,2]],"b":{"c":"d"}}'],
    ['whitespace and escapes', ' { "k" : "a\\"b\\\\" ,\n "n" : -1.5e+3 } '],
    ['brackets in a string are not nesting', '["[[[[[[["]'],
    ['a number or literal is one value', '[123456789,true,false,null]'],
    ['a string of the longest', '["12345678"]'],
    ['ten values', '[1,2,3,4,5,6,7,8,9]']
  ])('within the bounds: %s', (_name, json) => {
    expect(() => checkShape(Buffer.from(json), BOUNDS)).not.toThrow();
    expect(() => JSON.parse(json) as unknown).not.toThrow();
  });

  test.each<[string, string, string]>([
    ['eleven values', '[1,2,3,4,5,6,7,8,9,0]', 'a manifest of more than 10 values'],
    ['tiny objects', '[{},{},{},{},{},{},{},{},{},{}]', 'a manifest of more than 10 values'],
    ['keys are values', '{"a":1,"b":2,"c":3,"d":4,"e":5}', 'a manifest of more than 10 values'],
    ['nested too deep', '[[[[]]]]', 'a manifest nested more than 3 deep'],
    ['a long string', '["123456789"]', 'a manifest with a string of more than 8 bytes'],
    ['a long key', '{"123456789":1}', 'a manifest with a string of more than 8 bytes'],
    ['an escaped quote does not end a string', '["1234\\"56789"]', 'a manifest with a string of more than 8 bytes'],
    ['a string never closed', '["123456789', 'a manifest with a string of more than 8 bytes']
  ])('refused: %s', (_name, json, message) => {
    expect(() => checkShape(Buffer.from(json), BOUNDS)).toThrow(message);
    expect(() => checkShape(Buffer.from(json), BOUNDS)).toThrow(ManifestError);
  });

  test('the manifest of the largest state a restore may write passes, with the longest fields', async () => {
    const limits = { maxImageBytes: 2 ** 40, maxWriteBytes: 2 ** 32 };
    const count = limits.maxWriteBytes / CHUNK_BYTES;
    const longKey = 'k'.repeat(512);
    const partBytes = count * MAX_FRAME_BYTES;
    const largest = manifest({
      key: longKey,
      parent: longKey,
      lastUsed: Object.fromEntries(
        Array.from({ length: count + 1000 }, (_, i) => [`sha256:${HASH(i)}`, '2026-11-29T12:00:00.000Z'])
      ),
      filesystem: { type: 'ext4', bytes: limits.maxImageBytes },
      parts: Array.from({ length: MAX_PARTS }, (_, i) => ({ key: `${longKey}${i}`, bytes: partBytes })),
      frames: Array.from({ length: count }, (_, i) => ({
        hash: HASH(2 ** 52 + i),
        part: MAX_PARTS - 1,
        offset: partBytes - (i + 1) * MAX_FRAME_BYTES,
        length: MAX_FRAME_BYTES
      })),
      chunks: Array.from({ length: count }, (_, i): [number, number] => [2 ** 20 - count + i, i])
    });
    await expect(decodeManifest(await encodeManifest(largest), limits)).resolves.toEqual(largest);
  });

  test('a shape bomb within the bytes is refused before it is parsed', async () => {
    const { values } = manifestBounds(LIMITS);
    const bomb = `[${'{},'.repeat(values)}{}]`;
    expect(bomb.length).toBeLessThan(manifestBounds(LIMITS).bytes);
    const parse = jest.spyOn(JSON, 'parse');
    await expect(decodeManifest(gzipSync(bomb), LIMITS)).rejects.toThrow(
      `a manifest of more than ${values} values: more than that of any state this runner can restore`
    );
    expect(parse).not.toHaveBeenCalled();
    parse.mockRestore();
  });
});

describe('what a save may reuse of a restored state: what the restore checked', () => {
  const state = manifest();
  const [f0, f1, f2] = state.frames;
  const local = (frame: Frame): Frame => ({ ...frame, part: LOCAL_ONLY, offset: 0 });
  /** A frame of the same content at another place, that no chunk uses: what the restore never looked at. */
  const junk: Frame = { ...f1, offset: 0 };
  test.each<[string, Manifest, Array<[number, Frame]>, Pick<Manifest, 'frames' | 'chunks'>]>([
    [
      'every frame fetched',
      state,
      [
        [0, f0],
        [1, f1],
        [2, f2]
      ],
      { frames: [f0, f1, f2], chunks: state.chunks }
    ],
    [
      "one from the runner's store: its reference names no part",
      state,
      [
        [0, f0],
        [1, local(f1)],
        [2, f2]
      ],
      { frames: [f0, local(f1), f2], chunks: state.chunks }
    ],
    [
      'a frame never checked: its chunks are not reused',
      state,
      [
        [0, f0],
        [2, f2]
      ],
      {
        frames: [f0, f2],
        chunks: [
          [0, 0],
          [7, 1],
          [1023, 0]
        ]
      }
    ],
    [
      'a junk frame of the same content that no chunk uses: left out',
      { ...state, frames: [f0, f1, f2, junk] },
      [
        [0, f0],
        [1, f1],
        [2, f2]
      ],
      { frames: [f0, f1, f2], chunks: state.chunks }
    ],
    [
      'frames numbered again, in the order the chunks use them',
      {
        ...state,
        frames: [junk, f2, f1, f0],
        chunks: [
          [0, 3],
          [1, 2],
          [7, 1]
        ]
      },
      [
        [1, f2],
        [2, f1],
        [3, f0]
      ],
      {
        frames: [f0, f1, f2],
        chunks: [
          [0, 0],
          [1, 1],
          [7, 2]
        ]
      }
    ],
    ['nothing checked (an image taken whole)', state, [], { frames: [], chunks: [] }]
  ])('%s', (_name, restored, checked, expected) => {
    expect(checkedPart(restored, new Map(checked))).toEqual({ ...restored, ...expected });
  });
});

describe('what a restore may write', () => {
  /** `count` chunks, all filled by one frame of `length` bytes. */
  const filling = (count: number, length: number) =>
    manifest({
      filesystem: { type: 'ext4', bytes: 2 ** 40 },
      parts: [{ key: 'p', bytes: length }],
      frames: [{ hash: HASH(5), part: 0, offset: 0, length }],
      chunks: Array.from({ length: count }, (_, i): [number, number] => [i, 0])
    });

  test('no more than the free space', async () => {
    await expect(
      decodeManifest(await encodeManifest(manifest()), { ...LIMITS, maxWriteBytes: 3 * CHUNK_BYTES })
    ).rejects.toThrow(`${4 * CHUNK_BYTES} bytes to write, more than the ${3 * CHUNK_BYTES} free`);
  });

  test('a few bytes stored cannot claim gigabytes (the 38 KB entry that wrote 1 GiB)', async () => {
    const allowance = EXPANSION_ALLOWANCE_BYTES / CHUNK_BYTES;
    await expect(decodeManifest(await encodeManifest(filling(allowance, 40)), LIMITS)).resolves.toBeDefined();
    await expect(decodeManifest(await encodeManifest(filling(1024, 40)), LIMITS)).rejects.toThrow(
      /1073741824 bytes to write from 40 stored, more than a saved state expands to/
    );
    // A real state: 4 GiB of distinct chunks that compressed four times.
    const real = filling(4096, CHUNK_BYTES / 4);
    real.parts = [{ key: 'p', bytes: 4096 * (CHUNK_BYTES / 4) }];
    real.frames = real.chunks.map(([i]) => ({
      hash: HASH(1000 + i),
      part: 0,
      offset: i * (CHUNK_BYTES / 4),
      length: CHUNK_BYTES / 4
    }));
    real.chunks = real.chunks.map(([i]): [number, number] => [i, i]);
    await expect(decodeManifest(await encodeManifest(real), LIMITS)).resolves.toBeDefined();
    expect(MAX_EXPANSION).toBeGreaterThanOrEqual(16);
  });

  test('frames no chunk uses do not count as stored', async () => {
    const padded = filling(1024, 40);
    padded.parts = [{ key: 'p', bytes: MAX_FRAME_BYTES }];
    padded.frames.push(
      ...Array.from({ length: 100 }, (_, i) => ({ hash: HASH(100 + i), part: 0, offset: 0, length: MAX_FRAME_BYTES }))
    );
    await expect(decodeManifest(await encodeManifest(padded), LIMITS)).rejects.toThrow(/from 40 stored/);
  });
});
