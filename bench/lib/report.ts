// From a run's samples to results.md (tables, targets, explanations), results.json (everything,
// raw) and restore-scaling.svg.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LevelInfo, RunRecord, Sample } from './model';
import { linearFit, max, median, min, type LinearFit } from './stats';
import { lineChart, type Series } from './svg';

const MB = 1e6;

interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
  values: number[];
}

function samples(record: RunRecord, method: string, sizeMB?: number): Sample[] {
  for (const sample of record.samples) sample.detail ??= {};
  return record.samples.filter(
    s => s.method === method && (sizeMB === undefined || s.sizeMB === sizeMB) && s.scenario !== 'seed'
  );
}

function stat(values: number[]): Stat {
  const finite = values.filter(Number.isFinite);
  return { median: median(finite), min: min(finite), max: max(finite), n: finite.length, values: finite };
}

function statOf(
  record: RunRecord,
  method: string,
  sizeMB?: number,
  pick: (s: Sample) => number = s => s.seconds
): Stat {
  return stat(samples(record, method, sizeMB).map(pick));
}

function detail(key: string): (s: Sample) => number {
  return s => Number(s.detail[key]);
}

const sec = (v: number) => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 2 : 1)} s` : 'n/a');
const mb = (bytes: number | undefined) =>
  bytes !== undefined && Number.isFinite(bytes) ? `${(bytes / MB).toFixed(0)} MB` : 'n/a';
const x = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a');
const spread = (s: Stat) => (s.n === 0 ? 'no sample' : s.n === 1 ? 'n=1' : `${sec(s.min)} – ${sec(s.max)}, n=${s.n}`);

/** Ratios of the same repetition (paired), as a range, to show how stable a ratio of medians is. */
function pairedRatios(
  record: RunRecord,
  num: string,
  den: string,
  sizeMB: number | undefined,
  pickNum = (s: Sample) => s.seconds,
  pickDen = (s: Sample) => s.seconds
): Stat {
  const ratios: number[] = [];
  for (const a of samples(record, num, sizeMB)) {
    const b = samples(record, den, sizeMB).find(s => s.rep === a.rep);
    if (b) ratios.push(pickNum(a) / pickDen(b));
  }
  return stat(ratios);
}

interface Target {
  id: string;
  what: string;
  value: string;
  target: string;
  met: boolean | undefined;
  miss: string;
  why?: string;
}

function judge(
  value: number,
  op: '<=' | '>=',
  bound: number,
  unit: 'x' | 's' | 'B'
): { met: boolean | undefined; miss: string } {
  if (!Number.isFinite(value)) return { met: undefined, miss: 'not measured' };
  const met = op === '<=' ? value <= bound : value >= bound;
  if (met) return { met, miss: '' };
  const by = Math.abs(value - bound);
  const text =
    unit === 'x'
      ? `${by.toFixed(2)}× (${((by / bound) * 100).toFixed(0)} %)`
      : unit === 's'
        ? `${by.toFixed(2)} s`
        : `${by} bytes`;
  return { met, miss: `missed by ${text}` };
}

/** A markdown table row; pipes inside cells are escaped. */
function tr(cells: Array<string | number>): string {
  return `| ${cells.map(c => String(c).replace(/\\?\|/g, '\\|')).join(' | ')} |`;
}

const mark = (met: boolean | undefined) => (met === undefined ? '—' : met ? '✅ met' : '❌ missed');

interface LevelRow {
  level: LevelInfo;
  dataMB: number;
  action: Stat;
  restore: Stat;
  daemonStart: Stat;
  raw: Stat;
  download: Stat;
  zstd: Stat;
  tar: Stat;
  seedSave?: number;
}

export interface Computed {
  targets: Target[];
  rows: LevelRow[];
  fitAction?: LinearFit;
  fitRaw?: LinearFit;
  /** The same medians against the number of files in the tree. */
  fitActionFiles?: LinearFit;
}

export function compute(record: RunRecord): Computed {
  const cfg = record.config;
  const warm = cfg.warmTargetMB;
  const targets: Target[] = [];

  // Scenario 1.
  const cold = statOf(record, 'action-cold');
  const floor = statOf(record, 'floor');
  const diff = cold.median - floor.median;
  const s1 = judge(diff, '<=', 1, 's');
  const coldPhases = phaseMedians(samples(record, 'action-cold'));
  targets.push({
    id: '1',
    what: 'cold start: action main until the daemon answers, minus the floor (plain dockerd on a unix socket until its first ping)',
    value: `${sec(cold.median)} − ${sec(floor.median)} = ${Number.isFinite(diff) ? `${diff >= 0 ? '+' : ''}${diff.toFixed(2)} s` : 'n/a'}`,
    target: '≤ 1 s',
    ...s1,
    why: s1.met === false ? explainCold(diff, floor.median, coldPhases) : undefined
  });

  // Scenario 2.
  const a = statOf(record, 'action-warm', warm);
  const b = statOf(record, 'raw-pipeline', warm);
  const c = statOf(record, 'load', warm);
  const d = statOf(record, 'pull', warm);
  const ab = a.median / b.median;
  const ca = c.median / a.median;
  const da = d.median / a.median;
  const jab = judge(ab, '<=', 1.3, 'x');
  const jca = judge(ca, '>=', 3, 'x');
  const jda = judge(da, '>=', 1.5, 'x');
  const warmPhases = phaseMedians(samples(record, 'action-warm', warm));
  const restoreWarm = statOf(record, 'action-warm', warm, detail('restoreSeconds')).median;
  const startWarm = statOf(record, 'action-warm', warm, detail('daemonStartSeconds')).median;
  targets.push({
    id: '2 a/b',
    what: `warm start (${warm} MB level): action restore until ready ÷ raw download → zstd -d → tar -x`,
    value: x(ab),
    target: '≤ 1.3',
    ...jab,
    why: jab.met === false ? explainAB(a.median, b.median, restoreWarm, startWarm, warmPhases) : undefined
  });
  const warmLevel = record.levels.find(l => l.targetMB === warm);
  const tarWarm = statOf(record, 'tar', warm).median;
  const zstdWarm = statOf(record, 'zstd', warm).median;
  const downloadWarm = statOf(record, 'download', warm).median;
  const coldInLoad = statOf(record, 'load', warm, detail('mainSeconds')).median;
  const loadOnly = statOf(record, 'load', warm, detail('loadSeconds')).median;
  targets.push({
    id: '2 c/a',
    what: 'docker load of a docker save archive (+ daemon start) ÷ action warm start',
    value: x(ca),
    target: '≥ 3',
    ...jca,
    why:
      jca.met === false
        ? `docker load took ${sec(loadOnly)} after a ${sec(coldInLoad)} cold start (${sec(c.median)}), against ${sec(a.median)} for the action's whole warm start (restore ${sec(restoreWarm)}, then the daemon's start on the restored data ${sec(startWarm)}). ` +
          `It is not the slow path the target assumes: it unpacked the same ${warmLevel?.files ?? '?'} files in less time than GNU tar -x alone needs for them here (${sec(tarWarm)}, ${((tarWarm / (warmLevel?.files ?? NaN)) * 1000).toFixed(2)} ms a file, from a local file with no decompression), ` +
          `so the restore, which streams download (${sec(downloadWarm)} alone), zstd -d (${sec(zstdWarm)}) and that tar -x on the same ${record.machine?.cpus ?? '?'} cores, cannot be 3× faster. ` +
          `Creating files dominates every method on this machine (scenario 4: restore time follows the file count); why tar's extraction is slower than dockerd's own layer unpacking is not broken down here. ` +
          `docker load also skips what costs it in CI: its archive (${mb(record.setup['docker save archive bytes'])}, uncompressed) was on local disk, where an image-cache action must first download it, ` +
          `${x(Number(record.setup['docker save archive bytes']) / Number(warmLevel?.compressedBytes))} the size of this cache's zstd archive (${mb(warmLevel?.compressedBytes)}).`
        : undefined
  });
  const coldInPull = statOf(record, 'pull', warm, detail('mainSeconds')).median;
  const pullOnly = statOf(record, 'pull', warm, detail('pullSeconds')).median;
  targets.push({
    id: '2 d/a',
    what: 'docker pull from a local registry on the host (+ daemon start) ÷ action warm start',
    value: x(da),
    target: '≥ 1.5',
    ...jda,
    why:
      jda.met === false
        ? `The pulls took ${sec(pullOnly)} after a ${sec(coldInPull)} cold start (${sec(d.median)}), against ${sec(a.median)} for the warm start. From a registry on loopback the transfer is nearly free; ` +
          `the daemon gunzips${record.setup['registry bytes'] ? ` ${mb(record.setup['registry bytes'])} of layers` : ''} and unpacks the same files, up to 3 layers of each image at once and all images at once, ` +
          `so gunzip and file creation can use both cores, while the cache restore is one tar stream (tar -x alone: ${sec(tarWarm)}; the whole restore ${sec(restoreWarm)}). ` +
          `Over a real network the bytes would be about the same${record.setup['registry bytes'] ? ` (${mb(record.setup['registry bytes'])} of gzip layers against ${mb(warmLevel?.compressedBytes)} of zstd archive)` : ''}, so the cache gains only where a registry is slower than the cache service.`
        : undefined
  });

  // Scenario 3.
  const saveAction = statOf(record, 'save-action', warm);
  const saveRaw = statOf(record, 'save-raw', warm);
  const sr = saveAction.median / saveRaw.median;
  const jsr = judge(sr, '<=', 1.3, 'x');
  const uploadedValues = record.samples
    .filter(s => s.method === 'action-warm')
    .map(s => Number(s.detail.postUploadedBytes));
  const uploadedMax = uploadedValues.length ? Math.max(...uploadedValues) : NaN;
  const jup = judge(uploadedMax, '<=', 0, 'B');
  const savedBytes = statOf(record, 'save-action', warm, detail('uploadedBytes')).median;
  targets.push({
    id: '3 save',
    what: `post's "Save the cache" phase ÷ raw tar | zstd -T0 -3 of the same data (${warm} MB level)`,
    value: x(sr),
    target: '≤ 1.3',
    ...jsr,
    why:
      jsr.met === false
        ? explainSave(saveAction.median, saveRaw.median, savedBytes, record.machine?.cpus ?? NaN)
        : undefined
  });
  targets.push({
    id: '3 unchanged',
    what: `bytes uploaded by post when nothing changed (largest of ${uploadedValues.length} posts, every size)`,
    value: Number.isFinite(uploadedMax) ? `${uploadedMax} B` : 'n/a',
    target: '0',
    ...jup,
    why:
      jup.met === false
        ? `Decisions: ${[...new Set(record.samples.filter(s => s.method === 'action-warm').map(s => String(s.detail.postDecision)))].join('; ')}`
        : undefined
  });

  // Scenario 4.
  const rows: LevelRow[] = record.levels
    .filter(l => l.dataBytes !== undefined)
    .map(level => ({
      level,
      dataMB: (level.dataBytes ?? NaN) / MB,
      action: statOf(record, 'action-warm', level.targetMB),
      restore: statOf(record, 'action-warm', level.targetMB, detail('restoreSeconds')),
      daemonStart: statOf(record, 'action-warm', level.targetMB, detail('daemonStartSeconds')),
      raw: statOf(record, 'raw-pipeline', level.targetMB),
      download: statOf(record, 'download', level.targetMB),
      zstd: statOf(record, 'zstd', level.targetMB),
      tar: statOf(record, 'tar', level.targetMB),
      seedSave: Number(
        record.samples.find(s => s.scenario === 'seed' && s.sizeMB === level.targetMB)?.detail.saveSeconds
      )
    }));
  const fitAction = linearFit(
    rows.map(r => r.dataMB),
    rows.map(r => r.action.median)
  );
  const fitRaw = linearFit(
    rows.map(r => r.dataMB),
    rows.map(r => r.raw.median)
  );
  const fitActionFiles = linearFit(
    rows.map(r => r.level.files ?? NaN),
    rows.map(r => r.action.median)
  );
  return { targets, rows, fitAction, fitRaw, fitActionFiles };
}

