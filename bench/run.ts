// npm run bench: setup-dind against its alternatives on the real Docker engine, side by side in one
// run (every repetition rotates the order of the methods, and the sizes go up and down in turn), medians
// of several repetitions. See bench/README.md for the scenarios and the options:
//
//   BENCH_REPS=3  BENCH_SIZES=250,500,1000,2000  BENCH_QUICK=1 (smoke run: tiny sizes, 1 repetition)
//
// Writes bench/results.md, bench/results.json and bench/restore-scaling.svg (BENCH_QUICK: the same
// names with -quick), and removes everything it made (containers, volumes, networks, images, the
// registry process, temp dirs), also when it fails or is interrupted.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { archiveScript, extractScript } from '../src/archive';
import * as tls from '../src/tls';
import { startCacheServer, type CacheServer } from '../test/support/cache-server';
import { BenchJob, crashes, jobRoot, phase, useRunner, type TimedStep } from './lib/action';
import { Cleanup } from './lib/cleanup';
import {
  BASE_IMAGE,
  CATALOG,
  MB,
  QUICK_CATALOG,
  imageRef,
  imageSize,
  planByEstimates,
  removeImage,
  startBuilds,
  type BuiltImage
} from './lib/content';
import { floorStart } from './lib/floor';
import type { Config, Failure, LevelInfo, Machine, RunRecord, Sample, Scenario } from './lib/model';
import { docker, dockerOut, now, run, sh } from './lib/proc';
import { bridgeGateway, ensureDockerRegistry, freePort, startRegistry, type Registry } from './lib/registry';
import { writeReports } from './lib/report';
import { rotate } from './lib/stats';

const REPO_ROOT = path.resolve(__dirname, '..');
const TEST_IMAGE = 'setup-dind-test/dind:trixie';
const BENCH_LABEL = 'io.github.setup-dind.bench';
const TWIRP = 'twirp/github.actions.results.api.v1.CacheService';
/** Scenario 2d's inner daemon bridge: anywhere but the host's docker0 subnet, where the registry listens. */
const INNER_BRIDGE = '10.254.254.1/24';
/** Skip a method for the rest of the run after this many failures. */
const MAX_FAILURES = 2;

function config(): Config {
  const quick = /^(1|true|yes)$/i.test(process.env.BENCH_QUICK ?? '');
  const reps = Number(process.env.BENCH_REPS ?? (quick ? 1 : 3));
  if (!Number.isInteger(reps) || reps < 1)
    throw new Error(`BENCH_REPS must be a positive integer, got '${process.env.BENCH_REPS}'`);
  const sizesMB = (process.env.BENCH_SIZES ?? (quick ? '125,135' : '250,500,1000,2000'))
    .split(',')
    .map(s => Number(s.trim()))
    .sort((a, b) => a - b);
  if (sizesMB.some(s => !(s > 0)))
    throw new Error(`BENCH_SIZES must be a comma-separated list of sizes in MB, got '${process.env.BENCH_SIZES}'`);
  const warmTargetMB = sizesMB.reduce((best, s) => (Math.abs(s - 1000) < Math.abs(best - 1000) ? s : best), sizesMB[0]);
  return {
    reps,
    s1Reps: quick ? 1 : Math.max(reps, 5),
    sizesMB,
    warmTargetMB,
    quick,
    keepImages: /^(1|true|yes)$/i.test(process.env.BENCH_KEEP_IMAGES ?? '')
  };
}

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const cleanup = new Cleanup();
const access: 'root' | 'sudo' = process.getuid?.() === 0 ? 'root' : 'sudo';
const asRoot = access === 'sudo' ? 'sudo -n ' : '';

let record: RunRecord;
let tempDir = '';
let benchHome = '';
let image = '';
const skipped = new Map<string, number>();

function log(message: string): void {
  const elapsed = record ? ((Date.now() - Date.parse(record.startedAt)) / 1000).toFixed(0).padStart(5) : '';
  console.log(`[${elapsed} s] ${message}`);
}

async function setupStep<T>(name: string, run: () => Promise<T>): Promise<T> {
  const started = now();
  log(`${name}…`);
  const result = await run();
  record.setup[name] = now() - started;
  return result;
}

async function removeTree(dir: string): Promise<void> {
  await sh(`${asRoot}rm -rf -- "$1"`, { args: [dir] });
}

/** Between measurements: flush what the previous one wrote, so that its writeback does not land in the next. */
async function settle(): Promise<void> {
  await run('sync', []);
}

function addSample(sample: Omit<Sample, 'detail'> & { detail?: Sample['detail'] }): void {
  record.samples.push({ ...sample, detail: sample.detail ?? {} });
}

