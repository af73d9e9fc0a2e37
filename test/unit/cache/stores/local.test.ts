// The runner's store (cache-dir) on a real temporary directory: images kept whole and taken by one
// job only, the bound over frames and images, and what another user of the runner may have planted
// there: the checks as pure tables, then each planting against the store itself; and the contract every
// store keeps (test/support/store-contract.ts).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as core from '@actions/core';
import { adoptImage } from '../../../../src/daemon/data-image';
import {
  isFrameName,
  keyOfName,
  LocalStore,
  parentDirProblem,
  storeDirProblem,
  storeFileProblem,
  type EntryStat
} from '../../../../src/cache/stores/local';
import { encodeManifest } from '../../../../src/cache/manifest';
import { canary } from '../../../support/canary';
import { defined } from '../../../support/defined';
import { emptyManifest, storeContract } from '../../../support/store-contract';

const { S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFCHR } = fs.constants;
const ME = 1000;
const entry = (mode: number, uid = ME, nlink = 1, size = 0): EntryStat => ({ mode, uid, nlink, size });

describe('storeDirProblem: a directory of the store is a real directory of the job user, writable by no one else', () => {
  test.each<[string, EntryStat, string | undefined]>([
    ['0700, ours', entry(S_IFDIR | 0o700), undefined],
    ['0755, ours (a store made before 0700)', entry(S_IFDIR | 0o755), undefined],
    ['a symbolic link', entry(S_IFLNK | 0o777), 'is a symbolic link, not a directory'],
    ['a regular file', entry(S_IFREG | 0o600), 'is a regular file, not a directory'],
    ['another user', entry(S_IFDIR | 0o700, 1002), "belongs to uid 1002, not to the job's user (uid 1000)"],
    ['root, for a job user', entry(S_IFDIR | 0o700, 0), "belongs to uid 0, not to the job's user (uid 1000)"],
    ['group-writable', entry(S_IFDIR | 0o770), 'is writable by its group (mode 0770)'],
    ['world-writable', entry(S_IFDIR | 0o777), 'is writable by its group and others (mode 0777)'],
    ['world-writable, sticky', entry(S_IFDIR | 0o1703), 'is writable by others (mode 1703)']
  ])('%s', (_, stat, expected) => {
    expect(storeDirProblem(stat, ME)).toBe(expected);
  });
});

describe('parentDirProblem: cache-dir and every directory above it let no other user swap what is in them', () => {
  test.each<[string, EntryStat, string | undefined]>([
    ['ours', entry(S_IFDIR | 0o755), undefined],
    ["root's", entry(S_IFDIR | 0o755, 0), undefined],
    ['/tmp: world-writable, sticky', entry(S_IFDIR | 0o1777, 0), undefined],
    ['another user', entry(S_IFDIR | 0o755, 1002), "belongs to uid 1002, neither root nor the job's user (uid 1000)"],
    ["root's, group-writable", entry(S_IFDIR | 0o775, 0), 'is writable by its group (mode 0775)'],
    ['ours, world-writable', entry(S_IFDIR | 0o777), 'is writable by its group and others (mode 0777)'],
    ['not a directory', entry(S_IFREG | 0o644), 'is a regular file, not a directory']
  ])('%s', (_, stat, expected) => {
    expect(parentDirProblem(stat, ME)).toBe(expected);
  });
});

describe('storeFileProblem: a regular file of a bounded size; a kept image also ours alone', () => {
  test.each<[string, EntryStat, number | undefined, string | undefined]>([
    ['a frame within its length', entry(S_IFREG | 0o600, 1002, 3, 100), undefined, undefined],
    ['a frame of exactly its length', entry(S_IFREG | 0o600, ME, 1, 128), undefined, undefined],
    [
      'a frame over its length',
      entry(S_IFREG | 0o600, ME, 1, 129),
      undefined,
      'is 129 bytes, more than the 128 it may be'
    ],
    ['a FIFO', entry(S_IFIFO | 0o600), undefined, 'is a FIFO, not a regular file'],
    [
      'a character device (/dev/zero)',
      entry(S_IFCHR | 0o666, 0),
      undefined,
      'is a character device, not a regular file'
    ],
    ['a directory', entry(S_IFDIR | 0o700), undefined, 'is a directory, not a regular file'],
    ['an image of ours', entry(S_IFREG | 0o644, ME, 1, 100), ME, undefined],
    [
      'an image of another user',
      entry(S_IFREG | 0o644, 1002),
      ME,
      "belongs to uid 1002, not to the job's user (uid 1000)"
    ],
    ['an image with a second link', entry(S_IFREG | 0o644, ME, 2), ME, 'has 2 links, not 1'],
    ['an image others may write', entry(S_IFREG | 0o666), ME, 'is writable by its group and others (mode 0666)']
  ])('%s', (_, stat, owner, expected) => {
    expect(storeFileProblem(stat, 128, owner)).toBe(expected);
  });
});

