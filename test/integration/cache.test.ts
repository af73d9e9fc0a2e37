// The cache of the inner daemon's data across jobs, end to end: the bundled dist/ run by the runner
// emulation against the real engine, and the cache service v2 emulation (azurite behind a Twirp front).
// Every assertion is on an effect: what a later job's daemon holds and what its containers see, what
// reached the cache service, what is left on disk.
//
// The round trips run as each kind of runner user (root, `runner` with passwordless sudo, `runner-nosudo`
// in the docker group only), each under a key base of its own: job 1 builds an image with every file
// system feature overlay2 relies on and saves; job 2 restores it byte for byte, adds a layer and uploads
// about that layer; job 3 restores both. Then the faults: a corrupt part, a part gone, a rate limit.
// The rest works on a small cache (the tiny image) under a key base of its own: policies, inputs,
// faults, cleanup. Crafted entries are in cache-crafted.test.ts.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { extractBuildxPlugin, installBuildxPlugin } from '../support/buildx';
import { startCacheServer, type CacheFault, type CacheServer } from '../support/cache-server';
import { defined } from '../support/defined';
import { inspectContainer } from '../support/engine';
import {
  BUILD,
  delta,
  loadFromOuter,
  OUTER_DOCKER,
  summaryRows,
  sweepAll,
  TestJob,
  withJob,
  type MainStep
} from '../support/job';
import { commands, expectExit } from '../support/steps';
import {
  buildOuterImages,
  cacheFact,
  diskManifest,
  expectEmptyWorkingDaemon,
  expectLoadAndRun,
  imageTags,
  inDind,
  savedKeyOf,
  TOOLS_IMAGE,
  uploadSummary,
  CACHE_INPUTS,
  expectDataDirOfUser
} from '../support/cache-helpers';
import { TINY_IMAGE } from '../support/images';

/** Built inside the inner daemon by the round trip: the file-system features overlay2 must keep. */
const LAYERS_IMAGE = 'setup-dind-test/cached:layers';
/** Imported inside the inner daemon: user.* xattrs, which `docker build` and `docker commit` drop. */
const XATTRS_IMAGE = 'setup-dind-test/cached:xattrs';
/** Built by job 2 of the round trip: one more layer, of incompressible data. */
const LAYER2_IMAGE = 'setup-dind-test/cached:layer2';
const LAYER2_BYTES = 8 * 1024 * 1024;
/**
 * Written into the daemon's data by job 1: sparse, with xattrs. In the layer of the imported image (the
 * restore checks the form of everything else, and keeps what a layer holds as it is).
 */
const PROBE = `"$(docker image inspect --format '{{.GraphDriver.Data.UpperDir}}' ${XATTRS_IMAGE})/setup-dind-test-probe"`;

const KEY_PATTERN = /^setup-dind-v2-[a-z0-9]+-[0-9a-f]{12}(-[A-Za-z0-9._/=-]+)?\+[0-9a-f]{16}$/;
const PART_KEY = /^setup-dind-v2-part-[0-9a-f]{64}$/;

jest.setTimeout(300_000);

let server: CacheServer;
const measurements: string[] = [];

beforeAll(async () => {
  await buildOuterImages();
  server = await startCacheServer();
}, 600_000);

afterAll(async () => {
  await sweepAll();
  await server?.stop();
  if (measurements.length > 0)
    console.log(`Cache measurements (from the job summaries):\n  ${measurements.join('\n  ')}`);
});

afterEach(() => server?.setFault('none'));

function measure(label: string, main?: MainStep, post?: { summary: string }): void {
  const m = main ? summaryRows(main.result.summary) : {};
  const p = post ? summaryRows(post.summary) : {};
  const parts = [
    m['Cache restored'] && `restored: ${m['Cache restored']}`,
    m['Start the daemon'] && `daemon start ${m['Start the daemon']}`,
    p['Stop the daemon'] && `stop ${p['Stop the daemon']}`,
    p['Save the cache'] && `save phase ${p['Save the cache']}`,
    p.Cache && `cache: ${p.Cache}`
  ].filter(Boolean);
  measurements.push(`${label}: ${parts.join('; ')}`);
}

/** Lines in one text and not the other, in both directions (readable, unlike a 1 MB string diff). */
function lineDiff(expected: string, actual: string, limit = 40): { missing: string[]; extra: string[] } {
  const a = new Set(expected.split('\n'));
  const b = new Set(actual.split('\n'));
  return {
    missing: [...a].filter(line => !b.has(line)).slice(0, limit),
    extra: [...b].filter(line => !a.has(line)).slice(0, limit)
  };
}

/** A rate per download response at which the small state takes seconds to restore, far more than a container's start. */
const SLOW_DOWNLOAD_BYTES_PER_SECOND = 256 * 1024;

/**
 * The loop devices attached to a file (`losetup` on the host, as root), by its inode: the path they
 * show is the one the dind container saw.
 */
function loopDevicesOf(file: fs.Stats): string[] {
  const { loopdevices } = JSON.parse(
    execFileSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-INO,BACK-MAJ:MIN'], { encoding: 'utf8' }) ||
      '{"loopdevices":[]}'
  ) as { loopdevices: Array<Record<string, string | number | null>> };
  const device = `${Math.floor(file.dev / 256) & 0xfff}:${(file.dev & 0xff) | ((file.dev >> 12) & 0xfff00)}`;
  return loopdevices
    .filter(loop => String(loop['back-ino']) === String(file.ino) && String(loop['back-maj:min']).trim() === device)
    .map(loop => String(loop.name));
}

const UNCHANGED = { creates: 0, createConflicts: 0, finalizes: 0, uploadedBytes: 0, uploadRequests: 0 };

// ---------------------------------------------------------------------------------------------------
// What the round trip must keep

/**
 * Every layer feature overlay2 stores on disk in its own way. Deleting and recreating a directory makes
 * it opaque (trusted.overlay.opaque), deleting files makes whiteouts (0/0 character devices), and the
 * rest are plain file-system metadata.
 */