/** Runs one measurement; a failure is recorded (and the method skipped once it failed MAX_FAILURES times). */
async function measure(
  scenario: Scenario,
  method: string,
  rep: number,
  order: number,
  sizeMB: number | undefined,
  body: () => Promise<{ seconds: number; detail?: Sample['detail'] }>
): Promise<void> {
  const id = `${scenario}/${method}/${sizeMB ?? ''}`;
  if ((skipped.get(id) ?? 0) >= MAX_FAILURES) return;
  try {
    const { seconds, detail } = await body();
    addSample({ scenario, method, sizeMB, rep, order, seconds, detail });
    log(`  ${scenario} ${method}${sizeMB ? ` @${sizeMB} MB` : ''} rep ${rep + 1}: ${seconds.toFixed(2)} s`);
  } catch (error) {
    const message = (error as Error).message;
    record.failures.push({ scenario, method, sizeMB, rep, error: message } satisfies Failure);
    skipped.set(id, (skipped.get(id) ?? 0) + 1);
    log(`  ${scenario} ${method}${sizeMB ? ` @${sizeMB} MB` : ''} rep ${rep + 1} FAILED: ${message}`);
  }
  await settle();
}

/** A job of the action; removed (post, labelled leftovers, directories) whatever happens. */
async function withJob<T>(name: string, env: Record<string, string>, body: (job: BenchJob) => Promise<T>): Promise<T> {
  const job = new BenchJob(jobRoot(tempDir, name), { HOME: benchHome, ...env });
  const dispose = cleanup.add(`remove job ${name}`, () => job.dispose());
  try {
    return await body(job);
  } finally {
    await dispose();
  }
}

// ---------------------------------------------------------------- cache service helpers

interface Entry {
  key: string;
  url: string;
}

