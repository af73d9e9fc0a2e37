// The filesystem every method writes its daemon data to: one fresh, journaled ext4 made for the run, as
// a runner's disk is (a loop-mounted sparse file under /var/tmp, mkfs'ed with the host's mke2fs
// defaults), so that no method inherits what an earlier one, or another job on this machine, left in
// the host's own filesystem (whose root here has no journal, and creates files ~10x slower for minutes
// after many were removed). Also tells, for any path, what filesystem it is on and how it is mounted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, sh, sleep } from './proc';

export interface FsInfo {
  /** The directory asked about. */
  path: string;
  /** The mount point it is under. */
  target: string;
  source: string;
  fstype: string;
  /** findmnt's OPTIONS column. */
  options: string;
  /** A jbd2 journal is running for its device (/proc/fs/jbd2/<device>-<inode>). */
  journal: boolean;
  /** dumpe2fs -h's "Filesystem features" (ext2/3/4 only). */
  features?: string;
  /** Journal size, inode count and block size, from dumpe2fs -h (ext2/3/4 only). */
  layout?: string;
  /** Size and free space (df). */
  size?: string;
}

/** What filesystem `dir` is on, how it is mounted, and whether it has a journal. */
export async function describeFs(dir: string, device?: string): Promise<FsInfo> {
  const [target, source, fstype, options] = (
    await run('findmnt', ['--noheadings', '--raw', '--output', 'TARGET,SOURCE,FSTYPE,OPTIONS', '--target', dir])
  ).stdout
    .trim()
    .split('\n')[0]
    .split(' ');
  const dev = device ?? source;
  const jbd2 = fs.existsSync('/proc/fs/jbd2') ? fs.readdirSync('/proc/fs/jbd2') : [];
  const journal = jbd2.some(name => name.startsWith(`${path.basename(dev)}-`));
  const info: FsInfo = { path: dir, target, source, fstype, options, journal };
  if (fstype.startsWith('ext')) Object.assign(info, await ext4Header(dev));
  const df = await sh('df -h --output=size,avail "$1" | tail -1', { args: [dir], allowFail: true });
  const [size, avail] = df.stdout.trim().split(/\s+/);
  if (size) info.size = `${size}, ${avail} free`;
  return info;
}

/** Features and layout from dumpe2fs -h (of an unmounted device, or its "needs_recovery" shows). */
async function ext4Header(device: string): Promise<Pick<FsInfo, 'features' | 'layout'>> {
  const dump = await run('dumpe2fs', ['-h', device], { allowFail: true });
  if (dump.code !== 0)
    return { features: `unknown (dumpe2fs: ${dump.stderr.trim().split('\n').slice(-2).join(' ').slice(0, 120)})` };
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(dump.stdout)?.[1]?.trim();
  const layout = [
    field('Block size') && `block size ${field('Block size')}`,
    field('Inode count') && `${field('Inode count')} inodes`,
    field('Inode size') && `inode size ${field('Inode size')}`,
    field('Total journal size') && `journal ${field('Total journal size')}`,
    field('Default mount options') && `default mount options ${field('Default mount options')}`
  ].filter(Boolean);
  return { features: field('Filesystem features'), layout: layout.length > 0 ? layout.join(', ') : undefined };
}

export interface Scratch {
  /** The sparse image file. */
  file: string;
  device: string;
  /** Where it is mounted. */
  mount: string;
  info: FsInfo;
  /** The mke2fs command line it was made with. */
  mkfs: string;
  remove(): Promise<void>;
}

/**
 * Makes the run's filesystem: a sparse file of `bytes` under `parent`, `mke2fs -t ext4` with nothing
 * but the host's defaults (/etc/mke2fs.conf), attached to a loop device and mounted with the default
 * options on a fresh directory. `onCreated` gets the removal as soon as there is something to remove.
 */
export async function makeScratch(
  parent: string,
  name: string,
  bytes: number,
  onCreated: (remove: () => Promise<void>) => void
): Promise<Scratch> {
  const file = path.join(parent, `${name}.img`);
  const mount = path.join(parent, `${name}.mnt`);
  let device = '';
  let mounted = false;
  const remove = async () => {
    if (mounted) {
      // Whatever still holds it (a container being removed) lets go within a few seconds.
      for (let attempt = 0; ; attempt++) {
        const result = await run('umount', [mount], { allowFail: true });
        if (result.code === 0) break;
        if (attempt >= 20) {
          console.warn(`  cleanup: ${mount} stays busy (${result.stderr.trim()}): detaching it lazily`);
          await run('umount', ['--lazy', mount], { allowFail: true });
          break;
        }
        await sleep(500);
      }
      mounted = false;
    }
    if (device) {
      await run('losetup', ['--detach', device], { allowFail: true });
      device = '';
    }
    fs.rmSync(file, { force: true });
    fs.rmSync(mount, { recursive: true, force: true });
  };
  onCreated(remove);
  fs.mkdirSync(mount);
  const handle = fs.openSync(file, 'wx', 0o600);
  fs.ftruncateSync(handle, bytes);
  fs.closeSync(handle);
  const mkfs = ['-t', 'ext4', '-F', '-q', file];
  await run('mke2fs', mkfs);
  const header = await ext4Header(file);
  device = (await run('losetup', ['--find', '--show', file])).stdout.trim();
  await run('mount', [device, mount]);
  mounted = true;
  const info = { ...(await describeFs(mount, device)), ...header };
  return { file, device, mount, info, mkfs: `mke2fs ${mkfs.slice(0, -1).join(' ')} <file>`, remove };
}
