// The cache of the inner daemon's /var/lib/docker across jobs, end to end: the bundled dist/ run by the
// runner emulation against the real engine, and the cache service v2 emulation (azurite behind a Twirp
// front) that the real @actions/cache client talks to. Every assertion is on an effect: what a later
// job's daemon holds and what its containers see, what reached the cache service, what is left on disk.
//
// The tests run in order and build on each other's cache entries (one server for the file). The round
// trips (as root, and as `runner` through sudo) build an image with every kind of file-system feature
// overlay2 relies on and prove that a later job sees it unchanged. The rest work on a small cache (the
// tiny image) under a key base of their own, seeded once, so that each of their restores and saves
// takes a fraction of a second: policies, inputs, faults, cleanup. Two tests are marked `failing`:
// they show bugs in src/ (see their comments).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Job, type StepResult } from '../support/runner';
import { commands, expectExit } from '../support/steps';
import {
  startCacheServer,
  type CacheEntryInfo,
  type CacheFault,
  type CacheServer,
  type CacheServerStats
} from '../support/cache-server';
import {
  containerVolumes,
  inspectContainer,
  labelled,
  NESTED_BASE_IMAGE,
  OUTER_SOCKET,
  Sweeper,
  TEST_IMAGE,
  volumeExists,
  type Started
} from '../support/engine';

/** Built on the outer engine in beforeAll: the tools the test images need (setcap, setfattr). */
const TOOLS_IMAGE = 'setup-dind-test/tools:trixie';
/** Built on the outer engine in beforeAll: one static binary (/ldconfig), loaded in a second. */
const TINY_IMAGE = 'setup-dind-test/tiny:latest';
/**
 * For the round trip as `runner`: an explicit storage driver (the default one) is a storage setting,
 * part of the key's compatibility hash, so that variant has a cache namespace of its own and starts empty.
 */
const OWN_NAMESPACE_ARGS = '--storage-driver=overlay2';
/** Built inside the inner daemon by the round trip: the file-system features overlay2 must keep. */
const LAYERS_IMAGE = 'setup-dind-test/cached:layers';
/** Imported inside the inner daemon: user.* xattrs, which `docker build` and `docker commit` drop. */
const XATTRS_IMAGE = 'setup-dind-test/cached:xattrs';
const PROBE_DIR = 'setup-dind-test-probe';

const BASE_INPUTS = { image: TEST_IMAGE, pull: 'never', context: '' };
const RUNNER = 'runner';
const NOSUDO = 'runner-nosudo';
const KEY_PATTERN = /^setup-dind-v1-[a-z0-9]+-[0-9a-f]{12}(-[A-Za-z0-9._/=-]+)?\+[0-9a-f]{16}$/;

/** The outer engine from a step, whatever DOCKER_* main exported. */
const OUTER_DOCKER = `env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT docker -H ${OUTER_SOCKET}`;
const load = (image: string) => `${OUTER_DOCKER} save ${image} | docker load`;
/** The inner daemon has no buildx: the classic builder. */
const BUILD = 'DOCKER_BUILDKIT=0 docker build --quiet';

jest.setTimeout(300_000);

let server: CacheServer;
const sweeper = new Sweeper();
const measurements: string[] = [];

beforeAll(async () => {
  await buildOuterImages();
  server = await startCacheServer();
}, 600_000);

afterAll(async () => {
  const removed = await sweeper.sweep();
  if (removed.length > 0) console.warn(`Swept what failed tests left behind:\n  ${removed.join('\n  ')}`);
  await server?.stop();
  if (measurements.length > 0)
    console.log(`Cache measurements (from the job summaries):\n  ${measurements.join('\n  ')}`);
});

afterEach(() => server?.setFault('none'));

// ---------------------------------------------------------------------------------------------------
// Helpers

function sh(
  script: string,
  args: string[] = [],
  timeoutMs = 120_000
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    execFile(
      'bash',
      ['-c', `set -euo pipefail\nexport LC_ALL=C\n${script}`, 'bash', ...args],
      { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error
          ? typeof (error as { code?: unknown }).code === 'number'
            ? (error as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      }
    );
  });
}

async function shOk(script: string, args: string[] = [], timeoutMs?: number): Promise<string> {
  const result = await sh(script, args, timeoutMs);
  if (result.code !== 0) throw new Error(`script failed (${result.code}): ${result.stderr.trim()}\n${script}`);
  return result.stdout;
}

