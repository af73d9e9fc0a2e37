// Main's pure decisions about a restore: which saved state to take, and how large its filesystem is.
import { chooseState, newerSaved, restoredImageBytes } from '../../../src/cache/restore';

const GIB = 2 ** 30;

describe("chooseState: the newest state that the cache service and the runner's store name", () => {
  const prefixes = ['k-main+', 'k-'];
  test.each<[string, string | undefined, string | undefined, ReturnType<typeof chooseState>]>([
    ['neither has one', undefined, undefined, undefined],
    ['the service alone', 'k-main+a', undefined, 'remote'],
    ["the runner's store alone (a job that could not upload)", undefined, 'k-main+a', 'local'],
    ['both name the same state: the service, whose parts a restore may fetch', 'k-main+a', 'k-main+a', 'remote'],
    ["the exact key in the service, a restore key's in the store", 'k-main+a', 'k-other+b', 'remote'],
    ["the exact key in the store, a restore key's in the service", 'k-other+b', 'k-main+a', 'local'],
    ['two states of the exact key: the one saved last', 'k-main+a', 'k-main+b', 'newer'],
    ['two states of the same restore key: the one saved last', 'k-x+a', 'k-y+b', 'newer']
  ])('%s', (_name, remote, local, expected) => {
    expect(chooseState(prefixes, remote, local)).toBe(expected);
  });

  test.each<[string, string, string, 'local' | 'remote']>([
    ["the store's saved later", '2026-12-07T10:00:01Z', '2026-12-07T10:00:00Z', 'local'],
    ["the service's saved later", '2026-12-07T10:00:00Z', '2026-12-07T10:00:01Z', 'remote'],
    ["at the same time: the service's", '2026-12-07T10:00:00Z', '2026-12-07T10:00:00Z', 'remote'],
    ["a time that is no time: the service's", 'not a date', '2026-12-07T10:00:00Z', 'remote']
  ])('newerSaved: %s', (_name, local, remote, expected) => {
    expect(newerSaved(local, remote)).toBe(expected);
  });
});

describe('restoredImageBytes: a restored filesystem keeps its size unless this runner has much more room', () => {
  test.each<[string, number, number, number]>([
    ['as much room: the same size', 20 * GIB, 20 * GIB, 20 * GIB],
    ['less room: the same size (a filesystem does not shrink)', 20 * GIB, 5 * GIB, 20 * GIB],
    ['a little more room: the same size (growing is not free)', 20 * GIB, 24 * GIB, 20 * GIB],
    ['much more room: grown to it', 20 * GIB, 80 * GIB, 80 * GIB]
  ])('%s', (_name, saved, free, bytes) => {
    expect(restoredImageBytes(saved, free)).toBe(bytes);
  });
});
