// The action's whole lifecycle on the real engine, through the runner emulation: main (dist/main) starts a
// mutual-TLS dind daemon and hands it to later steps; a `run:` step uses it; post (dist/post) removes it.
// Every assertion is on an effect on the engine, the file system or the Docker CLI's contexts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INSTANCE_LABEL } from '../../src/runner/contract';
import {
  allVolumes,
  containerVolumes,
  danglingVolumes,
  inspectContainer,
  labelled,
  NESTED_BASE_IMAGE,
  outerOk,
  run,
  tcpConnect,
  TEST_IMAGE,
  volumeExists
} from '../support/engine';
import {
  BASE_INPUTS,
  contextNames,
  loadFromOuter,
  NO_DOCKER_ENV,
  portOf,
  sweepAll,
  unique,
  withJob
} from '../support/job';
import { account } from '../support/runner';
import { commands, expectExit } from '../support/steps';

jest.setTimeout(150_000);

const NOSUDO_USER = 'runner-nosudo';
/** A `run:` step's way to get an image into the daemon, since nothing can be pulled. */
const LOAD_BASE_IMAGE = loadFromOuter(NESTED_BASE_IMAGE);

// Only after each test has asserted that nothing was left: this is for a test that failed halfway.
afterAll(sweepAll);

/** The daemon's data volumes (the image's VOLUME /var/lib/docker, unlabelled) are gone with the container. */
async function expectVolumesGone(dataVolumes: string[]): Promise<void> {
  for (const volume of dataVolumes)
    expect({ volume, exists: await volumeExists(volume) }).toEqual({ volume, exists: false });
}

