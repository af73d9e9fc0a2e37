// The data image on the runner: its size and what the entrypoint reports.
import {
  CHUNK_BYTES,
  MAX_IMAGE_BYTES,
  maxRestoredImageBytes,
  MIN_IMAGE_BYTES,
  newImageBytes,
  parseDataEvents
} from '../../../src/daemon/data-image';

const GIB = 2 ** 30;

test.each<[number, number]>([
  [100 * GIB + 12345, 100 * GIB],
  [1, MIN_IMAGE_BYTES],
  [100_000 * GIB, MAX_IMAGE_BYTES]
])('newImageBytes(%d) = %d, whole chunks', (free, bytes) => {
  expect(newImageBytes(free)).toBe(bytes);
  expect(newImageBytes(free) % CHUNK_BYTES).toBe(0);
});

test.each<[string, number, number]>([
  ['a hosted runner (70 GiB free): twice what it makes', 70 * GIB, 140 * GIB],
  ['a full disk: twice the smallest filesystem', 1, 2 * MIN_IMAGE_BYTES],
  ['a large disk: the largest filesystem, no more', 3000 * GIB, MAX_IMAGE_BYTES]
])('maxRestoredImageBytes: %s', (_name, free, bytes) => {
  expect(maxRestoredImageBytes(free)).toBe(bytes);
  // A state saved on a runner with this much free, or a little more, is within it.
  expect(maxRestoredImageBytes(free)).toBeGreaterThanOrEqual(newImageBytes(free * 1.5));
});

test.each<[string, string, object]>([
  ['nothing yet', '', { mounted: false, unmounted: false }],
  ['a fresh filesystem, mounted and unmounted', 'mounted\nunmounted\n', { mounted: true, unmounted: true }],
  [
    'a restored one that failed its check',
    "discarded the restored filesystem failed e2fsck's check: bad inode\nmounted in 0.21 s (new)\n",
    {
      mounted: true,
      mountedIn: '0.21 s (new)',
      unmounted: false,
      discarded: "the restored filesystem failed e2fsck's check: bad inode"
    }
  ],
  [
    'no loop device',
    'plain no loop device or mke2fs in the dind container\n',
    { mounted: false, unmounted: false, plain: 'no loop device or mke2fs in the dind container' }
  ]
])('parseDataEvents: %s', (_name, text, events) => {
  expect(parseDataEvents(text)).toEqual(events);
});
