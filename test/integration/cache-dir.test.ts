// The runner's own store of the daemon's states (input cache-dir), end to end on the real engine: a job
// saves to it beside the cache service; a job without the service restores from it alone; parallel
// jobs share it; a job killed while it writes leaves nothing a later job mistakes for valid; its bound;
// what another user of the runner plants in it is neither followed nor fatal.
import { execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHUNK_BYTES } from '../../src/daemon/data-image';
import { decompressFrame, sha256 } from '../../src/cache/image/zstd';
import {
  buildOuterImages,
  cacheFact,
  diskManifest,
  expectEmptyWorkingDaemon,
  expectLoadAndRun,
  imageTags,
  savedKeyOf
} from '../support/cache-helpers';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { canary } from '../support/canary';
import { labelled, outerOk } from '../support/engine';
import { TINY_IMAGE } from '../support/images';
import { BUILD, delta, loadFromOuter, summaryRows, sweepAll, TestJob, withJob } from '../support/job';
import { account } from '../support/runner';
import { commands, expectExit } from '../support/steps';

jest.setTimeout(300_000);

let server: CacheServer;
let dir: string;
const FRAMES = () => path.join(dir, 'setup-dind-v2', 'frames');
const IMAGES = () =>
  path.join(dir, 'setup-dind-v2', 'images', fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());

/** Under a key base of its own (a made-up feature is a storage setting of the key). */
const INPUTS = () => ({
  cache: 'true',
  context: '',
  'cache-key': 'dir',
  'cache-dir': dir,
  'daemon-config': '{"features":{"setup-dind-test-cache-dir":true}}'
});

beforeAll(async () => {
  await buildOuterImages();
  server = await startCacheServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-cache-dir-'));
}, 600_000);

afterAll(async () => {
  await sweepAll();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Every frame file in the store, checked: it decompresses to the chunk its name is the hash of. */
async function storeFrames(): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const shard of fs.existsSync(FRAMES()) ? fs.readdirSync(FRAMES()) : []) {
    for (const name of fs.readdirSync(path.join(FRAMES(), shard))) {
      const frame = fs.readFileSync(path.join(FRAMES(), shard, name));
      expect(sha256(await decompressFrame(frame, CHUNK_BYTES))).toBe(name.replace(/\.zst$/, ''));
      count++;
      bytes += frame.length;
    }
  }
  return { count, bytes };
}

/** A step that adds an image of `mb` MB of incompressible data, built in the daemon. */
const addImage = (tag: string, mb: number) =>
  `mkdir -p ctx-${mb} && head -c ${mb}000000 /dev/urandom > ctx-${mb}/blob && printf 'FROM ${TINY_IMAGE}\\nCOPY blob /blob\\n' > ctx-${mb}/Dockerfile\n${BUILD} -t ${tag} ctx-${mb} >/dev/null`;