describe('setup-dind lifecycle on the real engine', () => {
  test('main starts a TLS daemon for later steps and its context; post removes all of it', async () => {
    await withJob({}, async job => {
      const danglingBefore = await danglingVolumes();
      const main = await job.main();

      // Outputs.
      const { host, 'cert-path': certPath, 'container-id': containerId, context, version } = main.outputs;
      const port = portOf(host);
      expect(port).toBeGreaterThan(0);
      expect(certPath).toBe(main.started.certDir);
      expect(path.dirname(certPath)).toBe(job.temp);
      expect(fs.readdirSync(certPath).sort()).toEqual(['ca.pem', 'cert.pem', 'key.pem']);
      expect(containerId).toMatch(/^[0-9a-f]{64}$/);
      expect(context).toBe('dind');
      // The dockerd of the image the test runs (26, or 28 for SETUP_DIND_TEST_IMAGE=setup-dind-test/dind:sid).
      expect(version).toMatch(/^\d+\.\d+\.\d+/);
      expect(await outerOk(['run', '--rm', '--entrypoint', 'dockerd', TEST_IMAGE, '--version'])).toMatch(
        new RegExp(`^Docker version ${version.replace(/[.+]/g, '\\$&')}, `)
      );

      // The container on the outer engine is the instance's, running, published on that port.
      const container = await inspectContainer(containerId);
      expect(container.State.Running).toBe(true);
      expect(container.Config.Labels[INSTANCE_LABEL]).toBe(main.started.id);
      expect(container.Config.Image).toBe(TEST_IMAGE);
      expect(container.NetworkSettings.Ports['2376/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: String(port) }]);
      // The image's VOLUME /var/lib/docker: post must remove it with the container.
      const dataVolumes = await containerVolumes(containerId);
      expect(dataVolumes.length).toBeGreaterThan(0);

      // What later steps get.
      expect(main.result.exported).toMatchObject({
        DOCKER_HOST: host,
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: certPath
      });
      expect(main.result.summary).toMatch(/<table>/);
      expect(main.result.summary).toContain(host);

      // A later step with nothing but the exported environment: the dind daemon (26.x, not the outer
      // 20.10 engine) runs a nested container from an image loaded into it.
      const step = await job.step(
        `${LOAD_BASE_IMAGE}
docker info --format 'server={{.ServerVersion}} name={{.Name}}'
docker run --rm ${NESTED_BASE_IMAGE} sh -c 'echo "nested $((6 * 7)) on debian $(cat /etc/debian_version)"'`,
        'step using DOCKER_HOST'
      );
      expect(step.stdout).toContain(`server=${version} name=dind`);
      expect(step.stdout).toMatch(/nested 42 on debian \d+/);

      // The context reaches the same daemon, with the exported variables hidden.
      const viaContext = await job.step(
        `${NO_DOCKER_ENV} docker --context ${context} info --format 'server={{.ServerVersion}} name={{.Name}} images={{.Images}}'`,
        'docker --context info'
      );
      expect(viaContext.stdout.trim()).toBe(`server=${version} name=dind images=1`);
      expect(await contextNames(job)).toContain(context);

      // Post.
      await job.post({ warnings: 0, count: 1 });
      await expectVolumesGone(dataVolumes);
      const newDangling = [...(await danglingVolumes())].filter(volume => !danglingBefore.has(volume));
      expect(newDangling).toEqual([]);
      expect(await contextNames(job)).not.toContain(context);
    });
  });

  test('two instances in one job start side by side on the outer engine, each context on its own daemon', async () => {
    await withJob({}, async job => {
      const volumesBefore = await allVolumes();
      const a = await job.main({ name: 'a', context: 'ctx-a' });
      const b = await job.main({ name: 'b', context: 'ctx-b' });
      expect(a.started.id).not.toBe(b.started.id);
      expect(a.outputs.context).toBe('ctx-a');
      expect(b.outputs.context).toBe('ctx-b');
      expect(portOf(a.outputs.host)).not.toBe(portOf(b.outputs.host));
      expect(a.outputs['cert-path']).not.toBe(b.outputs['cert-path']);
      // The later instance's variables win.
      expect(job.env.DOCKER_HOST).toBe(b.outputs.host);

      // Both dind containers run on the outer engine: b is not nested in a.
      const outerRunning = (await outerOk(['ps', '--no-trunc', '--format', '{{.ID}}'])).split('\n');
      expect(outerRunning).toEqual(expect.arrayContaining([a.outputs['container-id'], b.outputs['container-id']]));
      const inA = await job.step(
        `${NO_DOCKER_ENV} docker --context ctx-a ps --all --quiet`,
        'docker --context ctx-a ps'
      );
      expect(inA.stdout.trim()).toBe('');
      const dataVolumes = [
        ...(await containerVolumes(a.outputs['container-id'])),
        ...(await containerVolumes(b.outputs['container-id']))
      ];

      // Each context reaches its own daemon: a marker made in one is absent from the other.
      const markers = await job.step(
        `${NO_DOCKER_ENV} bash -e -c '
docker --context ctx-a volume create marker-a >/dev/null
docker --context ctx-b volume create marker-b >/dev/null
echo "a: name=$(docker --context ctx-a info --format "{{.Name}}") volumes=$(docker --context ctx-a volume ls -q | sort | xargs)"
echo "b: name=$(docker --context ctx-b info --format "{{.Name}}") volumes=$(docker --context ctx-b volume ls -q | sort | xargs)"'
echo "env: name=$(docker info --format '{{.Name}}')"`,
        'markers'
      );
      expect(markers.stdout).toContain('a: name=a volumes=marker-a\n');
      expect(markers.stdout).toContain('b: name=b volumes=marker-b\n');
      expect(markers.stdout).toContain('env: name=b\n');

      // Posts (b's first, as the runner does) remove both.
      await job.post({ warnings: 0, count: 2 });
      await expectVolumesGone(dataVolumes);
      const leftVolumes = [...(await allVolumes())].filter(
        volume => !volumesBefore.has(volume) && dataVolumes.includes(volume)
      );
      expect(leftVolumes).toEqual([]);
      const contexts = await contextNames(job);
      expect(contexts).not.toContain('ctx-a');
      expect(contexts).not.toContain('ctx-b');
    });
  }, 240_000);

  test('the daemon answers only over mutual TLS with the client certificate, on loopback only', async () => {
    await withJob({}, async job => {
      const main = await job.main();
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
            address !== undefined && !address.internal && address.family === 'IPv4'
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

      await job.post({ warnings: 0, count: 1 });
    });
  });

  test(`as ${NOSUDO_USER} (docker group, no sudo): main, a nested container and post work; the user owns the certificates`, async () => {
    const user = account(NOSUDO_USER);
    // The user's real ~/.docker: a unique context name keeps other jobs' contexts out of the way.
    const context = `nosudo-${unique()}`;
    await withJob({ user: NOSUDO_USER }, async job => {
      const whoami = await job.step('id -un', 'id -un');
      expect(whoami.stdout.trim()).toBe(NOSUDO_USER);

      const main = await job.main({ context });
      expect(main.outputs.context).toBe(context);
      const certPath = main.outputs['cert-path'];
      for (const file of [certPath, ...['ca.pem', 'cert.pem', 'key.pem'].map(name => path.join(certPath, name))]) {
        expect({ file, uid: fs.statSync(file).uid }).toEqual({ file, uid: user.uid });
      }
      const dataVolumes = await containerVolumes(main.outputs['container-id']);

      const step = await job.step(
        `${LOAD_BASE_IMAGE}
docker run --rm ${NESTED_BASE_IMAGE} sh -c 'echo "nested $((6 * 7))"'
${NO_DOCKER_ENV} docker --context ${context} info --format 'name={{.Name}} images={{.Images}}'`,
        `step as ${NOSUDO_USER}`
      );
      expect(step.stdout).toContain('nested 42');
      expect(step.stdout).toContain('name=dind images=1');
      // The context is the user's, in their home.
      expect(await contextNames(job)).toContain(context);

      await job.post({ warnings: 0, count: 1 });
      await expectVolumesGone(dataVolumes);
      expect(await contextNames(job)).not.toContain(context);
    });
  });

  test('post without state says there is nothing to clean; a second post is a no-op', async () => {
    await withJob({}, async job => {
      const alone = await job.runPost({});
      expectExit(alone, 0, 'post without state');
      expect(alone.stdout).toMatch(/Nothing to clean up/);
      expect(commands(alone.stdout, 'warning')).toEqual([]);

      const main = await job.main();
      const dataVolumes = await containerVolumes(main.outputs['container-id']);
      await job.post({ warnings: 0, count: 1 });
      await expectVolumesGone(dataVolumes);

      const again = await job.runPost(main.result.state, BASE_INPUTS);
      expectExit(again, 0, 'second post');
      expect(commands(again.stdout, 'warning')).toEqual([]);
      expect(commands(again.stdout, 'error')).toEqual([]);
      expect(again.stdout).toMatch(/Removed 0 container\(s\), 0 network\(s\) and 0 volume\(s\)/);
      await job.expectNothingLeft();
      await expectVolumesGone(dataVolumes);
    });
  });

  describe('main fails clearly, and post still cleans up', () => {
    test('an image that is not on the engine with pull: never', async () => {
      const image = `setup-dind-test/absent-${unique()}:never`;
      await withJob({}, async job => {
        // Main had begun (state saved): post cleans what it made before failing.
        const main = await job.main({ image, pull: 'never' }, 1);
        expect(main.errors).toHaveLength(1);
        expect(main.errors[0]).toContain(image);
        expect(main.errors[0]).toContain("'pull'");
        expect(main.result.exported).toEqual({});
        await job.post({ warnings: 0, count: 1 });
      });
    });

    test('privileged: false', async () => {
      await withJob({}, async job => {
        const main = await job.main({ privileged: 'false', 'wait-timeout': '30' }, 1);
        expect(main.errors).toHaveLength(1);
        expect(main.result.exported).toEqual({});
        // The failed container is still there for post (and its log), unprivileged.
        const [containerId] = (await labelled(main.started.id)).containers;
        expect(containerId).toBeDefined();
        expect((await inspectContainer(containerId)).HostConfig.Privileged).toBe(false);
        const dataVolumes = await containerVolumes(containerId);
        await job.post({ warnings: 0, count: 1 });
        await expectVolumesGone(dataVolumes);

        // Last, so that the cleanup above is checked whatever the message: it names the cause. The
        // same image starts when privileged, so a diagnosis of a missing dockerd would mislead.
        expect(main.errors[0]).not.toMatch(/no 'dockerd'/);
        expect(main.errors[0]).toMatch(/privileged/);
      });
    });

    test('an invalid input names the input and creates nothing', async () => {
      const name = `invalid${unique()}`;
      await withJob({}, async job => {
        const error = await job.expectRefused(await job.runMain({ name, pull: 'sometimes' }), name);
        expect(error).toContain("'pull'");
        expect(error).toContain('sometimes');
      });
    });
  });

  test('a context named like the input that someone else made is left alone; ours gets a unique name', async () => {
    await withJob({}, async job => {
      await job.step(
        `${NO_DOCKER_ENV} docker context create dind --docker host=tcp://127.0.0.1:1`,
        'docker context create dind'
      );
      const handMadeHost = `${NO_DOCKER_ENV} docker context inspect dind --format '{{.Endpoints.docker.Host}}'`;

      const main = await job.main();
      const context = main.outputs.context;
      expect(context).not.toBe('dind');
      expect(context).not.toBe('');
      expect(main.warnings).toHaveLength(1);
      expect(main.warnings[0]).toContain("'dind'");
      expect(main.warnings[0]).toContain(`'${context}'`);

      // Ours reaches the daemon; the hand-made one is untouched.
      const viaContext = await job.step(
        `${NO_DOCKER_ENV} docker --context ${context} info --format 'name={{.Name}} server={{.ServerVersion}}'`,
        `docker --context ${context} info`
      );
      expect(viaContext.stdout.trim()).toBe(`name=dind server=${main.outputs.version}`);
      expect((await job.run(handMadeHost)).stdout.trim()).toBe('tcp://127.0.0.1:1');

      await job.post({ warnings: 0, count: 1 });
      const contexts = await contextNames(job);
      expect(contexts).not.toContain(context);
      expect(contexts).toContain('dind');
      expect((await job.run(handMadeHost)).stdout.trim()).toBe('tcp://127.0.0.1:1');
    });
  });
});
