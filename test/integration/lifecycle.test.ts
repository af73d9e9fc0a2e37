// The action's whole lifecycle on the real engine, through the runner emulation: main (dist/main) starts a
// mutual-TLS dind daemon and hands it to later steps; a `run:` step uses it; post (dist/post) removes it.
// Every assertion is on an effect on the engine, the file system or the Docker CLI's contexts.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INSTANCE_LABEL } from '../../src/constants';
import { Job, type StepResult } from '../support/runner';
import { commands, expectCleanPosts, expectExit } from '../support/steps';
import {
  allVolumes,
  containerVolumes,
  danglingVolumes,
  inspectContainer,
  labelled,
  namedLike,
  NESTED_BASE_IMAGE,
  OUTER_SOCKET,
  outerOk,
  run,
  Sweeper,
  tcpConnect,
  TEST_IMAGE,
  volumeExists,
  type Started
} from '../support/engine';

jest.setTimeout(150_000);

/** What every test passes to main: the local image, no registry, no cache service. */
const BASE_INPUTS = { image: TEST_IMAGE, pull: 'never', cache: 'false' };
const NOSUDO_USER = 'runner-nosudo';
/** Hides the exported variables, which override any context. */
const NO_DOCKER_ENV = 'env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT';
/** A `run:` step's way to get an image into the daemon, since nothing can be pulled. */
const LOAD_BASE_IMAGE = `${NO_DOCKER_ENV} docker -H ${OUTER_SOCKET} save ${NESTED_BASE_IMAGE} | docker load`;

const sweeper = new Sweeper();
const homes = new WeakMap<Job, string>();

afterAll(async () => {
  // Only after each test has asserted that nothing was left: this is for a test that failed halfway.
  const removed = await sweeper.sweep();
  if (removed.length > 0) console.warn(`Swept what failed tests left behind:\n  ${removed.join('\n  ')}`);
});

function passwd(user: string): { uid: number; home: string } {
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(line => line.startsWith(`${user}:`));
  if (!entry) throw new Error(`No user ${user} on this machine.`);
  const fields = entry.split(':');
  return { uid: Number(fields[2]), home: fields[5] };
}

/**
 * A job. Its steps get a HOME of their own (unless they run as another user, whose HOME the harness
 * sets), so the Docker CLI contexts they make and check are theirs alone, not those of other jobs
 * on this machine, and go away with the job.
 */
function newJob(runAs?: { user: string }): Job {
  const job = new Job(runAs ? { runAs } : {});
  if (runAs) {
    homes.set(job, passwd(runAs.user).home);
  } else {
    homes.set(job, job.ownHome());
  }
  return job;
}

/** Main with the test defaults; records the instance for the afterAll sweep. */
async function runMain(
  job: Job,
  inputs: Record<string, string> = {}
): Promise<{ result: StepResult; started?: Started }> {
  const result = await job.runMain({ ...BASE_INPUTS, ...inputs });
  return { result, started: sweeper.record(result.state, homes.get(job)!) };
}

/** The names of the Docker CLI contexts the job's user has. */
async function contextNames(job: Job): Promise<string[]> {
  const listed = await job.run(`${NO_DOCKER_ENV} docker context ls --format '{{.Name}}'`);
  expectExit(listed, 0, 'docker context ls');
  return listed.stdout
    .split('\n')
    .map(line => line.replace(/\s*\*$/, '').trim())
    .filter(Boolean);
}

/** Nothing of the instance is left: labelled containers, networks and volumes, the daemon's data volumes, the certificates. */
async function expectInstanceGone(started: Started, dataVolumes: string[]): Promise<void> {
  expect(await labelled(started.id)).toEqual({ containers: [], networks: [], volumes: [] });
  for (const volume of dataVolumes)
    expect({ volume, exists: await volumeExists(volume) }).toEqual({ volume, exists: false });
  expect(fs.existsSync(started.certDir)).toBe(false);
}

function portOf(host: string): number {
  const match = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(host);
  if (!match) throw new Error(`host output '${host}' is not tcp://127.0.0.1:<port>`);
  return Number(match[1]);
}

const unique = () => randomBytes(3).toString('hex');