function phaseMedians(list: Sample[]): Record<string, number> {
  const keys = new Set(
    list.flatMap(s => Object.keys(s.detail).filter(k => k.startsWith('phase: ') || k.startsWith('outside')))
  );
  return Object.fromEntries([...keys].map(k => [k, median(list.map(s => Number(s.detail[k])))]));
}

function findPhase(phases: Record<string, number>, prefix: string): number {
  const key = Object.keys(phases).find(k => k.startsWith(prefix));
  return key ? phases[key] : NaN;
}

function explainCold(diff: number, floor: number, phases: Record<string, number>): string {
  const prepare = findPhase(phases, 'phase: Prepare');
  const start = findPhase(phases, 'phase: Start the daemon');
  const hand = findPhase(phases, 'phase: Hand');
  const outside = findPhase(phases, 'outside');
  return (
    `The action is ${diff.toFixed(2)} s slower than the floor. Its time splits into node start-up and exit ${sec(outside)}, ` +
    `preparation ${sec(prepare)} (certificates, image check, network), daemon start ${sec(start)} (create, files in, start, TLS polling every 100 ms) against the floor's ${sec(floor)} in all, ` +
    `and hand-over ${sec(hand)} (variables, docker context through the CLI).`
  );
}

function explainAB(a: number, b: number, restore: number, start: number, phases: Record<string, number>): string {
  const outside = findPhase(phases, 'outside');
  const hand = findPhase(phases, 'phase: Hand');
  const prepare = findPhase(phases, 'phase: Prepare');
  return (
    `The warm start takes ${sec(a - b)} more than the raw pipeline (${sec(a)} vs ${sec(b)}). Of that: the action's own restore ` +
    `(lookup, then node's HTTP client feeding zstd | tar) took ${sec(restore)}, ${sec(restore - b)} more than curl | zstd | tar; preparation around it ` +
    `${sec(prepare - restore)}; the daemon's start on the restored data ${sec(start)}; hand-over ${sec(hand)}; node start-up and exit ${sec(outside)}. ` +
    `The raw limit has no daemon to start, so a/b cannot reach 1 and the fixed part weighs most on small levels.`
  );
}

