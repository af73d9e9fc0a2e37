// The warm level's other set-ups: docker save archives, the registry, a seeded cache-dir, the image as a
// job leaves it, and scenario 3's layer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CacheServer } from '../../test/support/cache-server';
import { removeImage } from './content';
import type { LevelInfo } from './model';
import { docker, run, sh } from './proc';
import { bridgeGateway, ensureDockerRegistry, freePort, startRegistry, type Registry } from './registry';
import {
  MAX_FAILURES,
  cleanup,
  record,
  tempDir,
  skipped,
  log,
  wanted,
  setupStep,
  withJob,
  WARM_INPUTS
} from './session';
import { type Content, levelImages, type Artifacts } from './levels';

/** The ~20 MB layer a job adds in scenario 3: real binaries, so that it compresses as layers do. */
export const LAYER_BYTES = 20_000_000;

export interface Warm {
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
  let stopPush: (() => Promise<void>) | undefined;
  const stopAt = (stop: () => Promise<void>, pid: number) => cleanup.add(`stop docker-registry (pid ${pid})`, stop);
  // The outer engine pushes over plain HTTP only to loopback (insecure by default there)…
  const pushPort = await freePort('127.0.0.1');
  await startRegistry(`127.0.0.1:${pushPort}`, storage, tempDir, (stop, pid) => (stopPush = stopAt(stop, pid)));
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
  await stopPush?.();
  record.setup['registry bytes'] = Number((await sh(`du -sb -- "$1" | cut -f1`, { args: [storage] })).stdout.trim());
  // …while a dind daemon reaches the host at its bridge address, where loopback is the container itself.
  const gateway = await bridgeGateway();
  const pullPort = await freePort(gateway);
  const registry = await startRegistry(`${gateway}:${pullPort}`, storage, tempDir, stopAt);
  return { registry, gateway, refs: names.map(name => `${registry.addr}/setup-dind-bench/${name}`) };
}

/** The set-up steps of the warm level's other scenarios, started: each a promise of its own. */
export function prepareWarmExtras(
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
