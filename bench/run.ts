// npm run bench: setup-dind against its alternatives on the real Docker engine, side by side in one
// run (every repetition rotates the order of the methods, and the sizes go up and down in turn), medians
// of several repetitions. See bench/README.md for the scenarios, the methods and the options:
//
//   BENCH_REPS=3  BENCH_SIZES=100,250,1000,2000  BENCH_QUICK=1 (smoke run: tiny sizes, 1 repetition)
//   BENCH_METHODS=action-warm,raw (development: only these methods)
//
// Every method writes the daemon's data (and its job's directories, archives, outputs) to one fresh,
// journaled ext4 made for the run (bench/lib/scratch.ts); scenario 5 alone uses the host's own
// filesystem, on purpose. Writes bench/results.md, bench/results.json and bench/restore-scaling.svg
// (BENCH_QUICK: the same names with -quick), and removes everything it made (containers, volumes,
// networks, images, the registry process, the filesystem, temp dirs), also when it fails or is
// interrupted.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RESTORE_CONNECTIONS } from '../src/cache/image/write';
import * as tls from '../src/daemon/tls';
import { startCacheServer, type CacheServer } from '../test/support/cache-server';
import { defined } from '../test/support/defined';
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
import { floorStart, withPlainDaemon } from './lib/floor';
import type { Config, Failure, LevelInfo, Machine, RunRecord, Sample, Scenario } from './lib/model';
import { describeState, splitSpans } from './lib/parts';
import { probeDisk } from './lib/probe';
import { dropNewEntries, levelState, streamsScript, writeSpanLists } from './lib/raw';
import { startPhases } from './lib/start-phases';
import { docker, dockerOut, now, run, sh } from './lib/proc';
import { bridgeGateway, ensureDockerRegistry, freePort, startRegistry, type Registry } from './lib/registry';
import { writeReports } from './lib/report';
import { describeFs, makeScratch } from './lib/scratch';
import { rotate } from './lib/stats';

const REPO_ROOT = path.resolve(__dirname, '..');
const TEST_IMAGE = 'setup-dind-test/dind:trixie';
const BENCH_LABEL = 'io.github.setup-dind.bench';
/** Scenario 2d's inner daemon bridge: anywhere but the host's docker0 subnet, where the registry listens. */
const INNER_BRIDGE = '10.254.254.1/24';
/** Skip a method for the rest of the run after this many failures. */
const MAX_FAILURES = 2;
/** The run's filesystem: a sparse file this large (a runner's disk has tens of GB free). */
const SCRATCH_BYTES = 60 * 1024 ** 3;
/** Where the run's filesystem image goes (the host's filesystem; the file is sparse). */
const SCRATCH_PARENT = '/var/tmp';
/** The ~20 MB layer a job adds in scenario 3: real binaries, so that it compresses as layers do. */
const LAYER_BYTES = 20_000_000;

const ALL_METHODS = [
  'action-cold',
  'floor',
  'official-tls',
  'action-tls',
  'action-warm',
  'floor-populated',
  'raw',
  'single-stream',
  'action-warm-slow',
  'single-stream-slow',
  'load',
  'pull',
  'cache-dir',
  'save-full',
  'save-raw',
  'save-layer',
  'save-tag',
  'download',
  'zstd',
  'write',
  'host-warm',
  'host-load'
];