const LAYERS_DOCKERFILE = `FROM ${TOOLS_IMAGE}
RUN set -e; mkdir -p /opt/t/opq/sub /opt/t/lower; echo a > /opt/t/opq/a; echo b > /opt/t/opq/sub/b; \\
    echo gone > /opt/t/lower/deleteme; echo gone > /opt/t/lower/deleteme-too; echo kept > /opt/t/lower/keep
RUN set -e; rm -rf /opt/t/opq; mkdir /opt/t/opq; echo c > /opt/t/opq/c; \\
    rm /opt/t/lower/deleteme /opt/t/lower/deleteme-too; rm -rf /usr/share/doc; rm /usr/bin/yes
RUN set -e; cd /opt/t; \\
    echo hard > h1; ln h1 h2; mkdir links; ln h1 links/h3; ln -s h1 sym; ln -s /nonexistent dangling; \\
    echo s > suid; chmod 4755 suid; echo g > sgid; chmod 2710 sgid; mkdir sticky; chmod 1777 sticky; \\
    echo z > zero; chmod 000 zero; echo o > odd; chown 12345:54321 odd; mkdir private; chmod 700 private; \\
    chown 4000000:4000001 private; echo p > private/file; mkfifo fifo; echo sp > 'name with spaces'; echo u > 'ünïcödé'; \\
    cp /bin/true ping; setcap cap_net_raw+ep ping; \\
    head -c 3000000 /dev/urandom > random.bin; truncate -s 8M zeros-tail.bin
`;

/**
 * Run inside a nested container: every entry of the image's file system as the container sees it, the
 * content of every regular file, file capabilities, xattrs of every namespace, and whether hard links
 * share one inode. The files Docker makes for each container are left out.
 */
const MANIFEST_SCRIPT = `set -eu
export LC_ALL=C
walk() { find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf -o -path /etc/mtab -o -path /.dockerenv \\) -prune -o "$@" -print0 | sort -z; }
echo '## directories'; walk -type d | xargs -0 stat -c '%n|%a|%u:%g'
echo '## other entries'; walk ! -type d | xargs -0 stat -c '%n|%a|%u:%g|%h|%s|%F|%t:%T|%Y|%N'
echo '## sha256'; walk -type f | xargs -0 sha256sum
echo '## capabilities'; walk -type f | xargs -0 getcap
echo '## xattrs'; walk | xargs -0 getfattr -h -d -m - --absolute-names 2>/dev/null || true
echo '## hard links'; echo "inodes of h1 h2 links/h3: $(stat -c %i /opt/t/h1 /opt/t/h2 /opt/t/links/h3 | sort -u | wc -l)"
`;

/** Loads the tools, builds and imports the test images. */
async function populate(job: TestJob): Promise<void> {
  fs.mkdirSync(path.join(job.workspace, 'layers'), { recursive: true });
  fs.writeFileSync(path.join(job.workspace, 'layers', 'Dockerfile'), LAYERS_DOCKERFILE);
  await job.step(
    `${loadFromOuter(TOOLS_IMAGE)}
${BUILD} -t ${LAYERS_IMAGE} layers
# user.* xattrs survive only an import (the builder's layer diffs keep security.capability alone).
docker run --rm ${TOOLS_IMAGE} sh -ec 'mkdir -p /x/opt/x; echo v > /x/opt/x/xa; setfattr -n user.test -v hello /x/opt/x/xa; setfattr -n user.bin -v 0x000102ff /x/opt/x/xa; tar --format=posix --xattrs --xattrs-include="user.*" -C /x -cf - .' | docker import - ${XATTRS_IMAGE}`,
    'populate the daemon'
  );
}

/** What post must not carry on: a stopped container, a volume, a dangling image. */
async function leaveLeftovers(job: TestJob): Promise<void> {
  await job.step(
    `docker create --name leftover ${TOOLS_IMAGE} true
docker volume create leftover-volume
printf 'FROM ${TOOLS_IMAGE}\\nLABEL v=1\\n' | ${BUILD} -t setup-dind-test/dangling -
printf 'FROM ${TOOLS_IMAGE}\\nLABEL v=2\\n' | ${BUILD} -t setup-dind-test/dangling -
docker rmi setup-dind-test/dangling`,
    'leave containers, volumes and dangling images'
  );
}

async function containerManifest(job: TestJob, image: string): Promise<string> {
  fs.writeFileSync(path.join(job.workspace, 'manifest.sh'), MANIFEST_SCRIPT);
  await job.step(
    `docker run --rm -i --network none ${image} sh -s < manifest.sh > manifest.txt`,
    `manifest of ${image}`
  );
  return fs.readFileSync(path.join(job.workspace, 'manifest.txt'), 'utf8');
}

/** A sparse file (1 GiB, 4 bytes of data in the middle) with xattrs of two namespaces, in the daemon's data. */
async function writeProbe(main: MainStep): Promise<string> {
  await inDind(
    main,
    `mkdir ${PROBE} && cd ${PROBE}
truncate -s 1G sparse && printf data | dd of=sparse bs=1 seek=536870912 conv=notrunc status=none
setfattr -n user.probe -v yes sparse && setfattr -n trusted.probe -v root-only sparse`
  );
  return readProbe(main);
}

function readProbe(main: MainStep): Promise<string> {
  return inDind(
    main,
    `cd ${PROBE}
stat -c 'size=%s blocks=%b' sparse
dd if=sparse bs=1 skip=536870912 count=4 status=none; echo
getfattr -d -m - sparse | sed 1d`
  );
}

// ---------------------------------------------------------------------------------------------------

const ROUND_TRIP_IMAGES = [LAYERS_IMAGE, TOOLS_IMAGE, XATTRS_IMAGE].sort();