function explainSave(action: number, raw: number, bytes: number, cpus: number): string {
  return (
    `The save phase took ${sec(action)} against ${sec(raw)} for the same tar | zstd into wc (${sec(action - raw)} more). It streams that tar | zstd into an upload of ${mb(bytes)} ` +
    `(${(bytes / MB / action).toFixed(0)} MB/s) in 32 MB blocks, 4 at a time, to the emulated cache service: azurite, a node process, behind a proxy in the benchmark's own process, ` +
    `on the same ${cpus} cores that zstd -T0 compresses with; reserving the entry, writing the metadata file and committing add a little.`
  );
}

function levelTable(c: Computed): string[] {
  const lines = [
    tr([
      'level',
      'images',
      'data (tar)',
      'tree (du)',
      'files',
      'compressed',
      'ratio',
      'action: main until ready',
      'action: restore',
      'daemon start',
      'raw: curl | zstd -d | tar -x',
      'download alone',
      'zstd -d alone',
      'tar -x alone',
      'post save (seed job, n=1)'
    ]),
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ];
  for (const r of c.rows) {
    const l = r.level;
    lines.push(
      tr([
        `${l.targetMB} MB`,
        l.images.map(i => i.replace(/^setup-dind-bench\/|:.*$/g, '')).join(' + '),
        mb(l.dataBytes),
        mb(l.treeBytes),
        l.files ?? 'n/a',
        mb(l.compressedBytes),
        l.compressedBytes && l.dataBytes ? `${((l.compressedBytes / l.dataBytes) * 100).toFixed(0)} %` : 'n/a',
        sec(r.action.median),
        sec(r.restore.median),
        sec(r.daemonStart.median),
        sec(r.raw.median),
        sec(r.download.median),
        sec(r.zstd.median),
        sec(r.tar.median),
        sec(r.seedSave ?? NaN)
      ])
    );
  }
  return lines;
}

