// From a run's samples to results.md (tables, targets met or missed, by how much and why), results.json
// (everything, raw) and restore-scaling.svg.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunRecord, Sample } from './model';
import type { FsInfo } from './scratch';
import { median } from './stats';
import { lineChart, type Series } from './svg';
import { type Stat, samples, statOf, detail, sec, mb, x, spread, pairedRatios, ratioRange } from './figures';
import { type LevelRow, type Computed, phaseMedians, startMedians, compute } from './targets';

/** A markdown table row; pipes inside cells are escaped. */
function tr(cells: Array<string | number>): string {
  return `| ${cells.map(c => String(c).replace(/\\?\|/g, '\\|')).join(' | ')} |`;
}

const mark = (met: boolean | undefined) => (met === undefined ? '— not measured' : met ? '✅ met' : '❌ missed');

function levelTable(c: Computed): string[] {
  const lines = [
    tr([
      'level',
      'images',
      'data (chunks × 1 MiB)',
      'compressed (frames)',
      'parts',
      'action: main until ready',
      'action: restore',
      'daemon start',
      'populated floor',
      'cold start + docker load',
      'raw: N × curl | zstd -d > file',
      'download alone (N streams)',
      'zstd -d alone (N streams)',
      'write alone (N files)',
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
        `${mb(l.compressedBytes)} (${l.frames ?? '?'})`,
        l.parts ?? 'n/a',
        sec(r.action.median),
        sec(r.restore.median),
        sec(r.daemonStart.median),
        sec(r.populatedFloor.median),
        sec(r.load.median),
        sec(r.raw.median),
        sec(r.download.median),
        sec(r.zstd.median),
        sec(r.write.median),
        sec(r.seedSave ?? NaN)
      ])
    );
  }
  return lines;
}

/** The warm start phase by phase at every level, from the outside (start-phases.ts), with the floors. */
function startTable(record: RunRecord): string[] {
  const columns: Array<[string, Sample[]]> = record.levels.flatMap(level =>
    (
      [
        [`${level.targetMB} MB`, samples(record, 'action-warm', level.targetMB)],
        [`${level.targetMB} MB cache-dir`, samples(record, 'cache-dir', level.targetMB)]
      ] as Array<[string, Sample[]]>
    ).filter(([, list]) => list.length > 0)
  );
  if (columns.length === 0) return [];
  const medians = columns.map(([, list]) => startMedians(list));
  const keys = [...new Set(medians.flatMap(m => Object.keys(m)))];
  const lines = [
    '',
    "#### The warm start phase by phase (the engine's container times, dockerd's log, the entrypoint's events)",
    '',
    tr(['part', ...columns.map(([name]) => name)]),
    `| --- | ${columns.map(() => '---:').join(' | ')} |`
  ];
  for (const key of keys) lines.push(tr([key.replace(/^start: /, ''), ...medians.map(m => sec(m[key] ?? NaN))]));
  lines.push(
    tr([
      '"Start the daemon" phase (main)',
      ...columns.map(([, list]) => sec(median(list.map(s => Number(s.detail.daemonStartSeconds)))))
    ]),
    tr([
      'populated floor (create → first ping)',
      ...columns.map(([name]) => sec(median(samples(record, 'floor-populated', parseInt(name)).map(s => s.seconds))))
    ]),
    tr([
      'empty floor (create → first ping)',
      ...columns.map(() => sec(median(samples(record, 'floor').map(s => s.seconds))))
    ])
  );
  lines.push('', "The entrypoint's events (first sample of each):", '');
  for (const [name, list] of columns) lines.push(`- ${name}: ${String(list[0]?.detail['start: events'] ?? 'n/a')}`);
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
    `Action main until ready ≈ ${f.intercept.toFixed(2)} s + ${(f.slope * 1000).toFixed(1)} s per GB of data (${(1 / f.slope).toFixed(0)} MB/s), R² = ${f.r2.toFixed(3)}, ` +
      `worst point ${(f.worstRelativeResidual * 100).toFixed(0)} % off the line. Marginal cost between consecutive sizes: ${marginal.map(m => `${m.toFixed(1)} s/GB`).join(', ')}. ` +
      (linear
        ? `**It grows linearly** with the data, on top of a fixed ${f.intercept.toFixed(1)} s.`
        : '**It does not grow linearly** with the data at these sizes.')
  );
  if (c.fitRaw)
    out.push(
      `The raw pipeline: ${c.fitRaw.intercept.toFixed(2)} s + ${(c.fitRaw.slope * 1000).toFixed(1)} s per GB (R² ${c.fitRaw.r2.toFixed(3)}).`
    );
  const big = rows[rows.length - 1];
  const stages: Array<[string, number]> = [
    ['download', big.download.median],
    ['zstd -d', big.zstd.median],
    ['write', big.write.median]
  ];
  const sum = stages.reduce((s, [, v]) => s + v, 0);
  const slowest = [...stages].sort((p, q) => q[1] - p[1])[0];
  out.push(
    `At ${mb(big.level.dataBytes)}: alone, ${stages.map(([n, v]) => `${n} ${sec(v)}`).join(', ')} (sum ${sec(sum)}); streamed together ${sec(big.raw.median)}; ` +
      `the action's restore ${sec(big.restore.median)}, then the daemon's start ${sec(big.daemonStart.median)}. The slowest stage alone is ${slowest[0]}.`
  );
  return out;
}