describe('setup-dind cache (cache service emulation, real engine)', () => {
  describe.each<{ user?: string; label: string; inputs: Record<string, string> }>([
    { user: undefined, label: 'root', inputs: {} },
    // Each user under a key base of its own (storage settings are part of it), so each starts cold.
    { user: 'runner', label: 'runner (passwordless sudo)', inputs: { 'dockerd-args': '--storage-driver=overlay2' } },
    {
      user: 'runner-nosudo',
      label: 'runner-nosudo (docker group only)',
      inputs: { 'daemon-config': '{"storage-opts":[]}' }
    }
  ])('as $label', ({ user, label, inputs: userInputs }) => {
    const inputs = { ...CACHE_INPUTS, ...userInputs };
    let key1 = '';
    let key2 = '';
    let part2 = '';

    test('job 1 builds and saves; job 2 restores it byte for byte, adds a layer and uploads about that layer; job 3 restores both', async () => {
      let manifest = '';
      let disk = '';
      let probe = '';

      // Job 1: a cold daemon, populated, saved by post.
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
        expect(main.outputs['cache-key']).toMatch(/^setup-dind-v2-[a-z0-9]+-[0-9a-f]{12}\+$/);
        expect(main.result.stdout).toContain('No cache yet');
        // The data directory is the job's user's, next to the certificates, and holds one file for all of it.
        expect(path.dirname(main.dataDir)).toBe(job.temp);
        await expectDataDirOfUser(main, user);
        const container = await inspectContainer(main.outputs['container-id']);
        expect(
          container.Mounts.filter(mount => mount.Type === 'bind' && mount.Destination === '/setup-dind/data')
        ).toHaveLength(1);

        await populate(job);
        manifest = await containerManifest(job, LAYERS_IMAGE);
        // The manifest shows what the test is about (else an identical one in job 2 proves nothing).
        const lines = manifest.split('\n');
        expect(lines).toEqual(
          expect.arrayContaining([
            expect.stringMatching(/^\/opt\/t\/opq\/c\|644\|0:0\|1\|2\|regular file\|/),
            expect.stringMatching(/^\/opt\/t\/suid\|4755\|0:0\|/),
            expect.stringMatching(/^\/opt\/t\/sgid\|2710\|0:0\|/),
            '/opt/t/sticky|1777|0:0',
            expect.stringMatching(/^\/opt\/t\/zero\|0\|0:0\|/),
            expect.stringMatching(/^\/opt\/t\/odd\|644\|12345:54321\|/),
            '/opt/t/private|700|4000000:4000001',
            expect.stringMatching(/^\/opt\/t\/h1\|644\|0:0\|3\|/),
            expect.stringMatching(/^\/opt\/t\/sym\|777\|0:0\|1\|2\|symbolic link\|.*'\/opt\/t\/sym' -> 'h1'$/),
            expect.stringMatching(/^\/opt\/t\/fifo\|644\|0:0\|1\|0\|fifo\|/),
            expect.stringMatching(/^\/opt\/t\/ping cap_net_raw=ep$/),
            'security.capability=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA='
          ])
        );
        for (const gone of [
          '/opt/t/opq/a',
          '/opt/t/opq/sub',
          '/opt/t/lower/deleteme',
          '/usr/share/doc',
          '/usr/bin/yes'
        ]) {
          expect(lines.some(line => line.startsWith(`${gone}|`))).toBe(false);
        }
        expect(lines).toContain('inodes of h1 h2 links/h3: 1');
        expect(await imageTags(job)).toEqual(ROUND_TRIP_IMAGES);

        // The disk under the daemon: opaque directories, whiteouts, the imported user.* xattrs.
        disk = await diskManifest(main);
        expect(disk).toContain('trusted.overlay.opaque="y"');
        expect(disk).toMatch(/\/diff\/opt\/t\/lower\/deleteme\|0\|0:0\|1\|0\|character special file\|0:0\|/);
        expect(disk).toContain('user.test="hello"');
        expect(disk).toContain('user.bin=0sAAEC/w==');
        probe = await writeProbe(main);
        expect(probe).toMatch(/^size=1073741824 blocks=(\d+)\ndata\n/);
        expect(Number(defined(/blocks=(\d+)/.exec(probe), 'blocks= in the probe')[1])).toBeLessThan(64);
        disk = await diskManifest(main);

        await leaveLeftovers(job);
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        measure(`as ${label}, job 1 (save)`, main, post);
        key1 = savedKeyOf(post);
        expect(key1).toMatch(KEY_PATTERN);
        expect(key1.startsWith(main.outputs['cache-key'])).toBe(true);
        // One part with every chunk, one manifest.
        const change = delta(before, server.stats());
        expect(change).toMatchObject({ creates: 2, finalizes: 2 });
        const entries = server.entries().slice(-2);
        expect(entries.map(entry => entry.key)).toEqual([expect.stringMatching(PART_KEY), key1]);
        expect(change.uploadedBytes).toBe(entries[0].size + entries[1].size);
        expect(entries[0].size).toBeGreaterThan(10_000_000);
        expect(uploadSummary(post).reused).toBe('0 B');
      });

      // Job 2: the same images without a load or build; then one more layer.
      await withJob({ user, cache: server }, async job => {
        const before = server.stats();
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
        const manifest1 = defined(
          server.entries().find(entry => entry.key === key1),
          `entry ${key1}`
        );
        // The manifest, then ranges of its one part over several connections at once.
        const restore = delta(before, server.stats());
        expect(restore.lookups).toBe(2);
        expect(Number(main.outputs['cache-size'])).toBe(
          defined(restore.downloadedBytes, 'downloaded bytes') - manifest1.size
        );
        expect(restore.downloads).toBeGreaterThanOrEqual(4);
        expect(server.stats().maxConcurrentDownloads).toBeGreaterThanOrEqual(3);
        await expectDataDirOfUser(main, user);

        expect(await imageTags(job)).toEqual(ROUND_TRIP_IMAGES);
        // Post pruned what the next job must not inherit.
        const pruned = await job.step(
          `docker ps -aq | wc -l; docker volume ls -q | wc -l; docker images -q --filter dangling=true | wc -l; docker info --format '{{.Driver}}'`,
          'docker ps/volumes/info'
        );
        expect(pruned.stdout.trim().split('\n')).toEqual(['0', '0', '0', 'overlay2']);
        // The disk is the same before any container runs; then what containers see is the same too.
        expect(lineDiff(disk, await diskManifest(main))).toEqual({ missing: [], extra: [] });
        expect(await readProbe(main)).toBe(probe);
        expect(lineDiff(manifest, await containerManifest(job, LAYERS_IMAGE))).toEqual({ missing: [], extra: [] });
        // The restored daemon works: file capabilities take effect, a build on the restored layers is cached.
        const works = await job.step(
          `docker run --rm ${LAYERS_IMAGE} sh -c 'cat /opt/t/opq/c /opt/t/lower/keep; ls /opt/t/opq; getcap /opt/t/ping'
${BUILD} -t ${LAYERS_IMAGE}-again - <<'EOF'
${LAYERS_DOCKERFILE}
EOF
docker image inspect --format '{{.Id}}' ${LAYERS_IMAGE} ${LAYERS_IMAGE}-again | uniq | wc -l
docker rmi ${LAYERS_IMAGE}-again >/dev/null`,
          'use the restored daemon'
        );
        expect(works.stdout).toContain('c\nkept\nc\n/opt/t/ping cap_net_raw=ep\n');
        expect(works.stdout.trim().split('\n').pop()).toBe('1');

        // One more layer: 8 MiB that no compression shrinks.
        await job.step(
          `mkdir -p layer2 && head -c ${LAYER2_BYTES} /dev/urandom > layer2/blob && sha256sum layer2/blob | cut -d' ' -f1 > layer2.sha256
printf 'FROM ${TOOLS_IMAGE}\\nCOPY blob /blob\\n' > layer2/Dockerfile
${BUILD} -t ${LAYER2_IMAGE} layer2`,
          'add a layer'
        );
        fs.copyFileSync(
          path.join(job.workspace, 'layer2.sha256'),
          path.join(os.tmpdir(), `setup-dind-layer2-${label.split(' ')[0]}.sha256`)
        );
        disk = await diskManifest(main);
        const beforePost = server.stats();
        const [post] = await job.post({ warnings: 0 });
        measure(`as ${label}, job 2 (restore, one more layer)`, main, post);
        key2 = savedKeyOf(post);
        expect(key2).not.toBe(key1);
        // A new part with about the new layer, and a manifest; the first part is reused.
        const change = delta(beforePost, server.stats());
        expect(change).toMatchObject({ creates: 2, finalizes: 2 });
        const [newPart, manifestEntry] = server.entries().slice(-2);
        expect(newPart.key).toMatch(PART_KEY);
        expect(manifestEntry.key).toBe(key2);
        part2 = newPart.key;
        measurements.push(
          `as ${label}: a ${LAYER2_BYTES} B layer uploaded ${change.uploadedBytes} B (part ${newPart.size} B)`
        );
        expect(change.uploadedBytes).toBeGreaterThan(LAYER2_BYTES);
        expect(change.uploadedBytes).toBeLessThan(2 * LAYER2_BYTES);
        expect(uploadSummary(post).reused).not.toBe('0 B');
      });

      // Job 3: both layers, from both parts.
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key2 });
        expect(await imageTags(job)).toEqual([...ROUND_TRIP_IMAGES, LAYER2_IMAGE].sort());
        expect(lineDiff(disk, await diskManifest(main))).toEqual({ missing: [], extra: [] });
        expect(await readProbe(main)).toBe(probe);
        const blob = await job.step(
          `docker run --rm ${LAYER2_IMAGE} sha256sum /blob | cut -d' ' -f1`,
          'read the new layer'
        );
        const expected = fs.readFileSync(
          path.join(os.tmpdir(), `setup-dind-layer2-${label.split(' ')[0]}.sha256`),
          'utf8'
        );
        expect(blob.stdout.trim()).toBe(expected.trim());
        expect(lineDiff(manifest, await containerManifest(job, LAYERS_IMAGE))).toEqual({ missing: [], extra: [] });
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        measure(`as ${label}, job 3 (restore both)`, main, post);
        expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
        expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      });
    }, 600_000);

    test('a corrupt part, a part gone, a rate limit: each a passing job with a warning', async () => {
      expect(part2).toMatch(PART_KEY);
      const faultInputs = { ...inputs, 'cache-save': 'never' };

      // Job 2's part corrupt: its state cannot be restored, the one it was made from can.
      server.setFault('corrupt-download', { keys: key => key === part2 });
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(faultInputs);
        expect(main.warnings).toHaveLength(1);
        expect(main.warnings[0]).toMatch(
          new RegExp(
            // Flipped bytes are found by the hash, or break the frame before it (which frame is in the
            // middle of the part depends on the order the save's compressions finished).
            `^${key2.replace(/[+.]/g, '\\$&')} could not be restored \\(frame [0-9a-f]{12} (does not hold the content its hash names|does not decompress \\(.+\\))\\); trying the state it was made from, ${key1.replace(/[+.]/g, '\\$&')}\\.$`
          )
        );
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
        expect(await imageTags(job)).toEqual(ROUND_TRIP_IMAGES);
        await job.post({ warnings: 0 });
      });
      server.setFault('none');

      // Job 2's part gone (the service evicted it; its manifest stays): the same.
      await server.evict(entry => entry.key === part2);
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(faultInputs);
        expect(main.warnings).toEqual([
          `1 of the 2 parts of ${key2} are gone from the cache; trying the state it was made from, ${key1}.`
        ]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key1 });
        expect(await imageTags(job)).toEqual(ROUND_TRIP_IMAGES);
        await expectLoadAndRun(job);
        await job.post({ warnings: 0 });
      });

      // The service limits the repository's requests: a cold daemon.
      server.setFault('rate-limit');
      const before = server.stats();
      await withJob({ user, cache: server }, async job => {
        const main = await job.main(faultInputs);
        expect(main.warnings).toHaveLength(1);
        expect(main.warnings[0]).toMatch(
          /^Cache restore failed, the daemon starts empty: the cache service limits this repository's requests now \(GetCacheEntryDownloadURL answered HTTP 429/
        );
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
        await expectEmptyWorkingDaemon(job);
        server.setFault('none');
        await job.post({ warnings: 0 });
      });
      // One call, not retried.
      expect(delta(before, server.stats()).twirpRequests).toBe(1);
    }, 300_000);
  });
});

