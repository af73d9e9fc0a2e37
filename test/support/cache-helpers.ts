// What the cache suites share: the images they put into daemons, commands in a dind container, and
// readings of a daemon's disk and of post's summary.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defined } from './defined';
import { buildImage, NESTED_BASE_IMAGE, OUTER_SOCKET, run, type Exec } from './engine';
import { buildTinyImage, TINY_IMAGE } from './images';
import { loadFromOuter, summaryRows, type MainStep, type TestJob } from './job';
import { account } from './runner';

/** Built on the outer engine in beforeAll: the tools the test images need (setcap, setfattr). */
export const TOOLS_IMAGE = 'setup-dind-test/tools:trixie';

/** A bash script (set -euo pipefail, the C locale) against the outer engine; never throws for its exit code. */
function sh(script: string, args: string[] = [], timeoutMs = 120_000): Promise<Exec> {
  return run('bash', ['-c', `set -euo pipefail\nexport LC_ALL=C\n${script}`, 'bash', ...args], {
    timeoutMs,
    maxBuffer: 256 * 1024 * 1024
  });
}

export async function shOk(script: string, args: string[] = [], timeoutMs?: number): Promise<string> {
  const result = await sh(script, args, timeoutMs);
  if (result.code !== 0) throw new Error(`script failed (${result.code}): ${result.stderr.trim()}\n${script}`);
  return result.stdout;
}

/** A command in the dind container, as root there (from the test, through the runner's engine). */
export function inDind(main: MainStep, script: string): Promise<string> {
  return shOk(`docker -H ${OUTER_SOCKET} exec -i "$1" sh -ec "$2"`, [main.outputs['container-id'], script]);
}

/** The tools image (apt from the Debian mirror: only the first build takes time) and the tiny image. */
export async function buildOuterImages(): Promise<void> {
  await buildImage(
    TOOLS_IMAGE,
    `FROM ${NESTED_BASE_IMAGE}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcap2-bin attr && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n`
  );
  await buildTinyImage();
}

/** What the inner daemon holds: `repo:tag` of every image, sorted. */
export async function imageTags(job: TestJob): Promise<string[]> {
  const listed = await job.step(`docker images --format '{{.Repository}}:{{.Tag}}'`, 'docker images');
  return listed.stdout.split('\n').filter(Boolean).sort();
}

export async function expectLoadAndRun(job: TestJob): Promise<void> {
  const ran = await job.step(
    `${loadFromOuter(TINY_IMAGE)}\ndocker run --rm ${TINY_IMAGE} /ldconfig --version`,
    'load and run a nested container'
  );
  expect(ran.stdout).toMatch(/ldconfig \(Debian GLIBC/);
}

/** The daemon started empty and works. */
export async function expectEmptyWorkingDaemon(job: TestJob): Promise<void> {
  const info = await job.step(`docker info --format '{{.Images}} {{.Containers}} {{.Driver}}'`, 'docker info');
  expect(info.stdout.trim()).toBe('0 0 overlay2');
  await expectLoadAndRun(job);
}

/** The post step's summary line about the cache. */
export function cacheFact(post: { summary: string }): string {
  return summaryRows(post.summary).Cache ?? '';
}

export function savedKeyOf(post: { summary: string }): string {
  const saved = / as (\S+)$/.exec(cacheFact(post));
  if (!/^saved /.test(cacheFact(post)) || !saved) throw new Error(`post did not save: ${cacheFact(post)}`);
  return saved[1];
}

/** Bytes uploaded and reused, from post's summary ("saved 1.2 MiB in 9 chunks: 1.0 MiB uploaded, 0.2 MiB reused"). */
export function uploadSummary(post: { summary: string }): { uploaded: string; reused: string } {
  const match = /: (\S+ \S+) uploaded, (\S+ \S+) reused/.exec(cacheFact(post));
  return { uploaded: match?.[1] ?? '', reused: match?.[2] ?? '' };
}

/**
 * The image store as the daemon has it on disk (inside the dind container, where the filesystem is
 * mounted): every entry under overlay2/ and image/ with its metadata and content digest, and every xattr
 * (trusted.overlay.opaque, security.capability, user.*). Only while no container exists.
 */
export function diskManifest(main: MainStep): Promise<string> {
  return inDind(
    main,
    `cd /var/lib/docker
export LC_ALL=C
walk() { find overlay2 image "$@" -print0 | sort -z; }
echo '## directories'; walk -type d | xargs -0 stat -c '%n|%a|%u:%g|%h'
echo '## other entries'; walk ! -type d | xargs -0 stat -c '%n|%a|%u:%g|%h|%s|%F|%t:%T|%N'
echo '## sha256'; walk -type f | xargs -0 sha256sum
echo '## xattrs'; walk | xargs -0 getfattr -h -d -m - 2>/dev/null || true`
  );
}

/** What a cache test's main gets on top of the job's defaults: the cache on, no context. */
export const CACHE_INPUTS = { cache: 'true', context: '' };

/** The data directory on the runner: the job's user's, and nothing in it but regular files. */
export async function expectDataDirOfUser(main: MainStep, user: string | undefined): Promise<void> {
  // process.getuid is missing only on Windows, where these tests do not run.
  const uid = user ? account(user).uid : defined(process.getuid, 'process.getuid')();
  const image = path.join(main.dataDir, 'docker.img');
  expect(fs.statSync(main.dataDir).uid).toBe(uid);
  expect(fs.statSync(image).uid).toBe(uid);
  expect(fs.statSync(image).isFile()).toBe(true);
  const special = await shOk(`find "$1" ! -type f ! -type d | wc -l`, [main.dataDir]);
  expect(special.trim()).toBe('0');
}
