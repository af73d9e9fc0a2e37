// ssh2 (pulled in by docker-modem, used only for ssh:// engines) loads two optional native addons,
// cpu-features and sshcrypto, each inside try/catch with a pure-JS fallback. ncc copies the ones built
// on this machine (Node 20's ABI) into dist/: the runner's Node 24 cannot load them anyway. They are the
// only native code in the bundle, and a main was once seen dying of SIGSEGV here (cause not pinned down).
// Dropping them gives every Node the same, pure-JS path.
const fs = require('node:fs');
const path = require('node:path');

function drop(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      drop(file);
      if (fs.readdirSync(file).length === 0) fs.rmdirSync(file);
    } else if (entry.name.endsWith('.node')) {
      fs.rmSync(file);
    }
  }
}

for (const bundle of ['dist/main', 'dist/post']) drop(path.join(__dirname, '..', bundle));
