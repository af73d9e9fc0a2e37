// buildx: true on the real engine, through the runner emulation, with Debian's buildx plugin in each
// job's HOME: the docker driver makes a later step's plain `docker buildx build` build in the daemon; a
// docker-container builder that cannot start fails main, and post still removes everything, also when
// the daemon died first; a runner without the plugin fails main before anything starts. Nothing can be
// pulled here and no BuildKit image exists: a docker-container builder that starts is covered by e2e.yml.
// The docker-container builder's record holds the buildkitd.toml with the daemon's mirrors. With the cache
// on, BuildKit's own state (cache mounts, build cache) does not come back in the next job: a restore keeps
// only images (BuildKit's databases name paths that cannot be checked); the images it built do.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { extractBuildxPlugin, installBuildxPlugin } from '../support/buildx';
import { savedKeyOf } from '../support/cache-helpers';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { defined } from '../support/defined';
import { labelled, outer } from '../support/engine';
import { buildHttpdImage, HTTPD_IMAGE } from '../support/images';
import { contextNames, loadFromOuter, sweepAll, unique, withJob, type MainStep, type TestJob } from '../support/job';
import { commands, expectExit } from '../support/steps';

jest.setTimeout(150_000);

/** On the outer engine only: the daemon would have to pull it, and no registry is reachable. */
const UNPULLABLE_IMAGE = 'setup-dind-test/tiny:latest';

let plugin: string;

beforeAll(async () => {
  plugin = await extractBuildxPlugin();
}, 10 * 60_000);

afterAll(async () => {
  // Only after each test has asserted that nothing was left: this is for a test that failed halfway.
  await sweepAll();
  if (plugin) fs.rmSync(path.dirname(plugin), { recursive: true, force: true });
});

/** Every file under the job's ~/.docker/buildx, relative to it (its HOME is its own: the records are its alone). */
function buildxFiles(job: TestJob): string[] {
  const root = path.join(job.home, '.docker', 'buildx');
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[])
    .filter(entry => fs.statSync(path.join(root, entry)).isFile())
    .sort();
}

/** Main with a docker-container builder whose image the daemon cannot pull: it fails, and buildx keeps the builder (post is what removes it). */
async function mainWithUnstartableBuilder(
  job: TestJob,
  inputs: Record<string, string> = {}
): Promise<{ main: MainStep; builder: string }> {
  const main = await job.main({ ...inputs, buildx: 'true', 'buildx-image': UNPULLABLE_IMAGE }, 1);
  const builder = main.started.builder;
  expect(builder).toBe(`setup-dind-dind-${main.started.id}`);
  expect(buildxFiles(job)).toEqual(expect.arrayContaining([`instances/${builder}`, `activity/${builder}`]));
  return { main, builder: defined(builder, 'builder') };
}

/** After post (which leaves nothing of the instance): nothing of the builder in ~/.docker/buildx, no context. */
async function expectBuilderGone(job: TestJob, builder: string): Promise<void> {
  expect(buildxFiles(job).filter(file => file.includes(builder))).toEqual([]);
  expect(await contextNames(job)).toEqual(['default']);
}