function scalingVerdict(c: Computed): string[] {
  const out: string[] = [];
  const rows = c.rows.filter(r => Number.isFinite(r.action.median));
  if (rows.length < 3 || !c.fitAction)
    return [
      `Only ${rows.length} size(s) measured: too few to judge how restore time scales (BENCH_SIZES needs at least 3).`
    ];
  const f = c.fitAction;
  const marginal = rows
    .slice(1)
    .map((r, i) => (r.action.median - rows[i].action.median) / ((r.dataMB - rows[i].dataMB) / 1000));
  const linear = f.r2 >= 0.98 && f.worstRelativeResidual <= 0.15;
  out.push(
    `Action restore until ready ≈ ${f.intercept.toFixed(2)} s + ${f.slope.toFixed(5)} s/MB × size (${(f.slope * 1000).toFixed(1)} s per GB, ` +
      `${(1 / f.slope).toFixed(0)} MB/s), R² = ${f.r2.toFixed(3)}, worst point ${(f.worstRelativeResidual * 100).toFixed(0)} % off the line. ` +
      `Marginal cost between consecutive sizes: ${marginal.map(m => `${m.toFixed(1)} s/GB`).join(', ')}.`
  );
  const ff = c.fitActionFiles;
  const byFiles = ff !== undefined && ff.r2 > f.r2 + 0.05 && ff.r2 >= 0.95;
  if (linear) {
    out.push(
      `**It grows linearly** with the data size, on top of a fixed ${f.intercept.toFixed(1)} s (node start-up, certificates, network, container and daemon start).`
    );
  } else {
    out.push(
      `**It does not grow linearly with the bytes** (R² ${f.r2.toFixed(3)}, worst point ${(f.worstRelativeResidual * 100).toFixed(0)} % off; the marginal cost per GB falls as the levels grow).` +
        (ff
          ? ` Against the number of files in the tree it ${byFiles ? '**is linear**' : 'fits'}: ${ff.intercept.toFixed(1)} s + ${(ff.slope * 1000).toFixed(2)} s per 1000 files (R² ${ff.r2.toFixed(3)}, worst point ${(ff.worstRelativeResidual * 100).toFixed(0)} % off). ` +
            `The levels differ in file size: ${rows.map(r => `${mb(r.level.dataBytes)} in ${r.level.files ?? '?'} files`).join(', ')}; the big compilers and JDK of the largest level add bytes in few files. ` +
            (byFiles ? 'Restore time follows the files created, not the bytes moved.' : '')
          : '')
    );
  }
  if (c.fitRaw)
    out.push(
      `The raw pipeline: ${c.fitRaw.intercept.toFixed(2)} s + ${(c.fitRaw.slope * 1000).toFixed(1)} s per GB (R² ${c.fitRaw.r2.toFixed(3)}).`
    );
  const big = rows[rows.length - 1];
  const stages: Array<[string, number]> = [
    ['download', big.download.median],
    ['zstd -d', big.zstd.median],
    ['tar -x (write)', big.tar.median]
  ];
  const sum = stages.reduce((s, [, v]) => s + v, 0);
  const slowest = [...stages].sort((p, q) => q[1] - p[1])[0];
  const parts = [...stages, ['daemon start', big.daemonStart.median] as [string, number]];
  const total = parts.reduce((s, [, v]) => s + v, 0);
  out.push(
    `Where the time goes at ${mb(big.level.dataBytes)}: alone, ${stages.map(([n, v]) => `${n} ${sec(v)}`).join(', ')} (sum ${sec(sum)}); streamed together they take ${sec(big.raw.median)} ` +
      `(${big.raw.median < sum ? `${sec(sum - big.raw.median)} saved by overlapping` : 'no gain from overlapping: the stages compete for the 2 cores'}), and the action's restore took ${sec(big.restore.median)}. ` +
      `The slowest stage is ${slowest[0]}. Then the daemon starts in ${sec(big.daemonStart.median)}. ` +
      `Shares of download + decompress + write + daemon start (stages alone): ${parts.map(([n, v]) => `${n} ${((v / total) * 100).toFixed(0)} %`).join(', ')}.`
  );
  return out;
}

