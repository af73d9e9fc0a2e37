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
import { startCacheServer } from '../test/support/cache-server';
import { crashes } from './lib/action';
import { BASE_IMAGE } from './lib/content';
import type { RunRecord } from './lib/model';
import { docker, dockerOut, run } from './lib/proc';
import { writeReports } from './lib/report';
import { describeFs, makeScratch } from './lib/scratch';
import { config } from './lib/config';
import {
  REPO_ROOT,
  BENCH_LABEL,
  runId,
  cleanup,
  record,
  cfg,
  tempDir,
  hostDir,
  begin,
  useDirs,
  log,
  wanted,
  setupStep,
  settle,
  prepareImage
} from './lib/session';
import { machineInfo, snapshotAction, actionNode } from './lib/machine';
import { startContent, levelImages, seed, populate } from './lib/levels';
import { type Warm, prepareWarmExtras } from './lib/warm';
import { scenario1, warmAndScaling } from './lib/scenarios';

/** The run's filesystem: a sparse file this large (a runner's disk has tens of GB free). */
const SCRATCH_BYTES = 60 * 1024 ** 3;
/** Where the run's filesystem image goes (the host's filesystem; the file is sparse). */
const SCRATCH_PARENT = '/var/tmp';

export async function main(): Promise<void> {
  begin(config());
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
    useDirs({
      scratchMount: scratch.mount,
      tempDir: path.join(scratch.mount, 'run'),
      hostDir: fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-bench-host-'))
    });
    fs.mkdirSync(tempDir);
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