describe('names the store writes', () => {
  test.each<[string, string, string | undefined]>([
    ['k%2B1.gz', '.gz', 'k+1'],
    ['setup-dind-v2-abc-0123%2Bdeadbeef.gz', '.gz', 'setup-dind-v2-abc-0123+deadbeef'],
    ['k%2B1.img', '.img', 'k+1'],
    ['k%2B1.img', '.gz', undefined],
    ['%E0%A4%A.gz', '.gz', undefined],
    ['%ED%A0%80.gz', '.gz', undefined],
    ['%.gz', '.gz', undefined],
    ['%41.gz', '.gz', undefined],
    ['k+1.gz', '.gz', undefined],
    ['a\uFFFDb.gz', '.gz', undefined],
    ['.gz', '.gz', undefined],
    ['k%2B1', '.gz', undefined]
  ])('%p (%s) → %p', (name, suffix, key) => {
    expect(keyOfName(name, suffix)).toBe(key);
  });

  const hash = `ab${'0'.repeat(62)}`;
  test.each<[string, string, boolean]>([
    ['ab', `${hash}.zst`, true],
    ['cd', `${hash}.zst`, false],
    ['ab', hash, false],
    ['ab', `${hash.toUpperCase()}.zst`, false],
    ['ab', `${hash}0.zst`, false],
    ['../ab', `${hash}.zst`, false]
  ])('frames/%s/%s: %p', (shard, name, expected) => {
    expect(isFrameName(shard, name)).toBe(expected);
  });
});

let dir: string;
let store: LocalStore;
let warnings: string[];
const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const root = () => path.join(dir, 'setup-dind-v2');
const images = () => path.join(root(), 'images', bootId);
const LIMITS = { maxImageBytes: 2 ** 40, maxWriteBytes: 2 ** 40 };

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-store-'));
  warnings = [];
  jest.spyOn(core, 'warning').mockImplementation(message => void warnings.push(String(message)));
  jest.spyOn(core, 'debug').mockImplementation(() => undefined);
  store = defined(await LocalStore.open(dir), 'the store');
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A sparse image of `apparent` bytes with `written` bytes of data at its start, modified `age` s ago. */
function image(name: string, apparent: number, written: number, age = 0): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.alloc(written, 1));
  fs.truncateSync(file, apparent);
  const when = new Date(Date.now() - age * 1000);
  fs.utimesSync(file, when, when);
  return file;
}

async function keep(key: string, written: number, age: number): Promise<void> {
  expect(await store.keepImage(key, image(`${key}.src`, 1 << 30, written))).toBe(true);
  const when = new Date(Date.now() - age * 1000);
  fs.utimesSync(path.join(images(), `${encodeURIComponent(key)}.img`), when, when);
}

/** Takes the kept image of `key` into the data directory `name` as a restore does; its image, if it was taken. */
async function take(key: string, name: string, bytes = 0): Promise<string | undefined> {
  const dataDir = path.join(dir, name);
  const taken = await adoptImage(dataDir, bytes, image => store.takeImage(key, image));
  return taken ? path.join(dataDir, 'docker.img') : undefined;
}

describe("the stores' contract", () => {
  storeContract(() => ({
    store,
    plantManifest: async (key, blob) =>
      fs.writeFileSync(path.join(root(), 'manifests', `${encodeURIComponent(key)}.gz`), blob)
  }));
});