/** What the action's lookup does for a level: the newest entry under its key prefix. */
async function lookup(server: CacheServer, level: LevelInfo): Promise<Entry> {
  const response = await fetch(`${server.url}${TWIRP}/GetCacheEntryDownloadURL`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.env.ACTIONS_RUNTIME_TOKEN}` },
    body: JSON.stringify({ key: level.prefix, restore_keys: [level.prefix], version: level.version })
  });
  const body = (await response.json()) as { ok?: boolean; signed_download_url?: string; matched_key?: string };
  if (!body.ok || !body.signed_download_url) throw new Error(`no cache entry under ${level.prefix}`);
  return { key: body.matched_key ?? '', url: body.signed_download_url };
}

const CURL = `curl --silent --show-error --fail --noproxy '*'`;

function tarExtractPart(): string {
  const script = extractScript(access);
  const tar = script.slice(script.indexOf('|') + 1).trim();
  if (!/^(sudo -n )?tar /.test(tar)) throw new Error(`unexpected extract script: ${script}`);
  return tar;
}

// ---------------------------------------------------------------- preparation

async function machineInfo(): Promise<Machine> {
  const version = async (command: string, args: string[]) =>
    (await run(command, args, { allowFail: true })).stdout.split('\n')[0].trim() ||
    (await run(command, args, { allowFail: true })).stderr.split('\n')[0].trim();
  const [source, size, avail] = (
    await sh(`df -h --output=source,size,avail "$1" | tail -1`, { args: [tempDir] })
  ).stdout
    .trim()
    .split(/\s+/);
  const df = `${source}, ${size}, ${avail} free`;
  const fsType = (
    await sh(`findmnt --noheadings --output FSTYPE --target "$1" || stat -f -c %T "$1"`, { args: [tempDir] })
  ).stdout.trim();
  const git = (
    await sh(`git -C "$1" rev-parse --short HEAD; git -C "$1" status --porcelain -- src dist | wc -l`, {
      args: [REPO_ROOT],
      allowFail: true
    })
  ).stdout
    .trim()
    .split('\n');
  const distMtime = fs.statSync(path.join(REPO_ROOT, 'dist/main/index.js')).mtime.toISOString();
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    disk: df,
    filesystem: fsType,
    tempDir,
    engine: await dockerOut(['version', '--format', 'server {{.Server.Version}}, client {{.Client.Version}}']),
    dindImage: `${TEST_IMAGE} (run as ${image})`,
    dindImageId: await dockerOut(['image', 'inspect', '--format', '{{.Id}}', image]),
    tools: {
      node: process.version,
      zstd: await version('zstd', ['--version']),
      tar: await version('tar', ['--version']),
      curl: await version('curl', ['--version']),
      openssl: await version('openssl', ['version'])
    },
    git: `${git[0] ?? '?'}${Number(git[1]) > 0 ? ` (+${git[1]} uncommitted changes in src/ dist/)` : ''}`,
    distBuilt: distMtime
  };
}

/**
 * Others may rebuild dist/ while the benchmark runs (a main of the old build and a post of the new one
 * would not even agree on their state): every job runs a copy taken at the start, with a copy of the
 * runner emulation, whose REPO_ROOT is then the copy.
 */
async function snapshotAction(): Promise<void> {
  const root = path.join(tempDir, 'action');
  fs.mkdirSync(path.join(root, 'test', 'support'), { recursive: true });
  fs.cpSync(path.join(REPO_ROOT, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(REPO_ROOT, 'action.yml'), path.join(root, 'action.yml'));
  fs.copyFileSync(path.join(REPO_ROOT, 'test/support/runner.ts'), path.join(root, 'test/support/runner.ts'));
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const runner = require(path.join(root, 'test/support/runner.ts')) as typeof import('../test/support/runner');
  if (runner.REPO_ROOT !== root)
    throw new Error(`the runner copy resolves its root to ${runner.REPO_ROOT}, not ${root}`);
  useRunner(runner.Job);
  const hash = (
    await sh(`cat "$1"/dist/main/index.js "$1"/dist/post/index.js | sha256sum | cut -c1-12`, { args: [root] })
  ).stdout.trim();
  record.notes.push(`The action ran from a copy of dist/ taken at the start (main + post bundles sha256 ${hash}).`);
}

async function prepareImage(): Promise<void> {
  const present = await docker(['image', 'inspect', TEST_IMAGE], { allowFail: true });
  if (present.code !== 0) {
    log(`${TEST_IMAGE} is missing: building it with test/dind-image/build.sh`);
    await run('bash', [path.join(REPO_ROOT, 'test/dind-image/build.sh')], { timeoutMs: 20 * 60_000 });
  }
  // Our own tag on the same image: the tests may rebuild theirs meanwhile, which must not change what we run.
  image = `setup-dind-bench/dind:${runId}`;
  await docker(['tag', TEST_IMAGE, image]);
  cleanup.add(`remove tag ${image}`, () => removeImage(image));
}

interface Content {
  /** Resolves when the image is built. */
  images: Map<string, Promise<BuiltImage>>;
}

/** Plans the levels from the catalog's estimates and starts building; returns at once. */
async function startContent(cfg: Config): Promise<Content> {
  const baseBytes = await imageSize(BASE_IMAGE);
  const catalog = cfg.quick ? QUICK_CATALOG : CATALOG;
  const plan = planByEstimates(cfg.sizesMB, catalog, baseBytes);
  if (plan.length < cfg.sizesMB.length)
    record.notes.push(
      `Only ${plan.length} levels could be made from the catalog for sizes ${cfg.sizesMB.join(', ')} MB.`
    );
  const defs = plan.length > 0 ? plan[plan.length - 1].defs : [];
  const started = now();
  const builds = startBuilds(defs, {
    runId,
    label: BENCH_LABEL,
    workDir: tempDir,
    startedAt: new Date(record.startedAt),
    onBuilt: ref => {
      if (!cfg.keepImages) cleanup.add(`remove image ${ref}`, () => removeImage(ref));
    }
  });
  // Before anything is removed: no build may still be running (it would make images after cleanup).
  cleanup.first('stop the content builds', () => builds.cancel());
  const promises = builds.promises;
  const images = new Map<string, Promise<BuiltImage>>();
  defs.forEach((def, i) => {
    const promise = promises[i].then(built => {
      record.setup[
        `build ${def.name} (+${(built.addedBytes / MB).toFixed(0)} MB; done ${(now() - started).toFixed(0)} s after the first build started)`
      ] = built.buildSeconds;
      return built;
    });
    promise.catch(() => undefined);
    images.set(imageRef(def, runId), promise);
  });
  for (const level of plan) {
    const estimatedBytes = baseBytes + level.defs.reduce((sum, def) => sum + def.estMB * MB, 0);
    record.levels.push({
      targetMB: level.targetMB,
      images: level.defs.map(d => imageRef(d, runId)),
      added: level.added.map(d => imageRef(d, runId)),
      estimatedBytes
    });
    log(
      `  level ${level.targetMB} MB: ${level.defs.map(d => d.name).join(' + ')} on ${BASE_IMAGE} ≈ ${(estimatedBytes / MB).toFixed(0)} MB`
    );
  }
  return { images };
}

/** Waits for a level's images; records the level's size from the built images. */
async function levelImages(
  content: Content,
  level: LevelInfo,
  which: 'images' | 'added' = 'images'
): Promise<BuiltImage[]> {
  const built = await Promise.all(level[which].map(ref => content.images.get(ref)!));
  if (which === 'images')
    level.estimatedBytes = (await imageSize(BASE_IMAGE)) + built.reduce((sum, b) => sum + b.addedBytes, 0);
  return built;
}

const WARM_INPUTS = (level: LevelInfo) => ({ image, pull: 'never', cache: 'true', 'cache-key': `L${level.targetMB}` });
const COLD_INPUTS = () => ({ image, pull: 'never', cache: 'false' });

/**
 * Seeds each level's cache the way CI would: a job restores the previous level (its cache-key has no
 * entry yet, so the action falls back to the newest compatible one), loads the images the level adds
 * from the outer engine, and its post saves. Then keeps the level's archive on disk for the breakdown.
 */
async function seed(
  server: CacheServer,
  content: Content,
  level: LevelInfo,
  artifacts: Map<number, { blob: string; tar: string }>
): Promise<void> {
  await levelImages(content, level);
  const started = now();
  const hasEntry = () => server.entries().some(e => e.key.includes(`-L${level.targetMB}+`));
  if (!hasEntry())
    await withJob(`seed-${level.targetMB}`, server.env, async job => {
      const main = await job.main(WARM_INPUTS(level));
      const load = await job.step(
        `docker -H unix:///var/run/docker.sock save ${level.added.join(' ')} | docker load --quiet >/dev/null`
      );
      const before = server.stats();
      const post = await job.post();
      const saved = post.facts.Cache ?? '';
      if (!saved.startsWith('saved'))
        throw new Error(`seeding ${level.targetMB} MB: post did not save (${saved || 'no cache fact'})`);
      addSample({
        scenario: 'seed',
        method: 'seed',
        sizeMB: level.targetMB,
        rep: 0,
        order: 0,
        seconds: main.seconds + load.seconds + post.seconds,
        detail: {
          mainSeconds: main.seconds,
          loadSeconds: load.seconds,
          postSeconds: post.seconds,
          saveSeconds: phase(post, 'Save the cache'),
          uploadedBytes: server.stats().uploadedBytes - before.uploadedBytes,
          ...phaseDetail(post, 'post ')
        }
      });
    });
  const entry = server
    .entries()
    .filter(e => e.key.includes(`-L${level.targetMB}+`))
    .pop();
  if (!entry) throw new Error(`no cache entry for level ${level.targetMB} MB after seeding`);
  level.key = entry.key;
  level.prefix = `${entry.key.slice(0, entry.key.indexOf('+'))}+`;
  level.version = entry.version;
  level.compressedBytes = entry.size;
  const blob = path.join(tempDir, `level-${level.targetMB}.tar.zst`);
  const tar = path.join(tempDir, `level-${level.targetMB}.tar`);
  const { url } = await lookup(server, level);
  await sh(`${CURL} -o "$2" "$1" && zstd --decompress --quiet --force -o "$3" "$2"`, { args: [url, blob, tar] });
  level.dataBytes = fs.statSync(tar).size;
  artifacts.set(level.targetMB, { blob, tar });
  const seeded =
    record.samples.find(sample => sample.scenario === 'seed' && sample.sizeMB === level.targetMB)?.detail ?? {};
  const part = (name: string) => `${Number(seeded[name]).toFixed(0)} s`;
  log(
    `  level ${level.targetMB} MB seeded in ${(now() - started).toFixed(0)} s (main ${part('mainSeconds')}, load ${part('loadSeconds')}, post ${part('postSeconds')} of which save ${part('saveSeconds')}): ` +
      `${(level.dataBytes / MB).toFixed(0)} MB of data, ${(level.compressedBytes / MB).toFixed(0)} MB compressed`
  );
}

