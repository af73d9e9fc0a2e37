// Empties dist/, bundles main, post and the frame worker side by side (each ncc run type-checks and
// bundles on its own: in parallel the build takes about half the time), puts the entrypoint next to
// main and the frame worker next to each bundle, drops the files nothing loads (dist-files.ts) and
// writes the third-party notices of what ncc bundled (notices.ts). The build fails when a bundled
// package has no license text, when the frame worker's bundle holds any module but its own, or when a
// package left out (left-out.ts) is bundled after all.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DROPPED } from './dist-files';
import { LEFT_OUT } from './left-out';
import { collectNotices, moduleFiles, NOTICES_FILE, packageDirs, renderNotices, type StatsModule } from './notices';

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');
const BUNDLES = { main: 'src/main.ts', post: 'src/post.ts' };
/**
 * The frame workers' code: src/cache/image/workers.ts starts it from the directory of the bundle it is
 * in, so each bundle gets a copy (a few kilobytes). It imports types only: any other module in its
 * bundle would load again in every thread, and a package there would miss the notices.
 */
const FRAME_WORKER = { entry: 'src/cache/image/frame-worker.ts', file: 'frame-worker.js' };

function bundle(entry: string, out: string, stats: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [require.resolve('@vercel/ncc/dist/ncc/cli.js'), 'build', entry, '-o', out, '--stats-out', stats],
      { cwd: root, stdio: 'inherit' }
    );
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`ncc build ${entry} failed (${signal ?? `exit code ${code}`})`))
    );
  });
}

/** Removes the dropped files under dir (paths relative to it), and the directories they leave empty. */
function drop(dir: string, relative = ''): void {
  for (const entry of fs.readdirSync(path.join(dir, relative), { withFileTypes: true })) {
    const file = path.posix.join(relative, entry.name);
    if (entry.isDirectory()) {
      drop(dir, file);
      if (fs.readdirSync(path.join(dir, file)).length === 0) fs.rmdirSync(path.join(dir, file));
    } else if (DROPPED.some(({ path: pattern }) => pattern.test(file))) {
      fs.rmSync(path.join(dir, file));
    }
  }
}

function isLeftOut(packageDir: string): boolean {
  return Object.keys(LEFT_OUT).some(name => packageDir.endsWith(`/node_modules/${name}`));
}

async function build(): Promise<void> {
  // ncc deletes only the old .js files of its output: any other file a former build left (an asset, a
  // license, a native addon) would survive and pass the check that dist/ is what a fresh build makes.
  fs.rmSync(dist, { recursive: true, force: true });
  const statsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-build-'));
  try {
    const names = Object.keys(BUNDLES) as Array<keyof typeof BUNDLES>;
    const workerDir = path.join(statsDir, 'frame-worker');
    await Promise.all([
      ...names.map(name => bundle(BUNDLES[name], path.join('dist', name), path.join(statsDir, `${name}.json`))),
      bundle(FRAME_WORKER.entry, workerDir, `${workerDir}.json`)
    ]);
    const readStats = (file: string) =>
      (JSON.parse(fs.readFileSync(file, 'utf8')) as { modules: StatsModule[] }).modules;
    const foreign = moduleFiles(readStats(`${workerDir}.json`)).filter(
      file => file !== path.join(root, FRAME_WORKER.entry)
    );
    if (foreign.length > 0)
      throw new Error(`${FRAME_WORKER.entry} may import types only, but its bundle holds:\n  ${foreign.join('\n  ')}`);
    const packages = Object.fromEntries(
      names.map(name => [name, packageDirs(readStats(path.join(statsDir, `${name}.json`)))])
    );
    const bundledLeftOut = names.flatMap(name => [...packages[name]].filter(isLeftOut).map(dir => `${name}: ${dir}`));
    if (bundledLeftOut.length > 0)
      throw new Error(`packages left out (scripts/left-out.ts) are bundled:\n  ${bundledLeftOut.join('\n  ')}`);
    for (const name of names)
      fs.copyFileSync(path.join(workerDir, 'index.js'), path.join(dist, name, FRAME_WORKER.file));
    for (const script of ['entrypoint.sh', 'check-data.sh'])
      fs.copyFileSync(path.join(root, 'src', 'daemon', script), path.join(dist, 'main', script));
    for (const name of names) drop(path.join(dist, name));
    const { notices, problems } = collectNotices(packages);
    if (problems.length > 0) throw new Error(`third-party notices:\n  ${problems.join('\n  ')}`);
    fs.writeFileSync(path.join(dist, NOTICES_FILE), renderNotices(notices));
  } finally {
    fs.rmSync(statsDir, { recursive: true, force: true });
  }
}

build().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
