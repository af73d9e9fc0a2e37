// buildx: true on the real engine, through the runner emulation, with Debian's buildx plugin in each
// job's HOME: the docker driver makes a later step's plain `docker buildx build` build in the daemon; a
// docker-container builder that cannot start fails main, and post still removes everything, also when
// the daemon died first; a runner without the plugin fails main before anything starts. Nothing can be
// pulled here and no BuildKit image exists: a docker-container builder that starts is covered by e2e.yml.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { extractBuildxPlugin, installBuildxPlugin } from '../support/buildx';
import { labelled, outer, outerEnv, run, Sweeper, TEST_IMAGE, type Started } from '../support/engine';
import { Job, type StepResult } from '../support/runner';
import { commands, expectCleanPosts, expectExit } from '../support/steps';

jest.setTimeout(150_000);

const BASE_INPUTS = { image: TEST_IMAGE, pull: 'never', cache: 'false' };
/** On the outer engine only: the daemon would have to pull it, and no registry is reachable. */
const UNPULLABLE_IMAGE = 'setup-dind-test/tiny:latest';

const sweeper = new Sweeper();
let plugin: string;

beforeAll(async () => {
  plugin = await extractBuildxPlugin();
}, 10 * 60_000);

afterAll(async () => {
  // Only after each test has asserted that nothing was left: this is for a test that failed halfway.
  const removed = await sweeper.sweep();
  if (removed.length > 0) console.warn(`Swept what failed tests left behind:\n  ${removed.join('\n  ')}`);
  if (plugin) fs.rmSync(path.dirname(plugin), { recursive: true, force: true });
});

/** A job whose steps have a HOME of their own (its ~/.docker/buildx is theirs alone), with or without the plugin. */
function newJob(options: { plugin: boolean }): { job: Job; home: string } {
  const job = new Job();
  const home = job.ownHome();
  if (options.plugin) installBuildxPlugin(home, plugin);
  return { job, home };
}

async function runMain(
  job: Job,
  home: string,
  inputs: Record<string, string>
): Promise<{ main: StepResult; started?: Started }> {
  const main = await job.runMain({ ...BASE_INPUTS, ...inputs });
  return { main, started: sweeper.record(main.state, home) };
}

/** Every file under the HOME's ~/.docker/buildx, relative to it. */
function buildxFiles(home: string): string[] {
  const root = path.join(home, '.docker', 'buildx');
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[])
    .filter(entry => fs.statSync(path.join(root, entry)).isFile())
    .sort();
}

/** The Docker CLI contexts of that HOME (the CLI's own `default` always among them). */
async function contexts(home: string): Promise<string[]> {
  const listed = await run('docker', ['context', 'ls', '--format', '{{.Name}}'], { env: outerEnv({ HOME: home }) });
  expect(listed.code).toBe(0);
  return listed.stdout
    .split('\n')
    .map(line => line.trim())
    .filter(Boolean)
    .sort();
}

/** Main with a docker-container builder whose image the daemon cannot pull: it fails, and buildx keeps the builder (post is what removes it). */
async function mainWithUnstartableBuilder(
  job: Job,
  home: string
): Promise<{ main: StepResult; started: Started; builder: string }> {
  const { main, started } = await runMain(job, home, { buildx: 'true', 'buildx-image': UNPULLABLE_IMAGE });
  expectExit(main, 1, 'main');
  const builder = (JSON.parse(main.state.instance) as { builder?: string }).builder;
  expect(builder).toBe(`setup-dind-dind-${started!.id}`);
  expect(buildxFiles(home)).toEqual(expect.arrayContaining([`instances/${builder}`, `activity/${builder}`]));
  return { main, started: started!, builder: builder! };
}

/** After post: nothing of the builder in ~/.docker/buildx, no context, nothing on the engine. */
async function expectBuilderAndInstanceGone(home: string, builder: string, started: Started): Promise<void> {
  expect(buildxFiles(home).filter(file => file.includes(builder))).toEqual([]);
  expect(await contexts(home)).toEqual(['default']);
  expect(await labelled(started.id)).toEqual({ containers: [], networks: [], volumes: [] });
  expect(fs.existsSync(started.certDir)).toBe(false);
}

const unique = () => randomBytes(3).toString('hex');

