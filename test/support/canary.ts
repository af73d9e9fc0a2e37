// A directory outside the action's reach that a test plants links to, and that must stay as it is.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Named as an earlier boot's kept images would be: what a prune of the store's images/ would remove. */
const CANARY_BOOT = '00000000-0000-0000-0000-000000000000';

export interface Canary {
  dir: string;
  /** Every entry under `dir`: its type, size, modification time and (of a small file) content, one line each. */
  state(): string;
  remove(): void;
}

/**
 * A directory of files dated long ago, with a subdirectory; writable by everyone, so that a job user
 * could remove or write any of it, and only the action's own care keeps it as it is. `names` are extra
 * files at its top.
 */
export function canary(names: string[] = []): Canary {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-canary-'));
  const old = new Date('2000-01-01T00:00:00Z');
  const sub = path.join(dir, CANARY_BOOT);
  fs.mkdirSync(sub);
  for (const file of [
    ...['passwd', 'notes', ...names].map(name => path.join(dir, name)),
    path.join(sub, 'k%2B1.img')
  ]) {
    fs.writeFileSync(file, `${path.basename(file)}\n`);
    fs.chmodSync(file, 0o666);
    fs.utimesSync(file, old, old);
  }
  for (const each of [sub, dir]) {
    fs.chmodSync(each, 0o777);
    fs.utimesSync(each, old, old);
  }
  const state = (): string =>
    ['.', ...fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()]
      .map(name => {
        const file = path.join(dir, name);
        const stat = fs.lstatSync(file);
        // A large file (an image linked in) by its size and time alone: a write through a mount sets its mtime.
        const small = stat.isFile() && stat.size <= 1024 * 1024;
        const content = small ? createHash('sha256').update(fs.readFileSync(file)).digest('hex') : '-';
        return `${name} ${stat.mode.toString(8)} ${stat.size} ${stat.mtimeMs} ${content}`;
      })
      .join('\n');
  return { dir, state, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