function fsRow(name: string, info: FsInfo | undefined, usedBy: string): string {
  if (!info) return tr([name, 'n/a', '', '', '', '', '', usedBy]);
  return tr([
    name,
    `${info.target} (${info.source}${info.size ? `, ${info.size}` : ''})`,
    info.fstype,
    info.options,
    info.journal ? 'yes (jbd2 running)' : '**no**',
    info.features ?? 'n/a',
    info.layout ?? 'n/a',
    usedBy
  ]);
}

function renderMarkdown(record: RunRecord, c: Computed, svgName: string): string {
  const cfg = record.config;
  const m = record.machine;
  const warm = cfg.warmTargetMB;
  const warmLevel = record.levels.find(l => l.targetMB === warm);
  const lines: string[] = [];
  const med = (method: string, size?: number, key?: string) =>
    statOf(record, method, size, key ? detail(key) : undefined);
  lines.push(
    `# setup-dind benchmark${cfg.quick ? ' (BENCH_QUICK smoke run: tiny sizes, numbers mean little)' : ''}`,
    ''
  );
  lines.push(
    `Run ${record.startedAt}, ${record.durationSeconds !== undefined ? `${(record.durationSeconds / 60).toFixed(1)} min` : 'unfinished'}; ${cfg.reps} repetition(s) (scenario 1: ${cfg.s1Reps}), sizes ${cfg.sizesMB.join(', ')} MB, ` +
      `scenarios 2, 3 and 5 at the ${warm} MB level${cfg.methods ? `; only ${cfg.methods.join(', ')}` : ''}. Cache service emulation: ${mb(cfg.capBytesPerSecond)}/s per download response, ${cfg.rpcLatencyMs ?? '?'} ms per call. ` +
      `Medians; every repetition runs the methods in a rotated order and goes through the sizes alternately up and down. Raw samples: ${cfg.quick ? 'results-quick.json' : 'results.json'}.`
  );
  if (m) {
    lines.push(
      '',
      `Machine: ${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ${m.kernel}; engine ${m.engine}; ` +
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
  const unmeasured = c.targets.filter(t => t.met === undefined);
  if (unmeasured.length > 0)
    lines.push(
      '',
      `Not measured in this run: ${unmeasured.map(t => t.id).join(', ')}${cfg.methods ? ' (BENCH_METHODS left their methods out)' : ' (see failures below)'}.`
    );

  lines.push('', '## Filesystems', '');
  lines.push(
    `Every method but scenario 5's writes to one fresh ext4 made for the run: a ${m?.scratch ? `sparse file ${m.scratch.file} on ${m.scratch.device}, made with \`${m.scratch.mkfs}\`` : 'sparse file'} (the host's mke2fs defaults, /etc/mke2fs.conf), mounted with the defaults. ` +
      "There go the job roots (RUNNER_TEMP, the workspace: the action's data image), the floor's /var/lib/docker (a bind-mounted directory), the docker save archive, the registry's storage, cache-dir, the raw pipeline's outputs and the stages' files. It is unmounted and removed at the end. " +
      "Scenario 5 puts its job roots on the host's own filesystem; the cache service emulation (azurite) keeps its files there too, for every method.",
    '',
    tr([
      'filesystem',
      'mounted at (device, size)',
      'type',
      'mount options (findmnt)',
      'journal',
      'features',
      'layout',
      'used by'
    ]),
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    fsRow("the run's", m?.scratch, 'scenarios 1 to 4 (every method), disk probe "scratch"'),
    fsRow("the host's", m?.hostFs, 'scenario 5, disk probe "host", the cache service emulation')
  );
  const probes = record.samples.filter(s => s.scenario === 'probe');
  if (probes.length > 0) {
    lines.push(
      '',
      '### Disk probes',
      '',
      "At the start and the end of each repetition: 64 MiB written with `dd conv=fsync`, and 5000 files of one byte created (bash builtins, not synced). A slow repetition shows here. Before each start probe, `fstrim` gives the run's filesystem's free blocks back to the host (untimed), so that its sparse file does not grow by tens of GB.",
      '',
      tr([
        'when',
        "run's fs: trimmed first",
        "run's fs: 64 MiB + fsync",
        "run's fs: 5000 files",
        "host's fs: 64 MiB + fsync",
        "host's fs: 5000 files"
      ]),
      '| --- | ---: | ---: | ---: | ---: | ---: |'
    );
    for (const at of [...new Set(probes.map(s => String(s.detail.at)))]) {
      const pick = (method: string, key: string) =>
        sec(Number(probes.find(s => s.method === method && s.detail.at === at)?.detail[key]));
      lines.push(
        tr([
          at,
          mb(Number(probes.find(s => s.method === 'probe-scratch' && s.detail.at === at)?.detail.trimmedBytes ?? NaN)),
          pick('probe-scratch', 'writeSeconds'),
          pick('probe-scratch', 'createSeconds'),
          pick('probe-host', 'writeSeconds'),
          pick('probe-host', 'createSeconds')
        ])
      );
    }
  }

  lines.push(
    '',
    '## Results',
    '',
    tr(['scenario', 'method', 'median', 'spread (min – max, n)', 'writes to']),
    '| --- | --- | ---: | --- | --- |'
  );
  const row = (scenario: string, what: string, s: Stat) =>
    lines.push(
      tr([
        scenario,
        what,
        sec(s.median),
        spread(s),
        scenario === '5' ? "the host's fs" : /TLS material|certificates/.test(what) ? '—' : "the run's fs"
      ])
    );
  row('1', 'action main, cold (cache: false), until the daemon answers over mutual TLS', med('action-cold'));
  row(
    '1a',
    "floor: same image, plain dockerd on a unix socket, /var/lib/docker on the run's fs, create → first ping",
    med('floor')
  );
  row('1b', "official entrypoint's TLS material: 3 × RSA-4096 with openssl", med('official-tls'));
  row(
    '1',
    "the action's certificates: ECDSA P-256 CA + server + client (src/daemon/tls.ts in process)",
    med('action-tls')
  );
  row(
    '2a',
    `action main, warm: restore the ${warm} MB level from the cache service, until ready`,
    med('action-warm', warm)
  );
  row(
    '2b',
    `raw limit: ${cfg.streams ?? 8} × (ranged curl | zstd -d > file) of the same frames, same cap`,
    med('raw', warm)
  );
  row(
    '2',
    `populated floor: plain dockerd as 1a on the ${warm} MB level's daemon data in place, create → first ping`,
    med('floor-populated', warm)
  );
  row(
    '2',
    'single stream: one ranged curl at a time | zstd -d > file, same frames, same cap',
    med('single-stream', warm)
  );
  row(
    '2',
    `action main, warm, at ${mb(cfg.slowCapBytesPerSecond ?? NaN)}/s per connection: the restore ("Cache restored")`,
    med('action-warm-slow', warm, 'restoreSeconds')
  );
  row(
    '2',
    `single stream at ${mb(cfg.slowCapBytesPerSecond ?? NaN)}/s: one ranged curl at a time | zstd -d > file`,
    med('single-stream-slow', warm)
  );
  row('2c', 'action main, cold + docker load of a docker save archive', med('load', warm));
  row('2d', 'action main, cold + docker pull (all images at once) from docker-registry on the host', med('pull', warm));
  row(
    '2e',
    "action main, warm from cache-dir (the previous job's kept image; every frame local too), until ready",
    med('cache-dir', warm)
  );
  row('3', `post, whole step, nothing changed (${warm} MB level)`, med('action-warm', warm, 'postSeconds'));
  row('3', `post: "Save the cache" phase saving the whole ${warm} MB level`, med('save-full', warm));
  row('3', 'raw: tar --sparse of such an image | zstd -T0 -3 | wc -c', med('save-raw', warm));
  row('3', 'post: "Save the cache" phase after a job added a ~20 MB layer', med('save-layer', warm));
  row('3', 'post: "Save the cache" phase after a job added a tag', med('save-tag', warm));
  row('5', "action warm start, second of two jobs back to back, job root on the host's fs", med('host-warm', warm));
  row(
    '5',
    "cold start + docker load, second of two jobs back to back, job root on the host's fs",
    med('host-load', warm)
  );
  lines.push(
    tr([
      '2',
      'a/b, c/a, d/a, single stream ÷ restore: ratio of medians (range of the ratios paired by repetition)',
      `${x(med('action-warm', warm).median / med('raw', warm).median)}, ${x(med('load', warm).median / med('action-warm', warm).median)}, ${x(med('pull', warm).median / med('action-warm', warm).median)}, ${x(med('single-stream', warm).median / med('action-warm', warm, 'restoreSeconds').median)}`,
      `${ratioRange(pairedRatios(record, 'action-warm', 'raw', warm))}; ${ratioRange(pairedRatios(record, 'load', 'action-warm', warm))}; ${ratioRange(pairedRatios(record, 'pull', 'action-warm', warm))}; ${ratioRange(pairedRatios(record, 'single-stream', 'action-warm', warm, undefined, detail('restoreSeconds')))}`,
      ''
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
  for (const [name, value] of Object.entries(startMedians(samples(record, 'action-cold'))))
    lines.push(tr([`from the outside: ${name.replace(/^start: /, '')}`, sec(value)]));
  lines.push(
    tr([
      "the entrypoint's events (first sample)",
      String(samples(record, 'action-cold')[0]?.detail['start: events'] ?? 'n/a')
    ])
  );
  lines.push(tr(['(floor, whole: create → first ping)', sec(med('floor').median)]));
  lines.push(tr(['(its post, whole step)', sec(med('action-cold', undefined, 'postSeconds').median)]));

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
      '… of which the restore (lookups, ranged GETs, decompress, check, write), overlapping certificates, network and image check',
      sec(med('action-warm', warm, 'restoreSeconds').median)
    ]),
    tr([
      '2a',
      'daemon start on the restored data (e2fsck -fn, mount, dockerd, readiness)',
      sec(med('action-warm', warm, 'daemonStartSeconds').median)
    ]),
    tr([
      '2a',
      `downloaded (ranged GETs)`,
      `${mb(med('action-warm', warm, 'downloadedBytes').median)} (${med('action-warm', warm, 'rangedDownloads').median})`
    ]),
    tr([
      '2b',
      `downloaded (${cfg.streams ?? 8} streams; ranged GETs)`,
      `${mb(med('raw', warm, 'downloadedBytes').median)} (${med('raw', warm, 'rangedDownloads').median})`
    ]),
    tr(['2b', 'written (each distinct frame once)', mb(med('raw', warm, 'writtenBytes').median)]),
    tr(['2c', 'cold start', sec(med('load', warm, 'mainSeconds').median)]),
    tr([
      '2c',
      `docker load --input (archive ${mb(record.setup['docker save archive bytes'])})`,
      sec(med('load', warm, 'loadSeconds').median)
    ]),
    tr(['2d', 'cold start', sec(med('pull', warm, 'mainSeconds').median)]),
    tr([
      '2d',
      `docker pull of ${warmLevel?.images.length ?? '?'} images at once`,
      sec(med('pull', warm, 'pullSeconds').median)
    ]),
    tr(['2e', 'restore from cache-dir', sec(med('cache-dir', warm, 'restoreSeconds').median)]),
    tr(['2e', 'daemon start on the restored data', sec(med('cache-dir', warm, 'daemonStartSeconds').median)]),
    tr([
      '2e',
      'downloaded from the cache service (blob GETs; calls)',
      `${statOf(record, 'cache-dir', warm, detail('downloadedBytes')).max} B, largest (${med('cache-dir', warm, 'downloads').median}; ${med('cache-dir', warm, 'rpcCalls').median})`
    ]),
    tr([
      '2e',
      'its post (stops the daemon cleanly to keep its image)',
      sec(med('cache-dir', warm, 'postSeconds').median)
    ]),
    tr(['2e', `cache-dir on the run's fs (${mb(record.setup['cache-dir bytes'])} on disk)`, '']),
    tr(['2e', 'its "Cache restored"', String(samples(record, 'cache-dir', warm)[0]?.detail.restoreFact ?? 'n/a')])
  );

  lines.push('', '### Scenario 3: post', '');
  const unchanged = record.samples.filter(s => s.method === 'action-warm');
  lines.push(
    `- Nothing changed: ${unchanged.length} posts (every size) uploaded ${unchanged.reduce((s, v) => s + Number(v.detail.postUploadedBytes), 0)} bytes in all and reserved ${unchanged.reduce((s, v) => s + Number(v.detail.postReservations), 0)} cache entries; their decision: "${[...new Set(unchanged.map(s => String(s.detail.postDecision)))].join('" / "')}".`,
    `- The whole level (${warm} MB, ${mb(warmLevel?.dataBytes)} of data): the save phase took ${sec(med('save-full', warm).median)} and uploaded ${mb(med('save-full', warm, 'uploadedBytes').median)}; raw tar --sparse | zstd -T0 -3 took ${sec(med('save-raw', warm).median)} for ${mb(med('save-raw', warm, 'compressedBytes').median)} (its input: an image with ${mb(record.setup['scenario 3 image: allocated bytes'])} allocated).`,
    `- One ~20 MB layer added (${mb(med('save-layer', warm, 'newDataBytes').median)} of real binaries, ${mb(med('save-layer', warm, 'newDataCompressedBytes').median)} compressed with zstd -3): uploaded ${mb(med('save-layer', warm, 'uploadedBytes').median)} in ${sec(med('save-layer', warm).median)}.`,
    `- A tag added: uploaded ${mb(med('save-tag', warm, 'uploadedBytes').median)} in ${sec(med('save-tag', warm).median)}.`,
    `- What the seeding jobs saved: ${record.samples
      .filter(s => s.scenario === 'seed')
      .map(s => `${s.sizeMB} MB: ${String(s.detail.saved).replace(/, as .*$/, '')}`)
      .join('; ')}.`,
    ''
  );
  const postSets: Array<[string, Sample[]]> = [
    ['nothing changed', samples(record, 'action-warm', warm)],
    ['whole level', samples(record, 'save-full', warm)],
    ['+ 20 MB layer', samples(record, 'save-layer', warm)],
    ['+ tag', samples(record, 'save-tag', warm)]
  ];
  const postKeys = [
    ...new Set(
      postSets.flatMap(([, list]) =>
        list.flatMap(s => Object.keys(s.detail).filter(k => k.startsWith('post phase') || k.startsWith('post outside')))
      )
    )
  ];
  lines.push(
    tr(['part of post (median)', ...postSets.map(([name]) => name)]),
    `| --- | ${postSets.map(() => '---:').join(' | ')} |`
  );
  for (const key of postKeys)
    lines.push(
      tr([
        key.replace(/^post (phase: )?/, ''),
        ...postSets.map(([, list]) => sec(median(list.map(s => Number(s.detail[key])))))
      ])
    );
  lines.push(
    tr(['whole post step', ...postSets.map(([, list]) => sec(median(list.map(s => Number(s.detail.postSeconds)))))])
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
  lines.push(...startTable(record));

  lines.push(
    '',
    "### Scenario 5: back to back on the host's filesystem",
    '',
    `Two jobs in a row with RUNNER_TEMP and the workspace on the host's own filesystem (${m?.hostFs ? `${m.hostFs.fstype} on ${m.hostFs.source}, journal: ${m.hostFs.journal ? 'yes' : 'no'}` : '?'}), the second starting as soon as the first's post is done, as on a runner that takes the next job at once. The same methods on the run's fresh filesystem for comparison.`,
    '',
    tr(['method', 'first job', 'second job', "on the run's fs (median)"]),
    '| --- | ---: | ---: | ---: |'
  );
  lines.push(
    tr([
      'action warm start (main until ready)',
      sec(med('host-warm', warm, 'firstSeconds').median),
      sec(med('host-warm', warm, 'secondSeconds').median),
      sec(med('action-warm', warm).median)
    ]),
    tr([
      '… of which the restore',
      sec(med('host-warm', warm, 'first restoreSeconds').median),
      sec(med('host-warm', warm, 'second restoreSeconds').median),
      sec(med('action-warm', warm, 'restoreSeconds').median)
    ]),
    tr([
      '… its post',
      sec(med('host-warm', warm, 'first postSeconds').median),
      sec(med('host-warm', warm, 'second postSeconds').median),
      sec(med('action-warm', warm, 'postSeconds').median)
    ]),
    tr([
      'cold start + docker load',
      sec(med('host-load', warm, 'firstSeconds').median),
      sec(med('host-load', warm, 'secondSeconds').median),
      sec(med('load', warm).median)
    ]),
    tr([
      '… of which docker load',
      sec(med('host-load', warm, 'first loadSeconds').median),
      sec(med('host-load', warm, 'second loadSeconds').median),
      sec(med('load', warm, 'loadSeconds').median)
    ])
  );

  lines.push('', '## How it was measured', '');
  lines.push(
    `- Every action step runs a copy of \`dist/\` as the runner does (test/support/runner.ts) with the runner's Node (${m?.tools['node (the action, SETUP_DIND_NODE)'] ?? 'SETUP_DIND_NODE'}), timed from spawning node to its exit; phase times and facts come from the job summary it writes. Inputs: \`image\` (the dind test image, under a tag of this run), \`pull: never\`; warm jobs \`cache-key: L<size>\` against the cache service v2 emulation (test/support/cache-server.ts: azurite behind a proxy, ${mb(cfg.capBytesPerSecond)}/s per download response, ${cfg.rpcLatencyMs ?? '?'} ms per call, during measurements); cold ones \`cache: false\`.`,
    "- Content: images built FROM debian:trixie-slim that apt-get install Debian package sets, grouped in cumulative levels. Each level's cache is seeded as CI would make it: a job restores the previous level (fallback key), `docker load`s the images the level adds, and its post saves.",
    "- 1a: `docker create` + `start` of the same image with `dockerd --host=unix://…` on a bind-mounted socket and /var/lib/docker bind-mounted from the run's fs, pinged every 10 ms. 1b: the official entrypoint's `_tls_generate_certs` steps (bench/official-tls.sh).",
    `- 2b: the frames the level's chunks use, in part order, cut at frame boundaries into ${cfg.streams ?? 8} streams of about equal bytes; each stream is a run of \`curl -r\` (one ranged GET per contiguous span, one at a time) piped into \`zstd -d\` and a file on the run's fs; the ${cfg.streams ?? 8} streams at once. The manifest and the parts' signed URLs are fetched before the clock starts. It writes each distinct frame once, where the action writes each chunk at its place in a sparse image. Single stream: the same with one stream.`,
    `- Stages alone (scenario 4), the same ${cfg.streams ?? 8} streams: download to /dev/null; \`zstd -d\` of the streams' bytes kept on the run's fs (read into the page cache first) to /dev/null; writing their decompressed bytes (from the page cache) with \`cat\` into ${cfg.streams ?? 8} files on the run's fs. None syncs, as none of the methods does; \`sync\` runs, untimed, after every measurement.`,
    "- 2c: `docker load --input` of a `docker save` archive of the level's images on the run's fs, in a job after the action's cold start. 2d: Debian's docker-registry on the host (storage on the run's fs), pushed once, pulled by the action's daemon at the host's docker0 address (`daemon-config`: `insecure-registries`, and `bip` elsewhere), all images at once. 2e: `cache-dir` on the run's fs, seeded by one job that restored the level with it (its post kept the filesystem image there; each measured job takes it, and its post gives it back); the cache service stays available.",
    "- 3: whole level: a job with the dind image under a tag of its own (a cache scope with no state and no fallback) loads the level's docker save archive, and its post saves; the raw side is `tar --sparse -cf - docker.img | zstd -T0 -3 | wc -c` of a copy of the level's image as a warm job leaves it (restored, daemon started and stopped, unmounted), read into the page cache first. Incremental: a job restores the level and adds a layer of 20,000,000 bytes of the host's /usr/bin binaries (`docker create`, `docker cp`, `docker commit`), or a tag; what post uploaded. Every save of a measurement is removed from the cache service afterwards, so the level's newest state stays the seeded one. 'Nothing changed' is the post of every warm job.",
    "- 5: the action's warm start (main, then post) twice in a row, and the cold start + docker load (main, load, post) twice in a row, with the job roots under the host's /tmp; no sync between the two jobs."
  );
  const setupRows = Object.entries(record.setup);
  if (setupRows.length > 0) {
    lines.push('', '### Set-up (not measured; steps overlap)', '', tr(['step', 'time or size']), '| --- | ---: |');
    for (const [name, value] of setupRows) lines.push(tr([name, /bytes/.test(name) ? mb(value) : sec(value)]));
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

function renderSvg(record: RunRecord, c: Computed): string {
  const rows = c.rows;
  const pts = (pick: (r: LevelRow) => number) => rows.map(r => ({ x: r.dataMB, y: pick(r) }));
  const series: Series[] = [
    { name: 'action main until ready', color: '#1f77b4', points: pts(r => r.action.median) },
    { name: 'action restore phase', color: '#6baed6', points: pts(r => r.restore.median) },
    { name: 'raw N × curl | zstd -d', color: '#d62728', points: pts(r => r.raw.median) },
    { name: 'write alone', color: '#2ca02c', points: pts(r => r.write.median), dashed: true },
    { name: 'zstd -d alone', color: '#9467bd', points: pts(r => r.zstd.median), dashed: true },
    { name: 'download alone', color: '#ff7f0e', points: pts(r => r.download.median), dashed: true },
    { name: 'daemon start (restored)', color: '#7f7f7f', points: pts(r => r.daemonStart.median), dashed: true },
    { name: 'populated floor', color: '#000000', points: pts(r => r.populatedFloor.median), dashed: true }
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
    xLabel: "data size: the daemon's used chunks (MB)",
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