describe('buildx: true', () => {
  test('docker driver: a later step builds in the daemon with plain `docker buildx build` (only the exported environment); builder is default; post leaves no builder behind', async () => {
    const { job, home } = newJob({ plugin: true });
    const token = unique();
    const tag = `setup-dind-test/built:${token}`;
    try {
      const { main, started } = await runMain(job, home, { buildx: 'true', 'buildx-driver': 'docker' });
      expectExit(main, 0, 'main');
      expect(commands(main.stdout, 'warning')).toEqual([]);
      expect(main.outputs.builder).toBe('default');
      expect(main.exported.BUILDX_BUILDER).toBe('default');
      expect(main.summary).toContain('Buildx builder');

      // FROM scratch: nothing to pull. The label says the image is this build's.
      fs.mkdirSync(path.join(job.workspace, 'app'));
      fs.writeFileSync(
        path.join(job.workspace, 'app', 'Dockerfile'),
        `FROM scratch\nCOPY Dockerfile /\nLABEL token=${token}\n`
      );
      const build = await job.run(
        `docker buildx build --progress plain --tag ${tag} app 2>&1 | tail -3
echo "label=$(docker image inspect --format '{{index .Config.Labels "token"}}' ${tag})"
echo "builder=$(docker buildx inspect | sed -n 's/^Driver: *//p')"`
      );
      expectExit(build, 0, 'step running docker buildx build');
      expect(build.stdout).toContain(`label=${token}\n`);
      expect(build.stdout).toContain('builder=docker\n');
      // Why the builder is not named after the context: buildx refuses a docker-driver builder whose context is not the current one.
      const byContext = await job.run(
        `BUILDX_BUILDER=${main.outputs.context} docker buildx build --tag ${tag}-ctx app`
      );
      expect(byContext.exitCode).not.toBe(0);
      expect(byContext.stderr).toContain(
        `use \`docker --context=${main.outputs.context} buildx\` to switch to context`
      );
      // In the daemon, not on the runner's engine.
      expect((await outer(['image', 'inspect', tag])).code).not.toBe(0);

      // buildx recorded the build under its `default` builder (as it does any build on the runner), and nothing under a name of ours.
      const names = [started!.id, main.outputs.context];
      const recorded = buildxFiles(home);
      expect(recorded.filter(file => file.startsWith('instances'))).toEqual([]);
      expect(recorded.filter(file => names.some(name => file.includes(name)))).toEqual([]);

      expectCleanPosts(await job.finish(), 1);
      expect(await labelled(started!.id)).toEqual({ containers: [], networks: [], volumes: [] });
      expect(
        buildxFiles(home).filter(file => file.startsWith('instances') || names.some(name => file.includes(name)))
      ).toEqual([]);
      expect(await contexts(home)).toEqual(['default']);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test('docker-container driver with a BuildKit image the daemon cannot pull: main fails naming buildx and the cause; post removes builder, context and daemon', async () => {
    const { job, home } = newJob({ plugin: true });
    try {
      const { main, started, builder } = await mainWithUnstartableBuilder(job, home);
      const errors = commands(main.stdout, 'error');
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(`buildx could not start the docker-container builder '${builder}' on context 'dind'`);
      expect(errors[0]).toContain(UNPULLABLE_IMAGE);
      // The daemon's own words on the failed pull, from buildx's output.
      expect(errors[0]).toMatch(/ERROR: Error response from daemon: .*registry/);
      expect(main.exported.BUILDX_BUILDER).toBeUndefined();
      expect(main.outputs.builder).toBeUndefined();

      // The builder buildx kept is as main asked for it.
      const inspected = await job.run(`docker buildx inspect ${builder}`);
      expectExit(inspected, 0, 'docker buildx inspect');
      const fields = inspected.stdout.split('\n').map(line => line.replace(/\s+/g, ' ').trim());
      expect(fields).toEqual(
        expect.arrayContaining([
          'Driver: docker-container',
          'Endpoint: dind',
          `Driver Options: image="${UNPULLABLE_IMAGE}"`
        ])
      );
      expect(await contexts(home)).toEqual(['default', 'dind']);

      const posts = await job.finish();
      await expectBuilderAndInstanceGone(home, builder, started);
      expectCleanPosts(posts, 1);
      expect(posts[0].stdout).toContain('::group::Remove the buildx builder');
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test("docker-container builder of a daemon that died before post: post still removes buildx's records of it, without a warning", async () => {
    const { job, home } = newJob({ plugin: true });
    try {
      const { started, builder } = await mainWithUnstartableBuilder(job, home);
      // buildx rm cannot reach a dead daemon: it drops its records but fails, and post must tell the two apart.
      const [container] = (await labelled(started.id)).containers;
      expect((await outer(['kill', container])).code).toBe(0);

      const posts = await job.finish();
      await expectBuilderAndInstanceGone(home, builder, started);
      expectCleanPosts(posts, 1);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test('a runner without the buildx plugin: main fails before starting anything, saying what is missing', async () => {
    const { job, home } = newJob({ plugin: false });
    try {
      const { main, started } = await runMain(job, home, { buildx: 'true' });
      expectExit(main, 1, 'main');
      expect(commands(main.stdout, 'error')).toEqual([
        expect.stringMatching(
          /^buildx: true needs the docker buildx CLI plugin on the runner, and `docker buildx version` failed: .*buildx/
        )
      ]);
      expect(started).toBeUndefined();
      expect(main.exported).toEqual({});

      const posts = await job.finish();
      expectCleanPosts(posts, 1);
      expect(posts[0].stdout).toContain('Nothing to clean up');
      expect(await contexts(home)).toEqual(['default']);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });
});