describe('buildx: true', () => {
  test('docker driver: a later step builds in the daemon with plain `docker buildx build` (only the exported environment); builder is default; post leaves no builder behind', async () => {
    const token = unique();
    const tag = `setup-dind-test/built:${token}`;
    await withJob({}, async job => {
      installBuildxPlugin(job.home, plugin);
      const main = await job.main({ buildx: 'true', 'buildx-driver': 'docker' });
      expect(main.warnings).toEqual([]);
      expect(main.outputs.builder).toBe('default');
      expect(main.result.exported.BUILDX_BUILDER).toBe('default');
      expect(main.result.summary).toContain('Buildx builder');
      expect(commands(main.result.stdout, 'debug')).toContain(
        "docker driver: builder default is the daemon's own BuildKit, reached through DOCKER_HOST; it reads daemon.json"
      );

      // FROM scratch: nothing to pull. The label says the image is this build's.
      fs.mkdirSync(path.join(job.workspace, 'app'));
      fs.writeFileSync(
        path.join(job.workspace, 'app', 'Dockerfile'),
        `FROM scratch\nCOPY Dockerfile /\nLABEL token=${token}\n`
      );
      const build = await job.step(
        `docker buildx build --progress plain --tag ${tag} app 2>&1 | tail -3
echo "label=$(docker image inspect --format '{{index .Config.Labels "token"}}' ${tag})"
echo "builder=$(docker buildx inspect | sed -n 's/^Driver: *//p')"`,
        'step running docker buildx build'
      );
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
      const names = [main.started.id, main.outputs.context];
      const recorded = buildxFiles(job);
      expect(recorded.filter(file => file.startsWith('instances'))).toEqual([]);
      expect(recorded.filter(file => names.some(name => file.includes(name)))).toEqual([]);

      await job.post({ warnings: 0, count: 1 });
      expect(
        buildxFiles(job).filter(file => file.startsWith('instances') || names.some(name => file.includes(name)))
      ).toEqual([]);
      expect(await contextNames(job)).toEqual(['default']);
    });
  });

  test('docker-container driver with a BuildKit image the daemon cannot pull: main fails naming buildx and the cause; post removes builder, context and daemon', async () => {
    await withJob({}, async job => {
      installBuildxPlugin(job.home, plugin);
      const { main, builder } = await mainWithUnstartableBuilder(job);
      expect(main.errors).toHaveLength(1);
      expect(main.errors[0]).toContain(
        `buildx could not start the docker-container builder '${builder}' on context 'dind'`
      );
      expect(main.errors[0]).toContain(UNPULLABLE_IMAGE);
      // The daemon's own words on the failed pull, from buildx's output.
      expect(main.errors[0]).toMatch(/ERROR: Error response from daemon: .*registry/);
      expect(main.result.exported.BUILDX_BUILDER).toBeUndefined();
      expect(main.outputs.builder).toBeUndefined();

      // The builder buildx kept is as main asked for it.
      const inspected = await job.step(`docker buildx inspect ${builder}`, 'docker buildx inspect');
      const fields = inspected.stdout.split('\n').map(line => line.replace(/\s+/g, ' ').trim());
      expect(fields).toEqual(
        expect.arrayContaining([
          'Driver: docker-container',
          'Endpoint: dind',
          `Driver Options: image="${UNPULLABLE_IMAGE}"`
        ])
      );
      expect(await contextNames(job)).toEqual(['default', 'dind']);

      const posts = await job.post({ warnings: 0, count: 1 });
      await expectBuilderGone(job, builder);
      expect(posts[0].stdout).toContain('::group::Remove the buildx builder');
    });
  });

  test("docker-container builder: the daemon's mirrors and insecure registries, merged with buildkitd-config-inline, are in buildx's record of the builder", async () => {
    await withJob({}, async job => {
      installBuildxPlugin(job.home, plugin);
      const { main, builder } = await mainWithUnstartableBuilder(job, {
        'registry-mirrors': 'https://mirror.gcr.io, http://10.0.0.5:5000',
        'insecure-registries': 'registry.local:5000\n10.1.0.0/16',
        'daemon-config': '{"insecure-registries":["other.local"]}',
        'buildkitd-config-inline': 'debug = true\n[registry."other.local"]\nhttp = true\n'
      });
      expect(main.errors).toHaveLength(1);
      // What buildx keeps and starts the builder with: its record holds the file's content (base64).
      const record = JSON.parse(
        fs.readFileSync(path.join(job.home, '.docker', 'buildx', 'instances', builder), 'utf8')
      ) as { Nodes: Array<{ Files?: Record<string, string> }> };
      expect(record.Nodes).toHaveLength(1);
      const files = defined(record.Nodes[0].Files, 'Files of the builder node');
      expect(Object.keys(files)).toEqual(['buildkitd.toml']);
      expect(parseToml(Buffer.from(files['buildkitd.toml'], 'base64').toString('utf8'))).toEqual({
        debug: true,
        registry: {
          'docker.io': { mirrors: ['mirror.gcr.io', '10.0.0.5:5000'] },
          '10.0.0.5:5000': { http: true },
          'registry.local:5000': { http: true, insecure: true },
          // The user's table, whole: the action's would have said insecure = true too.
          'other.local': { http: true }
        }
      });
      expect(main.result.stdout).toContain(
        "The builder's BuildKit names registries by host: it does not take '10.1.0.0/16' (the daemon does)."
      );
      // With debug logging on, the user sees the decision, the file and the command.
      const debug = commands(main.result.stdout, 'debug');
      expect(debug).toEqual(
        expect.arrayContaining([
          `docker-container builder ${builder} on context dind, image ${UNPULLABLE_IMAGE}, with a buildkitd.toml`,
          expect.stringMatching(
            new RegExp(`^buildkitd\\.toml of builder ${builder}:\n(.*\n)*\\[registry\\."docker\\.io"\\]\n`)
          ),
          expect.stringMatching(
            new RegExp(
              `^docker buildx create --name ${builder} .*--buildkitd-config \\S+/buildkitd\\.toml --bootstrap dind$`
            )
          ),
          expect.stringMatching(/^docker buildx create exited 1: /)
        ])
      );
      // The file main wrote for buildx (in RUNNER_TEMP) is gone; the daemon has the mirrors too.
      expect(fs.readdirSync(job.temp).filter(name => name.startsWith('setup-dind-buildkitd-'))).toEqual([]);
      const mirrors = await job.step(`docker info --format '{{json .RegistryConfig.Mirrors}}'`, 'docker info');
      expect(JSON.parse(mirrors.stdout)).toEqual(['https://mirror.gcr.io/', 'http://10.0.0.5:5000/']);

      await job.post({ warnings: 0, count: 1 });
      await expectBuilderGone(job, builder);
    });
  });

  test("docker-container builder of a daemon that died before post: post still removes buildx's records of it, without a warning", async () => {
    await withJob({}, async job => {
      installBuildxPlugin(job.home, plugin);
      const { main, builder } = await mainWithUnstartableBuilder(job);
      // buildx rm cannot reach a dead daemon: it drops its records but fails, and post must tell the two apart.
      const [container] = (await labelled(main.started.id)).containers;
      expect((await outer(['kill', container])).code).toBe(0);

      await job.post({ warnings: 0, count: 1 });
      await expectBuilderGone(job, builder);
    });
  });

  test('a runner without the buildx plugin: main fails before starting anything, saying what is missing', async () => {
    await withJob({}, async job => {
      const main = await job.runMain({ buildx: 'true' });
      expectExit(main.result, 1, 'main');
      expect(main.errors).toEqual([
        expect.stringMatching(
          /^buildx: true needs the docker buildx CLI plugin on the runner, and `docker buildx version` failed: .*buildx/
        )
      ]);
      expect(main.started).toBeUndefined();
      expect(main.result.exported).toEqual({});

      const [post] = await job.post({ warnings: 0, count: 1 });
      expect(post.stdout).toContain('Nothing to clean up');
      expect(await contextNames(job)).toEqual(['default']);
    });
  });
});