describe('kept images', () => {
  test('a kept image is taken whole, once: a second job finds none', async () => {
    const source = image('job1.img', 1 << 30, 8192);
    expect(await store.takeImage('k+1', path.join(dir, 'early.img'))).toBeUndefined();
    expect(await store.holdsImagesOf(dir)).toBe(true);
    expect(await store.keepImage('k+1', source)).toBe(true);
    expect(fs.existsSync(source)).toBe(false);
    const target = defined(await take('k+1', 'job2'), 'the image taken');
    expect(fs.statSync(target).size).toBe(1 << 30);
    const head = Buffer.alloc(8192);
    const fd = fs.openSync(target, 'r');
    fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    expect(head).toEqual(Buffer.alloc(8192, 1));
    expect(await take('k+1', 'job3')).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  test('a smaller image is grown through the descriptor checked', async () => {
    await keep('k+1', 4096, 0);
    fs.truncateSync(path.join(images(), 'k%2B1.img'), 1 << 20);
    const target = defined(await take('k+1', 'grown', 1 << 30), 'the image taken');
    expect(fs.statSync(target).size).toBe(1 << 30);
  });

  test('an image of the same state replaces the one there', async () => {
    await store.keepImage('k+1', image('a.img', 4096, 4096));
    await store.keepImage('k+1', image('b.img', 8192, 8192));
    expect(fs.readdirSync(images())).toEqual(['k%2B1.img']);
    expect(fs.statSync(path.join(images(), 'k%2B1.img')).size).toBe(8192);
  });

  test.each<[string, (kept: string, elsewhere: string) => void, RegExp]>([
    ['hard-linked elsewhere', (kept, elsewhere) => fs.linkSync(kept, elsewhere), /has 2 links, not 1/],
    [
      'a symbolic link to an image elsewhere',
      (kept, elsewhere) => {
        fs.renameSync(kept, elsewhere);
        fs.symlinkSync(elsewhere, kept);
      },
      /is a symbolic link, not a regular file/
    ],
    ['writable by others', kept => fs.chmodSync(kept, 0o666), /is writable by its group and others/],
    [
      'a FIFO',
      kept => {
        fs.rmSync(kept);
        execFileSync('mkfifo', [kept]);
      },
      /is a FIFO, not a regular file/
    ]
  ])('an image %s is not taken: it stays, with a warning naming it', async (_, plant, problem) => {
    await keep('k+1', 4096, 0);
    const kept = path.join(images(), 'k%2B1.img');
    const elsewhere = path.join(dir, 'elsewhere.img');
    plant(kept, elsewhere);
    expect(await take('k+1', 'taken')).toBeUndefined();
    expect(fs.readdirSync(path.join(dir, 'taken'))).toEqual([]);
    expect(fs.readdirSync(images())).toEqual(['k%2B1.img']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(kept);
    expect(warnings[0]).toMatch(problem);
  });
});

describe('the directories of the store', () => {
  test('made 0700, the job user’s', () => {
    for (const sub of ['', 'frames', 'manifests', 'tmp', 'images', path.join('images', bootId)]) {
      const stat = fs.lstatSync(path.join(root(), sub));
      expect({ sub, mode: stat.mode & 0o7777, uid: stat.uid }).toEqual({ sub, mode: 0o700, uid: process.getuid?.() });
    }
  });

  test.each<[string, (canaryDir: string) => void, RegExp]>([
    [
      'images, a symbolic link to another directory',
      canaryDir => {
        fs.rmSync(path.join(root(), 'images'), { recursive: true });
        fs.symlinkSync(canaryDir, path.join(root(), 'images'));
      },
      /setup-dind-v2\/images is a symbolic link, not a directory/
    ],
    [
      'a shard of frames/, a symbolic link to another directory',
      canaryDir => fs.symlinkSync(canaryDir, path.join(root(), 'frames', 'ab')),
      /setup-dind-v2\/frames\/ab is a symbolic link, not a directory/
    ],
    [
      'manifests, world-writable',
      () => fs.chmodSync(path.join(root(), 'manifests'), 0o777),
      /setup-dind-v2\/manifests is writable by its group and others \(mode 0777\)/
    ],
    [
      'setup-dind-v2, a regular file',
      () => {
        fs.rmSync(root(), { recursive: true });
        fs.writeFileSync(root(), '');
      },
      /setup-dind-v2 is a regular file, not a directory/
    ],
    [
      'cache-dir, world-writable without the sticky bit',
      () => fs.chmodSync(dir, 0o777),
      /is writable by its group and others/
    ]
  ])('%s: the store is not used, with a warning naming it; nothing there is touched', async (_, plant, problem) => {
    const target = canary([bootId]);
    const before = target.state();
    plant(target.dir);
    expect(await LocalStore.open(dir)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(problem);
    expect(target.state()).toBe(before);
    target.remove();
  });
});

describe('frames and manifests planted in the store', () => {
  const hash = `ab${'1'.repeat(62)}`;
  const frameFile = () => path.join(root(), 'frames', 'ab', `${hash}.zst`);

  test.each<[string, (file: string, canaryFile: string) => void]>([
    ['a symbolic link to a file elsewhere', (file, canaryFile) => fs.symlinkSync(canaryFile, file)],
    ['a symbolic link to /dev/zero', file => fs.symlinkSync('/dev/zero', file)],
    ['a FIFO (no writer: a blocking read would wait for ever)', file => execFileSync('mkfifo', [file])],
    ['a directory', file => fs.mkdirSync(file)]
  ])('a frame that is %s is not one: not read, not touched, not removed', async (_, plant) => {
    await store.write(`ab${'2'.repeat(62)}`, Buffer.alloc(10));
    const target = canary([bootId]);
    const before = target.state();
    plant(frameFile(), path.join(target.dir, 'passwd'));
    expect(await store.has(hash)).toBe(false);
    expect(await store.read(hash, { maxBytes: 1 << 20 })).toBeUndefined();
    await store.touch([hash]);
    const { removedFrames, left } = await store.enforceLimit(0);
    expect({ removedFrames, frames: left.frames }).toEqual({ removedFrames: 1, frames: 0 });
    expect(fs.lstatSync(frameFile()).isFile()).toBe(false);
    expect(target.state()).toBe(before);
    target.remove();
  });

  test('a frame is read only up to its recorded length: a longer file is not the frame', async () => {
    await store.write(hash, Buffer.alloc(100, 7));
    expect(await store.read(hash, { maxBytes: 100 })).toEqual(Buffer.alloc(100, 7));
    expect(await store.read(hash, { maxBytes: 99 })).toBeUndefined();
    expect(warnings).toEqual([
      expect.stringMatching(/frames\/ab\/ab1+\.zst in the cache directory: it is 100 bytes, more than the 99/)
    ]);
  });

  test('a frame fetched for a name that holds something else replaces it (the link, not what it names)', async () => {
    const target = canary([bootId]);
    const before = target.state();
    fs.mkdirSync(path.dirname(frameFile()), { recursive: true });
    fs.symlinkSync(path.join(target.dir, 'passwd'), frameFile());
    await store.write(hash, Buffer.alloc(10, 3));
    expect(fs.lstatSync(frameFile()).isFile()).toBe(true);
    expect(await store.read(hash, { maxBytes: 10 })).toEqual(Buffer.alloc(10, 3));
    expect(target.state()).toBe(before);
    target.remove();
  });

  test('a malformed name among the manifests is skipped: the newest well-formed one is found', async () => {
    await store.writeManifest(emptyManifest('k+1'));
    const manifests = path.join(root(), 'manifests');
    for (const name of ['%E0%A4%A.gz', 'k%2.gz', '%41.gz', 'k+2.gz', 'k%2B3'])
      fs.writeFileSync(path.join(manifests, name), 'x');
    expect((await store.findManifest(['k+'], LIMITS))?.key).toBe('k+1');
    await store.enforceLimit(1 << 30);
    expect(fs.readdirSync(manifests)).toHaveLength(6);
  });

  test.each<[string, (file: string) => void, RegExp]>([
    [
      'a symbolic link to /dev/zero',
      file => fs.symlinkSync('/dev/zero', file),
      /is a symbolic link, not a regular file/
    ],
    ['a FIFO', file => execFileSync('mkfifo', [file]), /is a FIFO, not a regular file/],
    [
      'larger than a manifest may be',
      file => {
        fs.writeFileSync(file, '');
        fs.truncateSync(file, 33 * 1024 * 1024);
      },
      /is 34603008 bytes, more than the 33554432/
    ]
  ])('a manifest that is %s is not read (a warning): the newest that can be is found', async (_, plant, problem) => {
    await store.writeManifest(emptyManifest('k+1'));
    const older = new Date(Date.now() - 60_000);
    fs.utimesSync(path.join(root(), 'manifests', 'k%2B1.gz'), older, older);
    await store.writeManifest(emptyManifest('other+1'));
    plant(path.join(root(), 'manifests', 'k%2B2.gz'));
    expect((await store.findManifest(['k+', 'other+'], LIMITS))?.key).toBe('k+1');
    warnings.length = 0;
    expect(await store.readManifest('k+2', LIMITS)).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(problem)]);
  });

  test('a manifest written is read back', async () => {
    const written = emptyManifest('k+1');
    await store.writeManifest(written);
    expect(fs.readFileSync(path.join(root(), 'manifests', 'k%2B1.gz'))).toEqual(await encodeManifest(written));
    expect(await store.readManifest('k+1', LIMITS)).toEqual(written);
  });
});

describe('the bound', () => {
  test('images kept before this boot of the machine are removed: the kernel may not have written them whole', async () => {
    await keep('k+now', 4096, 0);
    const earlier = path.join(root(), 'images', '00000000-0000-0000-0000-000000000000');
    fs.mkdirSync(earlier);
    fs.renameSync(path.join(images(), 'k%2Bnow.img'), path.join(earlier, 'k%2Bnow.img'));
    expect(await store.takeImage('k+now', path.join(dir, 'taken.img'))).toBeUndefined();
    await store.enforceLimit(1 << 30);
    expect(fs.existsSync(earlier)).toBe(false);
  });

  test('an earlier boot that is a symbolic link, or holds one, is not followed: what it names stays', async () => {
    const target = canary([bootId]);
    const before = target.state();
    const allImages = path.join(root(), 'images');
    fs.symlinkSync(target.dir, path.join(allImages, '00000000-0000-0000-0000-000000000000'));
    const earlier = path.join(allImages, '11111111-1111-1111-1111-111111111111');
    fs.mkdirSync(earlier);
    fs.symlinkSync(path.join(target.dir, 'passwd'), path.join(earlier, 'k%2B1.img'));
    fs.symlinkSync(target.dir, path.join(earlier, 'k%2B2.img'));
    await store.enforceLimit(0);
    expect(target.state()).toBe(before);
    expect(fs.readdirSync(earlier).sort()).toEqual(['k%2B1.img', 'k%2B2.img']);
    target.remove();
  });

  test('stale temporary files go; anything else in tmp/ stays', async () => {
    const tmp = path.join(root(), 'tmp');
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    for (const name of ['123-0123456789ab', 'junk']) {
      fs.writeFileSync(path.join(tmp, name), '');
      fs.utimesSync(path.join(tmp, name), old, old);
    }
    fs.writeFileSync(path.join(tmp, '124-0123456789ab'), '');
    await store.enforceLimit(1 << 30);
    expect(fs.readdirSync(tmp).sort()).toEqual(['124-0123456789ab', 'junk']);
  });

  test('an image counts the disk space it takes, not its apparent size', async () => {
    await keep('k+1', 64 * 1024, 0);
    const { left, removedImages } = await store.enforceLimit(1024 * 1024);
    expect(removedImages).toBe(0);
    expect(left.images).toBe(1);
    expect(left.bytes).toBeLessThan(1024 * 1024);
  });

  test('only the newest few images stay, whatever the room', async () => {
    for (let i = 0; i < 6; i++) await keep(`k+${i}`, 4096, 100 - i);
    const { left, removedImages } = await store.enforceLimit(1 << 30);
    expect(removedImages).toBe(2);
    expect(left.images).toBe(4);
    expect(fs.readdirSync(images()).sort()).toEqual(['k%2B2.img', 'k%2B3.img', 'k%2B4.img', 'k%2B5.img']);
  });

  test('over the bound, images go before frames, the oldest first', async () => {
    await store.write('a'.repeat(64), Buffer.alloc(100 * 1024, 2));
    await keep('k+old', 200 * 1024, 50);
    await keep('k+new', 200 * 1024, 10);
    const { left, removedImages, removedFrames } = await store.enforceLimit(350 * 1024);
    expect({ removedImages, removedFrames }).toEqual({ removedImages: 1, removedFrames: 0 });
    expect(fs.readdirSync(images())).toEqual(['k%2Bnew.img']);
    expect(left.frames).toBe(1);
    expect(await store.has('a'.repeat(64))).toBe(true);
  });
});
