// dist/ as users get it: only files the runner loads, and a license notice for every package bundled.
// The committed dist/ is what `npm run build` makes of src/ (check-dist.yml); these tests say what that
// must hold, and the `catches` tests feed each check a broken copy.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  collectNotices,
  licenseTextFile,
  moduleFiles,
  NOTICES_FILE,
  packageDirs,
  renderNotices,
  SEPARATOR,
  type StatsModule
} from '../../scripts/notices';
import * as leftOut from '../../scripts/left-out';

const ROOT = path.resolve(__dirname, '..', '..');
const DIST = path.join(ROOT, 'dist');

function listFiles(dir: string, relative = ''): string[] {
  return fs.readdirSync(path.join(dir, relative), { withFileTypes: true }).flatMap(entry => {
    const file = path.posix.join(relative, entry.name);
    return entry.isDirectory() ? listFiles(dir, file) : [file];
  });
}
const readDist = (file: string) => fs.readFileSync(path.join(DIST, file), 'utf8');

// ---- the files of dist/ ------------------------------------------------------------------------

/**
 * What the runner loads: each bundle, main's entrypoint (src/daemon/container.ts reads it), the frame
 * workers' code beside each bundle (src/cache/image/workers.ts starts it from its bundle's directory),
 * and the notices.
 */
const REQUIRED = [
  'main/index.js',
  'main/entrypoint.sh',
  'main/check-data.sh',
  'main/frame-worker.js',
  'post/index.js',
  'post/frame-worker.js',
  NOTICES_FILE
];
/** A chunk a bundle loads on demand: `__nccwpck_require__.e(/* import() *\/ 577)`. */
const CHUNK = /^(main|post)\/(\d+)\.index\.js$/;
const CHUNK_LOAD = /__nccwpck_require__\.e\((?:\/\*[^*]*\*\/\s*)?(\d+)\)/g;

/** Files not on the allow-list (a chunk counts when its bundle loads it), and required files missing. */
function distProblems(files: readonly string[], read: (file: string) => string): string[] {
  const problems: string[] = [];
  for (const file of files) {
    if (REQUIRED.includes(file)) continue;
    const chunk = CHUNK.exec(file);
    if (chunk && [...read(`${chunk[1]}/index.js`).matchAll(CHUNK_LOAD)].some(load => load[1] === chunk[2])) continue;
    problems.push(`dist/${file} is nothing the runner loads: drop it (scripts/dist-files.ts) or allow it here`);
  }
  for (const file of REQUIRED) if (!files.includes(file)) problems.push(`dist/${file} is missing`);
  return problems;
}

describe('dist/ holds only what the runner loads', () => {
  const files = listFiles(DIST);

  test('each bundle, the chunks it loads, its frame worker, main/entrypoint.sh and the notices; nothing else', () => {
    expect(distProblems(files, readDist)).toEqual([]);
    expect(files.some(file => CHUNK.test(file))).toBe(true);
  });

  test('catches a Windows binary, a .proto file, a native addon, a chunk nothing loads, a missing entrypoint or frame worker', () => {
    const extra = ['main/pagent.exe', 'post/proto/channelz.proto', 'post/build/Release/cpufeatures.node'];
    expect(distProblems([...files, ...extra, 'main/9.index.js'], readDist)).toEqual(
      [...extra, 'main/9.index.js'].map((file): unknown =>
        expect.stringContaining(`dist/${file} is nothing the runner loads`)
      )
    );
    expect(
      distProblems(
        files.filter(file => file !== 'main/entrypoint.sh'),
        readDist
      )
    ).toEqual(['dist/main/entrypoint.sh is missing']);
    expect(
      distProblems(
        files.filter(file => file !== 'post/frame-worker.js'),
        readDist
      )
    ).toEqual(['dist/post/frame-worker.js is missing']);
  });
});

// ---- the third-party notices --------------------------------------------------------------------

interface Section {
  id: string;
  texts: string[];
}

/** The packages the notices file lists first, and its sections (a package and its license texts). */
function parseNotices(text: string): { listed: string[]; sections: Section[] } {
  const [head, ...rest] = text.split(`\n${SEPARATOR}\n`);
  const listed = [...head.matchAll(/^ {2}(\S+) (\S+): /gm)].map(([, name, version]) => `${name} ${version}`);
  const sections = rest.map(section => {
    const [header, ...texts] = section.split(/^--- .*$/m);
    return { id: header.split('\n')[0], texts: texts.map(part => part.trim()) };
  });
  return { listed, sections };
}

/** The packages src/ imports for their values (a type-only import is not bundled). */
function importedPackages(): string[] {
  const names = new Set<string>();
  const files = fs.readdirSync(path.join(ROOT, 'src'), { recursive: true, encoding: 'utf8' });
  for (const file of files.filter(name => name.endsWith('.ts'))) {
    const source = fs.readFileSync(path.join(ROOT, 'src', file), 'utf8');
    for (const [, specifier] of source.matchAll(/^import\s+(?!type\b)[^;]*?\bfrom\s+'([^.'][^']*)'/gm)) {
      if (specifier.startsWith('node:')) continue;
      const parts = specifier.split('/');
      names.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]);
    }
  }
  return [...names].sort();
}

