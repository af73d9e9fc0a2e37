// The data image on the runner: its size, how it is made, and what the entrypoint reports.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CHUNK_BYTES,
  DataFiles,
  MAX_IMAGE_BYTES,
  maxRestoredImageBytes,
  MIN_IMAGE_BYTES,
  newImageBytes,
  parseDataEvents,
  prepareDataDir,
  writeBackUntilAttached
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
  ['nothing yet', '', { attached: false, mounted: false, unmounted: false }],
  [
    'a fresh filesystem, mounted and unmounted',
    'mounted\nunmounted\n',
    { attached: false, mounted: true, unmounted: true }
  ],
  [
    'a restored one, attached while main filled it',
    'attached\nmounted in 0.12 s (restored, attached while filled)\n',
    { attached: true, mounted: true, mountedIn: '0.12 s (restored, attached while filled)', unmounted: false }
  ],
  [
    'a restored one that failed its check',
    "discarded the restored filesystem failed e2fsck's check: bad inode\nmounted in 0.21 s (new)\n",
    {
      attached: false,
      mounted: true,
      mountedIn: '0.21 s (new)',
      unmounted: false,
      discarded: "the restored filesystem failed e2fsck's check: bad inode"
    }
  ],
  [
    'no loop device',
    'plain no loop device or mke2fs in the dind container\n',
    { attached: false, mounted: false, unmounted: false, plain: 'no loop device or mke2fs in the dind container' }
  ]
])('parseDataEvents: %s', (_name, text, events) => {
  expect(parseDataEvents(text)).toEqual(events);
});

describe('prepareDataDir', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'data-image-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("a second image (the restore's fallback to a parent state) is a new file: one holding the first sees it unchanged", async () => {
    const image = await prepareDataDir(dir, 8 * CHUNK_BYTES, 'filling');
    fs.writeFileSync(image, 'first state', { flag: 'r+' });
    // As the entrypoint holds it on loop devices.
    const held = fs.openSync(image, 'r');
    try {
      const first = fs.fstatSync(held);
      expect(await prepareDataDir(dir, 4 * CHUNK_BYTES, 'filling')).toBe(image);
      const second = fs.statSync(image);
      expect(second.ino).not.toBe(first.ino);
      expect(second.size).toBe(4 * CHUNK_BYTES);
      expect(fs.readFileSync(image).every(byte => byte === 0)).toBe(true);
      expect(fs.fstatSync(held).size).toBe(8 * CHUNK_BYTES);
      const buffer = Buffer.alloc(11);
      fs.readSync(held, buffer, 0, 11, 0);
      expect(buffer.toString()).toBe('first state');
    } finally {
      fs.closeSync(held);
    }
    expect(fs.readFileSync(path.join(dir, DataFiles.mode), 'utf8')).toBe('filling\n');
    expect(fs.readdirSync(dir).sort()).toEqual([DataFiles.image, DataFiles.mode].sort());
  });

  test('a file left aside by an earlier try is replaced, not written through', async () => {
    const elsewhere = path.join(dir, 'elsewhere');
    fs.writeFileSync(elsewhere, 'keep');
    fs.mkdirSync(path.join(dir, 'data'));
    fs.symlinkSync(elsewhere, path.join(dir, 'data', `${DataFiles.image}.new`));
    const image = await prepareDataDir(path.join(dir, 'data'), CHUNK_BYTES, 'new');
    expect(fs.lstatSync(image).isFile()).toBe(true);
    expect(fs.statSync(image).size).toBe(CHUNK_BYTES);
    expect(fs.readFileSync(elsewhere, 'utf8')).toBe('keep');
  });
});

describe('writeBackUntilAttached', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'writeback-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A handle whose datasync calls are counted (the real one's effect, pages written back, is the kernel's). */
  async function counted(): Promise<{ handle: fs.promises.FileHandle; syncs: () => number }> {
    const handle = await fs.promises.open(path.join(dir, 'image'), 'w');
    let syncs = 0;
    const datasync = handle.datasync.bind(handle);
    handle.datasync = () => {
      syncs++;
      return datasync();
    };
    return { handle, syncs: () => syncs };
  }

  test('while the entrypoint has not attached the image: written back meanwhile, and once more at the end', async () => {
    const { handle, syncs } = await counted();
    try {
      const writeback = writeBackUntilAttached(dir, handle, 5);
      await sleep(100);
      expect(syncs()).toBeGreaterThan(2);
      const before = syncs();
      await writeback.finish();
      expect(syncs()).toBe(before + 1);
      await sleep(30);
      expect(syncs()).toBe(before + 1);
    } finally {
      await handle.close();
    }
  });

  test('once the entrypoint says it holds the image: nothing more is written back, not at the end either', async () => {
    const { handle, syncs } = await counted();
    try {
      const writeback = writeBackUntilAttached(dir, handle, 5);
      await sleep(50);
      fs.writeFileSync(path.join(dir, DataFiles.events), 'attached\n');
      await sleep(30);
      const after = syncs();
      await sleep(50);
      await writeback.finish();
      expect(syncs()).toBe(after);
    } finally {
      await handle.close();
    }
  });

  test('stop (a failed restore): nothing more is written back', async () => {
    const { handle, syncs } = await counted();
    try {
      const writeback = writeBackUntilAttached(dir, handle, 5);
      await sleep(30);
      await writeback.stop();
      const stopped = syncs();
      await sleep(50);
      expect(syncs()).toBe(stopped);
    } finally {
      await handle.close();
    }
  });
});
