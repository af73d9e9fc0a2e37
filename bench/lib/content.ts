// Realistic daemon content: images built FROM debian:trixie-slim that apt-get install sets of Debian
// packages (real binaries, libraries, docs-less trees of many small files, as CI images hold), on the
// outer engine. Cumulative levels of them make the data sizes the scaling scenario asks for.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { docker, dockerOut, killGroup, outerEnv, sleep, type ProcResult } from './proc';

export const BASE_IMAGE = 'debian:trixie-slim';
export const MB = 1e6;

export interface ImageDef {
  name: string;
  /** Size this image adds on top of the base (MB), measured once on this mirror; used to plan. */
  estMB: number;
  /** One RUN layer per package set. */
  layers: string[][];
}

/**
 * In level order: each level adds the next images until it is nearest its target. With the default
 * sizes: 100 MB = base + small (where most users are: a base image and one small image of their own);
 * 250 MB = + tools; 1 GB = + go + build; 2 GB = + rust + java.
 */
export const CATALOG: ImageDef[] = [
  { name: 'small', estMB: 20, layers: [['curl', 'jq']] },
  {
    name: 'tools',
    estMB: 154,
    layers: [
      [
        'ca-certificates',
        'curl',
        'wget',
        'git',
        'openssh-client',
        'gnupg',
        'jq',
        'unzip',
        'zip',
        'xz-utils',
        'less',
        'procps'
      ]
    ]
  },
  { name: 'go', estMB: 252, layers: [['golang-go']] },
  {
    name: 'build',
    estMB: 466,
    layers: [
      ['build-essential', 'pkg-config'],
      ['cmake', 'gdb', 'autoconf', 'automake', 'libtool']
    ]
  },
  { name: 'rust', estMB: 695, layers: [['rustc', 'cargo']] },
  { name: 'java', estMB: 327, layers: [['default-jdk-headless'], ['maven']] },
  {
    name: 'python',
    estMB: 285,
    layers: [
      ['python3', 'python3-pip', 'python3-venv'],
      ['python3-numpy', 'python3-scipy', 'python3-pandas']
    ]
  }
];

/** BENCH_QUICK: two small images, so that a smoke run still builds through apt and has two levels. */
export const QUICK_CATALOG: ImageDef[] = [
  { name: 'q-jq', estMB: 3, layers: [['jq']] },
  { name: 'q-file', estMB: 12, layers: [['file', 'less']] }
];

export interface BuiltImage {
  def: ImageDef;
  ref: string;
  /** Bytes on top of the base image (unpacked layer sizes). */
  addedBytes: number;
  buildSeconds: number;
}

/** In every RUN line, so that what an interrupted build leaves (containers, dangling layers) can be found. */
const BUILD_MARKER = ': setup-dind-bench-content';

function dockerfile(def: ImageDef): string {
  const lines = [`FROM ${BASE_IMAGE}`];
  for (const packages of def.layers) {
    lines.push(
      `RUN set -eu; ${BUILD_MARKER}; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages.join(' ')} >/dev/null; ` +
        'apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin'
    );
  }
  return lines.join('\n') + '\n';
}

/** Picks the catalog prefix each level needs, from per-image sizes (MB on top of the base). */
function planLevels(targetsMB: number[], sizesMB: number[], baseMB: number): number[] {
  const counts: number[] = [];
  let previous = 0;
  for (const target of [...targetsMB].sort((a, b) => a - b)) {
    if (previous >= sizesMB.length) break;
    let best = previous + 1;
    let bestError = Infinity;
    for (let n = previous + 1; n <= sizesMB.length; n++) {
      const size = baseMB + sizesMB.slice(0, n).reduce((s, v) => s + v, 0);
      const error = Math.abs(size - target);
      if (error < bestError) {
        best = n;
        bestError = error;
      }
      if (size > target) break;
    }
    counts.push(best);
    previous = best;
  }
  return counts;
}

export async function imageSize(ref: string): Promise<number> {
  return Number(await dockerOut(['image', 'inspect', '--format', '{{.Size}}', ref]));
}

export function imageRef(def: ImageDef, runId: string): string {
  return `setup-dind-bench/${def.name}:${runId}`;
}

export interface Builds {
  /** One per image, in order; resolves when it is built. */
  promises: Array<Promise<BuiltImage>>;
  /** Starts no more builds, ends those in flight, removes what they left; resolves when all is quiet. */
  cancel(): Promise<void>;
}

/**
 * Starts building `defs` in order, two at a time (one's downloads overlap the other's unpacking);
 * returns a promise per image, so that whatever needs the first images can start before the last.
 */