interface RegistrySetup {
  registry: Registry;
  refs: string[];
  gateway: string;
}

/** Pushes the warm level's images to a local docker-registry, then serves them where a dind daemon can reach. */
async function prepareRegistry(level: LevelInfo): Promise<RegistrySetup> {
  const version = await ensureDockerRegistry();
  if (record.machine) record.machine.tools['docker-registry'] = version;
  const storage = path.join(tempDir, 'registry');
  const stopAt = (registry: Registry) =>
    cleanup.add(`stop docker-registry (pid ${registry.pid})`, () => registry.stop());
  // The outer engine pushes over plain HTTP only to loopback (insecure by default there)…
  const pushPort = await freePort('127.0.0.1');
  const pushRegistry = await startRegistry(`127.0.0.1:${pushPort}`, storage, tempDir, () => undefined);
  const stopPush = stopAt(pushRegistry);
  // setup-dind-bench/<name>:<run id> → <registry>/setup-dind-bench/<name>:<run id>
  const names = level.images.map(ref => ref.replace(/^setup-dind-bench\//, ''));
  for (const [i, ref] of level.images.entries()) {
    const pushRef = `127.0.0.1:${pushPort}/setup-dind-bench/${names[i]}`;
    await docker(['tag', ref, pushRef]);
    try {
      await docker(['push', '--quiet', pushRef], { timeoutMs: 30 * 60_000 });
    } finally {
      await removeImage(pushRef);
    }
  }
  await stopPush();
  record.setup['registry bytes'] = Number((await sh(`du -sb -- "$1" | cut -f1`, { args: [storage] })).stdout.trim());
  // …while a dind daemon reaches the host at its bridge address, where loopback is the container itself.
  const gateway = await bridgeGateway();
  const pullPort = await freePort(gateway);
  const registry = await startRegistry(`${gateway}:${pullPort}`, storage, tempDir, () => undefined);
  stopAt(registry);
  return { registry, gateway, refs: names.map(name => `${registry.addr}/setup-dind-bench/${name}`) };
}

// ---------------------------------------------------------------- the measurements

async function scenario1(cfg: Config): Promise<void> {
  const methods = ['action-cold', 'floor', 'official-tls', 'action-tls'];
  for (let rep = 0; rep < cfg.s1Reps; rep++) {
    for (const [order, method] of rotate(methods, rep).entries()) {
      await measure('S1', method, rep, order, undefined, async () => {
        switch (method) {
          case 'action-cold':
            return withJob('cold', {}, async job => {
              const main = await job.main(COLD_INPUTS());
              await job.post();
              if (record.machine && !record.machine.innerDocker)
                record.machine.innerDocker = main.result.outputs.version;
              return { seconds: main.seconds, detail: phaseDetail(main) };
            });
          case 'floor': {
            let dispose: (() => Promise<void>) | undefined;
            try {
              const result = await floorStart({
                image,
                workDir: tempDir,
                label: BENCH_LABEL,
                runId,
                onCreated: id =>
                  (dispose = cleanup.add(
                    `remove floor container ${id.slice(0, 12)}`,
                    async () => void (await docker(['rm', '--force', '--volumes', id], { allowFail: true }))
                  ))
              });
              return { seconds: result.seconds };
            } finally {
              await dispose?.();
            }
          }
          case 'official-tls': {
            const dir = fs.mkdtempSync(path.join(tempDir, 'tls-'));
            try {
              const result = await run('sh', [path.join(__dirname, 'official-tls.sh'), dir]);
              return { seconds: result.seconds };
            } finally {
              fs.rmSync(dir, { recursive: true, force: true });
            }
          }
          default:
            return actionCertificates();
        }
      });
    }
  }
}

/** The action's own certificate code (src/tls.ts), in process, whichever of its API generations is there. */
async function actionCertificates(): Promise<{ seconds: number }> {
  const api = tls as unknown as {
    createAuthority?: (hours: number) => Promise<{
      issueServer(sans: { dns: string[]; ip: string[] }): Promise<unknown>;
      issueClient(): Promise<unknown>;
    }>;
    generateTlsMaterial?: (sans: { dns: string[]; ip: string[] }, hours: number) => Promise<unknown>;
  };
  const sans = { dns: ['localhost', 'dind'], ip: ['127.0.0.1', '::1'] };
  const started = now();
  if (api.createAuthority) {
    const ca = await api.createAuthority(121);
    await Promise.all([ca.issueServer(sans), ca.issueClient()]);
  } else if (api.generateTlsMaterial) {
    await api.generateTlsMaterial(sans, 121);
  } else {
    throw new Error('src/tls.ts exports neither createAuthority nor generateTlsMaterial');
  }
  return { seconds: now() - started };
}

function phaseDetail(step: TimedStep, prefix = ''): Sample['detail'] {
  const detail: Sample['detail'] = {};
  for (const [title, seconds] of Object.entries(step.phases))
    detail[`${prefix}phase: ${title.split(image).join('<image>')}`] = seconds;
  const phases = Object.values(step.phases).reduce((s, v) => s + v, 0);
  detail[`${prefix}outside phases (node start-up, input parsing, exit)`] = step.seconds - phases;
  return detail;
}

interface Warm {
  server: CacheServer;
  artifacts: Map<number, { blob: string; tar: string }>;
  warm: LevelInfo;
  saveTar?: string;
  registry?: RegistrySetup;
  tree?: string;
}

async function dataMethod(
  method: string,
  level: LevelInfo,
  w: Warm,
  rep: number
): Promise<{ seconds: number; detail?: Sample['detail'] }> {
  const { server } = w;
  const files = w.artifacts.get(level.targetMB)!;
  switch (method) {
    case 'action-warm':
      return withJob(`warm-${level.targetMB}`, server.env, async job => {
        const main = await job.main(WARM_INPUTS(level));
        if (main.result.outputs['cache-hit'] !== 'true')
          throw new Error(`no cache hit: ${main.facts['Cache restored'] ?? 'no restore'}`);
        const restored = /in ([\d.]+) s/.exec(main.facts['Cache restored'] ?? '');
        const before = server.stats();
        const post = await job.post();
        const after = server.stats();
        const uploaded = after.uploadedBytes - before.uploadedBytes;
        return {
          seconds: main.seconds,
          detail: {
            ...phaseDetail(main),
            restoreSeconds: restored ? Number(restored[1]) : NaN,
            daemonStartSeconds: phase(main, 'Start the daemon'),
            restoredBytes: Number(main.result.outputs['cache-size']),
            ...phaseDetail(post, 'post '),
            postSeconds: post.seconds,
            postUploadedBytes: uploaded,
            postReservations: after.creates - before.creates,
            postDecision: post.facts.Cache ?? ''
          }
        };
      });
    case 'raw-pipeline': {
      const { url } = await lookup(server, level);
      const dir = fs.mkdtempSync(path.join(tempDir, 'raw-'));
      try {
        const result = await sh(`${CURL} "$2" | ${extractScript(access)}`, { args: [dir, url] });
        return { seconds: result.seconds };
      } finally {
        await removeTree(dir);
      }
    }
    case 'download': {
      const { url } = await lookup(server, level);
      const result = await sh(`${CURL} -o /dev/null "$1"`, { args: [url] });
      return { seconds: result.seconds };
    }
    case 'zstd': {
      await sh('cat -- "$1" >/dev/null', { args: [files.blob] });
      const result = await sh(`zstd --decompress --quiet --stdout "$1" >/dev/null`, { args: [files.blob] });
      return { seconds: result.seconds };
    }
    case 'tar': {
      const dir = fs.mkdtempSync(path.join(tempDir, 'tar-'));
      try {
        // The input from the page cache (untimed): this measures tar writing the tree, not reading the disk.
        await sh('cat -- "$1" >/dev/null', { args: [files.tar] });
        const result = await sh(`${tarExtractPart()} <"$2"`, { args: [dir, files.tar] });
        if (level.treeBytes === undefined) {
          const [bytes, files] = (
            await sh(`${asRoot}du -sb -- "$1" | cut -f1; ${asRoot}find "$1" | wc -l`, { args: [dir] })
          ).stdout
            .trim()
            .split('\n')
            .map(Number);
          level.treeBytes = bytes;
          level.files = files;
        }
        return { seconds: result.seconds };
      } finally {
        await removeTree(dir);
      }
    }
    case 'load':
      return withJob('load', {}, async job => {
        const main = await job.main(COLD_INPUTS());
        const load = await job.step('docker load --quiet --input "$BENCH_TAR" >/dev/null', { BENCH_TAR: w.saveTar! });
        await job.post();
        return {
          seconds: main.seconds + load.seconds,
          detail: { mainSeconds: main.seconds, loadSeconds: load.seconds }
        };
      });
    case 'pull':
      return withJob('pull', {}, async job => {
        const registry = w.registry!;
        // Inside the dind container the inner daemon's own docker0 takes 172.17.0.1 (its eth0 is on the
        // action's network), which would hide the host's docker0 address: move the inner bridge away.
        const daemonConfig = { 'insecure-registries': [registry.registry.addr], bip: INNER_BRIDGE };
        const main = await job.main({ ...COLD_INPUTS(), 'daemon-config': JSON.stringify(daemonConfig) });
        // All at once, as `docker compose pull` does: the daemon fetches up to 3 layers in parallel per pull.
        const pull = await job.step(
          'pids=(); for ref in $BENCH_REFS; do docker pull --quiet "$ref" >/dev/null & pids+=($!); done; for pid in "${pids[@]}"; do wait "$pid"; done',
          {
            BENCH_REFS: registry.refs.join(' ')
          }
        );
        await job.post();
        return {
          seconds: main.seconds + pull.seconds,
          detail: { mainSeconds: main.seconds, pullSeconds: pull.seconds }
        };
      });
    case 'save-action':
      return withJob('save', server.env, async job => {
        const main = await job.main(WARM_INPUTS(level));
        if (main.result.outputs['cache-hit'] !== 'true')
          throw new Error(`no cache hit: ${main.facts['Cache restored'] ?? 'no restore'}`);
        // A job that changed something (a new tag: no new data) makes post save.
        await job.step(`docker tag "$BENCH_REF" "bench-save:r${rep}-${Math.random().toString(36).slice(2, 8)}"`, {
          BENCH_REF: level.images[0]
        });
        const before = server.stats();
        const post = await job.post();
        const saved = post.facts.Cache ?? '';
        if (!saved.startsWith('saved')) throw new Error(`post did not save: ${saved}`);
        const save = phase(post, 'Save the cache');
        return {
          seconds: save,
          detail: {
            postSeconds: post.seconds,
            stopSeconds: phase(post, 'Stop the daemon'),
            uploadedBytes: server.stats().uploadedBytes - before.uploadedBytes,
            restoreMainSeconds: main.seconds,
            ...phaseDetail(post, 'post ')
          }
        };
      });
    case 'save-raw': {
      const result = await sh(`${archiveScript(access)} | wc -c`, { args: [w.tree!] });
      return { seconds: result.seconds, detail: { compressedBytes: Number(result.stdout.trim()) } };
    }
    default:
      throw new Error(`unknown method ${method}`);
  }
}

async function warmAndScaling(cfg: Config, w: Warm, levels: LevelInfo[]): Promise<void> {
  const dataMethods = ['action-warm', 'raw-pipeline', 'download', 'zstd', 'tar'];
  const warmOnly = ['load', 'pull', 'save-action', 'save-raw'];
  for (let rep = 0; rep < cfg.reps; rep++) {
    const order = rep % 2 === 0 ? levels : [...levels].reverse();
    for (const [li, level] of order.entries()) {
      const isWarm = level.targetMB === w.warm.targetMB;
      const methods = rotate(isWarm ? [...dataMethods, ...warmOnly] : dataMethods, rep + li);
      log(`rep ${rep + 1}/${cfg.reps}, ${level.targetMB} MB: ${methods.join(', ')}`);
      for (const [position, method] of methods.entries()) {
        const scenario: Scenario =
          method === 'load' || method === 'pull' ? 'S2' : method.startsWith('save') ? 'S3' : 'S4';
        await measure(scenario, method, rep, position, level.targetMB, () => dataMethod(method, level, w, rep));
      }
    }
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const cfg = config();
  record = {
    startedAt: new Date().toISOString(),
    config: cfg,
    levels: [],
    setup: {},
    samples: [],
    failures: [],
    notes: []
  };
  cleanup.onSignals();
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-bench-'));
  cleanup.add(`remove ${tempDir}`, () => removeTree(tempDir));
  benchHome = path.join(tempDir, 'home');
  fs.mkdirSync(benchHome);
  log(
    `setup-dind benchmark ${runId}: ${cfg.quick ? 'QUICK smoke run, ' : ''}${cfg.reps} repetition(s), sizes ${cfg.sizesMB.join(', ')} MB; temp dir ${tempDir}`
  );

  let failed: Error | undefined;
  try {
    await setupStep('check the engine and tools', async () => {
      await dockerOut(['version', '--format', '{{.Server.Version}}']);
      for (const tool of ['zstd', 'tar', 'curl', 'openssl']) await run('bash', ['-c', `command -v ${tool}`]);
      if (!fs.existsSync(path.join(REPO_ROOT, 'dist/main/index.js')))
        throw new Error('dist/ is missing: run `npm run build`');
      await docker(['image', 'inspect', BASE_IMAGE]).catch(() => {
        throw new Error(`${BASE_IMAGE} is not on the engine (nothing can be pulled here)`);
      });
      if (access === 'sudo') await run('sudo', ['-n', 'true']);
    });
    await setupStep('dind image', prepareImage);
    await setupStep('snapshot the action (dist/, action.yml, runner emulation)', snapshotAction);
    record.machine = await machineInfo();
    const server = await setupStep('start the cache service emulation', startCacheServer);
    cleanup.add('stop the cache service emulation', () => server.stop());
    const content = await setupStep('plan content and start building it', () => startContent(cfg));
    const levels = record.levels;
    if (levels.length === 0) throw new Error('no content levels');
    const warm = levels.reduce(
      (best, l) => (Math.abs(l.targetMB - cfg.warmTargetMB) < Math.abs(best.targetMB - cfg.warmTargetMB) ? l : best),
      levels[0]
    );
    cfg.warmTargetMB = warm.targetMB;
    const artifacts = new Map<number, { blob: string; tar: string }>();
    const w: Warm = { server, artifacts, warm };

    // Set-up runs as one pipeline: each level is seeded once its images are built, while the next
    // ones build; scenario 2c's archive and 2d's registry are made once the warm level's images exist.
    let warmSeeded: () => void = () => undefined;
    const warmReady = new Promise<void>(resolve => (warmSeeded = resolve));
    const seeding = setupStep('build content and seed each level (in a row)', async () => {
      try {
        for (const level of levels) {
          // Set-up, not a measurement: one retry, so that a flake does not end a long run.
          await seed(server, content, level, artifacts).catch(error => {
            log(`  seeding ${level.targetMB} MB failed, retrying once: ${(error as Error).message}`);
            record.notes.push(`Seeding the ${level.targetMB} MB level failed once: ${(error as Error).message}`);
            return seed(server, content, level, artifacts);
          });
          if (level === warm) warmSeeded();
        }
      } finally {
        warmSeeded();
      }
    });
    const prepare2c = setupStep(`prepare scenario 2c: docker save of the ${warm.targetMB} MB level`, async () => {
      await levelImages(content, warm);
      w.saveTar = path.join(tempDir, 'docker-save.tar');
      await docker(['save', '--output', w.saveTar, ...warm.images], { timeoutMs: 30 * 60_000 });
      record.setup['docker save archive bytes'] = fs.statSync(w.saveTar).size;
    });
    const prepare2d = setupStep(`prepare scenario 2d: docker-registry with the ${warm.targetMB} MB level`, async () => {
      await levelImages(content, warm);
      try {
        w.registry = await prepareRegistry(warm);
      } catch (error) {
        record.notes.push(`Scenario 2d could not be prepared: ${(error as Error).message}`);
        skipped.set(`S2/pull/${warm.targetMB}`, MAX_FAILURES);
        log(`  2d skipped: ${(error as Error).message}`);
      }
    });
    const prepare3 = setupStep(`prepare scenario 3: the ${warm.targetMB} MB level extracted`, async () => {
      await warmReady;
      const files = artifacts.get(warm.targetMB);
      if (!files) return;
      w.tree = path.join(tempDir, 'tree');
      fs.mkdirSync(w.tree);
      await sh(`${tarExtractPart()} <"$2"`, { args: [w.tree, files.tar] });
    });
    const outcomes = await Promise.allSettled([seeding, prepare2c, prepare2d, prepare3]);
    const setupFailure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (setupFailure) throw setupFailure.reason;
    // Measurements start with every image built and nothing left to write back.
    await Promise.allSettled([...content.images.values()]);
    await settle();

    await setupStep('scenario 1 (cold start)', () => scenario1(cfg));
    await setupStep('scenarios 2, 3 and 4 (warm start, save, scaling)', () => warmAndScaling(cfg, w, levels));
  } catch (error) {
    failed = error as Error;
    log(`FAILED: ${failed.stack ?? failed.message}`);
    record.notes.push(`The run failed before it finished: ${failed.message}`);
  } finally {
    log('cleaning up…');
    await cleanup.runAll();
    record.finishedAt = new Date().toISOString();
    record.durationSeconds = (Date.parse(record.finishedAt) - Date.parse(record.startedAt)) / 1000;
    if (crashes.length > 0) {
      const counts = new Map<string, number>();
      for (const crash of crashes) counts.set(crash, (counts.get(crash) ?? 0) + 1);
      for (const [crash, count] of counts)
        record.notes.push(
          `**Action step crash**, ${count} time(s): ${crash}. The real runner would fail such a step; the benchmark kept its timing.`
        );
    }
    const leftovers = await docker(['ps', '--all', '--quiet', '--filter', `label=${BENCH_LABEL}=${runId}`], {
      allowFail: true
    });
    if (leftovers.stdout.trim())
      record.notes.push(`Containers left behind: ${leftovers.stdout.trim().split('\n').join(', ')}`);
  }
  const written = writeReports(record, path.join(REPO_ROOT, 'bench'), cfg.quick ? '-quick' : '');
  console.log(`\n${written.markdown}`);
  log(`wrote ${written.files.join(', ')}; total ${record.durationSeconds?.toFixed(0)} s`);
  if (failed || record.failures.length > 0) process.exitCode = 1;
}

/** BENCH_REPORT_ONLY=bench/results.json: rewrite the reports from a run's raw record, measuring nothing. */
function reportOnly(file: string): void {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord & { computed?: unknown };
  delete saved.computed;
  const written = writeReports(saved, path.dirname(path.resolve(file)), saved.config.quick ? '-quick' : '');
  console.log(`wrote ${written.files.join(', ')}`);
}

if (process.env.BENCH_REPORT_ONLY) reportOnly(process.env.BENCH_REPORT_ONLY);
else void main();