/** A listed package without a section or without a license text; a package src/ imports, not listed. */
function noticeProblems(text: string, imported: readonly string[]): string[] {
  const { listed, sections } = parseNotices(text);
  const problems: string[] = [];
  for (const id of listed) {
    const section = sections.find(candidate => candidate.id === id);
    if (!section) problems.push(`${id}: listed, but no section`);
    else if (!section.texts.some(part => part !== '')) problems.push(`${id}: no license text`);
  }
  for (const { id } of sections) if (!listed.includes(id)) problems.push(`${id}: a section, but not listed`);
  for (const name of imported)
    if (!listed.some(id => id.startsWith(`${name} `))) problems.push(`${name}: imported by src/, but not listed`);
  return problems;
}

describe(`dist/${NOTICES_FILE}`, () => {
  const notices = readDist(NOTICES_FILE);
  const imported = importedPackages();

  test('a license text for every package bundled, and every package src/ imports is one of them', () => {
    expect(imported).toEqual(expect.arrayContaining(['@actions/core', '@azure/storage-blob', 'dockerode']));
    // apache-arrow comes in through @azure/storage-blob (in post's chunk), docker-modem through dockerode.
    expect(parseNotices(notices).listed).toEqual(
      expect.arrayContaining([expect.stringMatching(/^apache-arrow /), expect.stringMatching(/^docker-modem /)])
    );
    expect(noticeProblems(notices, imported)).toEqual([]);
  });

  test('catches a package without its text, a package without a section, an imported package not listed', () => {
    const dockerode = parseNotices(notices).listed.find(id => id.startsWith('dockerode '));
    const section = new RegExp(`(\\n${SEPARATOR}\\n${dockerode}\\n[^]*?)\\n--- [^]*?(?=\\n${SEPARATOR}\\n|$)`);
    const noText = notices.replace(section, '$1');
    expect(noText).not.toEqual(notices);
    expect(noticeProblems(noText, imported)).toEqual([`${dockerode}: no license text`]);

    const noSection = notices.replace(new RegExp(`\\n${SEPARATOR}\\n${dockerode}\\n[^]*?(?=\\n${SEPARATOR}\\n|$)`), '');
    expect(noticeProblems(noSection, imported)).toEqual([`${dockerode}: listed, but no section`]);

    const unlisted = notices.replace(/^ {2}dockerode .*\n/m, '');
    expect(noticeProblems(unlisted, imported)).toEqual([
      `${dockerode}: a section, but not listed`,
      'dockerode: imported by src/, but not listed'
    ]);
  });
});

describe('packages left out of the bundles (scripts/left-out.ts)', () => {
  const tsconfig = JSON.parse(fs.readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: { paths?: Record<string, string[]> };
  };

  test("tsconfig.json's paths send each, and only each, to the stand-in; none is in the notices", () => {
    const paths = tsconfig.compilerOptions.paths ?? {};
    expect(Object.keys(paths).sort()).toEqual(Object.keys(leftOut.LEFT_OUT).sort());
    for (const target of Object.values(paths)) expect(target).toEqual(['scripts/left-out.ts']);
    const listed = parseNotices(readDist(NOTICES_FILE)).listed;
    for (const name of Object.keys(leftOut.LEFT_OUT))
      expect(listed.filter(id => id.startsWith(`${name} `))).toEqual([]);
  });

  test('each bundle holds the stand-in, whose exports load and fail, when used, naming the package and why', () => {
    for (const bundle of ['main/index.js', 'post/index.js']) expect(readDist(bundle)).toContain(leftOut.LEFT_OUT.ssh2);
    expect(() => new (leftOut.Client as unknown as new () => object)()).toThrow(
      `ssh2's Client is not in setup-dind's bundle: ${leftOut.LEFT_OUT.ssh2}.`
    );
    expect(() => leftOut.ServerCredentials.createInsecure()).toThrow("@grpc/grpc-js's ServerCredentials");
    expect(() => leftOut.loadSync()).toThrow("@grpc/proto-loader's loadSync");
    expect(() => leftOut.ProxyAgent()).toThrow(
      `undici's ProxyAgent is not in setup-dind's bundle: ${leftOut.LEFT_OUT.undici}.`
    );
  });
});

// ---- scripts/notices.ts: from webpack's stats to the notices -----------------------------------