export function startBuilds(
  defs: ImageDef[],
  options: { runId: string; label: string; workDir: string; startedAt: Date; onBuilt: (ref: string) => void }
): Builds {
  const context = path.join(options.workDir, 'build-context');
  fs.mkdirSync(context, { recursive: true });
  const baseBytes = imageSize(BASE_IMAGE);
  baseBytes.catch(() => undefined);
  const settle: Array<{ resolve: (image: BuiltImage) => void; reject: (error: Error) => void }> = [];
  const promises = defs.map(() => new Promise<BuiltImage>((resolve, reject) => settle.push({ resolve, reject })));
  // Whoever awaits them handles failures; unawaited ones must not crash the process.
  for (const promise of promises) promise.catch(() => undefined);
  const inFlight = new Set<ChildProcess>();
  let cancelled = false;
  let next = 0;
  const worker = async () => {
    while (next < defs.length) {
      const index = next++;
      const def = defs[index];
      const ref = imageRef(def, options.runId);
      if (cancelled) {
        settle[index].reject(new Error('build cancelled'));
        continue;
      }
      try {
        const file = path.join(options.workDir, `Dockerfile.${def.name}`);
        fs.writeFileSync(file, dockerfile(def));
        // The classic builder, as test/dind-image/build.sh: no buildx plugin is needed.
        let child: ChildProcess | undefined;
        const result: ProcResult = await docker(
          [
            'build',
            '--quiet',
            '--pull=false',
            '--rm',
            '--force-rm',
            '--label',
            `${options.label}=${options.runId}`,
            '-t',
            ref,
            '-f',
            file,
            context
          ],
          { env: outerEnv({ DOCKER_BUILDKIT: '0' }), timeoutMs: 30 * 60_000, onSpawn: c => inFlight.add((child = c)) }
        ).finally(() => child && inFlight.delete(child));
        options.onBuilt(ref);
        const built = {
          def,
          ref,
          addedBytes: (await imageSize(ref)) - (await baseBytes),
          buildSeconds: result.seconds
        };
        console.log(`  built ${ref}: +${(built.addedBytes / MB).toFixed(0)} MB in ${result.seconds.toFixed(0)} s`);
        settle[index].resolve(built);
      } catch (error) {
        options.onBuilt(ref);
        settle[index].reject(error as Error);
        // Later images are still built: whoever awaits only earlier ones can go on.
      }
    }
  };
  const workers = Promise.all([worker(), worker()]);
  return {
    promises,
    cancel: async () => {
      cancelled = true;
      for (const child of inFlight) killGroup(child, 'SIGKILL');
      await workers;
      await sweepBuildLeftovers(options.startedAt);
    }
  };
}

/**
 * The classic builder goes on with a RUN step whose client is gone, and commits it: remove the
 * containers of our RUN steps, then the untagged layers they made, from this run (by the marker).
 */
async function sweepBuildLeftovers(since: Date): Promise<void> {
  for (let attempt = 0; attempt < 30; attempt++) {
    const containers = (
      await docker(['ps', '--all', '--no-trunc', '--format', '{{.ID}}\t{{.Command}}'], { allowFail: true })
    ).stdout
      .split('\n')
      .filter(line => line.includes(BUILD_MARKER.slice(2)))
      .map(line => line.split('\t')[0]);
    if (containers.length === 0) break;
    for (const id of containers) await docker(['rm', '--force', id], { allowFail: true });
    await sleep(1000);
  }
  const dangling = (
    await docker(['images', '--all', '--quiet', '--no-trunc', '--filter', 'dangling=true'], { allowFail: true })
  ).stdout
    .split('\n')
    .filter(Boolean);
  for (const id of dangling) {
    const info = (
      await docker(['image', 'inspect', '--format', '{{.Created}}\t{{json .ContainerConfig.Cmd}}', id], {
        allowFail: true
      })
    ).stdout;
    const [created, cmd] = info.split('\t');
    if (cmd?.includes(BUILD_MARKER.slice(2)) && Date.parse(created) >= since.getTime() - 1000)
      await docker(['rmi', id], { allowFail: true });
  }
}

/** The catalog prefix each level needs, planned from the estimates (so that seeding can start early). */
export function planByEstimates(
  targetsMB: number[],
  catalog: ImageDef[],
  baseBytes: number
): Array<{ targetMB: number; defs: ImageDef[]; added: ImageDef[] }> {
  const counts = planLevels(
    targetsMB,
    catalog.map(d => d.estMB),
    baseBytes / MB
  );
  const sorted = [...targetsMB].sort((a, b) => a - b);
  return counts.map((count, i) => ({
    targetMB: sorted[i],
    defs: catalog.slice(0, count),
    added: catalog.slice(i === 0 ? 0 : counts[i - 1], count)
  }));
}

export async function removeImage(ref: string): Promise<void> {
  await docker(['rmi', ref], { allowFail: true });
}
