// Empties dist/, bundles main and post side by side (each ncc run type-checks and bundles on its own: in
// parallel the build takes about half the time), then puts the entrypoint next to main and drops native addons.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function bundle(entry, out) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [require.resolve('@vercel/ncc/dist/ncc/cli.js'), 'build', entry, '-o', out, '--license', 'licenses.txt'],
      { cwd: root, stdio: 'inherit' }
    );
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`ncc build ${entry} failed (${signal ?? `exit code ${code}`})`))
    );
  });
}

// ncc deletes only the old .js files of its output: any other file a former build left (an asset, a
// license, a native addon) would survive and pass the check that dist/ is what a fresh build makes.
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });

Promise.all([bundle('src/main.ts', 'dist/main'), bundle('src/post.ts', 'dist/post')])
  .then(() => {
    for (const script of ['entrypoint.sh', 'check-data.sh'])
      fs.copyFileSync(path.join(root, 'src', script), path.join(root, 'dist/main', script));
    require('./drop-native-addons');
  })
  .catch(error => {
    console.error(error.message);
    process.exit(1);
  });