describe('buildx: true with the cache: BuildKit state across jobs', () => {
  let server: CacheServer;

  beforeAll(async () => {
    [server] = await Promise.all([startCacheServer(), buildHttpdImage()]);
  }, 10 * 60_000);

  afterAll(async () => {
    await server?.stop();
  });

  /**
   * A layer of random bytes (reused only from BuildKit's cache: nothing else could give the same bytes
   * back) and, after the build argument, a step that appends the argument to a cache mount and copies
   * the mount out. Exported to a directory, not an image: what comes back is BuildKit's alone.
   */
  const DOCKERFILE = `FROM ${HTTPD_IMAGE}
RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /layer
ARG RUN_ID
RUN --mount=type=cache,target=/cache,id=setup-dind-probe echo "$RUN_ID" >> /cache/runs && cp /cache/runs /runs
`;

  async function build(job: TestJob, runId: string): Promise<{ layer: string; runs: string[]; log: string }> {
    fs.mkdirSync(path.join(job.workspace, 'probe'), { recursive: true });
    fs.writeFileSync(path.join(job.workspace, 'probe', 'Dockerfile'), DOCKERFILE);
    const out = `out-${runId}`;
    const built = await job.step(
      `docker buildx build --progress plain --build-arg RUN_ID=${runId} --output type=local,dest=${out} probe 2>&1`,
      `docker buildx build (run ${runId})`
    );
    const read = (name: string) => fs.readFileSync(path.join(job.workspace, out, name), 'utf8');
    return { layer: read('layer'), runs: read('runs').split('\n').filter(Boolean), log: built.stdout };
  }

  test("docker driver: the second job's build runs its steps again and its cache mount starts empty (BuildKit's state is not carried); the image store is", async () => {
    const inputs = { buildx: 'true', 'buildx-driver': 'docker', cache: 'true', 'cache-key': `buildkit-${unique()}` };
    let first = { layer: '', runs: [] as string[], log: '' };
    let savedKey = '';
    await withJob({ cache: server }, async job => {
      installBuildxPlugin(job.home, plugin);
      const main = await job.main(inputs);
      expect(main.outputs['cache-hit']).toBe('false');
      await job.step(loadFromOuter(HTTPD_IMAGE), 'load the base image');
      first = await build(job, 'one');
      expect(first.layer).toMatch(/^[0-9a-f]{32}$/);
      expect(first.runs).toEqual(['one']);
      const [post] = await job.post({ warnings: 0 });
      savedKey = savedKeyOf(post);
    });

    await withJob({ cache: server }, async job => {
      installBuildxPlugin(job.home, plugin);
      const main = await job.main(inputs);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': savedKey });
      // The base image loaded in the first job is restored: the build needs no load.
      const second = await build(job, 'two');
      expect(second.layer).toMatch(/^[0-9a-f]{32}$/);
      expect(second.layer).not.toBe(first.layer);
      expect(second.log).not.toMatch(/#\d+ \[stage-0 2\/3\] RUN head -c 16 \/dev\/urandom[^\n]*\n#\d+ CACHED/);
      expect(second.runs).toEqual(['two']);
      await job.post({ warnings: 0 });
    });
  });
});