describe('packageDirs: the package of each bundled module', () => {
  test.each<[string, StatsModule[], string[]]>([
    ['a module of a package', [{ nameForCondition: '/r/node_modules/a/lib/i.js' }], ['/r/node_modules/a']],
    ['a scoped package', [{ nameForCondition: '/r/node_modules/@s/b/i.js' }], ['/r/node_modules/@s/b']],
    [
      'a nested copy, another version',
      [{ nameForCondition: '/r/node_modules/a/node_modules/c/i.js' }],
      ['/r/node_modules/a/node_modules/c']
    ],
    [
      'our sources, a Node built-in, the webpack runtime',
      [{ nameForCondition: '/r/src/main.ts' }, { nameForCondition: null }, {}],
      []
    ],
    [
      'a concatenated module and the modules it holds',
      [{ nameForCondition: '/r/node_modules/e/m.mjs', modules: [{ nameForCondition: '/r/node_modules/f/x.mjs' }] }],
      ['/r/node_modules/e', '/r/node_modules/f']
    ]
  ])('%s', (_name, modules, dirs) => {
    expect([...packageDirs(modules)].sort()).toEqual(dirs);
  });
});

describe("moduleFiles: the files bundled (the build's check that the frame worker bundles only itself)", () => {
  test.each<[string, StatsModule[], string[]]>([
    [
      'the frame worker, its built-ins (null) and the runtime',
      [{ nameForCondition: '/r/src/w.ts' }, { nameForCondition: null }, {}],
      ['/r/src/w.ts']
    ],
    [
      'a concatenated module: the files it holds, then its own',
      [{ nameForCondition: '/r/src/w.ts', modules: [{ nameForCondition: '/r/src/manifest.ts' }] }],
      ['/r/src/manifest.ts', '/r/src/w.ts']
    ]
  ])('%s', (_name, modules, files) => {
    expect(moduleFiles(modules)).toEqual(files);
  });
});

describe('collectNotices: a license text for every package, or the build fails', () => {
  let dir: string;
  let textsDir: string;
  const pkg = (relative: string, json: object, files: Record<string, string> = {}) => {
    const at = path.join(dir, 'node_modules', relative);
    fs.mkdirSync(at, { recursive: true });
    fs.writeFileSync(path.join(at, 'package.json'), JSON.stringify(json));
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(at, name), text);
    return at;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-notices-'));
    textsDir = path.join(dir, 'license-texts');
    fs.mkdirSync(textsDir);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('every license and notice file, one entry per name and version, the bundles it is in', () => {
    const a = pkg('a', { name: 'a', version: '1.0.0', license: 'MIT' }, { LICENSE: 'MIT a\n', 'index.js': '' });
    const aCopy = pkg('x/node_modules/a', { name: 'a', version: '1.0.0', license: 'MIT' }, { LICENSE: 'MIT a\n' });
    const b = pkg(
      '@s/b',
      { name: '@s/b', version: '2.0.0', licenses: [{ type: 'Apache-2.0' }] },
      { 'LICENSE.txt': 'Apache b', 'NOTICE.txt': 'notice b', 'README.md': 'not a license' }
    );
    const { notices, problems } = collectNotices({ main: [a, b], post: [aCopy] }, textsDir);
    expect(problems).toEqual([]);
    expect(notices).toEqual([
      {
        name: '@s/b',
        version: '2.0.0',
        license: 'Apache-2.0',
        bundles: ['main'],
        texts: [
          { file: 'LICENSE.txt', text: 'Apache b' },
          { file: 'NOTICE.txt', text: 'notice b' }
        ]
      },
      {
        name: 'a',
        version: '1.0.0',
        license: 'MIT',
        bundles: ['main', 'post'],
        texts: [{ file: 'LICENSE', text: 'MIT a' }]
      }
    ]);
    expect(noticeProblems(renderNotices(notices), [])).toEqual([]);
  });

  test('a package that ships no text: a problem, unless license-texts/ has it; a text no package needs: a problem', () => {
    const bare = pkg('bare', { name: 'bare', version: '1.2.3', license: 'ISC' }, { 'index.js': '' });
    const blank = pkg('blank', { name: 'blank', version: '1.0.0', license: 'MIT' }, { LICENSE: '\n' });
    const cases: Array<[string, string[], Record<string, string>, RegExp[]]> = [
      ['no text anywhere', [bare], {}, [/^bare@1\.2\.3 \(.*\) ships no license text: add it as .*bare@1\.2\.3\.txt$/]],
      ['an empty license file', [blank], {}, [/^blank@1\.0\.0 .* ships no license text/]],
      ['the text in license-texts/', [bare], { [licenseTextFile('bare', '1.2.3')]: 'ISC bare' }, []],
      [
        'a text for another version',
        [bare],
        { [licenseTextFile('bare', '1.2.2')]: 'ISC bare' },
        [/^bare@1\.2\.3 .* ships no license text/, /bare@1\.2\.2\.txt is the text of no bundled package/]
      ]
    ];
    for (const [name, dirs, texts, expected] of cases) {
      for (const file of fs.readdirSync(textsDir)) fs.rmSync(path.join(textsDir, file));
      for (const [file, text] of Object.entries(texts)) fs.writeFileSync(path.join(textsDir, file), text);
      const { problems } = collectNotices({ main: dirs }, textsDir);
      expect({ name, problems }).toEqual({
        name,
        problems: expected.map((pattern): unknown => expect.stringMatching(pattern))
      });
    }
    expect(licenseTextFile('@s/b', '1.0.0')).toBe('@s+b@1.0.0.txt');
  });
});