describe('a small cache of its own (the tiny image; an explicit storage-driver: its own key base)', () => {
  const SMALL = { ...CACHE_INPUTS, 'daemon-config': '{"storage-driver":"overlay2"}' };
  let smallBase = '';
  let smallKey = '';
  const JOB4_IMAGE = 'setup-dind-test/cached:job4';

  test('seed; a job that changes nothing uploads nothing; a job that builds an image saves a new state; the next job restores the newest', async () => {
    await withJob({ cache: server }, async job => {
      const main = await job.main(SMALL);
      expect(main.outputs['cache-hit']).toBe('false');
      smallBase = main.outputs['cache-key'].slice(0, -1);
      expect(smallBase).toMatch(/^setup-dind-v2-[a-z0-9]+-[0-9a-f]{12}$/);
      await job.step(loadFromOuter(TINY_IMAGE), 'load the tiny image');
      const [post] = await job.post({ warnings: 0 });
      measure('small seed', main, post);
      smallKey = savedKeyOf(post);
      expect(smallKey.startsWith(`${smallBase}+`)).toBe(true);
    });

    // Restores, changes nothing (leaves a container, which post prunes).
    await withJob({ cache: server }, async job => {
      const main = await job.main(SMALL);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': smallKey });
      expect(await imageTags(job)).toEqual([TINY_IMAGE]);
      await job.step(`docker create --name left-behind ${TINY_IMAGE} /ldconfig >/dev/null`, 'leave a container');
      const before = server.stats();
      const entries = server.entries();
      const [post] = await job.post({ warnings: 0 });
      measure('small, nothing changed', main, post);
      expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
      expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      expect(server.entries()).toEqual(entries);
    });

    // One more image: a new state.
    let job4Key = '';
    await withJob({ cache: server }, async job => {
      const main = await job.main(SMALL);
      expect(main.outputs['cache-key']).toBe(smallKey);
      await job.step(
        `mkdir job4 && echo 'built in job 4' > job4/file && printf 'FROM ${TINY_IMAGE}\\nCOPY file /job4\\n' > job4/Dockerfile\n${BUILD} -t ${JOB4_IMAGE} job4`,
        'build one more image'
      );
      const [post] = await job.post({ warnings: 0 });
      job4Key = savedKeyOf(post);
      expect(job4Key).toMatch(KEY_PATTERN);
      expect(job4Key).not.toBe(smallKey);
      expect(job4Key.startsWith(`${smallBase}+`)).toBe(true);
    });

    // The newer of the two states under this prefix.
    await withJob({ cache: server }, async job => {
      const main = await job.main(SMALL);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': job4Key });
      expect(await imageTags(job)).toEqual([JOB4_IMAGE, TINY_IMAGE].sort());
      const read = await job.step(
        `docker create --name j4 ${JOB4_IMAGE} /ldconfig >/dev/null && docker cp j4:/job4 - | tar -xO && docker rm j4 >/dev/null`,
        'read the job 4 image'
      );
      expect(read.stdout).toContain('built in job 4');
      const [post] = await job.post({ warnings: 0 });
      expect(cacheFact(post)).toContain('nothing changed');
    });
    smallKey = job4Key;
  }, 300_000);

  test('a restore slower than the container start: the entrypoint attaches the image before main fills it, the daemon starts on what was restored, and no loop device outlives the job', async () => {
    // Each download this slow, the container is up long before the last chunk is written (no time is asserted).
    server.setDownloadCap(SLOW_DOWNLOAD_BYTES_PER_SECOND);
    try {
      for (const user of [undefined, 'runner-nosudo']) {
        await withJob({ cache: server, user }, async job => {
          const main = await job.main(SMALL);
          expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': smallKey });
          const image = fs.statSync(path.join(main.dataDir, 'docker.img'));
          const events = fs.readFileSync(path.join(main.dataDir, 'events'), 'utf8');
          expect(events).toMatch(
            /^mounted in .* s \(restored, attached while filled, checked in .*; waited for main .*, e2fsck .*, mount .*\)$/m
          );
          // What tells main to stop writing the image back.
          expect(events).toMatch(/^attached$/m);
          // The mount's device, and no other (the read-only one e2fsck read is gone).
          expect(loopDevicesOf(image)).toHaveLength(1);
          const read = await job.step(
            `docker create --name j4 ${JOB4_IMAGE} /ldconfig >/dev/null && docker cp j4:/job4 - | tar -xO && docker rm j4 >/dev/null`,
            'read the job 4 image'
          );
          expect(read.stdout).toContain('built in job 4');
          const [post] = await job.post({ warnings: 0 });
          expect(cacheFact(post)).toContain('nothing changed');
          expect(loopDevicesOf(image)).toEqual([]);
        });
      }
    } finally {
      server.setDownloadCap(undefined);
    }
  }, 300_000);

  describe('inputs and modes', () => {
    test('cache-save: never restores but never saves, even when the daemon changed', async () => {
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, 'cache-save': 'never' });
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': smallKey });
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:never`, 'change the daemon');
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        expect(post.stdout).toContain("Not saving the cache: input 'cache-save' is 'never'.");
        expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      });
    });

    test("cache-save: on-success: a failed job's changed daemon is not saved, a successful job's is (job.status as post sees it)", async () => {
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, 'cache-key': 'on-success', 'cache-save': 'on-success' });
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': smallKey });
        // What a re-run with debug logging shows: the lookup and its requests, the plan, the daemon's answer.
        expect(commands(main.result.stdout, 'debug')).toEqual(
          expect.arrayContaining([
            expect.stringMatching(/^Cache requests to [^:]+:\d+: direct$/),
            expect.stringMatching(/^GetCacheEntryDownloadURL \(attempt 1\): HTTP 200 in \d+ ms$/),
            expect.stringMatching(
              new RegExp(
                `^Lookup of ${`${smallBase}-on-success+`.replace(/[+.]/g, '\\$&')} .*: ${smallKey.replace(/[+.]/g, '\\$&')}$`
              )
            ),
            expect.stringMatching(/^Restore plan: \d+ frames for \d+ chunks; 0 from the runner's store, /),
            expect.stringMatching(/^The daemon answers \(dockerd /)
          ])
        );
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:failed-job`, 'change the daemon');
        expectExit(await job.run('exit 3'), 3, 'a failing step');
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        expect(post.stdout).toContain(
          "Not saving the cache: the job's status is 'failure' and input 'cache-save' is 'on-success'."
        );
        expect(commands(post.stdout, 'debug')).toContainEqual(
          expect.stringMatching(/^Save policy 'on-success', job status 'failure', cache service writable: true/)
        );
        expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      });

      await withJob({ cache: server }, async job => {
        // Still only the fallback: the failed job saved nothing under its key.
        const main = await job.main({ ...SMALL, 'cache-key': 'on-success', 'cache-save': 'on-success' });
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': smallKey });
        expect(await imageTags(job)).not.toContain('setup-dind-test/cached:failed-job');
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:succeeded-job`, 'change the daemon');
        const [post] = await job.post({ warnings: 0 });
        const saved = savedKeyOf(post);
        expect(saved.startsWith(`${smallBase}-on-success+`)).toBe(true);
        // Not the newest fallback of the tests below.
        expect(await server.evict(entry => entry.key === saved)).toHaveLength(1);
      });
    });

    test('cache: false asks the cache service nothing; the data still lives in an image of the job, removed by post', async () => {
      const before = server.stats();
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, cache: 'false' });
        expect(main.warnings).toEqual([]);
        expect(main.result.stdout).toContain("Cache off (input 'cache').");
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': '', 'cache-size': '0' });
        await expectDataDirOfUser(main, undefined);
        expect(await imageTags(job)).toEqual([]);
        await expectLoadAndRun(job);
        await job.post({ warnings: 0 });
      });
      expect(server.stats()).toEqual(before);
    });

    test('a storage driver the cache does not carry (vfs): cache off with a warning, the service never asked, the daemon works', async () => {
      const before = server.stats();
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...CACHE_INPUTS, 'daemon-config': '{"storage-driver":"vfs"}' });
        expect(main.warnings).toEqual([
          "Cache off: the storage driver is 'vfs', and the cache carries only the overlay2 storage driver's images (set 'cache: false' to say so)."
        ]);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': '' });
        await expectLoadAndRun(job);
        await job.post({ warnings: 0 });
      });
      expect(server.stats()).toEqual(before);
    });

    test('ACTIONS_CACHE_MODE=read restores but never saves', async () => {
      await withJob({ cache: server, env: { ACTIONS_CACHE_MODE: 'read' } }, async job => {
        const main = await job.main(SMALL);
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': smallKey });
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:read-mode`, 'change the daemon');
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        expect(post.stdout).toContain("Not saving the cache: ACTIONS_CACHE_MODE is 'read'.");
        expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      });
    });

    test("cache-key: B restores A's state as a fallback and saves its own, reusing A's parts; A then gets its own back", async () => {
      let keyA = '';
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, 'cache-key': 'team-a' });
        // No state of its own yet: the newest compatible one, not a hit.
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': smallKey });
        expect(summaryRows(main.result.summary)['Cache restored']).toMatch(/\(fallback key; /);
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:team-a`, 'change the daemon');
        const [post] = await job.post({ warnings: 0 });
        keyA = savedKeyOf(post);
        expect(keyA.startsWith(`${smallBase}-team-a+`)).toBe(true);
      });

      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, 'cache-key': 'team-b' });
        expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': keyA });
        expect(await imageTags(job)).toContain('setup-dind-test/cached:team-a');
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        const keyB = savedKeyOf(post);
        expect(keyB.startsWith(`${smallBase}-team-b+`)).toBe(true);
        // The same content: the same fingerprint under B's own prefix. What the daemon's start rewrote
        // (its own databases, the journal) is a few chunks; every other chunk is A's.
        expect(keyB.split('+')[1]).toBe(keyA.split('+')[1]);
        const change = delta(before, server.stats());
        expect(change.finalizes).toBeLessThanOrEqual(2);
        expect(change.uploadedBytes).toBeLessThan(1024 * 1024);
        expect(uploadSummary(post).reused).not.toBe('0 B');
      });

      // A's own state wins over B's newer one.
      await withJob({ cache: server }, async job => {
        const main = await job.main({ ...SMALL, 'cache-key': 'team-a' });
        expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': keyA });
        const [post] = await job.post({ warnings: 0 });
        expect(cacheFact(post)).toContain('nothing changed');
      });
    }, 240_000);
  });

  describe('fail soft: a warning and a cold daemon that works', () => {
    const FAULT_INPUTS = { ...SMALL, 'cache-save': 'never' };

    /** Main's outcome after a restore that failed: one warning, no hit, an empty daemon that works. */
    async function expectColdStart(job: TestJob, main: MainStep, fault: string, seconds: number): Promise<void> {
      measurements.push(
        `fault ${fault}: main took ${seconds.toFixed(1)} s; warning: ${main.warnings.join(' / ').slice(0, 300)}`
      );
      expect(main.warnings).toHaveLength(1);
      expect(main.warnings[0]).toMatch(/^Cache restore failed, the daemon starts empty: /);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0', 'cache-key': `${smallBase}+` });
      await expectEmptyWorkingDaemon(job);
      const [post] = await job.post({ warnings: 0 });
      expect(post.stdout).toContain("input 'cache-save' is 'never'");
    }

    // 'hang' costs the action's 30 s time-out on its lookup: that main runs on a cache server of its
    // own, in the background, while the faults below are tested; its own test checks the outcome.
    let hangServer: CacheServer | undefined;
    let hangJob: TestJob | undefined;
    let hangMain: Promise<{ main: MainStep; seconds: number }> | undefined;
    beforeAll(async () => {
      hangServer = await startCacheServer({ fault: 'hang' });
      hangJob = new TestJob({ cache: hangServer });
      const started = performance.now();
      hangMain = hangJob.main(FAULT_INPUTS).then(main => ({ main, seconds: (performance.now() - started) / 1000 }));
      hangMain.catch(() => undefined);
    });
    afterAll(async () => {
      await hangMain?.catch(() => undefined);
      await hangJob?.dispose();
      await hangServer?.stop();
    });

    test.each<{ fault: CacheFault; downloads: boolean }>([
      { fault: 'error', downloads: false },
      { fault: 'truncate-download', downloads: true },
      { fault: 'corrupt-download', downloads: true },
      { fault: 'interrupt-download', downloads: true }
    ])(
      'restore with fault $fault',
      async ({ fault, downloads }) => {
        await withJob({ cache: server }, async job => {
          const before = server.stats();
          server.setFault(fault);
          const started = performance.now();
          const main = await job.main(FAULT_INPUTS);
          const seconds = (performance.now() - started) / 1000;
          server.setFault('none');
          const change = delta(before, server.stats());
          expect(change.lookups).toBe(fault === 'error' ? 0 : 1);
          if (downloads) expect(change.downloads).toBeGreaterThanOrEqual(1);
          else expect(change.downloads).toBe(0);
          await expectColdStart(job, main, fault, seconds);
        });
      },
      180_000
    );

    test('restore with fault hang (on a cache server of its own, run alongside the tests above)', async () => {
      const { main, seconds } = await defined(hangMain, 'main of the hang job');
      expect(seconds).toBeGreaterThanOrEqual(30);
      expect(main.warnings.join('\n')).toMatch(/no answer in 30 s/);
      const stats = defined(hangServer, 'cache server of the hang job').stats();
      expect(stats.twirpRequests).toBe(1);
      expect(stats.downloads).toBe(0);
      await expectColdStart(defined(hangJob, 'hang job'), main, 'hang', seconds);
    }, 180_000);

    test('upload-error in post: post warns, exits 0 and commits nothing; a later job with the same content saves it', async () => {
      await withJob({ cache: server }, async job => {
        const main = await job.main(SMALL);
        expect(main.outputs['cache-hit']).toBe('true');
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:upload-error`, 'change the daemon');
        const before = server.stats();
        const entries = server.entries();
        server.setFault('upload-error');
        const [post] = await job.post({ warnings: 1 });
        server.setFault('none');
        expect(commands(post.stdout, 'warning')[0]).toMatch(/^Cache save failed \(the job is not affected\): /);
        expect(server.entries().map(entry => entry.key)).toEqual(entries.map(entry => entry.key));
        expect(delta(before, server.stats())).toMatchObject({ finalizes: 0, uploadedBytes: 0 });
        expect(cacheFact(post)).toBe('not saved: the save failed (see the warning)');
      });
      // The failed upload left its part's key reserved (the service keeps it a day): a variant holds the same content.
      await withJob({ cache: server }, async job => {
        const main = await job.main(SMALL);
        expect(main.outputs['cache-key']).toBe(smallKey);
        await job.step(
          `docker tag ${TINY_IMAGE} setup-dind-test/cached:upload-error`,
          'the same change as the failed job'
        );
        const entries = server.entries().length;
        const [post] = await job.post({ warnings: 0 });
        expect(cacheFact(post)).toMatch(/^saved /);
        expect(server.entries().length).toBe(entries + 2);
      });
    });
  });

  describe('post leaves nothing behind', () => {
    test('main that fails (image missing) after the cache was prepared: post removes the data directory', async () => {
      await withJob({ cache: server }, async job => {
        await job.main({ ...SMALL, image: 'setup-dind-test/absent:never' }, 1);
        await job.post({ warnings: 0 });
        // Whatever main got to make (certificates, data directory) is gone, and stays gone.
        await new Promise(resolve => setTimeout(resolve, 2000));
        expect(fs.readdirSync(job.temp)).toEqual([]);
      });
    });

    test('a daemon that died before post: nothing is saved and everything is removed', async () => {
      await withJob({ cache: server }, async job => {
        const main = await job.main(SMALL);
        await job.step(`docker tag ${TINY_IMAGE} setup-dind-test/cached:died`, 'change the daemon');
        await job.step(`${OUTER_DOCKER} kill ${main.outputs['container-id']} >/dev/null`, 'kill the dind container');
        const before = server.stats();
        const [post] = await job.post({ warnings: 0 });
        expect(post.stdout).toContain('Not saving the cache: the daemon was not running at the end of the job');
        expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
      });
    });
  });

  test('cache-max-size smaller than the state: post warns and saves nothing; the default limit then saves the same content', async () => {
    await withJob({ cache: server }, async job => {
      const main = await job.main({ ...SMALL, 'cache-key': 'limited', 'cache-max-size': '64k' });
      expect(main.outputs['cache-hit']).toBe('false');
      expect(Number(main.outputs['cache-size'])).toBeGreaterThan(64 * 1024);
      const before = server.stats();
      const entries = server.entries();
      const [post] = await job.post({ warnings: 1 });
      expect(commands(post.stdout, 'warning')[0]).toBe(
        "Not saving the cache: the daemon's data compresses to more than 'cache-max-size' (64.0 KiB). Raise 'cache-max-size' or keep fewer images in the daemon."
      );
      expect(server.entries().map(entry => entry.key)).toEqual(entries.map(entry => entry.key));
      // The new part's entry is reserved at its first frame (its upload goes on while the image is
      // scanned), before the bound is reached: reserved, never committed, nothing uploaded.
      const made = delta(before, server.stats());
      expect(made).toMatchObject({ finalizes: 0, uploadedBytes: 0 });
      expect(made.creates).toBeLessThanOrEqual(1);
    });
    await withJob({ cache: server }, async job => {
      await job.main({ ...SMALL, 'cache-key': 'limited' });
      const [post] = await job.post({ warnings: 0 });
      expect(cacheFact(post)).toMatch(/^saved /);
    });
  });
});

