// The scenarios' repetitions: the disk probes around them, scenario 1's cold starts, and scenarios 2 to 5
// over the levels, in rotating order.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LevelInfo, Scenario } from './model';
import { probeDisk } from './probe';
import { startPhases } from './start-phases';
import { run } from './proc';
import { rotate } from './stats';
import {
  record,
  cfg,
  tempDir,
  hostDir,
  scratchMount,
  log,
  wanted,
  addSample,
  measure,
  withJob,
  phaseDetail,
  COLD_INPUTS
} from './session';
import type { Warm } from './warm';
import { actionCertificates, floor, dataMethod } from './methods';

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

export async function scenario1(): Promise<void> {
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
              const result = await run('sh', [path.join(__dirname, '..', 'official-tls.sh'), dir]);
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

export async function warmAndScaling(w: Warm, levels: LevelInfo[]): Promise<void> {
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