describe('setup-dind lifecycle on the real engine', () => {
  test('main starts a TLS daemon for later steps and its context; post removes all of it', async () => {
    const job = newJob();
    const danglingBefore = await danglingVolumes();
    try {
      const { result: main, started } = await runMain(job);
      expectExit(main, 0, 'main');
      expect(started).toBeDefined();

      // Outputs.
      const { host, 'cert-path': certPath, 'container-id': containerId, context, version } = main.outputs;
      const port = portOf(host);
      expect(port).toBeGreaterThan(0);
      expect(certPath).toBe(started!.certDir);
      expect(path.dirname(certPath)).toBe(job.temp);
      expect(fs.readdirSync(certPath).sort()).toEqual(['ca.pem', 'cert.pem', 'key.pem']);
      expect(containerId).toMatch(/^[0-9a-f]{64}$/);
      expect(context).toBe('dind');
      expect(version).toMatch(/^26\./);

      // The container on the outer engine is the instance's, running, published on that port.
      const container = await inspectContainer(containerId);
      expect(container.State.Running).toBe(true);
      expect(container.Config.Labels[INSTANCE_LABEL]).toBe(started!.id);
      expect(container.Config.Image).toBe(TEST_IMAGE);
      expect(container.NetworkSettings.Ports['2376/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: String(port) }]);
      // The image's VOLUME /var/lib/docker: post must remove it with the container.
      const dataVolumes = await containerVolumes(containerId);
      expect(dataVolumes.length).toBeGreaterThan(0);

      // What later steps get.
      expect(main.exported).toMatchObject({ DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath });
      expect(main.summary).toMatch(/<table>/);
      expect(main.summary).toContain(host);

      // A later step with nothing but the exported environment: the dind daemon (26.x, not the outer
      // 20.10 engine) runs a nested container from an image loaded into it.
      const step = await job.run(
        `${LOAD_BASE_IMAGE}
docker info --format 'server={{.ServerVersion}} name={{.Name}}'
docker run --rm ${NESTED_BASE_IMAGE} sh -c 'echo "nested $((6 * 7)) on debian $(cat /etc/debian_version)"'`
      );
      expectExit(step, 0, 'step using DOCKER_HOST');
      expect(step.stdout).toContain(`server=${version} name=dind`);
      expect(step.stdout).toMatch(/nested 42 on debian \d+/);

      // The context reaches the same daemon, with the exported variables hidden.
      const viaContext = await job.run(
        `${NO_DOCKER_ENV} docker --context ${context} info --format 'server={{.ServerVersion}} name={{.Name}} images={{.Images}}'`
      );
      expectExit(viaContext, 0, 'docker --context info');
      expect(viaContext.stdout.trim()).toBe(`server=${version} name=dind images=1`);
      expect(await contextNames(job)).toContain(context);

      // Post.
      expectCleanPosts(await job.finish(), 1);
      await expectInstanceGone(started!, dataVolumes);
      const newDangling = [...(await danglingVolumes())].filter(volume => !danglingBefore.has(volume));
      expect(newDangling).toEqual([]);
      expect(await contextNames(job)).not.toContain(context);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test('two instances in one job start side by side on the outer engine, each context on its own daemon', async () => {
    const job = newJob();
    const volumesBefore = await allVolumes();
    try {
      const { result: a, started: startedA } = await runMain(job, { name: 'a', context: 'ctx-a' });
      expectExit(a, 0, 'main a');
      const { result: b, started: startedB } = await runMain(job, { name: 'b', context: 'ctx-b' });
      expectExit(b, 0, 'main b');
      expect(startedA!.id).not.toBe(startedB!.id);
      expect(a.outputs.context).toBe('ctx-a');
      expect(b.outputs.context).toBe('ctx-b');
      expect(portOf(a.outputs.host)).not.toBe(portOf(b.outputs.host));
      expect(a.outputs['cert-path']).not.toBe(b.outputs['cert-path']);
      // The later instance's variables win.
      expect(job.env.DOCKER_HOST).toBe(b.outputs.host);

      // Both dind containers run on the outer engine: b is not nested in a.
      const outerRunning = (await outerOk(['ps', '--no-trunc', '--format', '{{.ID}}'])).split('\n');
      expect(outerRunning).toEqual(expect.arrayContaining([a.outputs['container-id'], b.outputs['container-id']]));
      const inA = await job.run(`${NO_DOCKER_ENV} docker --context ctx-a ps --all --quiet`);
      expectExit(inA, 0, 'docker --context ctx-a ps');
      expect(inA.stdout.trim()).toBe('');
      const dataVolumes = [
        ...(await containerVolumes(a.outputs['container-id'])),
        ...(await containerVolumes(b.outputs['container-id']))
      ];

      // Each context reaches its own daemon: a marker made in one is absent from the other.
      const markers = await job.run(
        `${NO_DOCKER_ENV} bash -e -c '
docker --context ctx-a volume create marker-a >/dev/null
docker --context ctx-b volume create marker-b >/dev/null
echo "a: name=$(docker --context ctx-a info --format "{{.Name}}") volumes=$(docker --context ctx-a volume ls -q | sort | xargs)"
echo "b: name=$(docker --context ctx-b info --format "{{.Name}}") volumes=$(docker --context ctx-b volume ls -q | sort | xargs)"'
echo "env: name=$(docker info --format '{{.Name}}')"`
      );
      expectExit(markers, 0, 'markers');
      expect(markers.stdout).toContain('a: name=a volumes=marker-a\n');
      expect(markers.stdout).toContain('b: name=b volumes=marker-b\n');
      expect(markers.stdout).toContain('env: name=b\n');

      // Posts (b's first, as the runner does) remove both.
      expectCleanPosts(await job.finish(), 2);
      await expectInstanceGone(startedA!, dataVolumes);
      await expectInstanceGone(startedB!, dataVolumes);
      const leftVolumes = [...(await allVolumes())].filter(
        volume => !volumesBefore.has(volume) && dataVolumes.includes(volume)
      );
      expect(leftVolumes).toEqual([]);
      const contexts = await contextNames(job);
      expect(contexts).not.toContain('ctx-a');
      expect(contexts).not.toContain('ctx-b');
    } finally {
      await job.finish();
      job.cleanup();
    }
  }, 240_000);

  test('the daemon answers only over mutual TLS with the client certificate, on loopback only', async () => {
    const job = newJob();
    try {
      const { result: main, started } = await runMain(job);
      expectExit(main, 0, 'main');
      const certPath = main.outputs['cert-path'];
      const port = portOf(main.outputs.host);
      const [ca, cert, key] = ['ca.pem', 'cert.pem', 'key.pem'].map(file => path.join(certPath, file));
      const curl = (...args: string[]) =>
        run('curl', ['--silent', '--show-error', '--fail', '--max-time', '10', ...args]);
      const ping = `https://127.0.0.1:${port}/_ping`;

      // With the client certificate, verifying the server against the job's CA, by IP and by name.
      const withCert = await curl('--cacert', ca, '--cert', cert, '--key', key, ping);
      expect({ code: withCert.code, body: withCert.stdout, stderr: withCert.stderr }).toEqual({
        code: 0,
        body: 'OK',
        stderr: ''
      });
      const byName = await curl('--cacert', ca, '--cert', cert, '--key', key, `https://localhost:${port}/_ping`);
      expect({ code: byName.code, body: byName.stdout }).toEqual({ code: 0, body: 'OK' });

      // Without it, whether or not the client checks the server.
      const noCert = await curl('--cacert', ca, ping);
      expect(noCert.code).not.toBe(0);
      expect(noCert.stdout).not.toBe('OK');
      const insecureNoCert = await curl('--insecure', ping);
      expect(insecureNoCert.code).not.toBe(0);
      expect(insecureNoCert.stdout).not.toBe('OK');

      // A client certificate from another CA.
      const foreign = fs.mkdtempSync(path.join(job.root, 'foreign-'));
      const made = await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=intruder',
        '-keyout',
        path.join(foreign, 'key.pem'),
        '-out',
        path.join(foreign, 'cert.pem')
      ]);
      expect(made.code).toBe(0);
      const foreignCert = await curl(
        '--cacert',
        ca,
        '--cert',
        path.join(foreign, 'cert.pem'),
        '--key',
        path.join(foreign, 'key.pem'),
        ping
      );
      expect(foreignCert.code).not.toBe(0);
      expect(foreignCert.stdout).not.toBe('OK');

      // Plaintext HTTP.
      const plain = await curl(`http://127.0.0.1:${port}/_ping`);
      expect(plain.code).not.toBe(0);
      expect(plain.stdout).not.toBe('OK');

      // Published on 127.0.0.1 only, and only the TLS port.
      const container = await inspectContainer(main.outputs['container-id']);
      expect(container.HostConfig.PortBindings).toEqual({ '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
      const published = Object.entries(container.NetworkSettings.Ports).filter(
        ([, bindings]) => bindings && bindings.length > 0
      );
      expect(published).toEqual([['2376/tcp', [{ HostIp: '127.0.0.1', HostPort: String(port) }]]]);
      expect(await tcpConnect('127.0.0.1', port)).toBe('connected');
      const external = Object.values(os.networkInterfaces())
        .flat()
        .filter(
          (address): address is os.NetworkInterfaceInfo =>
            Boolean(address) && !address!.internal && address!.family === 'IPv4'
        )
        .map(address => address.address);
      for (const address of external) {
        expect({ address, outcome: await tcpConnect(address, port) }).not.toEqual({ address, outcome: 'connected' });
      }

      // Who may read the client's files.
      const mode = (file: string) => (fs.statSync(file).mode & 0o777).toString(8);
      expect(mode(certPath)).toBe('700');
      expect(mode(key)).toBe('600');
      expect(mode(ca)).toBe('644');
      expect(mode(cert)).toBe('644');

      expectCleanPosts(await job.finish(), 1);
      await expectInstanceGone(started!, []);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test(`as ${NOSUDO_USER} (docker group, no sudo): main, a nested container and post work; the user owns the certificates`, async () => {
    const user = passwd(NOSUDO_USER);
    const job = newJob({ user: NOSUDO_USER });
    // The user's real ~/.docker: a unique context name keeps other jobs' contexts out of the way.
    const context = `nosudo-${unique()}`;
    try {
      const whoami = await job.run('id -un');
      expect(whoami.stdout.trim()).toBe(NOSUDO_USER);

      const { result: main, started } = await runMain(job, { context });
      expectExit(main, 0, 'main');
      expect(main.outputs.context).toBe(context);
      const certPath = main.outputs['cert-path'];
      for (const file of [certPath, ...['ca.pem', 'cert.pem', 'key.pem'].map(name => path.join(certPath, name))]) {
        expect({ file, uid: fs.statSync(file).uid }).toEqual({ file, uid: user.uid });
      }
      const dataVolumes = await containerVolumes(main.outputs['container-id']);

      const step = await job.run(
        `${LOAD_BASE_IMAGE}
docker run --rm ${NESTED_BASE_IMAGE} sh -c 'echo "nested $((6 * 7))"'
${NO_DOCKER_ENV} docker --context ${context} info --format 'name={{.Name}} images={{.Images}}'`
      );
      expectExit(step, 0, `step as ${NOSUDO_USER}`);
      expect(step.stdout).toContain('nested 42');
      expect(step.stdout).toContain('name=dind images=1');
      // The context is the user's, in their home.
      expect(await contextNames(job)).toContain(context);

      expectCleanPosts(await job.finish(), 1);
      await expectInstanceGone(started!, dataVolumes);
      expect(await contextNames(job)).not.toContain(context);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  test('post without state says there is nothing to clean; a second post is a no-op', async () => {
    const job = newJob();
    try {
      const alone = await job.runPost({});
      expectExit(alone, 0, 'post without state');
      expect(alone.stdout).toMatch(/Nothing to clean up/);
      expect(commands(alone.stdout, 'warning')).toEqual([]);

      const { result: main, started } = await runMain(job);
      expectExit(main, 0, 'main');
      const dataVolumes = await containerVolumes(main.outputs['container-id']);
      expectCleanPosts(await job.finish(), 1);
      await expectInstanceGone(started!, dataVolumes);

      const again = await job.runPost(main.state, BASE_INPUTS);
      expectExit(again, 0, 'second post');
      expect(commands(again.stdout, 'warning')).toEqual([]);
      expect(commands(again.stdout, 'error')).toEqual([]);
      expect(again.stdout).toMatch(/Removed 0 container\(s\) and 0 network\(s\)/);
      await expectInstanceGone(started!, dataVolumes);
    } finally {
      await job.finish();
      job.cleanup();
    }
  });

  describe('main fails clearly, and post still cleans up', () => {
    test('an image that is not on the engine with pull: never', async () => {
      const job = newJob();
      const image = `setup-dind-test/absent-${unique()}:never`;
      try {
        const { result: main, started } = await runMain(job, { image, pull: 'never' });
        expectExit(main, 1, 'main');
        const errors = commands(main.stdout, 'error');
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(image);
        expect(errors[0]).toContain("'pull'");
        expect(main.exported).toEqual({});
        // Main had begun (state saved): post cleans what it made before failing.
        expect(started).toBeDefined();
        expectCleanPosts(await job.finish(), 1);
        await expectInstanceGone(started!, []);
        expect(fs.readdirSync(job.temp)).toEqual([]);
      } finally {
        await job.finish();
        job.cleanup();
      }
    });

    test('privileged: false', async () => {
      const job = newJob();
      try {
        const { result: main, started } = await runMain(job, { privileged: 'false', 'wait-timeout': '30' });
        expectExit(main, 1, 'main');
        const errors = commands(main.stdout, 'error');
        expect(errors).toHaveLength(1);
        expect(main.exported).toEqual({});
        expect(started).toBeDefined();
        // The failed container is still there for post (and its log), unprivileged.
        const [containerId] = (await labelled(started!.id)).containers;
        expect(containerId).toBeDefined();
        expect((await inspectContainer(containerId)).HostConfig.Privileged).toBe(false);
        const dataVolumes = await containerVolumes(containerId);
        expectCleanPosts(await job.finish(), 1);
        await expectInstanceGone(started!, dataVolumes);

        // Last, so that the cleanup above is checked whatever the message: it names the cause. The
        // same image starts when privileged, so a diagnosis of a missing dockerd would mislead.
        expect(errors[0]).not.toMatch(/no 'dockerd'/);
        expect(errors[0]).toMatch(/privileged/);
      } finally {
        await job.finish();
        job.cleanup();
      }
    });

    test('an invalid input names the input and creates nothing', async () => {
      const job = newJob();
      const name = `invalid${unique()}`;
      try {
        const { result: main, started } = await runMain(job, { name, pull: 'sometimes' });
        expectExit(main, 1, 'main');
        const errors = commands(main.stdout, 'error');
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain("'pull'");
        expect(errors[0]).toContain('sometimes');
        expect(started).toBeUndefined();
        expect(main.exported).toEqual({});
        expect(main.outputs).toEqual({});
        expect(await namedLike(`setup-dind-${name}-`)).toEqual({ containers: [], networks: [] });
        expect(fs.readdirSync(job.temp)).toEqual([]);
        expect(await contextNames(job)).toEqual(['default']);

        const [post] = await job.finish();
        expectExit(post, 0, 'post');
        expect(post.stdout).toMatch(/Nothing to clean up/);
      } finally {
        await job.finish();
        job.cleanup();
      }
    });
  });

  test('a context named like the input that someone else made is left alone; ours gets a unique name', async () => {
    const job = newJob();
    try {
      const made = await job.run(`${NO_DOCKER_ENV} docker context create dind --docker host=tcp://127.0.0.1:1`);
      expectExit(made, 0, 'docker context create dind');
      const handMadeHost = `${NO_DOCKER_ENV} docker context inspect dind --format '{{.Endpoints.docker.Host}}'`;

      const { result: main, started } = await runMain(job);
      expectExit(main, 0, 'main');
      const context = main.outputs.context;
      expect(context).not.toBe('dind');
      expect(context).not.toBe('');
      const warnings = commands(main.stdout, 'warning');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("'dind'");
      expect(warnings[0]).toContain(`'${context}'`);

      // Ours reaches the daemon; the hand-made one is untouched.
      const viaContext = await job.run(
        `${NO_DOCKER_ENV} docker --context ${context} info --format 'name={{.Name}} server={{.ServerVersion}}'`
      );
      expectExit(viaContext, 0, `docker --context ${context} info`);
      expect(viaContext.stdout.trim()).toBe(`name=dind server=${main.outputs.version}`);
      expect((await job.run(handMadeHost)).stdout.trim()).toBe('tcp://127.0.0.1:1');

      expectCleanPosts(await job.finish(), 1);
      await expectInstanceGone(started!, []);
      const contexts = await contextNames(job);
      expect(contexts).not.toContain(context);
      expect(contexts).toContain('dind');
      expect((await job.run(handMadeHost)).stdout.trim()).toBe('tcp://127.0.0.1:1');
    } finally {
      await job.finish();
      await job.run(`${NO_DOCKER_ENV} docker context rm --force dind`).catch(() => undefined);
      job.cleanup();
    }
  });
});
