// The cache round trip on dockerd 28, the daemon of docker:28-dind (the action's default image), while
// the other suites run dockerd 26: restored data is kept only if it is of the form the check knows
// (check-data.sh), so a form dockerd 28 writes and the check does not know would make every restore on
// the default image a silent cold start. Job 1 loads an image and builds one with a RUN layer, post
// saves; job 2 restores warm: no warning, the check passed, the images are there and the layer is reused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { BUILD, loadFromOuter, sweepAll, withJob } from '../support/job';
import { cacheFact, CACHE_INPUTS, imageTags, inDind, savedKeyOf } from '../support/cache-helpers';
import { buildDockerd28Image, buildHttpdImage, DOCKERD28_IMAGE, HTTPD_IMAGE } from '../support/images';

const BUILT_IMAGE = 'setup-dind-test/cached:dockerd28';
const DOCKERFILE = `FROM ${HTTPD_IMAGE}\nRUN echo built by dockerd 28 > /built\n`;

jest.setTimeout(300_000);

let server: CacheServer;

beforeAll(async () => {
  // Fails every test of the file when the image cannot be built: a round trip not run must not pass.
  await Promise.all([buildDockerd28Image(), buildHttpdImage()]);
  server = await startCacheServer();
}, 900_000);

afterAll(async () => {
  await sweepAll();
  await server?.stop();
});

describe.each<{ user?: string; label: string; inputs: Record<string, string> }>([
  { user: undefined, label: 'root', inputs: {} },
  // A key base of its own (storage settings are part of it), so that its job 1 starts cold.
  {
    user: 'runner-nosudo',
    label: 'runner-nosudo (docker group only)',
    inputs: { 'daemon-config': '{"storage-opts":[]}' }
  }
])('dockerd 28 (Debian sid docker.io) as $label', ({ user, inputs: userInputs }) => {
  const inputs = { ...CACHE_INPUTS, image: DOCKERD28_IMAGE, ...userInputs };

  test('job 1 loads an image and builds one with a RUN layer, post saves; job 2 restores warm and reuses the layer', async () => {
    let key = '';
    let built = '';
    await withJob({ user, cache: server }, async job => {
      const main = await job.main(inputs);
      expect(main.warnings).toEqual([]);
      expect(main.outputs['cache-hit']).toBe('false');
      const version = await job.step(`docker version --format '{{.Server.Version}}'`, 'docker version');
      expect(version.stdout).toMatch(/^28\./);
      // dockerd 29 turns the containerd image store on for new data, which the cache does not carry: with
      // the cache on the action turns it off, and dockerd 28 takes the setting.
      expect(JSON.parse(await inDind(main, 'cat /setup-dind/daemon.json'))).toMatchObject({
        features: { 'containerd-snapshotter': false }
      });
      expect((await job.step(`docker info --format '{{.Driver}}'`, 'storage driver')).stdout.trim()).toBe('overlay2');
      fs.mkdirSync(path.join(job.workspace, 'app'));
      fs.writeFileSync(path.join(job.workspace, 'app', 'Dockerfile'), DOCKERFILE);
      const build = await job.step(`${loadFromOuter(HTTPD_IMAGE)} >/dev/null\n${BUILD} -t ${BUILT_IMAGE} app`, 'build');
      built = build.stdout.trim();
      expect(built).toMatch(/^sha256:[0-9a-f]{64}$/);
      const [post] = await job.post({ warnings: 0 });
      key = savedKeyOf(post);
    });

    await withJob({ user, cache: server }, async job => {
      const main = await job.main(inputs);
      expect(main.warnings).toEqual([]);
      expect(main.outputs).toMatchObject({ 'cache-hit': 'true', 'cache-key': key });
      expect(fs.readFileSync(path.join(main.dataDir, 'events'), 'utf8')).toMatch(
        /^mounted in .* s \(restored, (attached while filled, )?checked in .* s\)$/m
      );
      expect(await imageTags(job)).toEqual([BUILT_IMAGE, HTTPD_IMAGE].sort());
      fs.mkdirSync(path.join(job.workspace, 'app'));
      fs.writeFileSync(path.join(job.workspace, 'app', 'Dockerfile'), DOCKERFILE);
      // The same image again: the RUN step came from the restored layer, not from running it.
      const again = await job.step(
        `${BUILD} -t ${BUILT_IMAGE} app\ndocker run --rm ${BUILT_IMAGE} cat /built`,
        'rebuild'
      );
      expect(again.stdout.trim().split('\n')).toEqual([built, 'built by dockerd 28']);
      const [post] = await job.post({ warnings: 0 });
      expect(cacheFact(post)).toBe('not saved: the daemon holds what was restored: nothing changed');
    });
  });
});
