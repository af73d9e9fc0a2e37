// check-data.sh (run by the entrypoint on a restored /var/lib/docker before dockerd starts) against
// trees of the form dockerd 26 and 28 write for overlay2, and the same trees with one entry of another form:
// each of those must be refused, with a reason naming it. Run with this machine's sh, find, stat and awk.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SCRIPT = path.join(__dirname, '..', '..', '..', 'src', 'daemon', 'check-data.sh');

const hex = (c: string) => c.repeat(64);
/** Two image layers (the second on the first) and their links, as overlay2 names them. */
const L1 = hex('1');
const L2 = hex('2');
const S1 = 'AAAAAAAAAAAAAAAAAAAAAAAAAA';
const S2 = 'BBBBBBBBBBBBBBBBBBBBBBBBBB';
/** Their chain ids in the layer store. */
const C1 = hex('c');
const C2 = hex('d');
const IMAGE = hex('e');

const LAYERDB = 'image/overlay2/layerdb';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-data-test-'));
  const file = (name: string, content = '') => {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  };
  file('engine-id', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
  fs.mkdirSync(path.join(dir, 'lost+found'));
  file('image/overlay2/repositories.json', `{"Repositories":{"a":{"a:latest":"sha256:${IMAGE}"}}}`);
  file(`image/overlay2/imagedb/content/sha256/${IMAGE}`, '{}');
  file(`image/overlay2/imagedb/metadata/sha256/${IMAGE}/lastUpdated`, '2026-12-07T00:00:00Z');
  file(`image/overlay2/distribution/diffid-by-digest/sha256/${hex('f')}`, `sha256:${hex('0')}`);
  for (const [chain, id, parent] of [
    [C1, L1, ''],
    [C2, L2, C1]
  ]) {
    file(`${LAYERDB}/sha256/${chain}/cache-id`, id);
    file(`${LAYERDB}/sha256/${chain}/diff`, `sha256:${hex('a')}`);
    file(`${LAYERDB}/sha256/${chain}/size`, '1234');
    file(`${LAYERDB}/sha256/${chain}/tar-split.json.gz`, 'gz');
    if (parent) file(`${LAYERDB}/sha256/${chain}/parent`, `sha256:${parent}`);
  }
  fs.mkdirSync(path.join(dir, 'overlay2', 'l'), { recursive: true });
  for (const [id, short] of [
    [L1, S1],
    [L2, S2]
  ]) {
    file(`overlay2/${id}/diff/etc/hostname`, 'x');
    file(`overlay2/${id}/link`, short);
    file(`overlay2/${id}/committed`);
    fs.symlinkSync(`../${id}/diff`, path.join(dir, 'overlay2', 'l', short));
  }
  file(`overlay2/${L2}/lower`, `l/${S1}`);
  fs.mkdirSync(path.join(dir, 'overlay2', L2, 'work'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function check(): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('sh', [SCRIPT, dir], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const at = (name: string) => path.join(dir, name);
const write = (name: string, content: string) => fs.writeFileSync(at(name), content);
const replaceByLink = (name: string, target: string) => {
  fs.rmSync(at(name), { recursive: true });
  fs.symlinkSync(target, at(name));
};

describe('of the form dockerd writes: accepted', () => {
  test.each<[string, () => void]>([
    ['two image layers, their links and the image store', () => undefined],
    [
      'an empty directory (a fresh filesystem)',
      () => fs.readdirSync(dir).forEach(e => fs.rmSync(at(e), { recursive: true }))
    ],
    [
      'a container layer and its init layer (a daemon killed before post)',
      () => {
        for (const [id, short] of [
          [`${hex('3')}-init`, 'CCCCCCCCCCCCCCCCCCCCCCCCCC'],
          [hex('3'), 'DDDDDDDDDDDDDDDDDDDDDDDDDD']
        ]) {
          fs.mkdirSync(at(`overlay2/${id}/diff`), { recursive: true });
          fs.mkdirSync(at(`overlay2/${id}/work`));
          write(`overlay2/${id}/link`, short);
          write(`overlay2/${id}/lower`, `l/${S2}:l/${S1}`);
          fs.symlinkSync(`../${id}/diff`, at(`overlay2/l/${short}`));
        }
      }
    ],
    [
      'a layer BuildKit committed (a 25-character id)',
      () => {
        const id = 'vp3uj1zriljc7pl9sj86tkm0d';
        fs.mkdirSync(at(`overlay2/${id}/diff`), { recursive: true });
        write(`overlay2/${id}/link`, 'EEEEEEEEEEEEEEEEEEEEEEEEEE');
        write(`overlay2/${id}/lower`, `l/${S1}`);
        fs.symlinkSync(`../${id}/diff`, at('overlay2/l/EEEEEEEEEEEEEEEEEEEEEEEEEE'));
        write(`${LAYERDB}/sha256/${C2}/cache-id`, id);
      }
    ],
    [
      'an image pushed and pulled again, and one built on it (as dockerd 26 and 28 write them)',
      () => {
        const built = hex('9');
        fs.mkdirSync(at('image/overlay2/distribution/v2metadata-by-diffid/sha256'), { recursive: true });
        write(
          `image/overlay2/distribution/v2metadata-by-diffid/sha256/${hex('a')}`,
          `[{"Digest":"sha256:${hex('f')}","SourceRepository":"localhost:5000/a","HMAC":"${hex('b')}"}]`
        );
        fs.mkdirSync(at(`image/overlay2/imagedb/metadata/sha256/${built}`));
        write(`image/overlay2/imagedb/content/sha256/${built}`, '{}');
        write(`image/overlay2/imagedb/metadata/sha256/${built}/parent`, `sha256:${IMAGE}`);
        write(`image/overlay2/imagedb/metadata/sha256/${built}/builtLocally`, '\x01');
        write(`image/overlay2/imagedb/metadata/sha256/${built}/lastUpdated`, '2026-12-07T15:16:04.327003668Z');
      }
    ],
    [
      'anything inside a layer (container content: links out, odd names, fifos)',
      () => {
        fs.symlinkSync('/etc/shadow', at(`overlay2/${L1}/diff/shadow`));
        write(`overlay2/${L1}/diff/new\nline '`, '');
        fs.mkdirSync(at(`overlay2/${L1}/diff/..x`));
        spawnSync('mkfifo', [at(`overlay2/${L1}/diff/fifo`)]);
      }
    ],
    [
      "anything in overlayfs's scratch directory, the containers' mounts and the layer store's tmp",
      () => {
        fs.mkdirSync(at(`overlay2/${L2}/work/work`));
        spawnSync('mkfifo', [at(`overlay2/${L2}/work/work/#2888`)]);
        fs.symlinkSync('/etc', at(`${LAYERDB}/mounts`));
        fs.mkdirSync(at(`${LAYERDB}/tmp/write-set-1`), { recursive: true });
        fs.symlinkSync('/', at(`${LAYERDB}/tmp/write-set-1/x`));
      }
    ]
  ])('%s', (_, mutate) => {
    mutate();
    expect(check()).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});

describe('of another form: refused, naming what', () => {
  test.each<[string, () => void, string]>([
    // Kept top-level names.
    [
      'image is a symbolic link',
      () => replaceByLink('image', '/tmp'),
      'a symbolic link dockerd does not make: ./image -> /tmp'
    ],
    [
      'overlay2 is a regular file',
      () => (fs.rmSync(at('overlay2'), { recursive: true }), write('overlay2', '')),
      'a file dockerd does not make: ./overlay2'
    ],
    [
      'overlay2/l is a symbolic link',
      () => replaceByLink('overlay2/l', '/tmp'),
      'a symbolic link dockerd does not make: ./overlay2/l -> /tmp'
    ],
    [
      'a fifo in the image store',
      () => void spawnSync('mkfifo', [at('image/overlay2/fifo')]),
      'a fifo: ./image/overlay2/fifo'
    ],
    [
      'a name dockerd never writes',
      () => write('image/overlay2/evil', ''),
      'a file dockerd does not make: ./image/overlay2/evil'
    ],
    ['lost+found holds something', () => write('lost+found/x', ''), 'lost+found is not an empty directory'],
    [
      'engine-id is not a UUID',
      () => write('engine-id', '../../../../../../etc/passwd-xxxxxxx'),
      'engine-id is not a UUID'
    ],
    [
      'a hard link',
      () => fs.linkSync(at('image/overlay2/repositories.json'), at(`overlay2/${L1}/diff/r`)),
      'repositories.json has 2 hard links'
    ],
    [
      'a name with a newline',
      () => write('image/overlay2/a\nregular file|1|0|.z', ''),
      'an entry of no known form: a name of odd bytes'
    ],
    ['a name with a quote', () => write("image/overlay2/a'b", ''), 'an entry of no known form: a name of odd bytes'],
    // overlay2's links and layers.
    [
      'an l/ link pointing outside',
      () => replaceByLink(`overlay2/l/${S1}`, '/etc'),
      `./overlay2/l/${S1} does not link to a layer: /etc`
    ],
    [
      'an l/ link climbing out',
      () => replaceByLink(`overlay2/l/${S1}`, `../${L1}/diff/../../../..`),
      'does not link to a layer'
    ],
    [
      'an l/ link of another name',
      () => fs.renameSync(at(`overlay2/l/${S1}`), at('overlay2/l/x')),
      'a symbolic link dockerd does not make: ./overlay2/l/x'
    ],
    [
      'an l/ link to another layer',
      () => replaceByLink(`overlay2/l/${S1}`, `../${L2}/diff`),
      'does not name its link in overlay2/l'
    ],
    ['a layer with no link', () => fs.rmSync(at(`overlay2/${L1}/link`)), `overlay2/${L1} has no link`],
    [
      'a link file naming a path',
      () => write(`overlay2/${L1}/link`, '../../../../../../../../etc'),
      'longer than dockerd writes it'
    ],
    ['a link file of two lines', () => write(`overlay2/${L1}/link`, `${S1.slice(1)}\n`), 'is not one line'],
    [
      'a link file that is a symbolic link',
      () => replaceByLink(`overlay2/${L1}/link`, '/etc/hostname'),
      'a symbolic link dockerd does not make'
    ],
    [
      'a lower file naming a path outside',
      () => write(`overlay2/${L2}/lower`, `l/${S1}:/etc`),
      'lower names what is not a layer: /etc'
    ],
    [
      'a lower file climbing out',
      () => write(`overlay2/${L2}/lower`, '../../../../x'),
      'lower names what is not a layer: ../../../../x'
    ],
    [
      'a lower file naming no link',
      () => write(`overlay2/${L2}/lower`, 'l/CCCCCCCCCCCCCCCCCCCCCCCCCC'),
      'lower names what is not a layer'
    ],
    [
      'a layer whose diff is a symbolic link',
      () => replaceByLink(`overlay2/${L1}/diff`, '/home'),
      `a symbolic link dockerd does not make: ./overlay2/${L1}/diff`
    ],
    [
      'a layer without diff',
      () => fs.rmSync(at(`overlay2/${L1}/diff`), { recursive: true }),
      `overlay2/${L1} has no diff directory`
    ],
    [
      'a layer directory of another name',
      () => fs.mkdirSync(at('overlay2/..evil')),
      'a directory dockerd does not make: ./overlay2/..evil'
    ],
    ['committed holds something', () => write(`overlay2/${L1}/committed`, 'x'), 'committed is not empty'],
    [
      'a merged directory with content',
      () => (fs.mkdirSync(at(`overlay2/${L1}/merged`)), write(`overlay2/${L1}/merged/x`, '')),
      'a file dockerd does not make'
    ],
    // The layer store.
    [
      'a cache-id naming a path outside',
      () => write(`${LAYERDB}/sha256/${C1}/cache-id`, '../../../../../tmp/canary'),
      `layer ${C1} names no layer of overlay2: ../../../../../tmp/canary`
    ],
    [
      'a cache-id naming no layer',
      () => write(`${LAYERDB}/sha256/${C1}/cache-id`, hex('9')),
      'names no layer of overlay2'
    ],
    [
      'a cache-id naming an init layer',
      () => write(`${LAYERDB}/sha256/${C1}/cache-id`, `${L1}-init`),
      'longer than dockerd writes it'
    ],
    [
      'a cache-id that is a symbolic link',
      () => replaceByLink(`${LAYERDB}/sha256/${C1}/cache-id`, '/etc/hostname'),
      'a symbolic link dockerd does not make'
    ],
    [
      'a layer without cache-id',
      () => fs.rmSync(at(`${LAYERDB}/sha256/${C1}/cache-id`)),
      `layer ${C1} has no cache-id`
    ],
    [
      'a parent that is not a digest',
      () => write(`${LAYERDB}/sha256/${C2}/parent`, `sha256:../../${hex('c').slice(6)}`),
      'parent is not a digest'
    ],
    ['a size that is not a number', () => write(`${LAYERDB}/sha256/${C2}/size`, '12x'), 'size is not a size'],
    [
      'a chain directory of another name',
      () => fs.mkdirSync(at(`${LAYERDB}/sha256/x`)),
      `a directory dockerd does not make: ./${LAYERDB}/sha256/x`
    ],
    [
      'an image metadata directory that is a symbolic link',
      () => replaceByLink(`image/overlay2/imagedb/metadata/sha256/${IMAGE}`, '/etc'),
      'a symbolic link dockerd does not make'
    ]
  ])('%s', (_, mutate, why) => {
    mutate();
    const result = check();
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/^the restored data is not of the form dockerd writes: .+\n$/);
    expect(result.stdout).toContain(why);
  });
});
