// The runner's store (cache-dir) on a real temporary directory: images kept whole and taken by one
// job only, and the bound over frames and images.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalStore } from '../../src/local-store';

let dir: string;
let store: LocalStore;
const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const images = () => path.join(dir, 'setup-dind-v2', 'images', bootId);

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-store-'));
  store = new LocalStore(dir);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

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

describe('kept images', () => {
  test('a kept image is taken whole, once: a second job finds none', async () => {
    const source = image('job1.img', 1 << 30, 8192);
    expect(await store.takeImage('k+1', path.join(dir, 'early.img'))).toBe(false);
    expect(await store.holdsImagesOf(dir)).toBe(true);
    expect(await store.keepImage('k+1', source)).toBe(true);
    expect(fs.existsSync(source)).toBe(false);
    const target = path.join(dir, 'job2.img');
    expect(await store.takeImage('k+1', target)).toBe(true);
    expect(fs.statSync(target).size).toBe(1 << 30);
    const head = Buffer.alloc(8192);
    const fd = fs.openSync(target, 'r');
    fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    expect(head).toEqual(Buffer.alloc(8192, 1));
    expect(await store.takeImage('k+1', path.join(dir, 'job3.img'))).toBe(false);
  });

  test('an image of the same state replaces the one there', async () => {
    await store.keepImage('k+1', image('a.img', 4096, 4096));
    await store.keepImage('k+1', image('b.img', 8192, 8192));
    expect(fs.readdirSync(images())).toEqual(['k%2B1.img']);
    expect(fs.statSync(path.join(images(), 'k%2B1.img')).size).toBe(8192);
  });
});

describe('the bound', () => {
  test('images kept before this boot of the machine are removed: the kernel may not have written them whole', async () => {
    await keep('k+now', 4096, 0);
    const earlier = path.join(dir, 'setup-dind-v2', 'images', '00000000-0000-0000-0000-000000000000');
    fs.mkdirSync(earlier);
    fs.renameSync(path.join(images(), 'k%2Bnow.img'), path.join(earlier, 'k%2Bnow.img'));
    expect(await store.takeImage('k+now', path.join(dir, 'taken.img'))).toBe(false);
    await store.enforceLimit(1 << 30);
    expect(fs.existsSync(earlier)).toBe(false);
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
