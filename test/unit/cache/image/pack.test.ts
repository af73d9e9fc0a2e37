// Which parts of the restored state a new state keeps referencing: parts stay few, and parts mostly
// dead are left to age out of the cache.
import { MAX_LIVE_PARTS, partKey, partsToKeep, type PartUse } from '../../../../src/cache/image/pack';

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
