// Crafted cache entries on the real engine: what anyone who can write the repository's cache (or
// another user of a self-hosted runner's disk) could restore into a job. Each is refused before it can
// do anything (a warning and an empty daemon that works), or restored without what it must not carry,
// and nothing outside the daemon's data is written, read or removed. Apart from cache.test.ts so that
// the two run side by side.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { contentFingerprint } from '../../src/cache/key';
import { INSTANCE_LABEL } from '../../src/runner/contract';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { cacheKeys, keyBase } from '../../src/cache/key';
import { freeBytes, maxRestoredImageBytes } from '../../src/daemon/data-image';
import { readEntry, saveImageAs, writeEntry, writeForeignEntry, writeImageEntry } from '../support/craft';
import { defined } from '../support/defined';
import { buildImage, fromTestImage, OUTER_SOCKET, run, TEST_IMAGE } from '../support/engine';
import { BUILD, delta, loadFromOuter, summaryRows, sweepAll, TestJob, withJob, type MainStep } from '../support/job';
import { account } from '../support/runner';
import {
  buildOuterImages,
  cacheFact,
  expectEmptyWorkingDaemon,
  imageTags,
  inDind,
  savedKeyOf,
  shOk,
  TOOLS_IMAGE,
  CACHE_INPUTS,
  expectDataDirOfUser
} from '../support/cache-helpers';
import { HTTPD_IMAGE, TINY_IMAGE } from '../support/images';

jest.setTimeout(300_000);

let server: CacheServer;

beforeAll(async () => {
  await buildOuterImages();
  server = await startCacheServer();
}, 600_000);

afterAll(async () => {
  await sweepAll();
  await server?.stop();
});

