// The content levels: their images built, each level's cache seeded as CI would, its streams kept for
// the stages alone, and the populated floor's data.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CacheServer } from '../../test/support/cache-server';
import { defined } from '../../test/support/defined';
import { phase } from './action';
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
} from './content';
import { withPlainDaemon } from './floor';
import type { LevelInfo } from './model';
import { describeState, splitSpans } from './parts';
import { levelState, streamsScript, writeSpanLists } from './raw';
import { now, sh } from './proc';
import {
  BENCH_LABEL,
  runId,
  cleanup,
  record,
  cfg,
  tempDir,
  image,
  log,
  addSample,
  withJob,
  phaseDetail,
  WARM_INPUTS,
  removeOnCleanup
} from './session';

export interface Content {
  /** Resolves when the image is built. */
  images: Map<string, Promise<BuiltImage>>;
}

/** Plans the levels from the catalog's estimates and starts building; returns at once. */
export async function startContent(): Promise<Content> {
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
export async function levelImages(
  content: Content,
  level: LevelInfo,
  which: 'images' | 'added' = 'images'
): Promise<BuiltImage[]> {
  const built = await Promise.all(level[which].map(ref => defined(content.images.get(ref), `built image ${ref}`)));
  if (which === 'images')
    level.estimatedBytes = (await imageSize(BASE_IMAGE)) + built.reduce((sum, b) => sum + b.addedBytes, 0);
  return built;
}

/** What a level keeps on the run's filesystem for the stages alone: its streams' bytes, compressed and not. */
export interface Artifacts {
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
export async function seed(server: CacheServer, content: Content, level: LevelInfo, artifacts: Map<number, Artifacts>) {
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

/**
 * The populated floor's data for a level: a plain dockerd of the same image on a directory of the run's
 * filesystem `docker load`s the level's images (as its seeding job does), and stops.
 */
export async function populate(level: LevelInfo): Promise<void> {
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