function config(): Config {
  const quick = /^(1|true|yes)$/i.test(process.env.BENCH_QUICK ?? '');
  const reps = Number(process.env.BENCH_REPS ?? (quick ? 1 : 3));
  if (!Number.isInteger(reps) || reps < 1)
    throw new Error(`BENCH_REPS must be a positive integer, got '${process.env.BENCH_REPS}'`);
  const sizesMB = (process.env.BENCH_SIZES ?? (quick ? '125,135' : '100,250,1000,2000'))
    .split(',')
    .map(s => Number(s.trim()))
    .sort((a, b) => a - b);
  if (sizesMB.some(s => !(s > 0)))
    throw new Error(`BENCH_SIZES must be a comma-separated list of sizes in MB, got '${process.env.BENCH_SIZES}'`);
  const methods = process.env.BENCH_METHODS?.split(',')
    .map(m => m.trim())
    .filter(Boolean);
  const unknown = methods?.filter(m => !ALL_METHODS.includes(m)) ?? [];
  if (unknown.length > 0)
    throw new Error(`BENCH_METHODS: unknown method(s) ${unknown.join(', ')}; known: ${ALL_METHODS.join(', ')}`);
  const warmTargetMB = sizesMB.reduce((best, s) => (Math.abs(s - 1000) < Math.abs(best - 1000) ? s : best), sizesMB[0]);
  return {
    methods: methods && methods.length > 0 ? methods : undefined,
    capBytesPerSecond: 60e6,
    slowCapBytesPerSecond: 10e6,
    rpcLatencyMs: 20,
    streams: RESTORE_CONNECTIONS,
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

let record: RunRecord;
let cfg: Config;
/** On the run's filesystem: every job root, archive, store and output of the methods. */
let tempDir = '';
/** On the host's own filesystem: scenario 5's job roots and the host's disk probe. */
let hostDir = '';
/** Where the run's filesystem is mounted. */
let scratchMount = '';
let image = '';
const skipped = new Map<string, number>();

function log(message: string): void {
  const elapsed = record ? ((Date.now() - Date.parse(record.startedAt)) / 1000).toFixed(0).padStart(5) : '';
  console.log(`[${elapsed} s] ${message}`);
}

function wanted(method: string): boolean {
  return !cfg.methods || cfg.methods.includes(method);
}

async function setupStep<T>(name: string, run: () => Promise<T>): Promise<T> {
  const started = now();
  log(`${name}…`);
  const result = await run();
  record.setup[name] = now() - started;
  return result;
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

/** A job of the action, its root under `under`; removed (post, labelled leftovers, directories) whatever happens. */
async function withJob<T>(
  name: string,
  env: Record<string, string>,
  body: (job: BenchJob) => Promise<T>,
  under = tempDir
): Promise<T> {
  // A HOME of its own: jobs of the set-up run at once, and each main makes its Docker context there.
  const root = jobRoot(under, name);
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const job = new BenchJob(root, { HOME: home, ...env });
  const dispose = cleanup.add(`remove job ${name}`, () => job.dispose());
  try {
    return await body(job);
  } finally {
    await dispose();
  }
}

function phaseDetail(step: TimedStep, prefix = ''): Sample['detail'] {
  const detail: Sample['detail'] = {};
  for (const [title, seconds] of Object.entries(step.phases))
    detail[`${prefix}phase: ${title.split(image).join('<image>')}`] = seconds;
  const phases = Object.values(step.phases).reduce((s, v) => s + v, 0);
  detail[`${prefix}outside phases (node start-up, input parsing, exit)`] = step.seconds - phases;
  return detail;
}

/** "<bytes> in <s> (hit; X downloaded, Y from the cache directory): <key>" → its seconds and its text. */
function restoreFact(step: TimedStep): { restoreSeconds: number; restoreFact: string } {
  const fact = step.facts['Cache restored'] ?? '';
  const seconds = /in ([\d.]+) s/.exec(fact);
  return { restoreSeconds: seconds ? Number(seconds[1]) : NaN, restoreFact: fact };
}

// ---------------------------------------------------------------- preparation

async function machineInfo(): Promise<Machine> {
  const version = async (command: string, args: string[]) =>
    (await run(command, args, { allowFail: true })).stdout.split('\n')[0].trim() ||
    (await run(command, args, { allowFail: true })).stderr.split('\n')[0].trim();
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
    tempDir,
    hostDir,
    engine: await dockerOut(['version', '--format', 'server {{.Server.Version}}, client {{.Client.Version}}']),
    dindImage: `${TEST_IMAGE} (run as ${image})`,
    dindImageId: await dockerOut(['image', 'inspect', '--format', '{{.Id}}', image]),
    tools: {
      'node (benchmark)': process.version,
      'node (the action, SETUP_DIND_NODE)': await version(process.env.SETUP_DIND_NODE ?? process.execPath, [
        '--version'
      ]),
      zstd: await version('zstd', ['--version']),
      tar: await version('tar', ['--version']),
      curl: await version('curl', ['--version']),
      e2fsprogs: await version('mke2fs', ['-V']),
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
  // The copy, loaded at run time from where it resolves its root (no import can name that path).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const runner = require(path.join(root, 'test/support/runner.ts')) as typeof import('../test/support/runner');
  if (runner.REPO_ROOT !== root)
    throw new Error(`the runner copy resolves its root to ${runner.REPO_ROOT}, not ${root}`);
  useRunner(runner.Job);
  const hash = (
    await sh(`cat "$1"/dist/main/index.js "$1"/dist/post/index.js | sha256sum | cut -c1-12`, { args: [root] })
  ).stdout.trim();
  record.notes.push(`The action ran from a copy of dist/ taken at the start (main + post bundles sha256 ${hash}).`);
}

/** The node the runner runs the action with (node24): scripts/node24.sh, unless SETUP_DIND_NODE names one. */
async function actionNode(): Promise<void> {
  if (!process.env.SETUP_DIND_NODE)
    process.env.SETUP_DIND_NODE = (
      await run('bash', [path.join(REPO_ROOT, 'scripts/node24.sh')], { timeoutMs: 10 * 60_000 })
    ).stdout.trim();
  if (!path.isAbsolute(process.env.SETUP_DIND_NODE) || !fs.existsSync(process.env.SETUP_DIND_NODE))
    throw new Error(`SETUP_DIND_NODE is not a node binary: '${process.env.SETUP_DIND_NODE}'`);
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
async function startContent(): Promise<Content> {
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
  const built = await Promise.all(level[which].map(ref => defined(content.images.get(ref), `built image ${ref}`)));
  if (which === 'images')
    level.estimatedBytes = (await imageSize(BASE_IMAGE)) + built.reduce((sum, b) => sum + b.addedBytes, 0);
  return built;
}

const WARM_INPUTS = (level: LevelInfo) => ({ image, pull: 'never', cache: 'true', 'cache-key': `L${level.targetMB}` });
const COLD_INPUTS = () => ({ image, pull: 'never', cache: 'false' });

/** What a level keeps on the run's filesystem for the stages alone: its streams' bytes, compressed and not. */
interface Artifacts {
  dir: string;
  /** Per stream: its spans' bytes as downloaded (concatenated zstd frames), and decompressed. */
  compressed: string[];
  decompressed: string[];
}

/**
 * Seeds each level's cache the way CI would: a job restores the previous level (its cache-key has no
 * entry yet, so the action falls back to the newest compatible one), loads the images the level adds
 * from the outer engine, and its post saves. Then keeps the level's streams on disk for the stages alone.
 */
async function seed(server: CacheServer, content: Content, level: LevelInfo, artifacts: Map<number, Artifacts>) {
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
          saved,
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
  level.manifestBytes = entry.size;
  const { manifest, urls } = await levelState(server, level);
  const state = describeState(manifest);
  Object.assign(level, {
    parts: manifest.parts.length,
    frames: state.frames,
    compressedBytes: state.compressedBytes,
    uniqueBytes: state.uniqueBytes,
    dataBytes: state.writtenBytes,
    filesystemBytes: manifest.filesystem.bytes
  });
  // The stages alone read these: the same streams as the raw pipeline, fetched once (no cap yet).
  const groups = splitSpans(manifest, cfg.streams);
  const lists = writeSpanLists(tempDir, groups, urls, `spans-${level.targetMB}-`);
  const dir = path.join(tempDir, `level-${level.targetMB}`);
  fs.mkdirSync(dir);
  await sh(streamsScript(lists, groups.length, `tee "$1/compressed.$g" | zstd -d -q -c >"$1/decompressed.$g"`), {
    args: [dir]
  });
  fs.rmSync(lists, { recursive: true, force: true });
  const files = {
    dir,
    compressed: groups.map((_, g) => path.join(dir, `compressed.${g}`)),
    decompressed: groups.map((_, g) => path.join(dir, `decompressed.${g}`))
  };
  const sizes = (list: string[]) => list.reduce((sum, file) => sum + fs.statSync(file).size, 0);
  if (sizes(files.compressed) !== state.compressedBytes || sizes(files.decompressed) !== state.uniqueBytes)
    throw new Error(
      `level ${level.targetMB} MB: the streams hold ${sizes(files.compressed)} bytes (${sizes(files.decompressed)} decompressed), the state ${state.compressedBytes} (${state.uniqueBytes})`
    );
  artifacts.set(level.targetMB, files);
  const seeded =
    record.samples.find(sample => sample.scenario === 'seed' && sample.sizeMB === level.targetMB)?.detail ?? {};
  const part = (name: string) => `${Number(seeded[name]).toFixed(0)} s`;
  log(
    `  level ${level.targetMB} MB seeded in ${(now() - started).toFixed(0)} s (main ${part('mainSeconds')}, load ${part('loadSeconds')}, post ${part('postSeconds')} of which save ${part('saveSeconds')}): ` +
      `${(state.writtenBytes / MB).toFixed(0)} MB of data in ${manifest.chunks.length} chunks, ${(state.compressedBytes / MB).toFixed(0)} MB compressed in ${manifest.parts.length} part(s)`
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

/**
 * Gives the run's filesystem's free blocks back to the host (the sparse file would otherwise only grow,
 * by tens of GB over a run); at the start of each repetition, before its probe, untimed.
 */
async function trim(): Promise<number> {
  const result = await run('fstrim', ['--verbose', scratchMount], { allowFail: true });
  const bytes = /\((\d+) bytes\) trimmed/.exec(result.stdout);
  if (!bytes)
    record.notes.push(`fstrim of the run's filesystem failed: ${result.stderr.trim() || result.stdout.trim()}`);
  return bytes ? Number(bytes[1]) : NaN;
}

async function probe(label: string, rep: number): Promise<void> {
  const trimmedBytes = label.endsWith('start') ? await trim() : undefined;
  for (const [method, dir] of [
    ['probe-scratch', tempDir],
    ['probe-host', hostDir]
  ] as const) {
    try {
      const result = await probeDisk(dir);
      addSample({
        scenario: 'probe',
        method,
        rep,
        order: 0,
        seconds: result.writeSeconds + result.createSeconds,
        detail: {
          at: label,
          ...result,
          ...(method === 'probe-scratch' && trimmedBytes !== undefined ? { trimmedBytes } : {})
        }
      });
    } catch (error) {
      record.notes.push(`Disk probe ${method} (${label}) failed: ${(error as Error).message}`);
    }
  }
  const probes = record.samples.filter(s => s.scenario === 'probe' && s.detail.at === label);
  log(
    `probe (${label}): ${probes.map(s => `${s.method.slice(6)} 64 MiB+fsync ${Number(s.detail.writeSeconds).toFixed(2)} s, 5000 files ${Number(s.detail.createSeconds).toFixed(2)} s`).join('; ')}`
  );
}

async function scenario1(): Promise<void> {
  const methods = ['action-cold', 'floor', 'official-tls', 'action-tls'].filter(wanted);
  if (methods.length === 0) return;
  await probe('scenario 1 start', -1);
  for (let rep = 0; rep < cfg.s1Reps; rep++) {
    for (const [order, method] of rotate(methods, rep).entries()) {
      await measure('S1', method, rep, order, undefined, async () => {
        switch (method) {
          case 'action-cold':
            return withJob('cold', {}, async job => {
              const main = await job.main(COLD_INPUTS());
              const phases = await startPhases(main);
              const post = await job.post();
              if (record.machine && !record.machine.innerDocker)
                record.machine.innerDocker = main.result.outputs.version;
              return { seconds: main.seconds, detail: { ...phaseDetail(main), ...phases, postSeconds: post.seconds } };
            });
          case 'floor':
            return floor();
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
  await probe('scenario 1 end', -1);
}

/** The action's own certificate code (src/daemon/tls.ts), in process, whichever of its API generations is there. */
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
    throw new Error('src/daemon/tls.ts exports neither createAuthority nor generateTlsMaterial');
  }
  return { seconds: now() - started };
}

type Measured = { seconds: number; detail?: Sample['detail'] };

/** A floor's start (scenario 1's on an empty directory, the populated one's on `lib`), its container removed. */
async function floor(lib?: string): Promise<Measured> {
  let dispose: (() => Promise<void>) | undefined;
  try {
    const result = await floorStart({
      image,
      workDir: tempDir,
      label: BENCH_LABEL,
      runId,
      lib,
      onCreated: id => (dispose = removeOnCleanup(id))
    });
    return { seconds: result.seconds };
  } finally {
    await dispose?.();
  }
}

function removeOnCleanup(id: string): () => Promise<void> {
  return cleanup.add(
    `remove floor container ${id.slice(0, 12)}`,
    async () => void (await docker(['rm', '--force', '--volumes', id], { allowFail: true }))
  );
}

/**
 * The populated floor's data for a level: a plain dockerd of the same image on a directory of the run's
 * filesystem `docker load`s the level's images (as its seeding job does), and stops.
 */
async function populate(level: LevelInfo): Promise<void> {
  const lib = path.join(tempDir, `populated-${level.targetMB}`);
  fs.mkdirSync(lib);
  let dispose: (() => Promise<void>) | undefined;
  try {
    await withPlainDaemon(
      { image, workDir: tempDir, label: BENCH_LABEL, runId, lib, onCreated: id => (dispose = removeOnCleanup(id)) },
      socket =>
        sh('docker save -- "${@:2}" | docker -H "unix://$1" load --quiet >/dev/null', {
          args: [socket, ...level.images],
          timeoutMs: 30 * 60_000
        })
    );
  } finally {
    await dispose?.();
  }
  level.populated = lib;
  record.setup[`populated floor data: ${level.targetMB} MB level, bytes`] = Number(
    (await sh('du -sb -- "$1" | cut -f1', { args: [lib] })).stdout.trim()
  );
}

interface Warm {
  server: CacheServer;
  artifacts: Map<number, Artifacts>;
  warm: LevelInfo;
  /** A docker save archive of each level's images (scenario 2c at every level), by target size. */
  saveTars: Map<number, string>;
  registry?: RegistrySetup;
  /** Scenario 2e's cache-dir, seeded with every frame of the warm level. */
  cacheDir?: string;
  /** Scenario 3's raw side: a copy of the warm level's image as a job leaves it (restored, daemon stopped). */
  savedImage?: string;
  /** Scenario 3's new layer: a file of real binaries, and its size compressed (zstd -3). */
  payload?: string;
  payloadCompressedBytes?: number;
}

/** The action's warm start of a level, and its post (nothing changed: nothing may be uploaded). */
async function actionWarm(w: Warm, level: LevelInfo, name: string, under = tempDir): Promise<Measured> {
  const { server } = w;
  return withJob(
    name,
    server.env,
    async job => {
      const before = server.stats();
      const main = await job.main(WARM_INPUTS(level));
      if (main.result.outputs['cache-hit'] !== 'true')
        throw new Error(`no cache hit: ${main.facts['Cache restored'] ?? 'no restore'}`);
      const afterMain = server.stats();
      const phases = await startPhases(main);
      const post = await job.post();
      const after = server.stats();
      return {
        seconds: main.seconds,
        detail: {
          ...phaseDetail(main),
          ...phases,
          ...restoreFact(main),
          daemonStartSeconds: phase(main, 'Start the daemon'),
          restoredBytes: Number(main.result.outputs['cache-size']),
          downloadedBytes: afterMain.downloadedBytes - before.downloadedBytes,
          rangedDownloads: afterMain.rangedDownloads - before.rangedDownloads,
          ...phaseDetail(post, 'post '),
          postSeconds: post.seconds,
          postUploadedBytes: after.uploadedBytes - afterMain.uploadedBytes,
          postReservations: after.creates - afterMain.creates,
          postDecision: post.facts.Cache ?? ''
        }
      };
    },
    under
  );
}

/** The action's cold start, then docker load of a level's docker save archive. */
async function coldLoad(w: Warm, level: LevelInfo, name: string, under = tempDir): Promise<Measured> {
  return withJob(
    name,
    {},
    async job => {
      const main = await job.main(COLD_INPUTS());
      const load = await job.step('docker load --quiet --input "$BENCH_TAR" >/dev/null', {
        BENCH_TAR: saveTar(w, level)
      });
      const post = await job.post();
      return {
        seconds: main.seconds + load.seconds,
        detail: { mainSeconds: main.seconds, loadSeconds: load.seconds, postSeconds: post.seconds }
      };
    },
    under
  );
}

function saveTar(w: Warm, level: LevelInfo): string {
  return defined(w.saveTars.get(level.targetMB), `docker save archive of the ${level.targetMB} MB level (set-up 2c)`);
}

/** A job restores the warm level, changes something (`change`), and its post saves: what it uploaded. */
async function incrementalSave(
  w: Warm,
  level: LevelInfo,
  name: string,
  change: string,
  env: Record<string, string>
): Promise<{ seconds: number; detail: Sample['detail'] }> {
  const { server } = w;
  const entries = new Set(server.entries().map(e => e.key));
  try {
    return await withJob(name, server.env, async job => {
      const main = await job.main(WARM_INPUTS(level));
      if (main.result.outputs['cache-hit'] !== 'true')
        throw new Error(`no cache hit: ${main.facts['Cache restored'] ?? 'no restore'}`);
      const step = await job.step(change, env);
      const before = server.stats();
      const post = await job.post();
      const saved = post.facts.Cache ?? '';
      if (!saved.startsWith('saved')) throw new Error(`post did not save: ${saved}`);
      return {
        seconds: phase(post, 'Save the cache'),
        detail: {
          uploadedBytes: server.stats().uploadedBytes - before.uploadedBytes,
          changeSeconds: step.seconds,
          postSeconds: post.seconds,
          saved,
          ...phaseDetail(post, 'post ')
        }
      };
    });
  } finally {
    await dropNewEntries(server, entries);
  }
}

async function dataMethod(method: string, level: LevelInfo, w: Warm, rep: number): Promise<Measured> {
  const { server } = w;
  const files = defined(w.artifacts.get(level.targetMB), `artifacts of the ${level.targetMB} MB level`);
  const fresh = (prefix: string) => fs.mkdtempSync(path.join(tempDir, prefix));
  switch (method) {
    case 'action-warm':
      return actionWarm(w, level, `warm-${level.targetMB}`);
    case 'floor-populated':
      return floor(defined(level.populated, `populated floor data of the ${level.targetMB} MB level`));
    case 'action-warm-slow':
    case 'single-stream-slow':
      // The parallel comparison where the network is the limit: a lower cap on every download response.
      server.setDownloadCap(cfg.slowCapBytesPerSecond);
      try {
        return await dataMethod(method.replace(/-slow$/, ''), level, w, rep);
      } finally {
        server.setDownloadCap(cfg.capBytesPerSecond);
      }
    case 'raw':
    case 'single-stream':
    case 'download': {
      // Untimed: the manifest and fresh signed URLs of its parts (the action's lookups are in its time).
      const { manifest, urls } = await levelState(server, level);
      const groups = splitSpans(manifest, method === 'single-stream' ? 1 : cfg.streams);
      const lists = writeSpanLists(tempDir, groups, urls, 'spans-');
      const out = fresh(`${method}-`);
      const before = server.stats();
      try {
        const sink = method === 'download' ? 'cat >/dev/null' : `zstd -d -q -c >"${out}/out.$g"`;
        const result = await sh(streamsScript(lists, groups.length, sink));
        const after = server.stats();
        return {
          seconds: result.seconds,
          detail: {
            streams: groups.length,
            downloadedBytes: after.downloadedBytes - before.downloadedBytes,
            rangedDownloads: after.rangedDownloads - before.rangedDownloads,
            writtenBytes: fs.readdirSync(out).reduce((sum, file) => sum + fs.statSync(path.join(out, file)).size, 0)
          }
        };
      } finally {
        fs.rmSync(lists, { recursive: true, force: true });
        fs.rmSync(out, { recursive: true, force: true });
      }
    }
    case 'zstd': {
      // The input from the page cache (untimed): this measures decompression, not reading the disk.
      await sh('cat -- "$@" >/dev/null', { args: files.compressed });
      const result = await sh(
        [
          'pids=()',
          'for file in "$@"; do zstd -d -q -c -- "$file" >/dev/null & pids+=($!); done',
          'for pid in "${pids[@]}"; do wait "$pid"; done'
        ].join('\n'),
        { args: files.compressed }
      );
      return { seconds: result.seconds, detail: { streams: files.compressed.length } };
    }
    case 'write': {
      const out = fresh('write-');
      try {
        await sh('cat -- "${@:2}" >/dev/null', { args: [out, ...files.decompressed] });
        const result = await sh(
          [
            'out=$1; shift; pids=(); g=0',
            'for file in "$@"; do cat -- "$file" >"$out/out.$g" & pids+=($!); g=$((g + 1)); done',
            'for pid in "${pids[@]}"; do wait "$pid"; done'
          ].join('\n'),
          { args: [out, ...files.decompressed] }
        );
        return { seconds: result.seconds, detail: { streams: files.decompressed.length } };
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    }
    case 'load':
      return coldLoad(w, level, 'load');
    case 'pull':
      return withJob('pull', {}, async job => {
        const registry = defined(w.registry, 'registry (set-up 2d)');
        // Inside the dind container the inner daemon's own docker0 takes 172.17.0.1 (its eth0 is on the
        // action's network), which would hide the host's docker0 address: move the inner bridge away.
        const daemonConfig = { 'insecure-registries': [registry.registry.addr], bip: INNER_BRIDGE };
        const main = await job.main({ ...COLD_INPUTS(), 'daemon-config': JSON.stringify(daemonConfig) });
        // All at once, as `docker compose pull` does: the daemon fetches up to 3 layers in parallel per pull.
        const pull = await job.step(
          'pids=(); for ref in $BENCH_REFS; do docker pull --quiet "$ref" >/dev/null & pids+=($!); done; for pid in "${pids[@]}"; do wait "$pid"; done',
          { BENCH_REFS: registry.refs.join(' ') }
        );
        await job.post();
        return {
          seconds: main.seconds + pull.seconds,
          detail: { mainSeconds: main.seconds, pullSeconds: pull.seconds }
        };
      });
    case 'cache-dir':
      return withJob('cache-dir', server.env, async job => {
        const before = server.stats();
        const main = await job.main({
          ...WARM_INPUTS(level),
          'cache-dir': defined(w.cacheDir, 'seeded cache-dir (set-up 2e)')
        });
        if (main.result.outputs['cache-hit'] !== 'true')
          throw new Error(`no cache hit: ${main.facts['Cache restored'] ?? 'no restore'}`);
        const afterMain = server.stats();
        const phases = await startPhases(main);
        const post = await job.post();
        return {
          seconds: main.seconds,
          detail: {
            ...phaseDetail(main),
            ...phases,
            ...restoreFact(main),
            daemonStartSeconds: phase(main, 'Start the daemon'),
            downloadedBytes: afterMain.downloadedBytes - before.downloadedBytes,
            downloads: afterMain.downloads - before.downloads,
            rpcCalls: afterMain.twirpRequests - before.twirpRequests,
            postSeconds: post.seconds,
            postDecision: post.facts.Cache ?? ''
          }
        };
      });
    case 'save-full': {
      // A job whose key has no state and no fallback (its own tag of the dind image: another cache
      // scope), that loads the level's images: its post saves the whole level.
      const tag = `setup-dind-bench/dind:${runId}-full${rep}`;
      await docker(['tag', image, tag]);
      const entries = new Set(server.entries().map(e => e.key));
      try {
        return await withJob('save-full', server.env, async job => {
          const main = await job.main({ image: tag, pull: 'never', cache: 'true', 'cache-key': 'full' });
          if (main.facts['Cache restored'] !== 'nothing to restore')
            throw new Error(`the full-save job restored something: ${main.facts['Cache restored']}`);
          const load = await job.step('docker load --quiet --input "$BENCH_TAR" >/dev/null', {
            BENCH_TAR: saveTar(w, level)
          });
          const before = server.stats();
          const post = await job.post();
          const saved = post.facts.Cache ?? '';
          if (!saved.startsWith('saved')) throw new Error(`post did not save: ${saved}`);
          return {
            seconds: phase(post, 'Save the cache'),
            detail: {
              uploadedBytes: server.stats().uploadedBytes - before.uploadedBytes,
              loadSeconds: load.seconds,
              postSeconds: post.seconds,
              saved,
              ...phaseDetail(post, 'post ')
            }
          };
        });
      } finally {
        await dropNewEntries(server, entries);
        await removeImage(tag);
      }
    }
    case 'save-raw': {
      // The image's data from the page cache (untimed), as post reads an image the daemon just wrote.
      const savedImage = defined(w.savedImage, 'image of the warm level as a job leaves it (set-up 3)');
      const dir = path.dirname(savedImage);
      const name = path.basename(savedImage);
      await sh('tar --sparse -cf - -C "$1" "$2" | cat >/dev/null', { args: [dir, name] });
      const result = await sh('tar --sparse -cf - -C "$1" "$2" | zstd -T0 -3 -q -c | wc -c', { args: [dir, name] });
      return { seconds: result.seconds, detail: { compressedBytes: Number(result.stdout.trim()) } };
    }
    case 'save-layer': {
      const result = await incrementalSave(
        w,
        level,
        'save-layer',
        'c=$(docker create "$BENCH_REF" true); docker cp --quiet "$BENCH_PAYLOAD" "$c:/bench-payload.bin"; docker commit "$c" "bench-layer:$BENCH_TAG" >/dev/null; docker rm "$c" >/dev/null',
        {
          BENCH_REF: level.images[0],
          BENCH_PAYLOAD: defined(w.payload, 'layer payload (set-up 3)'),
          BENCH_TAG: `r${rep}`
        }
      );
      result.detail.newDataBytes = LAYER_BYTES;
      result.detail.newDataCompressedBytes = defined(w.payloadCompressedBytes, 'compressed payload size (set-up 3)');
      return result;
    }
    case 'save-tag':
      return incrementalSave(w, level, 'save-tag', 'docker tag "$BENCH_REF" "bench-save:$BENCH_TAG"', {
        BENCH_REF: level.images[0],
        BENCH_TAG: `r${rep}`
      });
    case 'host-warm':
    case 'host-load': {
      // Back to back, as two jobs of a runner: the second starts as soon as the first's post is done.
      const first =
        method === 'host-warm'
          ? await actionWarm(w, level, 'host-warm-1', hostDir)
          : await coldLoad(w, level, 'host-load-1', hostDir);
      const second =
        method === 'host-warm'
          ? await actionWarm(w, level, 'host-warm-2', hostDir)
          : await coldLoad(w, level, 'host-load-2', hostDir);
      const detail: Sample['detail'] = { firstSeconds: first.seconds, secondSeconds: second.seconds };
      for (const [prefix, result] of [
        ['first ', first],
        ['second ', second]
      ] as const)
        for (const key of ['restoreSeconds', 'daemonStartSeconds', 'postSeconds', 'mainSeconds', 'loadSeconds'])
          if (result.detail?.[key] !== undefined) detail[`${prefix}${key}`] = result.detail[key];
      return { seconds: second.seconds, detail };
    }
    default:
      throw new Error(`unknown method ${method}`);
  }
}

const SCENARIO: Record<string, Scenario> = {
  'action-warm': 'S2',
  'floor-populated': 'S2',
  raw: 'S2',
  'single-stream': 'S2',
  'action-warm-slow': 'S2',
  'single-stream-slow': 'S2',
  load: 'S2',
  pull: 'S2',
  'cache-dir': 'S2',
  'save-full': 'S3',
  'save-raw': 'S3',
  'save-layer': 'S3',
  'save-tag': 'S3',
  download: 'S4',
  zstd: 'S4',
  write: 'S4',
  'host-warm': 'S5',
  'host-load': 'S5'
};

async function warmAndScaling(w: Warm, levels: LevelInfo[]): Promise<void> {
  const dataMethods = ['action-warm', 'floor-populated', 'raw', 'load', 'download', 'zstd', 'write'].filter(wanted);
  const warmOnly = [
    'single-stream',
    'action-warm-slow',
    'single-stream-slow',
    'pull',
    'cache-dir',
    'save-full',
    'save-raw',
    'save-layer',
    'save-tag',
    'host-warm',
    'host-load'
  ].filter(wanted);
  for (let rep = 0; rep < cfg.reps; rep++) {
    await probe(`rep ${rep + 1} start`, rep);
    const order = rep % 2 === 0 ? levels : [...levels].reverse();
    for (const [li, level] of order.entries()) {
      const isWarm = level.targetMB === w.warm.targetMB;
      const methods = rotate(isWarm ? [...dataMethods, ...warmOnly] : dataMethods, rep + li);
      if (methods.length === 0) continue;
      log(`rep ${rep + 1}/${cfg.reps}, ${level.targetMB} MB: ${methods.join(', ')}`);
      for (const [position, method] of methods.entries()) {
        const scenario = ['action-warm', 'floor-populated', 'raw', 'load'].includes(method)
          ? isWarm
            ? 'S2'
            : 'S4'
          : SCENARIO[method];
        await measure(scenario, method, rep, position, level.targetMB, () => dataMethod(method, level, w, rep));
      }
    }
    await probe(`rep ${rep + 1} end`, rep);
  }
}

// ---------------------------------------------------------------- main

/** The set-up steps of the warm level's other scenarios, started: each a promise of its own. */
function prepareWarmExtras(
  w: Warm,
  levels: LevelInfo[],
  content: Content,
  seeded: Promise<unknown>
): Array<Promise<unknown>> {
  const { server, warm } = w;
  const steps: Array<Promise<unknown>> = [];
  // The jobs that restore the warm level run after the seeding, one at a time: two restores at once
  // (16 connections to the emulation on 2 cores) had one of them reset (a warning: a failed set-up).
  let queue: Promise<unknown> = seeded.catch(() => undefined);
  const serial = <T>(step: () => Promise<T>): Promise<T> => {
    const next = queue.then(async () => {
      await seeded;
      return step();
    });
    queue = next.catch(() => undefined);
    return next;
  };
  if (['load', 'save-full', 'host-load'].some(wanted))
    steps.push(
      setupStep('prepare 2c: docker save of each level', async () => {
        // The warm level's first: scenarios 3 and 5 need it too.
        for (const level of [warm, ...levels.filter(l => l !== warm)]) {
          if (level !== warm && !wanted('load')) continue;
          await levelImages(content, level);
          const tar = path.join(tempDir, `docker-save-${level.targetMB}.tar`);
          await docker(['save', '--output', tar, ...level.images], { timeoutMs: 30 * 60_000 });
          w.saveTars.set(level.targetMB, tar);
          level.archiveBytes = fs.statSync(tar).size;
          if (level === warm) record.setup['docker save archive bytes'] = level.archiveBytes;
        }
      })
    );
  if (wanted('pull'))
    steps.push(
      setupStep(`prepare 2d: docker-registry with the ${warm.targetMB} MB level`, async () => {
        await levelImages(content, warm);
        try {
          w.registry = await prepareRegistry(warm);
        } catch (error) {
          record.notes.push(`Scenario 2d could not be prepared: ${(error as Error).message}`);
          skipped.set(`S2/pull/${warm.targetMB}`, MAX_FAILURES);
          log(`  2d skipped: ${(error as Error).message}`);
        }
      })
    );
  if (wanted('cache-dir'))
    steps.push(
      serial(() =>
        setupStep(`prepare 2e: a cache-dir seeded by a job restoring the ${warm.targetMB} MB level`, async () => {
          const cacheDir = path.join(tempDir, 'cache-dir');
          await withJob('seed-cache-dir', server.env, async job => {
            const main = await job.main({ ...WARM_INPUTS(warm), 'cache-dir': cacheDir });
            if (main.result.outputs['cache-hit'] !== 'true')
              throw new Error(`seeding the cache-dir: no cache hit (${main.facts['Cache restored'] ?? 'no restore'})`);
            await job.post();
          });
          w.cacheDir = cacheDir;
          // Disk space, not apparent size: the kept filesystem image is sparse.
          record.setup['cache-dir bytes'] = Number(
            (await sh('du -s --block-size=1 -- "$1" | cut -f1', { args: [cacheDir] })).stdout.trim()
          );
        })
      )
    );
  if (wanted('save-raw'))
    steps.push(
      serial(() =>
        setupStep(`prepare 3: the ${warm.targetMB} MB level's image as a job leaves it`, async () => {
          const target = path.join(tempDir, 'saved-image', 'docker.img');
          fs.mkdirSync(path.dirname(target));
          await withJob('capture', server.env, async job => {
            const main = await job.main(WARM_INPUTS(warm));
            const dataDir = (JSON.parse(main.result.state.instance) as { instance: { dataDir: string } }).instance
              .dataDir;
            // The entrypoint stops dockerd and unmounts the filesystem on SIGTERM: what post would save.
            await docker(['stop', '--time', '30', main.result.outputs['container-id']]);
            const events = fs.readFileSync(path.join(dataDir, 'events'), 'utf8');
            if (!/^unmounted$/m.test(events)) throw new Error(`the daemon's filesystem was not unmounted: ${events}`);
            await run('cp', ['--sparse=always', path.join(dataDir, 'docker.img'), target]);
          });
          w.savedImage = target;
          record.setup['scenario 3 image: allocated bytes'] = Number(
            (await sh('du -B1 -- "$1" | cut -f1', { args: [target] })).stdout.trim()
          );
        })
      )
    );
  if (wanted('save-layer'))
    steps.push(
      setupStep('prepare 3: a ~20 MB layer of real binaries', async () => {
        const payload = path.join(tempDir, 'payload.bin');
        await sh(`{ cat /usr/bin/* 2>/dev/null || true; } | head -c ${LAYER_BYTES} >"$1"`, { args: [payload] });
        if (fs.statSync(payload).size !== LAYER_BYTES) throw new Error(`/usr/bin holds less than ${LAYER_BYTES} bytes`);
        w.payload = payload;
        w.payloadCompressedBytes = Number(
          (await sh('zstd -3 -q -c -- "$1" | wc -c', { args: [payload] })).stdout.trim()
        );
        record.setup['scenario 3 layer bytes, compressed (zstd -3)'] = w.payloadCompressedBytes;
      })
    );
  return steps;
}

async function main(): Promise<void> {
  cfg = config();
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
  log(
    `setup-dind benchmark ${runId}: ${cfg.quick ? 'QUICK smoke run, ' : ''}${cfg.reps} repetition(s), sizes ${cfg.sizesMB.join(', ')} MB${cfg.methods ? `, methods ${cfg.methods.join(', ')}` : ''}`
  );

  let failed: Error | undefined;
  try {
    await setupStep('check the engine and tools', async () => {
      await dockerOut(['version', '--format', '{{.Server.Version}}']);
      for (const tool of ['zstd', 'tar', 'curl', 'openssl', 'mke2fs', 'dumpe2fs', 'losetup', 'findmnt'])
        await run('bash', ['-c', `command -v ${tool}`]);
      if (process.getuid?.() !== 0) throw new Error('the benchmark runs as root (it mounts its own filesystem)');
      if (!fs.existsSync(path.join(REPO_ROOT, 'dist/main/index.js')))
        throw new Error('dist/ is missing: run `npm run build`');
      await docker(['image', 'inspect', BASE_IMAGE]).catch(() => {
        throw new Error(`${BASE_IMAGE} is not on the engine (nothing can be pulled here)`);
      });
    });
    const scratch = await setupStep("make the run's filesystem", () =>
      makeScratch(SCRATCH_PARENT, `setup-dind-bench-${runId}`, SCRATCH_BYTES, remove =>
        cleanup.add("unmount and remove the run's filesystem", remove)
      )
    );
    if (!scratch.info.journal) throw new Error(`the run's filesystem has no journal: ${JSON.stringify(scratch.info)}`);
    scratchMount = scratch.mount;
    tempDir = path.join(scratch.mount, 'run');
    fs.mkdirSync(tempDir);
    hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-bench-host-'));
    cleanup.add(`remove ${hostDir}`, () => fs.rmSync(hostDir, { recursive: true, force: true }));
    log(`  the run's filesystem: ${scratch.device} on ${scratch.mount} (${scratch.info.options}); host dir ${hostDir}`);
    await setupStep("the action's node (scripts/node24.sh)", actionNode);
    await setupStep('dind image', prepareImage);
    await setupStep('snapshot the action (dist/, action.yml, runner emulation)', snapshotAction);
    record.machine = await machineInfo();
    record.machine.scratch = { ...scratch.info, file: scratch.file, device: scratch.device, mkfs: scratch.mkfs };
    record.machine.hostFs = await describeFs(hostDir);
    const server = await setupStep('start the cache service emulation', () =>
      startCacheServer({ rpcLatencyMs: cfg.rpcLatencyMs })
    );
    cleanup.add('stop the cache service emulation', () => server.stop());
    const content = await setupStep('plan content and start building it', startContent);
    const levels = record.levels;
    if (levels.length === 0) throw new Error('no content levels');
    const warm = levels.reduce(
      (best, l) => (Math.abs(l.targetMB - cfg.warmTargetMB) < Math.abs(best.targetMB - cfg.warmTargetMB) ? l : best),
      levels[0]
    );
    cfg.warmTargetMB = warm.targetMB;
    const w: Warm = { server, artifacts: new Map(), saveTars: new Map(), warm };

    // Set-up runs as one pipeline: each level is seeded once its images are built, while the next
    // ones build; the docker save archive and the registry once the warm level's images exist, the jobs
    // that restore the warm level (cache-dir, the scenario 3 image) once every level is seeded.
    const seeding = setupStep('build content and seed each level (in a row)', async () => {
      // Each level's populated floor data once its images are built, one level at a time, beside the seeding.
      let populating: Promise<void> = Promise.resolve();
      for (const level of levels) {
        if (wanted('floor-populated')) {
          populating = populating.then(async () => {
            await levelImages(content, level);
            await populate(level);
          });
          // Awaited below, after the seeding: a failure meanwhile must not end the process.
          populating.catch(() => undefined);
        }
        // Set-up, not a measurement: one retry, so that a flake does not end a long run.
        await seed(server, content, level, w.artifacts).catch(error => {
          if (cleanup.started) throw error;
          log(`  seeding ${level.targetMB} MB failed, retrying once: ${(error as Error).message}`);
          record.notes.push(`Seeding the ${level.targetMB} MB level failed once: ${(error as Error).message}`);
          return seed(server, content, level, w.artifacts);
        });
      }
      await populating;
    });
    const outcomes = await Promise.allSettled([seeding, ...prepareWarmExtras(w, levels, content, seeding)]);
    const setupFailure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (setupFailure) throw setupFailure.reason;
    // Measurements start with every image built and nothing left to write back.
    await Promise.allSettled([...content.images.values()]);
    await settle();
    // From here on, the cache service behaves as a blob store does: each download capped, each call a round trip away.
    server.setDownloadCap(cfg.capBytesPerSecond);

    await setupStep('scenario 1 (cold start)', scenario1);
    await setupStep('scenarios 2 to 5 (warm start, post, scaling, back to back on the host)', () =>
      warmAndScaling(w, levels)
    );
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
  // Only a full run (every method) writes the committed results.
  const written = writeReports(record, path.join(REPO_ROOT, 'bench'), cfg.quick || cfg.methods ? '-quick' : '');
  console.log(`\n${written.markdown}`);
  log(`wrote ${written.files.join(', ')}; total ${record.durationSeconds?.toFixed(0)} s`);
  if (failed || record.failures.length > 0) process.exitCode = 1;
}

/** BENCH_REPORT_ONLY=bench/results.json: rewrite the reports from a run's raw record, measuring nothing. */
function reportOnly(file: string): void {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord & { computed?: unknown };
  delete saved.computed;
  const suffix = saved.config.quick || saved.config.methods ? '-quick' : '';
  const written = writeReports(saved, path.dirname(path.resolve(file)), suffix);
  console.log(`wrote ${written.files.join(', ')}`);
}

if (process.env.BENCH_REPORT_ONLY) reportOnly(process.env.BENCH_REPORT_ONLY);
else void main();
