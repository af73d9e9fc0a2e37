// The lock parallel jobs of one user take around a look-then-change (Docker contexts), on a real
// filesystem.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withFileLock } from '../../../src/util/file-lock';

let dir: string;
let lock: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'file-lock-'));
  lock = path.join(dir, 'sub', 'x.lock');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

test('holders run one at a time, each seeing what the one before wrote; the lock is gone after', async () => {
  let inside = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      withFileLock(lock, async () => {
        inside++;
        most = Math.max(most, inside);
        const seen = fs.existsSync(path.join(dir, 'value'))
          ? Number(fs.readFileSync(path.join(dir, 'value'), 'utf8'))
          : 0;
        await sleep(5);
        fs.writeFileSync(path.join(dir, 'value'), String(seen + 1));
        order.push(i);
        inside--;
      })
    )
  );
  expect(most).toBe(1);
  expect(fs.readFileSync(path.join(dir, 'value'), 'utf8')).toBe('8');
  expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(fs.existsSync(lock)).toBe(false);
});

test('a lock someone holds is waited for, and taken once it is gone', async () => {
  fs.mkdirSync(path.dirname(lock));
  fs.writeFileSync(lock, 'other\n');
  let ran = false;
  const waiting = withFileLock(lock, async () => void (ran = true));
  await sleep(150);
  expect(ran).toBe(false);
  fs.rmSync(lock);
  await waiting;
  expect(ran).toBe(true);
});

test("a lock older than staleMs is a dead holder's: taken over", async () => {
  fs.mkdirSync(path.dirname(lock));
  fs.writeFileSync(lock, 'dead\n');
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(lock, old, old);
  expect(await withFileLock(lock, async () => fs.readFileSync(lock, 'utf8'), { staleMs: 30_000 })).not.toBe('dead\n');
  expect(fs.existsSync(lock)).toBe(false);
});

test('a failing holder lets go, and its error reaches the caller', async () => {
  await expect(withFileLock(lock, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  expect(fs.existsSync(lock)).toBe(false);
  expect(await withFileLock(lock, async () => 'next')).toBe('next');
});

test("a holder whose lock was taken over does not remove the new holder's lock", async () => {
  await withFileLock(lock, async () => {
    fs.writeFileSync(lock, 'someone else\n');
  });
  expect(fs.readFileSync(lock, 'utf8')).toBe('someone else\n');
});
