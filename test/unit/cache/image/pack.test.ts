// Which parts of the restored state a new state keeps referencing: parts stay few, and parts mostly
// dead are left to age out of the cache.
import { LOCAL_ONLY, type Frame, type Manifest, type PartRef } from '../../../../src/cache/manifest';
import { MANIFEST_FORMAT } from '../../../../src/cache/format';
import { MAX_LIVE_PARTS, partKey, partsToKeep, reusableFrames, type PartUse } from '../../../../src/cache/image/pack';

const use = (key: string, bytes: number, liveBytes: number): PartUse => ({ part: { key, bytes }, liveBytes });

test.each<[string, PartUse[], string[]]>([
  ['a part fully used', [use('a', 100, 100)], ['a']],
  ['a part half used is kept', [use('a', 100, 50)], ['a']],
  ['a part mostly dead is dropped', [use('a', 100, 49)], []],
  ['a part not used at all is dropped', [use('a', 100, 0), use('b', 10, 10)], ['b']],
  [
    'at most MAX_LIVE_PARTS - 1, the ones with the most live data',
    Array.from({ length: MAX_LIVE_PARTS + 2 }, (_, i) => use(`p${i}`, 100 + i, 100 + i)),
    Array.from({ length: MAX_LIVE_PARTS - 1 }, (_, i) => `p${MAX_LIVE_PARTS + 1 - i}`)
  ],
  ['nothing restored', [], []]
])('%s', (_name, uses, kept) => {
  expect([...partsToKeep(uses)].sort()).toEqual(kept.sort());
});

test('part keys name their content', () => {
  expect(partKey('ab'.repeat(32))).toBe(`setup-dind-v2-part-${'ab'.repeat(32)}`);
});

describe('reusableFrames: what a new state references of the restored one', () => {
  /** A restored state: each frame of `frames` used by one chunk; parts named p0, p1, ... of `partBytes`. */
  const restored = (partBytes: number[], frames: Array<[hash: string, part: number, length: number]>): Manifest => ({
    format: MANIFEST_FORMAT,
    key: 'restored',
    savedAt: '2026-12-07T00:00:00.000Z',
    imageId: 'sha256:x',
    lastUsed: {},
    filesystem: { type: 'ext4', bytes: 1 << 30 },
    chunkBytes: 1 << 20,
    parts: partBytes.map((bytes, i): PartRef => ({ key: `p${i}`, bytes })),
    frames: frames.map(([hash, part, length], i): Frame => ({ hash, part, offset: i * 10, length })),
    chunks: frames.map((_, i): [number, number] => [i, i])
  });
  /** hash → the reused frame's part key ('local': none), for the table. */
  const plan = (manifest: Manifest | undefined, present: boolean[], remote: boolean) =>
    Object.fromEntries(
      [...reusableFrames(manifest, present, remote)].map(([hash, reused]) => [hash, reused.part?.key ?? 'local'])
    );
  const many = restored(
    Array.from({ length: MAX_LIVE_PARTS + 1 }, () => 100),
    Array.from({ length: MAX_LIVE_PARTS + 1 }, (_, i): [string, number, number] => [`h${i}`, i, 50 + i])
  );

  test.each<[string, Manifest | undefined, boolean[], boolean, Record<string, string>]>([
    ['nothing restored', undefined, [], true, {}],
    ['to the service: a frame of a present part', restored([10], [['a', 0, 10]]), [true], true, { a: 'p0' }],
    ['to the service: not from a part the service lost', restored([10], [['a', 0, 10]]), [false], true, {}],
    [
      'to the service: not from a part mostly dead (the new part takes its live frames)',
      restored(
        [100, 10],
        [
          ['a', 0, 40],
          ['b', 1, 10]
        ]
      ),
      [true, true],
      true,
      { b: 'p1' }
    ],
    [
      "to the service: never a frame in the runner's store alone",
      restored(
        [10],
        [
          ['a', LOCAL_ONLY, 10],
          ['b', 0, 10]
        ]
      ),
      [true],
      true,
      { b: 'p0' }
    ],
    [
      "to the runner's store alone: every frame, whatever its part",
      restored(
        [100],
        [
          ['a', LOCAL_ONLY, 10],
          ['b', 0, 10]
        ]
      ),
      [true],
      false,
      { a: 'local', b: 'p0' }
    ],
    [
      `to the service: at most ${MAX_LIVE_PARTS - 1} parts, the least live left behind`,
      many,
      many.parts.map(() => true),
      true,
      Object.fromEntries(Array.from({ length: MAX_LIVE_PARTS - 1 }, (_, i) => [`h${i + 2}`, `p${i + 2}`]))
    ]
  ])('%s', (_name, manifest, present, remote, expected) => {
    expect(plan(manifest, present, remote)).toEqual(expected);
  });

  test('a frame reused keeps its place in its part', () => {
    const manifest = restored(
      [10, 10],
      [
        ['a', 0, 10],
        ['b', 1, 10]
      ]
    );
    expect(reusableFrames(manifest, [true, true], true).get('b')).toEqual({
      frame: { hash: 'b', part: 1, offset: 10, length: 10 },
      part: { key: 'p1', bytes: 10 }
    });
  });
});
