// A lock between the processes of one user on one host (parallel jobs of a self-hosted runner): a
// file created exclusively, removed by its holder. Whatever it guards must take far less than
// `staleMs`: a lock that old is taken to be a dead holder's and is taken over (two waiters taking
// over the same dead holder's lock in the same instant could both hold it: accepted, as that needs
// a holder that died first).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FileLockOptions {
  /** A lock older than this is a dead holder's. */
  staleMs?: number;
  /** How often a waiter looks again (a random part is added, so waiters do not move in step). */
  pollMs?: number;
}

/** Runs `run` holding the lock at `lockPath` (its directory is made if missing). */
export async function withFileLock<T>(
  lockPath: string,
  run: () => Promise<T>,
  options: FileLockOptions = {}
): Promise<T> {
  const { staleMs = 30_000, pollMs = 20 } = options;
  // Ours alone: release removes the file only while it is still the one this holder wrote.
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  await fs.mkdir(path.dirname(lockPath), { recursive: true, mode: 0o700 });
  for (;;) {
    try {
      await fs.writeFile(lockPath, token, { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const held = await fs.lstat(lockPath).catch(() => undefined);
    if (held && Date.now() - held.mtimeMs > staleMs) await fs.rm(lockPath, { force: true });
    else await sleep(pollMs + Math.random() * pollMs);
  }
  try {
    return await run();
  } finally {
    const current = await fs.readFile(lockPath, 'utf8').catch(() => undefined);
    if (current === token) await fs.rm(lockPath, { force: true });
  }
}