describe('crafted entries', () => {
  let imageId = '';
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-crafted-'));
  beforeAll(async () => {
    imageId = (await shOk(`docker -H ${OUTER_SOCKET} image inspect --format '{{.Id}}' "$1"`, [TEST_IMAGE])).trim();
  });
  /** What a test made outside `work`, removed once all have run. */
  const cleanups: Array<() => void> = [];
  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true });
    for (const cleanup of cleanups) cleanup();
  });

  /**
   * Each test's entries under a key base of its own (a made-up feature is a storage setting of the key),
   * so that no test falls back to another's crafted state.
   */
  const crafted = (name: string) => ({
    ...CACHE_INPUTS,
    'cache-key': name,
    'cache-save': 'never',
    'daemon-config': JSON.stringify({ features: { [`setup-dind-test-${name}`]: true } })
  });

  /** containerd's client (the runner's), on the containerd dockerd runs in the dind container. */
  const CTR = 'ctr --address /var/run/docker/containerd/containerd.sock';

  /** A privileged container of the runner's engine that works on an image file in `work` (mounted at /w). */
  const helper = (script: string) =>
    shOk(
      `docker -H ${OUTER_SOCKET} run --rm --privileged -v "$1:/w" --entrypoint sh "$2" -ec "$3"`,
      [work, TEST_IMAGE, script],
      180_000
    );

  /** The key prefix a job of `crafted(name)` restores from (its cache-key output when nothing is restored). */
  const prefixOf = (name: string) =>
    cacheKeys(
      keyBase({
        image: TEST_IMAGE,
        arch: process.arch,
        dockerdArgs: [],
        daemonConfig: JSON.parse(crafted(name)['daemon-config']) as Record<string, unknown>
      }),
      name
    ).exactPrefix;

  /** mke2fs as entrypoint.sh's make_filesystem runs it. */
  const MKFS =
    'mke2fs -q -F -t ext4 -b 4096 -m 0 -i 8192 -O ^has_journal,^resize_inode,^orphan_file,^metadata_csum_seed -E lazy_itable_init=1,nodiscard';

  /**
   * A job of `crafted(name)` that restores the newest state, as root, runner and runner-nosudo in turn:
   * refused before e2fsck runs (the entrypoint is handed a fresh filesystem to make, and writes no check
   * log), the warning says why, the daemon starts empty. Post saves over a state that was restored
   * (`savedOver`: under a key of its own), which is evicted again for the next user's job.
   */
  async function expectRefusedBeforeCheck(name: string, warning: string | RegExp, savedOver = true): Promise<void> {
    for (const user of [undefined, 'runner', 'runner-nosudo']) {
      await withJob({ cache: server, user }, async job => {
        const main = await job.main({ ...crafted(name), 'cache-save': 'on-change' });
        expect(main.warnings).toEqual([typeof warning === 'string' ? warning : expect.stringMatching(warning)]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': prefixOf(name), 'cache-size': '0' });
        expect(fs.existsSync(path.join(main.dataDir, 'check.log'))).toBe(false);
        expect(fs.readFileSync(path.join(main.dataDir, 'events'), 'utf8')).toMatch(/^mounted in .* s \(new;/m);
        await expectEmptyWorkingDaemon(job);
        const [post] = await job.post({ warnings: 0 });
        const saved = savedKeyOf(post);
        expect(saved).toMatch(
          new RegExp(`^${prefixOf(name).replace(/[+.]/g, '\\$&')}[0-9a-f]{16}${savedOver ? '\\.[0-9a-f]{8}' : ''}$`)
        );
        expect(await server.evict(entry => entry.key === saved)).toHaveLength(1);
      });
    }
  }

  /** The key prefix of a cache-key, and a job's image file copied out once its daemon has stopped. */
  async function stateOfJob(
    cacheKey: string,
    body: (job: TestJob, main: MainStep) => Promise<void>,
    copy: string,
    inputs: Record<string, string> = crafted(cacheKey)
  ): Promise<string> {
    let prefix = '';
    await withJob({ cache: server }, async job => {
      const main = await job.main(inputs);
      prefix = main.outputs['cache-key'];
      await body(job, main);
      await shOk(`docker -H ${OUTER_SOCKET} stop "$1" >/dev/null`, [main.outputs['container-id']]);
      await shOk(`cp --sparse=always "$1" "$2"`, [path.join(main.dataDir, 'docker.img'), path.join(work, copy)]);
      await job.post({ warnings: 0 });
    });
    return prefix;
  }

  /**
   * Copies directories of the daemon's data (paths under /var/lib/docker) where a saved state keeps them
   * as they are, in the layer of `image` (as `stash/<name>`), for a helper to move them back into place
   * once the daemon has stopped. A copy is tried again while dockerd changes what it copies (a container
   * in its restart loop makes and removes files).
   */
  const stash = (main: MainStep, image: string, ...dirs: string[]) =>
    inDind(
      main,
      `stash="$(docker image inspect --format '{{.GraphDriver.Data.UpperDir}}' ${image})/stash" && mkdir "$stash" && ${dirs
        .map(
          dir =>
            `for try in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$stash/${path.basename(dir)}"; cp -a /var/lib/docker/${dir} "$stash" && break; [ "$try" -lt 10 ] || exit 1; sleep 0.2; done`
        )
        .join(' && ')}`
    );

  test('a state holding a privileged container set to restart: the restored daemon has no container, and never ran it', async () => {
    const prefix = await stateOfJob(
      'crafted-containers',
      async (job, main) => {
        await job.step(
          `${loadFromOuter(TINY_IMAGE)}\ndocker run --detach --name evil --privileged --restart=always ${TINY_IMAGE} /ldconfig --version >/dev/null`,
          'create the container'
        );
        // The container and its layers' mounts in the layer store.
        await stash(main, TINY_IMAGE, 'containers', 'image/overlay2/layerdb/mounts');
      },
      'containers.img'
    );
    await helper(
      'mkdir /m && mount -o loop /w/containers.img /m && cd /m/overlay2/*/diff/stash && mv containers /m/containers && mkdir -p /m/image/overlay2/layerdb/mounts && mv mounts/* /m/image/overlay2/layerdb/mounts/ && rmdir mounts && cd / && rmdir /m/overlay2/*/diff/stash && ls /m/containers | wc -l && umount /m && cp --sparse=always /w/containers.img /w/control.img'
    );
    // Without the action's restore, a daemon on this data starts the container by itself.
    const control = await helper(
      'mkdir -p /var/lib/docker && mount -o loop /w/control.img /var/lib/docker && (dockerd >/dev/null 2>&1 &) && for i in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done; sleep 2; docker inspect --format "{{.Name}} {{.HostConfig.Privileged}} {{.RestartCount}} {{.State.StartedAt}}" evil'
    );
    expect(control.trim()).toMatch(/^\/evil true \d+ 20\d\d-/);
    expect(control).not.toContain('0001-01-01');

    const saved = await saveImageAs(server, path.join(work, 'containers.img'), `${prefix}${'c'.repeat(16)}`, imageId);
    expect(saved.saved).toBe(true);
    await withJob({ cache: server }, async job => {
      const main = await job.main(crafted('crafted-containers'));
      expect(main.warnings).toEqual([]);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': saved.key });
      expect(await imageTags(job)).toEqual([TINY_IMAGE]);
      const containers = await job.step(
        `sleep 2; docker ps --all --quiet | wc -l; docker info --format '{{.Containers}}'`,
        'list containers'
      );
      expect(containers.stdout.trim().split('\n')).toEqual(['0', '0']);
      expect(await inDind(main, 'ls -A /var/lib/docker/containers 2>/dev/null | wc -l')).toBe('0\n');
      await job.post({ warnings: 0 });
    });
  });

  // What a restore keeps is checked before dockerd starts: dockerd joins these names to its own paths
  // and creates, chowns, mounts, reads and removes what they lead to. Each crafted entry points at a
  // canary in the restoring job's workspace (which the dind container mounts at the same path).
  describe.each<{ user?: string; label: string }>([
    { user: undefined, label: 'root' },
    { user: 'runner', label: 'runner' },
    { user: 'runner-nosudo', label: 'runner-nosudo' }
  ])('as $label', ({ user, label }) => {
    const forms = `crafted-forms-${label}`;
    const containerd = `crafted-containerd-${label}`;
    let formsPrefix = '';

    beforeAll(async () => {
      formsPrefix = await stateOfJob(
        forms,
        async job => void (await job.step(loadFromOuter(TINY_IMAGE))),
        `${forms}.img`
      );
    });

    /** A directory and a 0600 file of the job's user in its workspace; then what they are, to compare. */
    async function canaryIn(job: TestJob): Promise<{ dir: string; state: () => Promise<string> }> {
      const dir = path.join(job.workspace, 'canary');
      fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'secret'), "the job user's\n", { mode: 0o600 });
      if (user) await shOk(`chown -R "$1" "$2"`, [user, dir]);
      const state = () => shOk(`cd "$1" && find . -printf '%p %y %m %U:%G %s %T@\n' | sort && cat secret`, [dir]);
      return { dir, state };
    }

    /** `text` matched as it is in a regular expression. */
    const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

    // Each case: how the state is crafted (a script in its root), and the reason the warning gives (a
    // regular expression, the canary's path in it).
    test.each<[string, (canary: string) => string, (canary: string) => string]>([
      [
        'a kept name that is a symbolic link (image, to the workspace)',
        canary => `rm -rf image && ln -s ${canary} image`,
        canary => literal(`a symbolic link dockerd does not make: ./image -> ${canary}`)
      ],
      [
        'a kept name that is not a directory (overlay2, a fifo)',
        () => 'rm -rf overlay2 && mkfifo overlay2',
        () => literal('a fifo: ./overlay2')
      ],
      [
        "an overlay2/l link to the workspace instead of a layer's diff",
        canary => `cd overlay2/l && link=$(ls) && rm $link && ln -s ${canary} $link`,
        canary => `\\./overlay2/l/[A-Z2-7]{26} does not link to a layer: ${literal(canary)}`
      ],
      [
        'a lower file naming a path outside',
        canary => `cd overlay2 && printf %s l/../../../..${canary} > $(ls -d [0-9a-f]*)/lower`,
        canary => `overlay2/[0-9a-f]{64}/lower names what is not a layer: ${literal(`l/../../../..${canary}`)}`
      ],
      [
        "a layer store's cache-id naming a path outside",
        canary => `printf %s ../../../..${canary} > $(echo image/overlay2/layerdb/sha256/*/cache-id)`,
        // A canary under a long TMPDIR is refused by the length of what names it first (check-data's unit
        // tests show each check alone).
        canary =>
          `(layer [0-9a-f]{64} names no layer of overlay2: ${literal(`../../../..${canary}`)}|\\./image/overlay2/layerdb/sha256/[0-9a-f]{64}/cache-id is longer than dockerd writes it)`
      ]
    ])(
      '%s: the state is refused, the job passes with a warning and a cold daemon, the canary is untouched',
      async (what, craft, why) => {
        await withJob({ user, cache: server }, async job => {
          const canary = await canaryIn(job);
          const before = await canary.state();
          const image = `${forms}-case.img`;
          await helper(
            `cp --sparse=always /w/${forms}.img /w/${image} && mkdir /m && mount -o loop /w/${image} /m && (cd /m && ${craft(canary.dir)}) && umount /m`
          );
          const suffix = createHash('sha256').update(what).digest('hex').slice(0, 16);
          const saved = await saveImageAs(server, path.join(work, image), `${formsPrefix}${suffix}`, imageId);
          fs.rmSync(path.join(work, image));
          const main = await job.main(crafted(forms));
          expect(main.warnings).toHaveLength(1);
          expect(main.warnings[0]).toMatch(
            new RegExp(
              `^The cache ${literal(defined(saved.key, 'saved key'))} was not used: the restored data is not of the form dockerd writes: ${why(canary.dir)}\\. The daemon started empty\\.$`
            )
          );
          expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
          await expectEmptyWorkingDaemon(job);
          expect(await canary.state()).toBe(before);
          await job.post({ warnings: 0 });
          expect(await canary.state()).toBe(before);
        });
      }
    );

    test("containerd's metadata with a container labelled to restart, bind-mounting the dind container's /: dropped, nothing runs", async () => {
      const prefix = await stateOfJob(
        containerd,
        async (job, main) => {
          await job.step(loadFromOuter(HTTPD_IMAGE));
          await shOk(`docker -H ${OUTER_SOCKET} cp /usr/bin/ctr "$1":/usr/local/bin/ctr`, [
            main.outputs['container-id']
          ]);
          // Made with containerd's own client, as dockerd never labels a container so.
          await inDind(
            main,
            `docker save ${HTTPD_IMAGE} > /tmp/httpd.tar && ${CTR} -n evil images import /tmp/httpd.tar >/dev/null && rm /tmp/httpd.tar
${CTR} -n evil containers create --label containerd.io/restart.status=running --mount type=bind,src=/,dst=/host,options=rbind:rw docker.io/${HTTPD_IMAGE} evil touch /host/tmp/ran /host/setup-dind/data/ran`
          );
          await stash(main, HTTPD_IMAGE, 'containerd');
        },
        `${containerd}.img`
      );
      await helper(
        `mkdir /m && mount -o loop /w/${containerd}.img /m && mv /m/overlay2/*/diff/stash/containerd /m/containerd && rmdir /m/overlay2/*/diff/stash && umount /m && cp --sparse=always /w/${containerd}.img /w/${containerd}-control.img`
      );
      // Without the action's restore, a daemon on this data runs the container by itself.
      const control = await helper(
        `mkdir -p /var/lib/docker && mount -o loop /w/${containerd}-control.img /var/lib/docker && (dockerd >/dev/null 2>&1 &) && for i in $(seq 300); do [ -e /tmp/ran ] && break; sleep 0.2; done; ls /tmp/ran`
      );
      expect(control.trim()).toBe('/tmp/ran');

      const saved = await saveImageAs(
        server,
        path.join(work, `${containerd}.img`),
        `${prefix}${'a'.repeat(16)}`,
        imageId
      );
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(crafted(containerd));
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': saved.key });
        expect(await imageTags(job)).toEqual([HTTPD_IMAGE]);
        // containerd starts on no metadata but what dockerd makes: nothing it could restart.
        await shOk(`docker -H ${OUTER_SOCKET} cp /usr/bin/ctr "$1":/usr/local/bin/ctr`, [main.outputs['container-id']]);
        expect((await inDind(main, `${CTR} namespaces list --quiet`)).split('\n')).not.toContain('evil');
        expect(await inDind(main, `${CTR} -n evil containers list --quiet; [ ! -e /tmp/ran ] || echo ran`)).toBe('');
        expect(fs.readdirSync(main.dataDir)).not.toContain('ran');
        const containers = await job.step(`docker ps --all --quiet | wc -l`, 'list containers');
        expect(containers.stdout.trim()).toBe('0');
        await job.post({ warnings: 0 });
      });
    });
  });

  test('a few kilobytes that claim a gigabyte: refused before anything is written', async () => {
    const { compressFrame } = await import('../../src/cache/image/zstd');
    const { encodeManifest } = await import('../../src/cache/manifest');
    const { MANIFEST_FORMAT } = await import('../../src/cache/format');
    const { CHUNK_BYTES } = await import('../../src/daemon/data-image');
    const { sha256 } = await import('../../src/cache/image/zstd');
    const chunk = Buffer.alloc(CHUNK_BYTES, 1);
    const frame = await compressFrame(chunk);
    const part = `setup-dind-v2-part-${sha256(frame)}`;
    await writeEntry(server, part, frame);
    let prefix = '';
    await withJob({ cache: server }, async job => {
      prefix = (await job.main(crafted('crafted-bound'))).outputs['cache-key'];
      await job.post({ warnings: 0 });
    });
    const key = `${prefix}${'b'.repeat(16)}`;
    const manifest = await encodeManifest({
      format: MANIFEST_FORMAT,
      key,
      savedAt: new Date().toISOString(),
      imageId,
      lastUsed: {},
      filesystem: { type: 'ext4', bytes: 8 * 1024 * CHUNK_BYTES },
      chunkBytes: CHUNK_BYTES,
      parts: [{ key: part, bytes: frame.length }],
      frames: [{ hash: sha256(chunk), part: 0, offset: 0, length: frame.length }],
      chunks: Array.from({ length: 1024 }, (_, i): [number, number] => [i, 0])
    });
    await writeEntry(server, key, manifest);
    expect(manifest.length + frame.length).toBeLessThan(40 * 1024);
    await withJob({ cache: server }, async job => {
      const main = await job.main(crafted('crafted-bound'));
      expect(main.warnings).toEqual([
        `Cache restore failed, the daemon starts empty: 1073741824 bytes to write from ${frame.length} stored, more than a saved state expands to`
      ]);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
      // The image holds a fresh filesystem: a few megabytes, not the gigabyte claimed.
      const allocated = Number(
        (await shOk(`du --block-size=1 "$1" | cut -f1`, [path.join(main.dataDir, 'docker.img')])).trim()
      );
      expect(allocated).toBeLessThan(64 * 1024 * 1024);
      await expectEmptyWorkingDaemon(job);
      await job.post({ warnings: 0 });
    });
  });

  /** Main's heap, well below the 2.2 GiB a 64 MiB manifest of tiny objects took once parsed. */
  const SMALL_HEAP = 128;
  test.each<{ user?: string; label: string; bomb: 'bytes' | 'values' }>([
    { user: undefined, label: 'root', bomb: 'bytes' },
    { user: undefined, label: 'root', bomb: 'values' },
    { user: 'runner', label: 'runner', bomb: 'bytes' },
    { user: 'runner', label: 'runner', bomb: 'values' },
    { user: 'runner-nosudo', label: 'runner-nosudo', bomb: 'bytes' },
    { user: 'runner-nosudo', label: 'runner-nosudo', bomb: 'values' }
  ])(
    `a manifest that is a shape bomb over the $bomb of the largest state: refused before it is parsed, by main on a ${SMALL_HEAP} MiB heap (as $label)`,
    async ({ user, label, bomb }) => {
      const name = `crafted-shape-${bomb}-${label}`;
      const { MAX_IMAGE_BYTES, freeBytes } = await import('../../src/daemon/data-image');
      const { manifestBounds } = await import('../../src/cache/manifest');
      let prefix = '';
      let bounds = manifestBounds({ maxImageBytes: 0, maxWriteBytes: 0 });
      await withJob({ cache: server, user }, async job => {
        prefix = (await job.main(crafted(name))).outputs['cache-key'];
        bounds = manifestBounds({ maxImageBytes: MAX_IMAGE_BYTES, maxWriteBytes: await freeBytes(job.temp) });
        await job.post({ warnings: 0 });
      });
      // Tiny objects: just under 64 MiB, as in the issue; or twice the values allowed, in a quarter of the bytes allowed.
      const tiny = bomb === 'bytes' ? '{},' : '[],';
      const count = bomb === 'bytes' ? Math.floor((64 * 1024 * 1024 - 4) / tiny.length) : 2 * bounds.values;
      const json = Buffer.concat([Buffer.from('['), Buffer.alloc(count * tiny.length, tiny), Buffer.from('{}]')]);
      expect(json.length > bounds.bytes).toBe(bomb === 'bytes');
      const blob = gzipSync(json, { level: 9 });
      expect(blob.length).toBeLessThan(100 * 1024);
      await writeEntry(server, `${prefix}${'a'.repeat(16)}`, blob);
      await withJob({ cache: server, user, env: { NODE_OPTIONS: `--max-old-space-size=${SMALL_HEAP}` } }, async job => {
        const main = await job.main(crafted(name));
        expect(main.warnings).toEqual([
          expect.stringMatching(
            new RegExp(
              `^Cache restore failed, the daemon starts empty: a manifest of more than \\d+ ${bomb}: more than that of any state this runner can restore$`
            )
          )
        ]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
        await expectEmptyWorkingDaemon(job);
        await job.post({ warnings: 0 });
      });
    }
  );

  type FrameJson = [hash: string, part: number, offset: number, length: number];
  /** A manifest as stored: its frames as lists. */
  interface ManifestJson {
    key: string;
    parent?: string;
    savedAt: string;
    parts: Array<{ key: string }>;
    frames: FrameJson[];
    chunks: Array<[number, number]>;
  }
  const readManifestJson = async (key: string) =>
    JSON.parse(gunzipSync(await readEntry(server, key)).toString()) as ManifestJson;
  const keyPattern = (key: string) => key.replace(/[+.]/g, '\\$&');
  /**
   * The references of `resaved` in the part of `saved` (the state a crafted one was made from): each one
   * of `saved`'s own, never one of the crafted entry's; and how many.
   */
  const referencesInPartOf = (saved: ManifestJson, resaved: ManifestJson) => {
    const checked = new Set(saved.frames.map(([hash, , offset, length]) => `${hash} ${offset} ${length}`));
    const inPart = resaved.frames.filter(([, part]) => resaved.parts[part]?.key === saved.parts[0].key);
    return {
      count: inPart.length,
      junk: inPart.filter(([hash, , offset, length]) => !checked.has(`${hash} ${offset} ${length}`))
    };
  };

  test.each<{ user?: string; label: string }>([
    { user: undefined, label: 'root' },
    { user: 'runner', label: 'runner' },
    { user: 'runner-nosudo', label: 'runner-nosudo' }
  ])(
    'frames that are not the content their hash names: a restore that needs one gives way to the parent, and a save references only frames the restore checked (as $label)',
    async ({ user, label }) => {
      const inputs = { ...crafted(`crafted-reuse-${label}`), 'cache-save': 'on-change' };
      let prefix = '';
      let key1 = '';
      await withJob({ cache: server, user }, async job => {
        const main = await job.main(inputs);
        prefix = main.outputs['cache-key'];
        await job.step(loadFromOuter(TINY_IMAGE));
        key1 = savedKeyOf((await job.post({ warnings: 0 }))[0]);
      });
      const saved = await readManifestJson(key1);
      expect(saved.parts).toHaveLength(1);
      // Each frame's hash with the place of the next frame of the part: a frame in junk.
      const junk = saved.frames.map(([hash], i): FrameJson => {
        const [, part, offset, length] = saved.frames[(i + 1) % saved.frames.length];
        return [hash, part, offset, length];
      });
      // The same chunks, with a junk frame of each hash beside it that no chunk uses.
      const unused: ManifestJson = {
        ...saved,
        key: `${prefix}${'a'.repeat(16)}`,
        parent: key1,
        savedAt: new Date().toISOString(),
        frames: [...saved.frames, ...junk]
      };
      await writeEntry(server, unused.key, gzipSync(JSON.stringify(unused)));
      // Made from that one, and a chunk of it needs a junk frame.
      const used = saved.chunks[0][1];
      const needed: ManifestJson = {
        ...saved,
        key: `${prefix}${'b'.repeat(16)}`,
        parent: unused.key,
        savedAt: new Date().toISOString(),
        frames: saved.frames.map((frame, i) => (i === used ? junk[i] : frame))
      };
      await writeEntry(server, needed.key, gzipSync(JSON.stringify(needed)));

      let key2 = '';
      await withJob({ cache: server, user }, async job => {
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([
          expect.stringMatching(
            new RegExp(
              `^${keyPattern(needed.key)} could not be restored \\(frame [0-9a-f]{12} does not hold the content its hash names\\); trying the state it was made from, ${keyPattern(unused.key)}\\.$`
            )
          )
        ]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': unused.key });
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/reuse:tagged`, 'tag an image');
        key2 = savedKeyOf((await job.post({ warnings: 0 }))[0]);
      });
      // What the save references in the old part: frames the restore fetched there, and never a junk one.
      const reused = referencesInPartOf(saved, await readManifestJson(key2));
      expect(reused.count).toBeGreaterThan(saved.frames.length / 2);
      expect(reused.junk).toEqual([]);
      await withJob({ cache: server, user }, async job => {
        const main = await job.main({ ...inputs, 'cache-save': 'never' });
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key2 });
        expect(await imageTags(job)).toEqual([TINY_IMAGE, 'setup-dind-test/reuse:tagged'].sort());
        await job.post({ warnings: 0 });
      });
    }
  );

  test.each<{ user?: string; label: string }>([
    { user: undefined, label: 'root' },
    { user: 'runner', label: 'runner' },
    { user: 'runner-nosudo', label: 'runner-nosudo' }
  ])(
    "an entry whose frames are in the runner's store but its references point at junk: it restores from the store, and the save references none of them (as $label)",
    async ({ user, label }) => {
      // The job's user's own, as a runner's cache-dir is.
      const store = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-crafted-store-'));
      if (user) fs.chownSync(store, account(user).uid, account(user).gid);
      cleanups.push(() => fs.rmSync(store, { recursive: true, force: true }));
      const inputs = { ...crafted(`crafted-store-${label}`), 'cache-save': 'on-change', 'cache-dir': store };
      let prefix = '';
      let key1 = '';
      await withJob({ cache: server, user }, async job => {
        const main = await job.main(inputs);
        prefix = main.outputs['cache-key'];
        await job.step(loadFromOuter(TINY_IMAGE));
        key1 = savedKeyOf((await job.post({ warnings: 0 }))[0]);
      });
      const saved = await readManifestJson(key1);
      expect(saved.parts).toHaveLength(1);
      // The same state, every frame said to be at the start of the part: what the store holds is the
      // content, so the restore never looks there.
      const forged: ManifestJson = {
        ...saved,
        key: `${prefix}${'f'.repeat(16)}`,
        parent: key1,
        savedAt: new Date().toISOString(),
        frames: saved.frames.map(([hash, part, , length]): FrameJson => [hash, part, 0, length])
      };
      await writeEntry(server, forged.key, gzipSync(JSON.stringify(forged)));

      let key2 = '';
      await withJob({ cache: server, user }, async job => {
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': forged.key });
        expect(main.result.stdout).toMatch(/Restored .* 0 B downloaded\./);
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/reuse:tagged`, 'tag an image');
        key2 = savedKeyOf((await job.post({ warnings: 0 }))[0]);
      });
      // The store keeps no copy of the forged manifest: its references were never checked.
      expect(fs.readdirSync(path.join(store, 'setup-dind-v2', 'manifests')).sort()).toEqual(
        [key1, key2].map(key => `${encodeURIComponent(key)}.gz`).sort()
      );
      const reused = referencesInPartOf(saved, await readManifestJson(key2));
      expect(reused.junk).toEqual([]);
      // A runner without the store restores the new state from the cache service alone.
      await withJob({ cache: server, user }, async job => {
        const main = await job.main({ ...inputs, 'cache-dir': '', 'cache-save': 'never' });
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key2 });
        expect(await imageTags(job)).toEqual([TINY_IMAGE, 'setup-dind-test/reuse:tagged'].sort());
        await job.post({ warnings: 0 });
      });
    }
  );

  test('a state with a device node anyone may open: it never reaches the runner, and nested containers cannot open such nodes', async () => {
    const prefix = await stateOfJob(
      'crafted-device',
      async job => void (await job.step(loadFromOuter(TINY_IMAGE))),
      'device.img'
    );
    // In a layer: what the restore checks does not hold device nodes.
    await helper(
      'mkdir /m && mount -o loop /w/device.img /m && cd /m/overlay2/*/diff && mknod sda b 8 0 && chmod 666 sda && cd / && umount /m'
    );
    const saved = await saveImageAs(server, path.join(work, 'device.img'), `${prefix}${'d'.repeat(16)}`, imageId);
    await withJob({ cache: server }, async job => {
      const main = await job.main(crafted('crafted-device'));
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': saved.key });
      // It is in the daemon's filesystem, inside the dind container; on the runner there is one regular file.
      expect(await inDind(main, 'stat -c "%A %t:%T" /var/lib/docker/overlay2/*/diff/sda')).toBe('brw-rw-rw- 8:0\n');
      // Mounted nodev: even the privileged dind container's root cannot open it there.
      expect(await inDind(main, 'head -c 1 /var/lib/docker/overlay2/*/diff/sda 2>&1 >/dev/null || :')).toMatch(
        /Permission denied/
      );
      await expectDataDirOfUser(main, undefined);
      // A layer with such a node (as a crafted state could hold) gives a nested container nothing.
      const opened = await job.run(
        `set -e\n${loadFromOuter(TOOLS_IMAGE)}\nprintf 'FROM ${TOOLS_IMAGE}\\nRUN mknod /sda b 8 0 && chmod 666 /sda\\n' | ${BUILD} -t setup-dind-test/device -\ndocker run --rm setup-dind-test/device sh -c 'ls -l /sda; head -c 1 /sda'`
      );
      expect(opened.stdout).toMatch(/^brw-rw-rw- /m);
      expect(opened.exitCode).not.toBe(0);
      expect(opened.stderr).toMatch(/Operation not permitted/);
      await job.post({ warnings: 0 });
    });
  });

  test('a filesystem that does not check out: the kernel never mounts it, the daemon starts empty with a warning', async () => {
    const prefix = await stateOfJob(
      'crafted-corrupt',
      async job => void (await job.step(loadFromOuter(TINY_IMAGE))),
      'corrupt.img'
    );
    // An inode table entry overwritten: valid checksums of its own, nonsense for e2fsck.
    await helper(
      'debugfs -w -R "sif <12> links_count 0" /w/corrupt.img 2>/dev/null; debugfs -w -R "sif <2> mode 0100644" /w/corrupt.img 2>/dev/null; ! e2fsck -fn /w/corrupt.img >/dev/null 2>&1'
    );
    const saved = await saveImageAs(server, path.join(work, 'corrupt.img'), `${prefix}${'e'.repeat(16)}`, imageId);
    await withJob({ cache: server }, async job => {
      const main = await job.main(crafted('crafted-corrupt'));
      expect(main.warnings).toHaveLength(1);
      expect(main.warnings[0]).toMatch(
        new RegExp(
          `^The cache ${defined(saved.key, 'saved key').replace(/[+.]/g, '\\$&')} was not used: the restored filesystem failed e2fsck's check: .+\\. The daemon started empty\\.$`
        )
      );
      expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
      // e2fsck ran on it: what the tests of states refused before the check find absent.
      expect(fs.existsSync(path.join(main.dataDir, 'check.log'))).toBe(true);
      await expectEmptyWorkingDaemon(job);
      await job.post({ warnings: 0 });
    });
  });

  describe.each<{ user?: string; label: string }>([
    { user: undefined, label: 'root' },
    { user: 'runner', label: 'runner' },
    { user: 'runner-nosudo', label: 'runner-nosudo' }
  ])('as $label', ({ user, label }) => {
    test("a state the daemon cannot start on: a cold daemon with one warning, nothing of the first start left; post saves over it although an entry has the cold daemon's content key, and the next job restores that, with its image", async () => {
      const name = `crafted-fatal-${label}`;
      const image = `fatal-${label}.img`;
      let tinyId = '';
      const prefix = await stateOfJob(
        name,
        async job => {
          await job.step(loadFromOuter(TINY_IMAGE));
          tinyId = (await job.step(`docker image inspect --format '{{.Id}}' ${TINY_IMAGE}`)).stdout.trim();
        },
        image
      );
      // Well-formed in shape: the file dockerd's reference store reads, where it reads it, JSON cut short.
      await helper(
        `mkdir /m && mount -o loop /w/${image} /m && printf '{"Repositories":' > /m/image/overlay2/repositories.json && umount /m`
      );
      // Named for the content the cold daemon will hold: a plain save of it would find its key taken.
      const contentKey = `${prefix}${contentFingerprint({ images: [{ id: tinyId, tags: [TINY_IMAGE] }], buildCache: [] })}`;
      const saved = await saveImageAs(server, path.join(work, image), contentKey, imageId);
      expect(saved).toMatchObject({ saved: true, key: contentKey });
      const inputs = { ...crafted(name), 'cache-save': 'on-change' };
      const escaped = contentKey.replace(/[+.]/g, '\\$&');
      let replacement = '';
      await withJob({ cache: server, user }, async job => {
        const since = Math.floor(Date.now() / 1000) - 1;
        const main = await job.main(inputs);
        expect(main.warnings).toHaveLength(1);
        expect(main.warnings[0]).toMatch(
          new RegExp(
            `^The cache ${escaped} was not used: the daemon did not start on it\\. The dind container stopped \\(exit code 1\\) before its daemon answered\\. Its last log line: "failed to start daemon: Couldn't create reference store repository: unexpected EOF"\\. The daemon starts empty\\.$`
          )
        );
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': prefix, 'cache-size': '0' });
        expect(summaryRows(main.result.summary)['Cache restored']).toBe(
          `not used: ${contentKey}; the daemon started empty`
        );
        // The daemon's last log lines are in main's log.
        expect(main.result.stdout).toMatch(
          /Last 50 log lines:[\s\S]*failed to start daemon: Couldn't create reference store/
        );
        // Two containers were made for the instance: the first is gone, and so are the volumes it mounted.
        const events = (filters: string, format: string) =>
          shOk(`docker -H ${OUTER_SOCKET} events --since "$1" --until "$(date +%s)" ${filters} --format "$2"`, [
            String(since),
            format
          ]).then(out => out.split('\n').filter(Boolean));
        const created = await events(
          `--filter type=container --filter event=create --filter label=${INSTANCE_LABEL}=${main.started.id}`,
          '{{.Actor.ID}}'
        );
        expect(created).toHaveLength(2);
        expect(created[1]).toBe(main.outputs['container-id']);
        const mounted = await events(
          '--filter type=volume --filter event=mount',
          '{{.Actor.ID}} {{index .Actor.Attributes "container"}}'
        );
        const volumes = mounted.filter(line => line.endsWith(` ${created[0]}`)).map(line => line.split(' ')[0]);
        expect(volumes.length).toBeGreaterThan(0);
        const inspected = await run('docker', ['-H', OUTER_SOCKET, 'inspect', created[0]]);
        expect(inspected.code).toBe(1);
        // The instance's volume has the same name in the second container: destroyed in between.
        const destroyed = await events('--filter type=volume --filter event=destroy', '{{.Actor.ID}}');
        for (const volume of volumes) expect(destroyed).toContain(volume);
        // A working daemon that started empty, left holding the image the refused entry held.
        await expectEmptyWorkingDaemon(job);
        const [post] = await job.post({ warnings: 0 });
        replacement = savedKeyOf(post);
      });
      // A key of its own, with the content key before it: the newest entry of the prefix.
      expect(replacement).toMatch(new RegExp(`^${escaped}\\.[0-9a-f]{8}$`));
      await withJob({ cache: server, user }, async job => {
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': replacement });
        expect(await imageTags(job)).toEqual([TINY_IMAGE]);
        const ran = await job.step(`docker run --rm ${TINY_IMAGE} /ldconfig --version`);
        expect(ran.stdout).toMatch(/ldconfig \(Debian GLIBC/);
        const [post] = await job.post({ warnings: 0 });
        expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
      });
    });
  });

  test('a restored state the daemon does not answer on: it waits half the wait-timeout, a cold daemon the rest, with one warning; post saves over it', async () => {
    // dockerd is held up on any restored data (a fresh filesystem has no image/ yet), as a state could hold it up.
    const held = fromTestImage('dind-held');
    const holdLine = 'fake dockerd: held up by the restored data';
    await buildImage(
      held,
      `FROM ${TEST_IMAGE}\nRUN printf '#!/bin/sh\\nif [ -d /var/lib/docker/image ]; then echo "${holdLine}"; exec sleep infinity; fi\\nexec /usr/sbin/dockerd "$@"\\n' > /usr/local/bin/dockerd && chmod 755 /usr/local/bin/dockerd\n`
    );
    const heldId = (await shOk(`docker -H ${OUTER_SOCKET} image inspect --format '{{.Id}}' "$1"`, [held])).trim();
    const inputs = { ...crafted('crafted-held'), image: held, 'wait-timeout': '30' };
    const prefix = await stateOfJob(
      'crafted-held',
      async job => void (await job.step(loadFromOuter(TINY_IMAGE))),
      'held.img',
      inputs
    );
    const saved = await saveImageAs(server, path.join(work, 'held.img'), `${prefix}${'b'.repeat(16)}`, heldId);
    const key = defined(saved.key, 'saved key');
    await withJob({ cache: server }, async job => {
      const main = await job.main({ ...inputs, 'cache-save': 'on-change' });
      expect(main.warnings).toHaveLength(1);
      expect(main.warnings[0]).toMatch(
        new RegExp(
          `^The cache ${key.replace(/[+.]/g, '\\$&')} was not used: the daemon did not start on it\\. The daemon did not answer within 15 s \\(last error: .+\\)\\. Its last log line: "${holdLine}"\\. The daemon starts empty\\.$`
        )
      );
      expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': prefix });
      await expectEmptyWorkingDaemon(job);
      const [post] = await job.post({ warnings: 0 });
      expect(savedKeyOf(post)).toMatch(new RegExp(`^${prefix.replace(/[+.]/g, '\\$&')}[0-9a-f]{16}\\.[0-9a-f]{8}$`));
    });
  });

  test('a filesystem whose journal holds a transaction (needs_recovery), which e2fsck -fn passes and the kernel would replay: refused before the check, the daemon starts empty', async () => {
    const name = 'crafted-recovery';
    // Files written and synced into the journal, the image copied before the kernel checkpoints them.
    const control = await helper(
      `truncate -s 2G /w/recovery.img && mke2fs -q -F -t ext4 -b 4096 /w/recovery.img && mkdir /m /r
mount -o loop,commit=600 /w/recovery.img /m && mkdir /m/image && for i in $(seq 200); do echo $i > /m/image/f$i; done
sync -f /m/image/f1 && cp --sparse=always /w/recovery.img /w/recovery-copy.img && umount /m && mv /w/recovery-copy.img /w/recovery.img
dumpe2fs -h /w/recovery.img 2>/dev/null | grep -c needs_recovery
e2fsck -fn /w/recovery.img >/dev/null 2>&1 && echo e2fsck passes it
cp --sparse=always /w/recovery.img /w/replay.img && mount -o loop /w/replay.img /r && ls /r/image | wc -l && umount /r && rm /w/replay.img`
    );
    // The check passes it; mounted, the kernel replays 200 files into a directory the check never saw.
    expect(control.split('\n')).toEqual(['1', 'e2fsck passes it', '200', '']);
    const key = `${prefixOf(name)}${'1'.repeat(16)}`;
    await writeImageEntry(server, path.join(work, 'recovery.img'), key, imageId);
    await expectRefusedBeforeCheck(
      name,
      `The cache ${key} was not used: the restored filesystem needs journal recovery. The daemon starts empty.`
    );
  });

  test('a filesystem with an orphan inode list, which e2fsck -fn passes and the kernel would process at mount: refused before the check, the daemon starts empty', async () => {
    const name = 'crafted-orphans';
    const control = await helper(
      `truncate -s 2G /w/orphans.img && ${MKFS} /w/orphans.img && mkdir /m
mount -o loop /w/orphans.img /m && mkdir /m/image && echo data > /m/image/victim && inode=$(stat -c %i /m/image/victim) && umount /m
debugfs -w -R "ssv last_orphan $inode" /w/orphans.img 2>/dev/null
dumpe2fs -h /w/orphans.img 2>/dev/null | grep -c "^First orphan inode:"
e2fsck -fn /w/orphans.img >/dev/null 2>&1 && echo e2fsck passes it`
    );
    expect(control.split('\n')).toEqual(['1', 'e2fsck passes it', '']);
    // Cleanly unmounted: the action's own save takes it.
    const saved = await saveImageAs(
      server,
      path.join(work, 'orphans.img'),
      `${prefixOf(name)}${'2'.repeat(16)}`,
      imageId
    );
    expect(saved.saved).toBe(true);
    await expectRefusedBeforeCheck(
      name,
      `The cache ${defined(saved.key, 'saved key')} was not used: the restored filesystem has orphan inodes or an orphan file. The daemon starts empty.`
    );
  });

  test("a small entry claiming a 2 TiB filesystem (e2fsck's time grows with the size claimed): refused before anything is fetched or checked", async () => {
    const name = 'crafted-huge';
    const claimed = 2 * 1024 ** 4;
    // More than this runner takes: twice the filesystem it would make.
    expect(claimed).toBeGreaterThan(maxRestoredImageBytes(await freeBytes(os.tmpdir())));
    await helper(`truncate -s 2T /w/huge.img && ${MKFS} /w/huge.img`);
    const saved = await saveImageAs(server, path.join(work, 'huge.img'), `${prefixOf(name)}${'3'.repeat(16)}`, imageId);
    expect(saved.saved).toBe(true);
    expect(saved.storedBytes).toBeLessThan(32 * 1024 ** 2);
    const before = server.stats();
    await expectRefusedBeforeCheck(
      name,
      new RegExp(
        `^Cache restore failed, the daemon starts empty: a filesystem of ${claimed} bytes, more than the \\d+ a restore takes here$`
      ),
      false
    );
    // Only the manifest was fetched (by each of the three jobs), no part of the state.
    expect(delta(before, server.stats())).toMatchObject({ downloads: 3, rangedDownloads: 0 });
  });

  test('a filesystem whose descriptors say every inode table is in use (e2fsck would read them all, holes it never stored): refused before the check', async () => {
    const name = 'crafted-tables';
    // Within what this runner takes: refused for what checking it would read, not for its size.
    expect(16 * 1024 ** 3).toBeLessThanOrEqual(maxRestoredImageBytes(await freeBytes(os.tmpdir())));
    await helper(
      `truncate -s 16G /w/tables.img && ${MKFS} /w/tables.img
for g in $(seq 0 127); do echo "set_bg $g flags 0"; echo "set_bg $g itable_unused 0"; echo "set_bg $g checksum calc"; done >/w/tables.cmd
debugfs -w -f /w/tables.cmd /w/tables.img >/dev/null 2>&1 && ! dumpe2fs /w/tables.img 2>/dev/null | grep -q INODE_UNINIT`
    );
    const saved = await saveImageAs(
      server,
      path.join(work, 'tables.img'),
      `${prefixOf(name)}${'4'.repeat(16)}`,
      imageId
    );
    expect(saved.saved).toBe(true);
    await expectRefusedBeforeCheck(
      name,
      new RegExp(
        `^The cache ${defined(saved.key, 'saved key').replace(/[+.]/g, '\\$&')} was not used: the restored filesystem has \\d+ bytes of metadata to check for \\d+ bytes restored\\. The daemon starts empty\\.$`
      )
    );
  });

  test('entries of the first format (tar+zstd) are not restored, and say nothing', async () => {
    await withJob({ cache: server }, async job => {
      const cold = await job.main(crafted('old-format'));
      const v1Key = cold.outputs['cache-key'].replace('setup-dind-v2-', 'setup-dind-v1-') + 'f'.repeat(16);
      const v1Version = createHash('sha256').update('setup-dind daemon data, tar+zstd, v1').digest('hex');
      await writeForeignEntry(server, v1Key, v1Version, Buffer.from('an old archive'));
      await job.post({ warnings: 0 });
    });
    await withJob({ cache: server }, async job => {
      const main = await job.main(crafted('old-format'));
      expect(main.warnings).toEqual([]);
      expect(main.result.stdout).toContain('No cache yet');
      await job.post({ warnings: 0 });
    });
  });
});