/** The tools image (apt from the Debian mirror: only the first build takes time) and the tiny image. */
async function buildOuterImages(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-cache-images-'));
  try {
    const build = async (tag: string, dockerfile: string) => {
      const context = path.join(dir, tag.replace(/[^a-z0-9]/g, '-'));
      fs.mkdirSync(context);
      fs.writeFileSync(path.join(context, 'Dockerfile'), dockerfile);
      await shOk(
        `env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_BUILDKIT=0 docker -H ${OUTER_SOCKET} build --pull=false --quiet -t "$1" "$2" >/dev/null`,
        [tag, context],
        600_000
      );
    };
    await build(
      TOOLS_IMAGE,
      `FROM ${NESTED_BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcap2-bin attr && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
`
    );
    await build(
      TINY_IMAGE,
      `FROM ${NESTED_BASE_IMAGE} AS src\nFROM scratch\nCOPY --from=src /sbin/ldconfig /ldconfig\n`
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function passwdHome(user: string): string {
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(line => line.startsWith(`${user}:`));
  if (!entry) throw new Error(`No user ${user} on this machine.`);
  return entry.split(':')[5];
}

/** A job against the cache server; its steps get a HOME of their own unless they run as another user. */
function newJob(options: { user?: string; env?: Record<string, string>; server?: CacheServer } = {}): Job {
  const job = new Job({
    env: { ...(options.server ?? server).env, ...(options.env ?? {}) },
    ...(options.user ? { runAs: { user: options.user } } : {})
  });
  if (!options.user) job.ownHome();
  return job;
}

interface Main {
  result: StepResult;
  started: Started;
  /** The cache's data directory: next to the certificate directory, named after the container. */
  dataDir: string;
}

async function runMain(job: Job, inputs: Record<string, string> = {}, user?: string): Promise<Main> {
  const result = await job.runMain({ ...BASE_INPUTS, ...inputs });
  const started = sweeper.record(result.state, user ? passwdHome(user) : job.env.HOME);
  expectExit(result, 0, 'main');
  expect(started).toBeDefined();
  return { result, started: started!, dataDir: `${started!.certDir}-data` };
}

async function step(job: Job, script: string, what: string): Promise<StepResult> {
  const result = await job.run(`set -o pipefail\n${script}`);
  expectExit(result, 0, what);
  return result;
}

/** The rows of the summary's tables: phase → time, fact → value. */
function summaryRows(summary: string): Record<string, string> {
  const rows: Record<string, string> = {};
  for (const match of summary.matchAll(/<tr><td>([\s\S]*?)<\/td><td>([\s\S]*?)<\/td><\/tr>/g))
    rows[match[1].replace(/^(✅|❌) /, '')] = match[2];
  return rows;
}

function measure(label: string, main?: StepResult, post?: StepResult): void {
  const m = main ? summaryRows(main.summary) : {};
  const p = post ? summaryRows(post.summary) : {};
  const parts = [
    m['Cache restored'] && `restored: ${m['Cache restored']}`,
    ...Object.entries(m)
      .filter(([name]) => name.startsWith('Prepare '))
      .map(([, time]) => `prepare phase ${time}`),
    m['Start the daemon'] && `daemon start ${m['Start the daemon']}`,
    p['Decide whether to save the cache'] && `decide ${p['Decide whether to save the cache']}`,
    p['Save the cache'] && `save phase ${p['Save the cache']}`,
    p.Cache && `cache: ${p.Cache}`
  ].filter(Boolean);
  measurements.push(`${label}: ${parts.join('; ')}`);
}

/**
 * Runs the job's post and checks that it left nothing: exit 0, no labelled container, network or
 * volume, no data directory, no certificate directory, nothing at all in RUNNER_TEMP.
 */
async function finish(job: Job, main: Main, options: { warnings?: number } = {}): Promise<StepResult> {
  const posts = await job.finish();
  expect(posts).toHaveLength(1);
  const [post] = posts;
  expectExit(post, 0, 'post');
  expect(commands(post.stdout, 'error')).toEqual([]);
  if (options.warnings !== undefined) expect(commands(post.stdout, 'warning')).toHaveLength(options.warnings);
  expect(await labelled(main.started.id)).toEqual({ containers: [], networks: [], volumes: [] });
  expect({ dataDir: main.dataDir, exists: fs.existsSync(main.dataDir) }).toEqual({
    dataDir: main.dataDir,
    exists: false
  });
  expect(fs.existsSync(main.started.certDir)).toBe(false);
  expect(fs.readdirSync(job.temp)).toEqual([]);
  return post;
}

function delta(before: CacheServerStats, after: CacheServerStats): Partial<CacheServerStats> {
  return Object.fromEntries(
    Object.entries(after).map(([name, value]) => [name, value - before[name as keyof CacheServerStats]])
  ) as Partial<CacheServerStats>;
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

/** The mounts at /var/lib/docker of the instance's dind container. */
async function dataMounts(main: Main): Promise<Array<{ Type: string; Source?: string }>> {
  const container = (await inspectContainer(main.result.outputs['container-id'])) as unknown as {
    Mounts: Array<{ Type: string; Source: string; Destination: string }>;
  };
  return container.Mounts.filter(mount => mount.Destination === '/var/lib/docker').map(mount =>
    mount.Type === 'bind' ? { Type: mount.Type, Source: mount.Source } : { Type: mount.Type }
  );
}

/** What the inner daemon holds: `repo:tag` of every image, sorted. */
async function imageTags(job: Job): Promise<string[]> {
  const listed = await step(job, `docker images --format '{{.Repository}}:{{.Tag}}'`, 'docker images');
  return listed.stdout.split('\n').filter(Boolean).sort();
}

/** The daemon started empty and nothing of a cache is in its data directory; it still loads and runs. */
async function expectEmptyWorkingDaemon(job: Job, main: Main): Promise<void> {
  const info = await step(
    job,
    `docker info --format '{{.Images}} {{.Containers}} {{.Driver}}'; docker images -q --all | wc -l`,
    'docker info'
  );
  expect(info.stdout.trim().split('\n')).toEqual(['0 0 overlay2', '0']);
  expect(fs.existsSync(main.dataDir)).toBe(true);
  const left = await shOk(
    `cd "$1" && ls -A . && echo --- && ls -A overlay2 && echo --- && find image/overlay2/imagedb/content -type f | wc -l`,
    [main.dataDir]
  );
  const [top, overlay, imagedb] = left.split('---\n').map(part => part.trim().split('\n').filter(Boolean));
  expect(top).not.toContain('.setup-dind-cache.json');
  expect(top).not.toContain(PROBE_DIR);
  expect(overlay).toEqual(['l']);
  expect(imagedb).toEqual(['0']);
  await expectLoadAndRun(job);
}

async function expectLoadAndRun(job: Job): Promise<void> {
  const ran = await step(
    job,
    `${load(TINY_IMAGE)}\ndocker run --rm ${TINY_IMAGE} /ldconfig --version`,
    'load and run a nested container'
  );
  expect(ran.stdout).toMatch(/ldconfig \(Debian GLIBC/);
}

/** Without a cache: an empty daemon on the image's volume that loads and runs. */
async function expectEmptyWorkingDaemonWithoutDataDir(job: Job): Promise<void> {
  const info = await step(job, `docker info --format '{{.Images}} {{.Driver}}'`, 'docker info');
  expect(info.stdout.trim()).toBe('0 overlay2');
  await expectLoadAndRun(job);
}

// ---------------------------------------------------------------------------------------------------
// What the round trip must keep

/**
 * The test image: every layer feature overlay2 stores on disk in its own way. Deleting and recreating
 * a directory makes it opaque (trusted.overlay.opaque), deleting files makes whiteouts (0/0 character
 * devices), and the rest are plain file-system metadata tar must carry as root.
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
 * Run inside a nested container: every entry of the image's file system as the container sees it
 * (mode, owner, links, size, type, device numbers, mtime of non-directories, symlink targets), the
 * content of every regular file, file capabilities, xattrs of every namespace, and whether the hard
 * links share one inode. The files Docker makes for each container are left out.
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
async function populate(job: Job): Promise<void> {
  fs.mkdirSync(path.join(job.workspace, 'layers'), { recursive: true });
  fs.writeFileSync(path.join(job.workspace, 'layers', 'Dockerfile'), LAYERS_DOCKERFILE);
  await step(
    job,
    `${load(TOOLS_IMAGE)}
${BUILD} -t ${LAYERS_IMAGE} layers
# user.* xattrs survive only an import (the builder's layer diffs keep security.capability alone).
docker run --rm ${TOOLS_IMAGE} sh -ec 'mkdir -p /x/opt/x; echo v > /x/opt/x/xa; setfattr -n user.test -v hello /x/opt/x/xa; setfattr -n user.bin -v 0x000102ff /x/opt/x/xa; tar --format=posix --xattrs --xattrs-include="user.*" -C /x -cf - .' | docker import - ${XATTRS_IMAGE}`,
    'populate the daemon'
  );
}

/** What post must not carry on: a stopped container, a volume, a dangling image. */
async function leaveLeftovers(job: Job): Promise<void> {
  await step(
    job,
    `docker create --name leftover ${TOOLS_IMAGE} true
docker volume create leftover-volume
printf 'FROM ${TOOLS_IMAGE}\\nLABEL v=1\\n' | ${BUILD} -t setup-dind-test/dangling -
printf 'FROM ${TOOLS_IMAGE}\\nLABEL v=2\\n' | ${BUILD} -t setup-dind-test/dangling -
docker rmi setup-dind-test/dangling`,
    'leave containers, volumes and dangling images'
  );
}

async function containerManifest(job: Job, image: string): Promise<string> {
  fs.writeFileSync(path.join(job.workspace, 'manifest.sh'), MANIFEST_SCRIPT);
  const result = await step(
    job,
    `docker run --rm -i --network none ${image} sh -s < manifest.sh > manifest.txt`,
    `manifest of ${image}`
  );
  expect(result.exitCode).toBe(0);
  return fs.readFileSync(path.join(job.workspace, 'manifest.txt'), 'utf8');
}

/**
 * The image store on the runner's disk (as root): every entry under overlay2/ and image/ with its
 * metadata and content digest, and every xattr (trusted.overlay.opaque, security.capability, user.*).
 * Only while no container exists: then both trees hold nothing but images.
 */
async function diskManifest(dataDir: string): Promise<string> {
  return shOk(
    `cd "$1"
walk() { find overlay2 image "$@" -print0 | sort -z; }
echo '## directories'; walk -type d | xargs -0 stat -c '%n|%a|%u:%g|%h'
echo '## other entries'; walk ! -type d | xargs -0 stat -c '%n|%a|%u:%g|%h|%s|%F|%t:%T|%N'
echo '## sha256'; walk -type f | xargs -0 sha256sum
echo '## xattrs'; walk | xargs -0 getfattr -h -d -m - 2>/dev/null || true`,
    [dataDir]
  );
}

/** A sparse file (1 GiB, 4 bytes of data in the middle) and xattrs, put straight into the data directory. */
async function writeProbe(dataDir: string): Promise<string> {
  await shOk(
    `mkdir "$1/${PROBE_DIR}" && cd "$1/${PROBE_DIR}"
truncate -s 1G sparse && printf data | dd of=sparse bs=1 seek=536870912 conv=notrunc status=none
setfattr -n user.probe -v yes sparse && setfattr -n trusted.probe -v root-only sparse`,
    [dataDir]
  );
  return readProbe(dataDir);
}

async function readProbe(dataDir: string): Promise<string> {
  return shOk(
    `cd "$1/${PROBE_DIR}"
stat -c 'size=%s blocks=%b' sparse
dd if=sparse bs=1 skip=536870912 count=4 status=none; echo
getfattr -d -m - sparse | sed 1d`,
    [dataDir]
  );
}

// ---------------------------------------------------------------------------------------------------

/**
 * Tests after the round trips use a small cache (the tiny image) under a key base of their own, so
 * that every restore and save is quick: the default storage driver, named explicitly.
 */
const SMALL = { 'daemon-config': '{"storage-driver":"overlay2"}' };
/** The default inputs' key base (`setup-dind-v1-<arch>-<compat>`), from the round trip's first job. */
let defaultBase = '';
let smallBase = '';
let smallKey = '';
const JOB4_IMAGE = 'setup-dind-test/cached:job4';
const ROUND_TRIP_IMAGES = [LAYERS_IMAGE, TOOLS_IMAGE, XATTRS_IMAGE].sort();

/** A job with the given inputs; `body` gets the main and the job, and runs post itself. */
async function withJob(
  options: { user?: string; env?: Record<string, string>; inputs?: Record<string, string> },
  body: (job: Job, main: Main) => Promise<void>
): Promise<void> {
  const job = newJob(options);
  try {
    const main = await runMain(job, options.inputs ?? {}, options.user);
    await body(job, main);
  } finally {
    await job.finish();
    job.cleanup();
  }
}

function savedKeyOf(post: StepResult): string {
  const saved = /Saving the cache as (\S+) once the daemon has stopped\./.exec(post.stdout);
  if (!saved) throw new Error(`post did not save:\n${post.stdout}`);
  return saved[1];
}

const UNCHANGED = { creates: 0, createConflicts: 0, finalizes: 0, uploadedBytes: 0, uploadRequests: 0 };

describe('setup-dind cache (cache service emulation, real engine)', () => {
  describe.each<{ user?: string; label: string; inputs: Record<string, string>; access: string }>([
    { user: undefined, label: 'root', inputs: {}, access: 'tar as root' },
    { user: RUNNER, label: RUNNER, inputs: { 'dockerd-args': OWN_NAMESPACE_ARGS }, access: 'tar through sudo -n' }
  ])('round trip as $label ($access)', ({ user, label, inputs }) => {
    test('job 1 builds and saves; job 2 restores the same images, byte for byte and bit for bit', async () => {
      let savedKey = '';
      let manifest = '';
      let disk = '';
      let probe = '';
      let entry: CacheEntryInfo | undefined;

      // Job 1: a cold daemon, populated, saved by post.
      const job1 = newJob({ user });
      try {
        const before = server.stats();
        const entriesBefore = server.entries().length;
        const main = await runMain(job1, inputs, user);
        expect(commands(main.result.stdout, 'warning')).toEqual([]);
        expect(main.result.outputs['cache-hit']).toBe('false');
        expect(main.result.outputs['cache-size']).toBe('0');
        const prefix = main.result.outputs['cache-key'];
        expect(prefix).toMatch(/^setup-dind-v1-[a-z0-9]+-[0-9a-f]{12}\+$/);
        expect(main.result.stdout).toContain('No cache yet');
        // The data directory is bind-mounted as /var/lib/docker, root's, next to the certificates.
        expect(path.dirname(main.dataDir)).toBe(job1.temp);
        expect(await dataMounts(main)).toEqual([{ Type: 'bind', Source: main.dataDir }]);
        expect(fs.statSync(main.dataDir).uid).toBe(0);

        await populate(job1);
        manifest = await containerManifest(job1, LAYERS_IMAGE);
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
        expect(await imageTags(job1)).toEqual(ROUND_TRIP_IMAGES);

        // The disk under the daemon: opaque directories, whiteouts, the imported user.* xattrs.
        disk = await diskManifest(main.dataDir);
        expect(disk).toContain('trusted.overlay.opaque="y"');
        expect(disk).toMatch(/\/diff\/opt\/t\/lower\/deleteme\|0\|0:0\|1\|0\|character special file\|0:0\|/);
        expect(disk).toContain('user.test="hello"');
        expect(disk).toContain('user.bin=0sAAEC/w==');
        probe = await writeProbe(main.dataDir);
        expect(probe).toMatch(/^size=1073741824 blocks=(\d+)\ndata\n/);
        expect(Number(/blocks=(\d+)/.exec(probe)![1])).toBeLessThan(64);

        await leaveLeftovers(job1);
        const driver = await step(job1, `docker info --format '{{.Driver}}'`, 'docker info');
        expect(driver.stdout.trim()).toBe('overlay2');

        const post = await finish(job1, main, { warnings: 0 });
        measure(`round trip as ${label}, job 1 (save)`, main.result, post);
        const saved = /Saving the cache as (\S+) once the daemon has stopped\./.exec(post.stdout);
        expect(saved).not.toBeNull();
        savedKey = saved![1];
        expect(savedKey).toMatch(KEY_PATTERN);
        expect(savedKey.startsWith(prefix)).toBe(true);
        if (!user) defaultBase = prefix.slice(0, -1);
        const entries = server.entries();
        expect(entries).toHaveLength(entriesBefore + 1);
        entry = entries[entries.length - 1];
        expect(entry.key).toBe(savedKey);
        const change = delta(before, server.stats());
        expect(change).toMatchObject({ creates: 1, finalizes: 1, hits: 0 });
        expect(change.uploadedBytes).toBeGreaterThan(1_000_000);
        expect(change.uploadedBytes).toBeGreaterThanOrEqual(entry.size);
        expect(summaryRows(post.summary).Cache).toMatch(
          new RegExp(`^saved .+ as ${savedKey.replace(/[+.]/g, '\\$&')}$`)
        );
      } finally {
        await job1.finish();
        job1.cleanup();
      }

      // Job 2: the same images, without a load or build.
      const job2 = newJob({ user });
      try {
        const before = server.stats();
        const main = await runMain(job2, inputs, user);
        expect(commands(main.result.stdout, 'warning')).toEqual([]);
        expect(main.result.outputs['cache-hit']).toBe('true');
        expect(main.result.outputs['cache-key']).toBe(savedKey);
        expect(Number(main.result.outputs['cache-size'])).toBe(entry!.size);
        expect(delta(before, server.stats())).toMatchObject({
          lookups: 1,
          hits: 1,
          downloads: 1,
          downloadedBytes: entry!.size
        });

        expect(await imageTags(job2)).toEqual(ROUND_TRIP_IMAGES);
        // Post pruned what the next job must not inherit.
        const pruned = await step(
          job2,
          `docker ps -aq | wc -l; docker volume ls -q | wc -l; docker images -q --filter dangling=true | wc -l; docker info --format '{{.Driver}}'`,
          'docker ps/volumes/info'
        );
        expect(pruned.stdout.trim().split('\n')).toEqual(['0', '0', '0', 'overlay2']);
        // The disk is the same before any container runs; then what containers see is the same too.
        expect(lineDiff(disk, await diskManifest(main.dataDir))).toEqual({ missing: [], extra: [] });
        expect(await readProbe(main.dataDir)).toBe(probe);
        expect(lineDiff(manifest, await containerManifest(job2, LAYERS_IMAGE))).toEqual({ missing: [], extra: [] });
        // The restored daemon works: file capabilities take effect, a build on the restored layers is cached.
        const works = await step(
          job2,
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

        // Nothing changed: post does not upload.
        const beforePost = server.stats();
        const post = await finish(job2, main, { warnings: 0 });
        measure(`round trip as ${label}, job 2 (restore)`, main.result, post);
        expect(post.stdout).toContain('Not saving the cache: the daemon holds what was restored: nothing changed.');
        expect(delta(beforePost, server.stats())).toMatchObject({
          creates: 0,
          createConflicts: 0,
          uploadedBytes: 0,
          finalizes: 0
        });
      } finally {
        await job2.finish();
        job2.cleanup();
      }
    }, 480_000);
  });

  describe('a small cache of its own (explicit storage-driver in daemon-config: its own key base)', () => {
    test('seed; a job that changes nothing uploads nothing; a job that builds an image saves a new entry; the next job restores the newest', async () => {
      // The seed: a cold daemon with the tiny image.
      await withJob({ inputs: SMALL }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('false');
        smallBase = main.result.outputs['cache-key'].slice(0, -1);
        expect(smallBase).toMatch(/^setup-dind-v1-[a-z0-9]+-[0-9a-f]{12}$/);
        expect(smallBase).not.toBe(defaultBase);
        await step(job, load(TINY_IMAGE), 'load the tiny image');
        const post = await finish(job, main, { warnings: 0 });
        measure('small seed', main.result, post);
        smallKey = savedKeyOf(post);
        expect(smallKey.startsWith(`${smallBase}+`)).toBe(true);
      });

      // Job 3: restores, changes nothing (runs a container, which post prunes).
      await withJob({ inputs: SMALL }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('true');
        expect(main.result.outputs['cache-key']).toBe(smallKey);
        expect(await imageTags(job)).toEqual([TINY_IMAGE]);
        await step(job, `docker create --name left-behind ${TINY_IMAGE} /ldconfig >/dev/null`, 'leave a container');
        const before = server.stats();
        const entries = server.entries();
        const post = await finish(job, main, { warnings: 0 });
        measure('job 3 (nothing changed)', main.result, post);
        expect(post.stdout).toContain('Not saving the cache: the daemon holds what was restored: nothing changed.');
        expect(summaryRows(post.summary).Cache).toBe('not saved: the daemon holds what was restored: nothing changed');
        expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
        expect(server.entries()).toEqual(entries);
      });

      // Job 4: one more image, a new entry.
      let job4Key = '';
      await withJob({ inputs: SMALL }, async (job, main) => {
        expect(main.result.outputs['cache-key']).toBe(smallKey);
        await step(
          job,
          `mkdir job4 && echo 'built in job 4' > job4/file && printf 'FROM ${TINY_IMAGE}\\nCOPY file /job4\\n' > job4/Dockerfile
${BUILD} -t ${JOB4_IMAGE} job4`,
          'build one more image'
        );
        const before = server.stats();
        const entries = server.entries();
        const post = await finish(job, main, { warnings: 0 });
        measure('job 4 (one more image)', main.result, post);
        job4Key = savedKeyOf(post);
        expect(job4Key).toMatch(KEY_PATTERN);
        expect(job4Key).not.toBe(smallKey);
        expect(job4Key.startsWith(`${smallBase}+`)).toBe(true);
        const change = delta(before, server.stats());
        expect(change).toMatchObject({ creates: 1, finalizes: 1 });
        expect(change.uploadedBytes).toBeGreaterThan(0);
        expect(server.entries().map(entry => entry.key)).toEqual([...entries.map(entry => entry.key), job4Key]);
      });

      // Job 5: the newer of the two entries under this prefix.
      await withJob({ inputs: SMALL }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('true');
        expect(main.result.outputs['cache-key']).toBe(job4Key);
        expect(await imageTags(job)).toEqual([JOB4_IMAGE, TINY_IMAGE].sort());
        const read = await step(
          job,
          `docker create --name j4 ${JOB4_IMAGE} /ldconfig >/dev/null && docker cp j4:/job4 - | tar -xO && docker rm j4 >/dev/null`,
          'read the job 4 image'
        );
        expect(read.stdout).toContain('built in job 4');
        const before = server.stats();
        const post = await finish(job, main, { warnings: 0 });
        measure('job 5 (restores the newest)', main.result, post);
        expect(post.stdout).toContain('nothing changed');
        expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
      });
      smallKey = job4Key;
    }, 300_000);

    describe('inputs and modes', () => {
      test('cache-save: never restores but never saves, even when the daemon changed', async () => {
        await withJob({ inputs: { ...SMALL, 'cache-save': 'never' } }, async (job, main) => {
          expect(main.result.outputs['cache-hit']).toBe('true');
          expect(main.result.outputs['cache-key']).toBe(smallKey);
          await step(job, `docker tag ${TINY_IMAGE} setup-dind-test/cached:never`, 'change the daemon');
          const before = server.stats();
          const entries = server.entries();
          const post = await finish(job, main, { warnings: 0 });
          expect(post.stdout).toContain("Not saving the cache: input 'cache-save' is 'never'.");
          expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
          expect(server.entries()).toEqual(entries);
        });
      });

      test('cache: false makes no data directory and asks the cache service nothing', async () => {
        const before = server.stats();
        await withJob({ inputs: { ...SMALL, cache: 'false' } }, async (job, main) => {
          expect(commands(main.result.stdout, 'warning')).toEqual([]);
          expect(main.result.stdout).toContain("Cache off (input 'cache').");
          expect(main.result.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-key': '', 'cache-size': '0' });
          expect(fs.existsSync(main.dataDir)).toBe(false);
          // No bind mount: the image's VOLUME /var/lib/docker, which post removes with the container.
          expect(await dataMounts(main)).toEqual([{ Type: 'volume' }]);
          const [volume] = await containerVolumes(main.result.outputs['container-id']);
          expect(await imageTags(job)).toEqual([]);
          await finish(job, main, { warnings: 0 });
          expect(await volumeExists(volume)).toBe(false);
        });
        expect(server.stats()).toEqual(before);
      });

      test('ACTIONS_CACHE_MODE=read restores but never saves', async () => {
        await withJob({ inputs: SMALL, env: { ACTIONS_CACHE_MODE: 'read' } }, async (job, main) => {
          expect(main.result.outputs['cache-hit']).toBe('true');
          expect(main.result.outputs['cache-key']).toBe(smallKey);
          await step(job, `docker tag ${TINY_IMAGE} setup-dind-test/cached:read-mode`, 'change the daemon');
          const before = server.stats();
          const entries = server.entries();
          const post = await finish(job, main, { warnings: 0 });
          expect(post.stdout).toContain("Not saving the cache: ACTIONS_CACHE_MODE is 'read'.");
          expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
          expect(server.entries()).toEqual(entries);
        });
      });

      test("cache-key: B restores A's cache as a fallback and saves its own; A then gets its own back", async () => {
        let keyA = '';
        await withJob({ inputs: { ...SMALL, 'cache-key': 'team-a' } }, async (job, main) => {
          // No entry of its own yet: the newest compatible one, not a hit.
          expect(main.result.outputs['cache-hit']).toBe('false');
          expect(main.result.outputs['cache-key']).toBe(smallKey);
          expect(main.result.stdout).toContain('(fallback key)');
          await step(job, `docker tag ${TINY_IMAGE} setup-dind-test/cached:team-a`, 'change the daemon');
          const post = await finish(job, main, { warnings: 0 });
          keyA = savedKeyOf(post);
          expect(keyA.startsWith(`${smallBase}-team-a+`)).toBe(true);
          expect(keyA).toMatch(KEY_PATTERN);
        });
        expect(server.entries().pop()!.key).toBe(keyA);

        let keyB = '';
        await withJob({ inputs: { ...SMALL, 'cache-key': 'team-b' } }, async (job, main) => {
          expect(main.result.outputs['cache-hit']).toBe('false');
          expect(main.result.outputs['cache-key']).toBe(keyA);
          expect(await imageTags(job)).toContain('setup-dind-test/cached:team-a');
          const before = server.stats();
          const post = await finish(job, main, { warnings: 0 });
          measure('cache-key team-b (fallback restore, saves its own)', main.result, post);
          keyB = savedKeyOf(post);
          expect(keyB.startsWith(`${smallBase}-team-b+`)).toBe(true);
          // The same content: the same fingerprint, under B's own prefix.
          expect(keyB.split('+')[1]).toBe(keyA.split('+')[1]);
          expect(delta(before, server.stats())).toMatchObject({ creates: 1, finalizes: 1 });
        });
        expect(server.entries().pop()!.key).toBe(keyB);

        // A's own entry wins over B's newer one.
        await withJob({ inputs: { ...SMALL, 'cache-key': 'team-a' } }, async (job, main) => {
          expect(main.result.outputs['cache-hit']).toBe('true');
          expect(main.result.outputs['cache-key']).toBe(keyA);
          const post = await finish(job, main, { warnings: 0 });
          expect(post.stdout).toContain('nothing changed');
        });
      }, 240_000);
    });

    describe('fail soft: a warning and a cold daemon that works', () => {
      /** Main's outcome after a restore that failed: one warning, no hit, an empty daemon that works. */
      async function expectColdStart(job: Job, main: Main, fault: CacheFault, seconds: number): Promise<void> {
        const warnings = commands(main.result.stdout, 'warning');
        measurements.push(
          `fault ${fault}: main took ${seconds.toFixed(1)} s; warning: ${warnings.join(' / ').slice(0, 300)}`
        );
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatch(/^Cache restore failed, the daemon starts empty: /);
        expect(main.result.outputs['cache-hit']).toBe('false');
        expect(main.result.outputs['cache-size']).toBe('0');
        expect(main.result.outputs['cache-key']).toBe(`${smallBase}+`);
        await expectEmptyWorkingDaemon(job, main);
        // cache-save: never, so that post uploads no empty daemon over the entries other tests restore.
        const post = await finish(job, main, { warnings: 0 });
        expect(post.stdout).toContain("input 'cache-save' is 'never'");
      }
      const FAULT_INPUTS = { ...SMALL, 'cache-save': 'never' };

      // 'hang' costs the action's 30 s time-out on its lookup: that main runs on a cache server of its
      // own, in the background, while the faults below are tested; its own test checks the outcome.
      let hangServer: CacheServer | undefined;
      let hangJob: Job | undefined;
      let hangMain: Promise<{ result: StepResult; seconds: number }> | undefined;
      beforeAll(async () => {
        hangServer = await startCacheServer({ fault: 'hang' });
        hangJob = newJob({ server: hangServer });
        const started = performance.now();
        hangMain = hangJob
          .runMain({ ...BASE_INPUTS, ...FAULT_INPUTS })
          .then(result => ({ result, seconds: (performance.now() - started) / 1000 }));
        hangMain.catch(() => undefined);
      });
      afterAll(async () => {
        await hangMain?.catch(() => undefined);
        await hangJob?.finish();
        hangJob?.cleanup();
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
          const job = newJob();
          try {
            const before = server.stats();
            server.setFault(fault);
            const started = performance.now();
            const main = await runMain(job, FAULT_INPUTS);
            const seconds = (performance.now() - started) / 1000;
            server.setFault('none');
            const change = delta(before, server.stats());
            expect(change.lookups).toBe(fault === 'error' ? 0 : 1);
            if (downloads) expect(change.downloads).toBeGreaterThanOrEqual(1);
            else expect(change.downloads).toBe(0);
            await expectColdStart(job, main, fault, seconds);
          } finally {
            server.setFault('none');
            await job.finish();
            job.cleanup();
          }
        },
        180_000
      );

      test('restore with fault hang (on a cache server of its own, run alongside the tests above)', async () => {
        const { result, seconds } = await hangMain!;
        const started = sweeper.record(result.state, hangJob!.env.HOME);
        expectExit(result, 0, 'main');
        const main = { result, started: started!, dataDir: `${started!.certDir}-data` };
        expect(seconds).toBeGreaterThanOrEqual(30);
        expect(commands(result.stdout, 'warning').join('\n')).toMatch(/no answer in 30 s/);
        expect(hangServer!.stats().twirpRequests).toBeGreaterThanOrEqual(1);
        expect(hangServer!.stats().downloads).toBe(0);
        await expectColdStart(hangJob!, main, 'hang', seconds);
      }, 180_000);

      test('upload-error in post: post warns, exits 0 and commits nothing', async () => {
        await withJob({ inputs: SMALL }, async (job, main) => {
          expect(main.result.outputs['cache-hit']).toBe('true');
          await step(job, `docker tag ${TINY_IMAGE} setup-dind-test/cached:upload-error`, 'change the daemon');
          const before = server.stats();
          const entries = server.entries();
          server.setFault('upload-error');
          const post = await finish(job, main, { warnings: 1 });
          server.setFault('none');
          expect(commands(post.stdout, 'warning')[0]).toMatch(/^Cache save failed \(the job is not affected\): /);
          expect(server.entries()).toEqual(entries);
          expect(delta(before, server.stats())).toMatchObject({ finalizes: 0, uploadedBytes: 0 });
          expect(summaryRows(post.summary).Cache).toMatch(/^not saved: failed: /);
          measurements.push(`upload-error: post warning: ${commands(post.stdout, 'warning')[0].slice(0, 300)}`);
        });
      });

      // A failed upload leaves its key reserved (the service keeps it for a day) and keys are
      // content-addressed: the same content must still be saved, under a variant of the key.
      let afterUploadError: { saved: boolean; cache: string } | undefined;
      test('after a failed upload, a later job with the same content runs its post cleanly', async () => {
        await withJob({ inputs: SMALL }, async (job, main) => {
          expect(main.result.outputs['cache-key']).toBe(smallKey);
          await step(
            job,
            `docker tag ${TINY_IMAGE} setup-dind-test/cached:upload-error`,
            'the same change as the failed job'
          );
          const entries = server.entries();
          const post = await finish(job, main, { warnings: 0 });
          afterUploadError = {
            saved: server.entries().length === entries.length + 1,
            cache: summaryRows(post.summary).Cache
          };
          measurements.push(`after upload-error, same content: ${afterUploadError.cache}`);
        });
      });
      test('after a failed upload, a later job with the same content saves it', () => {
        expect(afterUploadError).toBeDefined();
        expect(afterUploadError!.cache).not.toMatch(/exists already/);
        expect(afterUploadError!.saved).toBe(true);
      });
    });

    describe('post leaves nothing behind', () => {
      test('main that fails (image missing) after the cache was prepared: post removes the data directory', async () => {
        const job = newJob();
        try {
          const result = await job.runMain({ ...BASE_INPUTS, ...SMALL, image: 'setup-dind-test/absent:never' });
          const started = sweeper.record(result.state, job.env.HOME);
          expectExit(result, 1, 'main');
          expect(started).toBeDefined();
          const [post] = await job.finish();
          expectExit(post, 0, 'post');
          // Whatever main got to make (certificates, data directory) is gone, and stays gone.
          expect(fs.readdirSync(job.temp)).toEqual([]);
          await new Promise(resolve => setTimeout(resolve, 2000));
          expect(fs.readdirSync(job.temp)).toEqual([]);
          expect(await labelled(started!.id)).toEqual({ containers: [], networks: [], volumes: [] });
        } finally {
          await job.finish();
          job.cleanup();
        }
      });

      test('a daemon that died before post: nothing is saved and everything is removed', async () => {
        await withJob({ inputs: SMALL }, async (job, main) => {
          await step(job, `docker tag ${TINY_IMAGE} setup-dind-test/cached:died`, 'change the daemon');
          await step(
            job,
            `${OUTER_DOCKER} kill ${main.result.outputs['container-id']} >/dev/null`,
            'kill the dind container'
          );
          const before = server.stats();
          const post = await finish(job, main, { warnings: 0 });
          expect(post.stdout).toContain('Not saving the cache: the daemon was not running at the end of the job');
          expect(delta(before, server.stats())).toMatchObject({ ...UNCHANGED, twirpRequests: 0 });
        });
      });
    });

    test('cache-max-size smaller than the archive: post warns with the size and saves nothing', async () => {
      await withJob({ inputs: { ...SMALL, 'cache-key': 'limited', 'cache-max-size': '64k' } }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('false');
        expect(Number(main.result.outputs['cache-size'])).toBeGreaterThan(64 * 1024);
        const before = server.stats();
        const entries = server.entries();
        const post = await finish(job, main, { warnings: 1 });
        measure('cache-max-size 64k', main.result, post);
        const [warning] = commands(post.stdout, 'warning');
        expect(warning).toMatch(
          /^Not saving the cache: the daemon's \d+(\.\d+)? (B|KiB|MiB|GiB) of data compress to more than 'cache-max-size' \(64(\.0+)? KiB\)/
        );
        expect(server.entries()).toEqual(entries);
        expect(delta(before, server.stats())).toMatchObject({ finalizes: 0 });
      });
    });

    // The save refused for its size keeps its key reserved, and cache-max-size is not part of the key:
    // following the warning's advice ("Raise 'cache-max-size'") must still save the same content.
    let afterSizeLimit: { saved: boolean; cache: string } | undefined;
    test('after a save refused for its size, a job with the same content and the default cache-max-size runs its post cleanly', async () => {
      await withJob({ inputs: { ...SMALL, 'cache-key': 'limited' } }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('false');
        const entries = server.entries();
        const post = await finish(job, main, { warnings: 0 });
        afterSizeLimit = {
          saved: server.entries().length === entries.length + 1,
          cache: summaryRows(post.summary).Cache
        };
        measurements.push(`after the size limit, default limit, same content: ${afterSizeLimit.cache}`);
      });
    });
    test('after a save refused for its size, raising cache-max-size saves the same content', () => {
      expect(afterSizeLimit).toBeDefined();
      expect(afterSizeLimit!.cache).not.toMatch(/exists already/);
      expect(afterSizeLimit!.saved).toBe(true);
    });
  });

  // Images a job stops using must not ride along forever. The job's use is read from a recorder of the
  // daemon's events (its own history keeps only the last 256) and from the layers images share.
  describe('unused images (a namespace of its own: an explicit default feature in daemon-config)', () => {
    const EVICT = { 'daemon-config': '{"storage-driver":"overlay2","features":{"containerd-snapshotter":false}}' };
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
      await withJob({ inputs: EVICT }, async (job, main) => {
        expect(main.result.outputs['cache-hit']).toBe('false');
        await step(
          job,
          [
            load(TINY_IMAGE),
            build(BASE, TINY_IMAGE, 'base'),
            build(CHILD, BASE, 'child'),
            build(UNUSED, TINY_IMAGE, 'unused')
          ].join('\n'),
          'load and build'
        );
        const post = await finish(job, main, { warnings: 0 });
        savedKeyOf(post);
        expect(summaryRows(post.summary)['Unused images']).toBeUndefined();
      });

      await withJob({ inputs: { ...EVICT, 'cache-evict-after': '0' } }, async (job, main) => {
        expect(await imageTags(job)).toEqual([BASE, CHILD, UNUSED, TINY_IMAGE].sort());
        const ran = await step(
          job,
          `docker run --rm ${CHILD} /ldconfig --version\n${FLOOD}`,
          'run one container, then flood the event history'
        );
        expect(ran.stdout).toMatch(/ldconfig \(Debian GLIBC/);
        const before = server.stats();
        const post = await finish(job, main, { warnings: 0 });
        expect(post.stdout).toContain(`Dropped from the cache, not used by this job: ${UNUSED}`);
        expect(summaryRows(post.summary)['Unused images']).toBe(`dropped 1, not used by this job: ${UNUSED}`);
        savedKeyOf(post);
        expect(delta(before, server.stats())).toMatchObject({ creates: 1, finalizes: 1 });
      });

      // The default (7d): unused since the last job, but within the week.
      await withJob({ inputs: EVICT }, async (job, main) => {
        expect(await imageTags(job)).toEqual([BASE, CHILD, TINY_IMAGE].sort());
        const before = server.stats();
        const post = await finish(job, main, { warnings: 0 });
        expect(post.stdout).toContain('nothing changed');
        expect(summaryRows(post.summary)['Unused images']).toBeUndefined();
        expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
      });

      // Without a full record of the job's events, nothing is dropped, whatever the input says.
      await withJob({ inputs: { ...EVICT, 'cache-evict-after': '0' } }, async (job, main) => {
        await step(
          job,
          `${OUTER_DOCKER} exec ${main.result.outputs['container-id']} sh -c 'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline)" in "docker -H unix:///var/run/docker.sock events"*) kill ${'$'}{p#/proc/};; esac; done'`,
          'stop the recorder'
        );
        const before = server.stats();
        const post = await finish(job, main, { warnings: 1 });
        const [warning] = commands(post.stdout, 'warning');
        expect(warning).toMatch(
          /^Not dropping unused images from the cache: the image usage recorder stopped \(exit code \d+\)/
        );
        expect(post.stdout).toContain('nothing changed');
        expect(delta(before, server.stats())).toMatchObject(UNCHANGED);
      });
    }, 300_000);
  });

  test(`as ${NOSUDO} (no root, no sudo): the cache is off with a warning naming sudo; the daemon works`, async () => {
    const before = server.stats();
    await withJob({ user: NOSUDO }, async (job, main) => {
      const warnings = commands(main.result.stdout, 'warning');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^Cache off: /);
      expect(warnings[0]).toMatch(/sudo/);
      expect(main.result.outputs).toMatchObject({ 'cache-hit': 'false', 'cache-size': '0' });
      expect(fs.existsSync(main.dataDir)).toBe(false);
      expect(await dataMounts(main)).toEqual([{ Type: 'volume' }]);
      const [volume] = await containerVolumes(main.result.outputs['container-id']);
      await expectEmptyWorkingDaemonWithoutDataDir(job);
      await finish(job, main, { warnings: 0 });
      expect(await volumeExists(volume)).toBe(false);
    });
    expect(delta(before, server.stats())).toMatchObject({ lookups: 0, twirpRequests: 0, creates: 0 });
  });
});