describe('cache-dir', () => {
  let key1 = '';
  let disk = '';

  test('job 1 saves to the cache directory beside the cache service; job 2, without the service, restores from the directory alone, byte for byte', async () => {
    await withJob({ cache: server }, async job => {
      const main = await job.main(INPUTS());
      expect(main.outputs['cache-hit']).toBe('false');
      await job.step(`${loadFromOuter(TINY_IMAGE)}\n${addImage('setup-dind-test/dir:one', 3)}`, 'load and build');
      disk = await diskManifest(main);
      const [post] = await job.post({ warnings: 0 });
      key1 = savedKeyOf(post);
      expect(cacheFact(post)).toMatch(/ uploaded, .* written to the cache directory, as /);
      expect(summaryRows(post.summary)['Cache directory']).toMatch(new RegExp(`^${dir}: `));
    });
    const stored = await storeFrames();
    expect(stored.count).toBeGreaterThan(3);
    expect(fs.readdirSync(path.join(dir, 'setup-dind-v2', 'manifests'))).toEqual([`${encodeURIComponent(key1)}.gz`]);
    // The stopped daemon's image, whole, for the next job on this disk.
    expect(fs.readdirSync(IMAGES())).toEqual([`${encodeURIComponent(key1)}.img`]);

    // No cache service at all (GitHub Enterprise Server, or a runner without one): the kept image is
    // taken as it is, and given back by a post with nothing to save.
    await withJob({}, async job => {
      const main = await job.main(INPUTS());
      expect(main.warnings).toEqual([]);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
      expect(summaryRows(main.result.summary)['Cache restored']).toMatch(
        /\(hit; 0 B downloaded, .+ from the cache directory, as its kept filesystem image\)/
      );
      expect(fs.readdirSync(IMAGES())).toEqual([]);
      expect(await diskManifest(main)).toBe(disk);
      expect(await imageTags(job)).toEqual(['setup-dind-test/dir:one', TINY_IMAGE]);
      await expectLoadAndRun(job);
      const [post] = await job.post({ warnings: 0 });
      expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
      expect(summaryRows(post.summary)['Cache directory']).toMatch(/ in \d+ chunks and 1 kept images$/);
    });
    expect(fs.readdirSync(IMAGES())).toEqual([`${encodeURIComponent(key1)}.img`]);

    // Without the image (another job has it): from the frames alone, byte for byte.
    fs.rmSync(IMAGES(), { recursive: true });
    await withJob({}, async job => {
      const main = await job.main(INPUTS());
      expect(main.warnings).toEqual([]);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
      expect(summaryRows(main.result.summary)['Cache restored']).toMatch(
        /\(hit; 0 B downloaded, .+ from the cache directory\)/
      );
      expect(await diskManifest(main)).toBe(disk);
      await expectLoadAndRun(job);
      await job.post({ warnings: 0 });
    });
  });

  test('a job that never saves leaves the kept image for the next job, and restores from the frames', async () => {
    await withJob({}, async job => {
      const main = await job.main({ ...INPUTS(), 'cache-save': 'never' });
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
      expect(summaryRows(main.result.summary)['Cache restored']).not.toMatch(/kept filesystem image/);
      expect(fs.readdirSync(IMAGES())).toEqual([`${encodeURIComponent(key1)}.img`]);
      await job.post({ warnings: 0 });
    });
    expect(fs.readdirSync(IMAGES())).toEqual([`${encodeURIComponent(key1)}.img`]);
  });

  test('with the cache service on and everything in the directory, nothing is downloaded', async () => {
    await withJob({ cache: server }, async job => {
      const before = server.stats();
      const main = await job.main(INPUTS());
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
      const change = delta(before, server.stats());
      // The service's lookup of the newest state, and no part at all.
      expect(change).toMatchObject({ lookups: 1, downloads: 0, downloadedBytes: 0 });
      await job.post({ warnings: 0 });
    });
  });

  test('two jobs at once on the same directory: both restore, both save, both find their images', async () => {
    const jobs = [new TestJob({ cache: server }), new TestJob({ cache: server })];
    try {
      const mains = await Promise.all(jobs.map(job => job.main(INPUTS())));
      for (const main of mains) expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
      // One takes the kept image, the other restores from the frames.
      const whole = mains.filter(main =>
        /kept filesystem image/.test(summaryRows(main.result.summary)['Cache restored'])
      );
      expect(whole).toHaveLength(1);
      await Promise.all(jobs.map((job, i) => job.step(addImage(`setup-dind-test/dir:parallel-${i}`, 2 + i), 'build')));
      for (const [i, job] of jobs.entries()) {
        expect(await imageTags(job)).toEqual(
          [`setup-dind-test/dir:parallel-${i}`, 'setup-dind-test/dir:one', TINY_IMAGE].sort()
        );
      }
      const posts = (await Promise.all(jobs.map(job => job.post({ warnings: 0 })))).flat();
      for (const post of posts) expect(cacheFact(post)).toMatch(/^saved /);
    } finally {
      await Promise.all(jobs.map(job => job.dispose()));
    }
    await storeFrames();
    // The newer of the two is what the next job gets, whole.
    await withJob({}, async job => {
      const main = await job.main(INPUTS());
      expect(main.outputs['cache-hit']).toBe('true');
      const tags = await imageTags(job);
      expect(tags.filter(tag => tag.includes('parallel'))).toHaveLength(1);
      await expectLoadAndRun(job);
      await job.post({ warnings: 0 });
    });
  });

  test('a job killed while it writes to the directory leaves nothing a later job mistakes for valid', async () => {
    const manifests = () => fs.readdirSync(path.join(dir, 'setup-dind-v2', 'manifests')).sort();
    const before = manifests();
    // With the service on, the manifest is written after the upload: the kill lands before it.
    const job = new TestJob({ cache: server });
    try {
      const main = await job.main(INPUTS());
      await job.step(addImage('setup-dind-test/dir:killed', 40), 'build 40 MB');
      // Killed (as a cancelled job's post is) once it saves: some frames written, its manifest not.
      let killed = false;
      const watch = (child: ChildProcess) =>
        child.stdout?.on('data', (chunk: Buffer) => {
          if (!killed && chunk.toString().includes('::group::Save the cache')) {
            killed = true;
            setTimeout(() => child.kill('SIGKILL'), 300);
          }
        });
      const [post] = await job.job.finish(watch);
      expect(killed).toBe(true);
      expect(post.stderr).toContain('[killed by SIGKILL]');
      expect(manifests()).toEqual(before);
      // What the killed post did not remove.
      await outerOk(['rm', '--force', '--volumes', main.outputs['container-id']]);
      await outerOk(['network', 'rm', `setup-dind-dind-${main.started.id}`]);
      await outerOk(['volume', 'rm', `setup-dind-dind-${main.started.id}`]);
      expect(await labelled(main.started.id)).toEqual({ containers: [], networks: [], volumes: [] });
    } finally {
      await job.dispose();
    }
    // Every frame there is whole; the next job restores the newest state that was written whole.
    await storeFrames();
    await withJob({}, async job => {
      const main = await job.main(INPUTS());
      expect(main.warnings).toEqual([]);
      expect(main.outputs['cache-hit']).toBe('true');
      expect(await imageTags(job)).not.toContain('setup-dind-test/dir:killed');
      await expectLoadAndRun(job);
      await job.post({ warnings: 0 });
    });
  });

  test('the bound holds: the least recently used frames go, and a job restores what is gone from the cache service', async () => {
    await withJob({ cache: server }, async job => {
      await job.main({ ...INPUTS(), 'cache-dir-max-size': '6m' });
      await job.step(addImage('setup-dind-test/dir:bound', 4), 'build 4 MB');
      const [post] = await job.post({ warnings: 0 });
      expect(summaryRows(post.summary)['Cache directory']).toMatch(/; removed the least recently used \d+ chunks/);
    });
    const left = await storeFrames();
    expect(left.bytes).toBeLessThanOrEqual(6 * 1024 * 1024);
    await withJob({ cache: server }, async job => {
      const before = server.stats();
      const main = await job.main(INPUTS());
      expect(main.warnings).toEqual([]);
      expect(main.outputs['cache-hit']).toBe('true');
      expect(delta(before, server.stats()).downloadedBytes).toBeGreaterThan(0);
      expect(await imageTags(job)).toContain('setup-dind-test/dir:bound');
      await job.post({ warnings: 0 });
    });
  });

  test('a relative cache-dir is an input error', async () => {
    await withJob({}, async job => {
      const main = await job.run('true');
      expectExit(main, 0, 'noop');
      const result = await job.job.runMain({ image: 'x', 'cache-dir': 'relative/dir' });
      expect(result.exitCode).toBe(1);
      expect(commands(result.stdout, 'error').join('\n')).toContain("Input 'cache-dir' takes an absolute directory");
    });
  });

  test('a cache directory on another filesystem than RUNNER_TEMP keeps no image: the frames alone, and no graceful stop for nothing', async () => {
    // tmpfs: another device than the jobs' temporary directories.
    const other = fs.mkdtempSync('/dev/shm/setup-dind-cache-dir-');
    expect(fs.statSync(other).dev).not.toBe(fs.statSync(os.tmpdir()).dev);
    const inputs = { ...INPUTS(), 'cache-dir': other };
    const images = () => {
      const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const dir = path.join(other, 'setup-dind-v2', 'images', boot);
      return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    };
    try {
      await withJob({}, async job => {
        await job.main(inputs);
        await job.step(`${loadFromOuter(TINY_IMAGE)}\n${addImage('setup-dind-test/dir:shm', 1)}`, 'load and build');
        const [post] = await job.post({ warnings: 0 });
        expect(cacheFact(post)).toMatch(/^saved /);
        expect(summaryRows(post.summary)['Cache directory']).toMatch(/ and 0 kept images$/);
      });
      expect(images()).toEqual([]);
      await withJob({}, async job => {
        const main = await job.main(inputs);
        expect(main.outputs['cache-hit']).toBe('true');
        expect(summaryRows(main.result.summary)['Cache restored']).not.toMatch(/kept filesystem image/);
        expect(await imageTags(job)).toContain('setup-dind-test/dir:shm');
        const [post] = await job.post({ warnings: 0 });
        expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
        expect(summaryRows(post.summary)['Stop the daemon']).toBeUndefined();
      });
      expect(images()).toEqual([]);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('a kept image that does not check out is not used: the daemon starts empty, with a warning', async () => {
    // The last test: the empty daemon it saves is the newest state from here on.
    const [name] = fs.readdirSync(IMAGES());
    const kept = path.join(IMAGES(), name);
    // Garbage over the group descriptors, as a disk error or anyone who can write the directory could leave.
    const fd = fs.openSync(kept, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096);
    fs.closeSync(fd);
    await withJob({}, async job => {
      const main = await job.main(INPUTS());
      expect(main.warnings).toHaveLength(1);
      expect(main.warnings[0]).toMatch(/was not used: .*e2fsck/);
      expect(main.outputs['cache-hit']).toBe('false');
      expect(await imageTags(job)).toEqual([]);
      await job.post({ warnings: 0 });
    });
    // Taken and discarded; post kept the new (empty) state's image instead.
    expect(fs.readdirSync(IMAGES())).not.toContain(name);
  });
});

// Another user of the runner plants things in the store; each planting its own job, as each job user
// (the store is theirs: the action makes it). Nothing the store names outside itself is followed.
describe.each<{ user?: string; label: string }>([
  { user: undefined, label: 'root' },
  { user: 'runner', label: 'runner (passwordless sudo)' },
  { user: 'runner-nosudo', label: 'runner-nosudo (docker group only)' }
])('cache-dir planted by another user, as $label', ({ user }) => {
  let base = '';
  let cacheDir = '';
  let key = '';
  const store = (...names: string[]) => path.join(cacheDir, 'setup-dind-v2', ...names);
  const bootId = () => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const kept = () => store('images', bootId(), `${encodeURIComponent(key)}.img`);
  const inputs = () => ({ ...INPUTS(), 'cache-dir': cacheDir });
  /** A runner user other than the job's. */
  const other = () => account(user === 'runner-nosudo' ? 'runner' : 'runner-nosudo');

  beforeAll(() => {
    // The job user's directory, in which the action makes the store as that user.
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-planted-'));
    fs.chmodSync(base, 0o755);
    if (user) fs.chownSync(base, account(user).uid, account(user).gid);
    cacheDir = path.join(base, 'store');
  });
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

  /** A job that restores the saved state warm (whole or from the frames) with the given warnings. */
  async function expectWarm(warnings: RegExp[], whole: boolean): Promise<void> {
    await withJob({ user }, async job => {
      const main = await job.main(inputs());
      expect(main.warnings).toHaveLength(warnings.length);
      for (const [i, warning] of warnings.entries()) expect(main.warnings[i]).toMatch(warning);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key });
      const restored = summaryRows(main.result.summary)['Cache restored'];
      if (whole) expect(restored).toMatch(/kept filesystem image/);
      else expect(restored).not.toMatch(/kept filesystem image/);
      expect(await imageTags(job)).toEqual([TINY_IMAGE]);
      await job.post({ warnings: 0 });
    });
  }

  test('the store, made by the action, is the job user’s; a state saved to it', async () => {
    await withJob({ user }, async job => {
      const main = await job.main(inputs());
      expect(main.outputs['cache-hit']).toBe('false');
      await job.step(loadFromOuter(TINY_IMAGE), 'load');
      const [post] = await job.post({ warnings: 0 });
      key = savedKeyOf(post);
    });
    const uid = user ? account(user).uid : process.getuid?.();
    for (const dir of [cacheDir, store(), store('frames'), store('manifests'), store('images', bootId())])
      expect({ dir, uid: fs.lstatSync(dir).uid }).toEqual({ dir, uid });
    expect(fs.lstatSync(kept()).isFile()).toBe(true);
  });

  test('malformed names among the manifests are skipped: the state is restored, post bounds the store', async () => {
    const names = ['%E0%A4%A.gz', 'k%2.gz', '%41.gz', 'k+1.gz'];
    for (const name of names) fs.writeFileSync(store('manifests', name), 'x');
    try {
      await expectWarm([], true);
      expect(fs.readdirSync(store('manifests')).sort()).toEqual([...names, `${encodeURIComponent(key)}.gz`].sort());
    } finally {
      for (const name of names) fs.rmSync(store('manifests', name), { force: true });
    }
  });

  test.each<[string, (kept: string, canaryDir: string) => void, RegExp]>([
    [
      'owned by another user',
      kept => fs.chownSync(kept, other().uid, other().gid),
      /belongs to uid \d+, not to the job's user/
    ],
    [
      'hard-linked by another user',
      (kept, canaryDir) => fs.linkSync(kept, path.join(canaryDir, 'linked.img')),
      /has 2 links, not 1/
    ],
    [
      'a symbolic link to another file',
      (kept, canaryDir) => {
        fs.unlinkSync(kept);
        fs.symlinkSync(path.join(canaryDir, 'passwd'), kept);
      },
      /is a symbolic link, not a regular file/
    ]
  ])(
    'a kept image %s is not taken (a warning): the state is restored from the frames; what it names is untouched',
    async (_, plant, problem) => {
      const outside = canary();
      try {
        plant(kept(), outside.dir);
        const before = outside.state();
        await expectWarm([new RegExp(`^Not using ${kept()} in the cache directory: it ${problem.source}`)], false);
        expect(outside.state()).toBe(before);
        // Post kept the job's own image in its place.
        const now = fs.lstatSync(kept());
        expect({ file: now.isFile(), uid: now.uid, links: now.nlink }).toEqual({
          file: true,
          uid: user ? account(user).uid : 0,
          links: 1
        });
      } finally {
        outside.remove();
      }
    }
  );

  test.each<[string, (frame: string) => void]>([
    ['a FIFO (main does not wait for a writer)', frame => execFileSync('mkfifo', [frame])],
    ['a symbolic link to /dev/zero (main does not read it)', frame => fs.symlinkSync('/dev/zero', frame)]
  ])('a frame that is %s is not one: the daemon starts empty, with a warning', async (_, plant) => {
    const [shard] = fs.readdirSync(store('frames'));
    const [name] = fs.readdirSync(store('frames', shard));
    const frame = store('frames', shard, name);
    const aside = path.join(base, name);
    fs.renameSync(frame, aside);
    try {
      plant(frame);
      // Never saved: the kept image stays (the frames are what is tried), and the state stays the newest.
      await withJob({ user }, async job => {
        const main = await job.main({ ...inputs(), 'cache-save': 'never' });
        expect(main.warnings).toEqual([
          expect.stringMatching(/^Cache restore failed, the daemon starts empty: .*not in the runner's store/)
        ]);
        expect(main.outputs['cache-hit']).toBe('false');
        await expectEmptyWorkingDaemon(job);
        await job.post({ warnings: 0 });
      });
    } finally {
      fs.rmSync(frame, { force: true });
      fs.renameSync(aside, frame);
    }
  });

  test.each<[string, (canaryDir: string) => () => void, RegExp]>([
    [
      'images, a symbolic link to another directory',
      canaryDir => {
        fs.renameSync(store('images'), store('images.real'));
        fs.symlinkSync(canaryDir, store('images'));
        return () => {
          fs.unlinkSync(store('images'));
          fs.renameSync(store('images.real'), store('images'));
        };
      },
      /images is a symbolic link, not a directory/
    ],
    [
      'a shard of frames/, a symbolic link to another directory',
      canaryDir => {
        const shard = ['00', '01'].find(name => !fs.existsSync(store('frames', name))) ?? '';
        fs.symlinkSync(canaryDir, store('frames', shard));
        return () => fs.unlinkSync(store('frames', shard));
      },
      /frames\/0[01] is a symbolic link, not a directory/
    ],
    [
      'manifests, writable by others',
      () => {
        fs.chmodSync(store('manifests'), 0o777);
        return () => fs.chmodSync(store('manifests'), 0o700);
      },
      /manifests is writable by its group and others \(mode 0777\)/
    ]
  ])(
    '%s: the store is not used (a warning in main and in post), the daemon starts empty; nothing there is touched',
    async (_, plant, problem) => {
      const outside = canary();
      const before = outside.state();
      const undo = plant(outside.dir);
      const refused = new RegExp(`^Not using the cache directory ${cacheDir}: ${store()}/${problem.source}`);
      try {
        await withJob({ user }, async job => {
          const main = await job.main(inputs());
          expect(main.warnings).toEqual([expect.stringMatching(refused)]);
          expect(main.outputs['cache-hit']).toBe('false');
          await expectEmptyWorkingDaemon(job);
          const [post] = await job.post({ warnings: 1 });
          expect(commands(post.stdout, 'warning')).toEqual([expect.stringMatching(refused)]);
        });
        expect(outside.state()).toBe(before);
      } finally {
        undo();
        outside.remove();
      }
      // The store as it was: the state is still there, whole.
      await expectWarm([], true);
    }
  );
});