// Images a job stops using must not ride along forever. The job's use is read from a recorder of the
// daemon's events (its own history keeps only the last 256) and from the layers images share.
describe('unused images (a key base of its own: an explicit default feature in daemon-config)', () => {
  const EVICT = {
    ...CACHE_INPUTS,
    'daemon-config': '{"storage-driver":"overlay2","features":{"containerd-snapshotter":false}}'
  };
  const BASE = 'setup-dind-test/evict:base';
  const CHILD = 'setup-dind-test/evict:child';
  const UNUSED = 'setup-dind-test/evict:unused';
  const build = (tag: string, from: string, file: string) =>
    `mkdir -p ctx-${file} && echo ${file} > ctx-${file}/${file} && printf 'FROM %s\\nCOPY %s /%s\\n' ${from} ${file} ${file} > ctx-${file}/Dockerfile\n${BUILD} -t ${tag} ctx-${file} >/dev/null`;
  /** More events than the daemon keeps (volume events, which the recorder does not keep): the run's are gone from its history. */
  const FLOOD = `seq 1 140 | xargs -P 4 -I{} docker volume create flood-{} >/dev/null
docker volume rm $(docker volume ls -q --filter name=flood-) >/dev/null
test -z "$(docker events --since 0 --until "$(date +%s)" --filter type=container --filter event=create)"`;

  test('a job that ran only a --rm container of one image keeps it and its bases and drops the rest (cache-evict-after: 0); the default keeps them a week; a stopped recorder drops nothing', async () => {
    await withJob({ cache: server }, async job => {
      const main = await job.main(EVICT);
      expect(main.outputs['cache-hit']).toBe('false');
      await job.step(
        [
          loadFromOuter(TINY_IMAGE),
          build(BASE, TINY_IMAGE, 'base'),
          build(CHILD, BASE, 'child'),
          build(UNUSED, TINY_IMAGE, 'unused')
        ].join('\n'),
        'load and build'
      );
      const [post] = await job.post({ warnings: 0 });
      savedKeyOf(post);
      expect(summaryRows(post.summary)['Unused images']).toBeUndefined();
    });

    await withJob({ cache: server }, async job => {
      await job.main({ ...EVICT, 'cache-evict-after': '0' });
      expect(await imageTags(job)).toEqual([BASE, CHILD, UNUSED, TINY_IMAGE].sort());
      const ran = await job.step(
        `docker run --rm ${CHILD} /ldconfig --version\n${FLOOD}`,
        'run one container, then flood the event history'
      );
      expect(ran.stdout).toMatch(/ldconfig \(Debian GLIBC/);
      const [post] = await job.post({ warnings: 0 });
      expect(post.stdout).toContain(`Dropped from the cache, not used by this job: ${UNUSED}`);
      expect(summaryRows(post.summary)['Unused images']).toBe(`dropped 1, not used by this job: ${UNUSED}`);
      savedKeyOf(post);
    });

    // The default (7d): unused since the last job, but within the week.
    await withJob({ cache: server }, async job => {
      await job.main(EVICT);
      expect(await imageTags(job)).toEqual([BASE, CHILD, TINY_IMAGE].sort());
      const before = server.stats();
      const [post] = await job.post({ warnings: 0 });
      expect(cacheFact(post)).toContain('nothing changed');
      expect(summaryRows(post.summary)['Unused images']).toBeUndefined();
      expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
    });

    // Without a full record of the job's events, nothing is dropped, whatever the input says.
    await withJob({ cache: server }, async job => {
      const main = await job.main({ ...EVICT, 'cache-evict-after': '0' });
      await inDind(main, 'kill "$(cat /setup-dind/recorder.pid)"');
      const before = server.stats();
      const [post] = await job.post({ warnings: 1 });
      expect(commands(post.stdout, 'warning')[0]).toMatch(
        /^Not dropping unused images from the cache: the image usage recorder stopped \(exit code \d+\)/
      );
      expect(cacheFact(post)).toContain('nothing changed');
      expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
    });
  }, 300_000);
});

describe('images BuildKit built (a key base of its own)', () => {
  test('restore warm: their layers (BuildKit ids) pass the check; the build cache is not carried, and no layer is left that no image names', async () => {
    const plugin = await extractBuildxPlugin();
    const inputs = {
      ...CACHE_INPUTS,
      buildx: 'true',
      'buildx-driver': 'docker',
      'daemon-config': JSON.stringify({ features: { 'setup-dind-test-buildkit': true } })
    };
    const tag = 'setup-dind-test/cached:buildkit';
    try {
      await withJob({ cache: server }, async job => {
        installBuildxPlugin(job.home, plugin);
        await job.main(inputs);
        fs.writeFileSync(
          path.join(job.workspace, 'Dockerfile'),
          `FROM ${TINY_IMAGE}\nRUN ["/ldconfig", "--version"]\nCOPY Dockerfile /Dockerfile\n`
        );
        const built = await job.step(
          `${loadFromOuter(TINY_IMAGE)}\ndocker buildx build --progress plain --tag ${tag} . >/dev/null 2>&1\ndocker system df --format '{{.Type}} {{.TotalCount}}'`,
          'build with BuildKit'
        );
        expect(built.stdout).toMatch(/^Build Cache [1-9]/m);
        const [post] = await job.post({ warnings: 0 });
        expect(savedKeyOf(post)).toMatch(KEY_PATTERN);
      });
      await withJob({ cache: server }, async job => {
        installBuildxPlugin(job.home, plugin);
        const main = await job.main(inputs);
        expect(main.warnings).toEqual([]);
        expect(main.outputs['cache-hit']).toBe('true');
        expect(await imageTags(job)).toEqual([tag, TINY_IMAGE].sort());
        const used = await job.step(
          `docker run --rm ${tag} /ldconfig --version | head -1\ndocker system df --format '{{.Type}} {{.TotalCount}}'`,
          'run the built image'
        );
        expect(used.stdout).toMatch(/^ldconfig \(Debian GLIBC/);
        expect(used.stdout).toMatch(/^Build Cache 0$/m);
        const layers = await inDind(
          main,
          `cd /var/lib/docker && ls overlay2 | grep -vx l | sort && echo -- && for f in image/overlay2/layerdb/sha256/*/cache-id; do cat "$f"; echo; done | sort`
        );
        const [dirs, named] = layers.split('--\n').map(list => list.trim().split('\n'));
        expect(dirs).toEqual(named);
        expect(named.some(id => id.length === 25)).toBe(true);
        await job.post({ warnings: 0 });
      });
    } finally {
      fs.rmSync(path.dirname(plugin), { recursive: true, force: true });
    }
  });
});

// Any branch of a repository can write its cache. These entries are made as an attacker would make
// them, with the action's own save code or byte for byte; each must leave the job passing, the runner
// untouched and the daemon clean.
