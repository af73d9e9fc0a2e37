// Each method's measurement: the action's jobs, the floors, the raw pipeline and its stages, the
// alternatives (load, pull), the saves.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from '../../src/daemon/tls';
import { defined } from '../../test/support/defined';
import { phase, type BenchJob } from './action';
import { removeImage } from './content';
import { floorStart } from './floor';
import type { LevelInfo, Sample } from './model';
import { splitSpans } from './parts';
import { dropNewEntries, levelState, streamsScript, writeSpanLists } from './raw';
import { startPhases } from './start-phases';
import { docker, now, sh } from './proc';
import {
  BENCH_LABEL,
  runId,
  cfg,
  tempDir,
  hostDir,
  image,
  withJob,
  phaseDetail,
  restoreFact,
  WARM_INPUTS,
  COLD_INPUTS,
  type Measured,
  removeOnCleanup
} from './session';
import { LAYER_BYTES, type Warm } from './warm';

/** Scenario 2d's inner daemon bridge: anywhere but the host's docker0 subnet, where the registry listens. */
const INNER_BRIDGE = '10.254.254.1/24';

/** The action's own certificate code (src/daemon/tls.ts), in process, whichever of its API generations is there. */
export async function actionCertificates(): Promise<{ seconds: number }> {
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

/** A floor's start (scenario 1's on an empty directory, the populated one's on `lib`), its container removed. */
export async function floor(lib?: string): Promise<Measured> {
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

/** The job's post, which must save: its save phase's time, what it uploaded, and `detail`. */
async function postSaves(
  w: Warm,
  job: BenchJob,
  detail: Sample['detail']
): Promise<{ seconds: number; detail: Sample['detail'] }> {
  const before = w.server.stats();
  const post = await job.post();
  const saved = post.facts.Cache ?? '';
  if (!saved.startsWith('saved')) throw new Error(`post did not save: ${saved}`);
  return {
    seconds: phase(post, 'Save the cache'),
    detail: {
      uploadedBytes: w.server.stats().uploadedBytes - before.uploadedBytes,
      ...detail,
      postSeconds: post.seconds,
      saved,
      ...phaseDetail(post, 'post ')
    }
  };
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
      return postSaves(w, job, { changeSeconds: step.seconds });
    });
  } finally {
    await dropNewEntries(server, entries);
  }
}

export async function dataMethod(method: string, level: LevelInfo, w: Warm, rep: number): Promise<Measured> {
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
          return postSaves(w, job, { loadSeconds: load.seconds });
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