export function renderMarkdown(record: RunRecord, c: Computed, svgName: string): string {
  const cfg = record.config;
  const m = record.machine;
  const warm = cfg.warmTargetMB;
  const lines: string[] = [];
  const med = (method: string, size?: number, key?: string) =>
    statOf(record, method, size, key ? detail(key) : undefined);
  lines.push(
    `# setup-dind benchmark${cfg.quick ? ' (BENCH_QUICK smoke run: tiny sizes, numbers mean little)' : ''}`,
    ''
  );
  lines.push(
    `Run ${record.startedAt}, ${record.durationSeconds !== undefined ? `${(record.durationSeconds / 60).toFixed(1)} min` : 'unfinished'}; ${cfg.reps} repetition(s) (scenario 1: ${cfg.s1Reps}), sizes ${cfg.sizesMB.join(', ')} MB, ` +
      `scenarios 2 and 3 at the ${warm} MB level. Medians; every repetition runs the methods in a rotated order and goes through the sizes alternately up and down. Raw samples: ${cfg.quick ? 'results-quick.json' : 'results.json'}.`
  );
  if (m) {
    lines.push(
      '',
      `Machine: ${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ${m.kernel}; disk ${m.disk} (${m.filesystem}, temp dir ${m.tempDir}); engine ${m.engine}; ` +
        `dind image ${m.dindImage} ${m.dindImageId.slice(7, 19)}, inner Docker ${m.innerDocker ?? '?'}; ${Object.entries(
          m.tools
        )
          .map(([k, v]) => `${k}: ${v.replace(/^\*+ /, '').replace(/ \(x86_64.*$/, '')}`)
          .join(
            '; '
          )}; the action's dist/ built ${m.distBuilt}, commit ${m.git}. The machine is shared and noisy: compare only numbers of the same run.`
    );
  }
  lines.push(
    '',
    '## Targets',
    '',
    tr(['scenario', 'measurement', 'value', 'target', 'result']),
    '| --- | --- | --- | --- | --- |'
  );
  for (const t of c.targets)
    lines.push(
      tr([t.id, t.what, t.value, t.target, `${mark(t.met)}${t.miss && t.met === false ? ` (${t.miss})` : ''}`])
    );
  const missed = c.targets.filter(t => t.met === false);
  if (missed.length > 0) {
    lines.push('', '**Missed, by how much and why:**', '');
    for (const t of missed) lines.push(`- **${t.id}** ${t.miss}. ${t.why ?? ''}`);
  }

  lines.push(
    '',
    '## Results',
    '',
    tr(['scenario', 'method', 'median', 'spread (min – max, n)']),
    '| --- | --- | ---: | --- |'
  );
  const row = (scenario: string, what: string, s: Stat) => lines.push(tr([scenario, what, sec(s.median), spread(s)]));
  row('1', 'action main, cold (no cache), until the daemon answers over mutual TLS', med('action-cold'));
  row('1a', 'floor: same image, plain dockerd on a unix socket, create → first ping', med('floor'));
  row('1b', "official entrypoint's TLS material: 3 × RSA-4096 with openssl", med('official-tls'));
  lines.push(
    tr([
      '1b',
      'floor + official TLS material (docker:dind with TLS, before its daemon answers)',
      sec(med('floor').median + med('official-tls').median),
      'sum of medians'
    ])
  );
  row('1', "the action's certificates: ECDSA P-256 CA + server + client (src/tls.ts in process)", med('action-tls'));
  row(
    '2a',
    `action main, warm: restore the ${warm} MB level from the cache service, until ready`,
    med('action-warm', warm)
  );
  row('2b', 'raw limit: curl | zstd -d | tar -x of the same archive (no daemon)', med('raw-pipeline', warm));
  row('2c', 'action main, cold + docker load of a docker save archive on local disk', med('load', warm));
  row('2d', 'action main, cold + docker pull (all images at once) from docker-registry on the host', med('pull', warm));
  row('3', `post: "Save the cache" phase (${warm} MB level, after a job that added a tag)`, med('save-action', warm));
  row('3', 'raw: tar | zstd -T0 -3 of the same data into wc -c', med('save-raw', warm));
  row('3', `post, whole step, nothing changed (${warm} MB level)`, med('action-warm', warm, 'postSeconds'));
  lines.push(
    tr([
      '2',
      'a/b, c/a, d/a: ratio of medians (range of the ratios paired by repetition)',
      `${x(med('action-warm', warm).median / med('raw-pipeline', warm).median)}, ${x(med('load', warm).median / med('action-warm', warm).median)}, ${x(med('pull', warm).median / med('action-warm', warm).median)}`,
      `${ratioRange(pairedRatios(record, 'action-warm', 'raw-pipeline', warm))}; ${ratioRange(pairedRatios(record, 'load', 'action-warm', warm))}; ${ratioRange(pairedRatios(record, 'pull', 'action-warm', warm))}`
    ])
  );

  lines.push(
    '',
    '### Scenario 1: where the cold start goes',
    '',
    tr(['part of the action main', 'median']),
    '| --- | ---: |'
  );
  for (const [name, value] of Object.entries(phaseMedians(samples(record, 'action-cold'))))
    lines.push(tr([name.replace(/^phase: /, ''), sec(value)]));
  lines.push(tr(['(floor, whole: create → first ping)', sec(med('floor').median)]));

  lines.push(
    '',
    `### Scenario 2: parts at the ${warm} MB level`,
    '',
    tr(['method', 'part', 'median']),
    '| --- | --- | ---: |'
  );
  for (const [name, value] of Object.entries(phaseMedians(samples(record, 'action-warm', warm))))
    lines.push(tr(['2a', name.replace(/^phase: /, ''), sec(value)]));
  lines.push(
    tr([
      '2a',
      '… of which the restore (lookup + download → zstd → tar), overlapping certificates, network and image check',
      sec(med('action-warm', warm, 'restoreSeconds').median)
    ])
  );
  lines.push(tr(['2c', 'cold start', sec(med('load', warm, 'mainSeconds').median)]));
  lines.push(
    tr([
      '2c',
      `docker load --input (archive ${mb(record.setup['docker save archive bytes'])})`,
      sec(med('load', warm, 'loadSeconds').median)
    ])
  );
  lines.push(tr(['2d', 'cold start', sec(med('pull', warm, 'mainSeconds').median)]));
  lines.push(
    tr([
      '2d',
      `docker pull of ${record.levels.find(l => l.targetMB === warm)?.images.length ?? '?'} images at once`,
      sec(med('pull', warm, 'pullSeconds').median)
    ])
  );

  lines.push('', '### Scenario 3: post', '');
  const unchanged = record.samples.filter(s => s.method === 'action-warm');
  lines.push(
    `- Nothing changed: ${unchanged.length} posts (every size) uploaded ${unchanged.reduce((s, v) => s + Number(v.detail.postUploadedBytes), 0)} bytes in all and reserved ${unchanged.reduce((s, v) => s + Number(v.detail.postReservations), 0)} cache entries; their decision: "${[...new Set(unchanged.map(s => String(s.detail.postDecision)))].join('" / "')}".`,
    `- After a change at the ${warm} MB level: the save phase took ${sec(med('save-action', warm).median)} and uploaded ${mb(med('save-action', warm, 'uploadedBytes').median)}; the whole post ${sec(med('save-action', warm, 'postSeconds').median)}. Raw tar | zstd: ${sec(med('save-raw', warm).median)} for ${mb(med('save-raw', warm, 'compressedBytes').median)}.`,
    `- Compressed size against data size (zstd -3): ${record.levels
      .filter(l => l.compressedBytes && l.dataBytes)
      .map(
        l =>
          `${mb(l.dataBytes)} → ${mb(l.compressedBytes)} (${((l.compressedBytes! / l.dataBytes!) * 100).toFixed(0)} %)`
      )
      .join('; ')}.`,
    ''
  );
  const postSamples = samples(record, 'save-action', warm);
  const postUnchanged = samples(record, 'action-warm', warm);
  const postKeys = [
    ...new Set(
      [...postSamples, ...postUnchanged].flatMap(s =>
        Object.keys(s.detail).filter(k => k.startsWith('post phase') || k.startsWith('post outside'))
      )
    )
  ];
  lines.push(tr(['part of post (median)', 'after a change', 'nothing changed']), '| --- | ---: | ---: |');
  for (const key of postKeys)
    lines.push(
      tr([
        key.replace(/^post (phase: )?/, ''),
        sec(median(postSamples.map(s => Number(s.detail[key])))),
        sec(median(postUnchanged.map(s => Number(s.detail[key]))))
      ])
    );

  lines.push(
    '',
    '### Scenario 4: restore time against data size',
    '',
    `![restore time against data size](${svgName})`,
    ''
  );
  lines.push(...levelTable(c), '');
  lines.push(...scalingVerdict(c).map(line => `- ${line}`));

  lines.push('', '## How it was measured', '');
  lines.push(
    '- Every action step runs `dist/` as the runner does (test/support/runner.ts), timed from spawning node to its exit; phase times come from the job summary the action writes. Inputs: `image` (the dind test image, under a tag of this run), `pull: never`; warm jobs use `cache-key: L<size>` against the cache service v2 emulation (test/support/cache-server.ts, azurite in memory) on loopback; cold ones `cache: false`.',
    "- Content: images built FROM debian:trixie-slim that apt-get install Debian package sets (CLI tools, Go, build-essential + cmake + gdb, Rust, OpenJDK + Maven) in one or two layers each, grouped in cumulative levels. Each level's cache is seeded as CI would make it: a job restores the previous level (fallback key), `docker load`s the images the level adds from the outer engine, and its post saves.",
    "- 1a: `docker create` + `start` of the same image with `dockerd --host=unix://…` on a bind-mounted socket, pinged every 10 ms. 1b: the official entrypoint's `_tls_generate_certs` steps (bench/official-tls.sh) with the host's openssl.",
    "- 2b: the newest entry's signed URL, `curl | zstd -d | tar -x` with the action's own extract command (src/archive.ts) into an empty directory. Alone: curl to /dev/null; zstd -d of a local file to /dev/null; tar -x of a local uncompressed file. 2c: `docker load --input` of a `docker save` archive on local disk, in a job after the action's cold start. 2d: Debian's docker-registry on the host (storage on local disk), pushed once from the outer engine, pulled by the action's daemon at the host's docker0 address (`daemon-config`: `insecure-registries`, and `bip` elsewhere, as the inner daemon's own bridge would otherwise take 172.17.0.1), all images at once.",
    "- 3: a job restores the level, tags an image (a new content key, no new data), and its post saves; the raw side is the action's own archive command (src/archive.ts) on the same tree into `wc -c`. 'Nothing changed' is the post of every warm job of scenario 4.",
    '- `sync` runs between measurements so that the writeback of one does not land in the next.'
  );
  const setupRows = Object.entries(record.setup);
  if (setupRows.length > 0) {
    lines.push('', '### Set-up (not measured; steps overlap)', '', tr(['step', 'time']), '| --- | ---: |');
    for (const [name, value] of setupRows) lines.push(tr([name, name.includes('bytes') ? mb(value) : sec(value)]));
  }
  if (record.failures.length > 0 || record.notes.length > 0) {
    lines.push('', '## Failures and notes', '');
    for (const f of record.failures)
      lines.push(
        `- ${f.scenario} ${f.method}${f.sizeMB ? ` @${f.sizeMB} MB` : ''} rep ${f.rep + 1}: ${f.error.replace(/\n/g, ' ')}`
      );
    for (const note of record.notes) lines.push(`- ${note}`);
  }
  return lines.join('\n') + '\n';
}

function ratioRange(s: Stat): string {
  return s.n === 0 ? 'n/a' : s.n === 1 ? x(s.median) : `${x(s.min)}–${x(s.max)}`;
}

export function renderSvg(record: RunRecord, c: Computed): string {
  const rows = c.rows;
  const pts = (pick: (r: LevelRow) => number) => rows.map(r => ({ x: r.dataMB, y: pick(r) }));
  const series: Series[] = [
    {
      name: 'action main until ready',
      color: '#1f77b4',
      points: rows.map(r => ({
        x: r.dataMB,
        y: r.action.median,
        label: r.level.files ? `${(r.level.files / 1000).toFixed(0)}k files` : undefined
      }))
    },
    { name: 'action restore phase', color: '#6baed6', points: pts(r => r.restore.median) },
    { name: 'raw curl | zstd | tar', color: '#d62728', points: pts(r => r.raw.median) },
    { name: 'tar -x alone', color: '#2ca02c', points: pts(r => r.tar.median), dashed: true },
    { name: 'zstd -d alone', color: '#9467bd', points: pts(r => r.zstd.median), dashed: true },
    { name: 'download alone', color: '#ff7f0e', points: pts(r => r.download.median), dashed: true },
    { name: 'daemon start (restored)', color: '#7f7f7f', points: pts(r => r.daemonStart.median), dashed: true }
  ];
  if (c.fitAction)
    series.push({
      name: `fit: ${c.fitAction.intercept.toFixed(1)} s + ${(c.fitAction.slope * 1000).toFixed(1)} s/GB`,
      color: '#1f77b4',
      points: [],
      line: { intercept: c.fitAction.intercept, slope: c.fitAction.slope }
    });
  return lineChart({
    title: 'setup-dind: restore time against data size',
    subtitle: `medians of ${record.config.reps} repetition(s); ${record.machine ? `${record.machine.cpus} CPUs, ${(record.machine.memoryBytes / 2 ** 30).toFixed(0)} GiB` : ''}; ${record.startedAt.slice(0, 10)}`,
    xLabel: "data size: the daemon's /var/lib/docker as tar (MB)",
    yLabel: 'seconds',
    series
  });
}

export function writeReports(record: RunRecord, dir: string, suffix: string): { markdown: string; files: string[] } {
  const c = compute(record);
  const svgName = `restore-scaling${suffix}.svg`;
  const markdown = renderMarkdown(record, c, svgName);
  const files = [
    path.join(dir, `results${suffix}.md`),
    path.join(dir, `results${suffix}.json`),
    path.join(dir, svgName)
  ];
  fs.writeFileSync(files[0], markdown);
  fs.writeFileSync(
    files[1],
    JSON.stringify({ ...record, computed: { targets: c.targets, fitAction: c.fitAction, fitRaw: c.fitRaw } }, null, 2) +
      '\n'
  );
  fs.writeFileSync(files[2], renderSvg(record, c));
  return { markdown, files };
}
