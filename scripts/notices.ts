// Third-party notices for dist/: every package whose code ncc bundled, read from webpack's stats of
// each bundle, with the license and notice files the package ships. (ncc's own --license writes one
// file per chunk to the same name, so a bundle with a lazily loaded chunk got that chunk's list only.)
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A module in webpack's stats; a concatenated module lists the modules it was made of. */
export interface StatsModule {
  /** Its file; null for a Node built-in and webpack's runtime. */
  nameForCondition?: string | null;
  modules?: StatsModule[];
}

/** Texts for packages that ship none, named `<name with / as +>@<version>.txt`. */
const LICENSE_TEXTS_DIR = path.join(__dirname, 'license-texts');
export const NOTICES_FILE = 'licenses.txt';
/** Separates the packages in the notices file. */
export const SEPARATOR = '='.repeat(80);

const NODE_MODULES = `${path.sep}node_modules${path.sep}`;
/** Files that carry a license, a copyright or a notice the license asks to pass on. */
const LICENSE_FILE = /^(licen[cs]e|copying|notice)([-._].*)?$/i;

/** The file of each module that has one, a concatenated module's included. */
export function moduleFiles(modules: readonly StatsModule[]): string[] {
  return modules.flatMap(module => [
    ...moduleFiles(module.modules ?? []),
    ...(module.nameForCondition ? [module.nameForCondition] : [])
  ]);
}

/** The directory of the package each module's file is in; modules outside node_modules are ours. */
export function packageDirs(modules: readonly StatsModule[]): Set<string> {
  const dirs = new Set<string>();
  for (const file of moduleFiles(modules)) {
    const at = file.lastIndexOf(NODE_MODULES);
    if (at < 0) continue;
    const [first, second] = file.slice(at + NODE_MODULES.length).split(path.sep);
    dirs.add(file.slice(0, at + NODE_MODULES.length) + (first.startsWith('@') ? `${first}/${second}` : first));
  }
  return dirs;
}

interface PackageJson {
  name: string;
  version: string;
  license?: string;
  licenses?: Array<{ type: string }>;
}

export interface Notice {
  name: string;
  version: string;
  license: string;
  bundles: string[];
  texts: Array<{ file: string; text: string }>;
}

export const licenseTextFile = (name: string, version: string) => `${name.replace('/', '+')}@${version}.txt`;

/**
 * One notice per package (name and version) of the bundles, given as bundle name to package
 * directories; problems name each package without a license text, and each text in textsDir
 * that no package needs.
 */
export function collectNotices(
  bundles: Record<string, Iterable<string>>,
  textsDir = LICENSE_TEXTS_DIR
): { notices: Notice[]; problems: string[] } {
  const byId = new Map<string, Notice>();
  const problems: string[] = [];
  const used = new Set<string>();
  for (const [bundle, dirs] of Object.entries(bundles)) {
    for (const dir of [...dirs].sort()) {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
      const id = `${pkg.name}@${pkg.version}`;
      const known = byId.get(id);
      if (known) {
        if (!known.bundles.includes(bundle)) known.bundles.push(bundle);
        continue;
      }
      const texts = fs
        .readdirSync(dir)
        .filter(file => LICENSE_FILE.test(file) && fs.statSync(path.join(dir, file)).isFile())
        .sort()
        .map(file => ({ file, text: fs.readFileSync(path.join(dir, file), 'utf8').trim() }));
      const fallback = licenseTextFile(pkg.name, pkg.version);
      if (texts.length === 0 && fs.existsSync(path.join(textsDir, fallback))) {
        texts.push({ file: fallback, text: fs.readFileSync(path.join(textsDir, fallback), 'utf8').trim() });
        used.add(fallback);
      }
      if (!texts.some(({ text }) => text !== ''))
        problems.push(
          `${id} (${dir}) ships no license text: add it as ${path.relative(process.cwd(), path.join(textsDir, fallback))}`
        );
      const license = pkg.license ?? pkg.licenses?.map(({ type }) => type).join(' OR ') ?? 'not stated';
      byId.set(id, { name: pkg.name, version: pkg.version, license, bundles: [bundle], texts });
    }
  }
  for (const file of fs.existsSync(textsDir) ? fs.readdirSync(textsDir) : [])
    if (!used.has(file)) problems.push(`${path.join(textsDir, file)} is the text of no bundled package that lacks one`);
  const notices = [...byId.values()].sort((a, b) =>
    a.name === b.name ? a.version.localeCompare(b.version) : a.name < b.name ? -1 : 1
  );
  return { notices, problems };
}

export function renderNotices(notices: readonly Notice[]): string {
  const lines = [
    'Third-party software bundled in dist/, with the license and notice texts each package ships.',
    'Written by `npm run build` (scripts/notices.ts) from the modules ncc bundled: do not edit.',
    'setup-dind itself is under the MIT License (LICENSE).',
    '',
    `${notices.length} packages (name version: license; bundles):`,
    ...notices.map(n => `  ${n.name} ${n.version}: ${n.license}; ${n.bundles.join(', ')}`)
  ];
  for (const notice of notices) {
    lines.push(
      '',
      SEPARATOR,
      `${notice.name} ${notice.version}`,
      `License: ${notice.license}`,
      `Bundled in: ${notice.bundles.map(bundle => `dist/${bundle}`).join(', ')}`
    );
    for (const { file, text } of notice.texts) lines.push('', `--- ${file}`, '', text);
  }
  return `${lines.join('\n')}\n`;
}
