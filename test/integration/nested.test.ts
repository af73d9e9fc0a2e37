// Nested Docker as on a host, on the real engine, through the runner emulation (and, for a `container:`
// job, through a real job container): the workspace and RUNNER_TEMP bind-mounted at the same path,
// published ports, the `ip` output and Testcontainers, a job container sharing a network with the
// daemon, MTU / registry settings / swarm, and a server certificate that names the container's address.
// Nothing can be pulled here: images are built on the outer engine from debian:trixie-slim and
// `docker save | docker load`ed into each daemon.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContainerSteps, actionMounts } from '../support/container-job';
import { defined } from '../support/defined';
import { inspectContainer, labelled, NESTED_BASE_IMAGE, outer, outerOk, run } from '../support/engine';
import { buildHttpdImage, buildJobImage, HTTPD_IMAGE, JOB_IMAGE } from '../support/images';
import {
  BASE_INPUTS,
  contextNames,
  expectInstanceGone,
  loadFromOuter,
  NO_DOCKER_ENV,
  recordInstance,
  sweepAll,
  unique,
  withJob
} from '../support/job';
import { REPO_ROOT } from '../support/runner';
import { expectCleanMain, expectCleanPosts, expectExit } from '../support/steps';
import { freePort } from '../support/net';

jest.setTimeout(150_000);

const LOAD_HTTPD = loadFromOuter(HTTPD_IMAGE);

beforeAll(async () => {
  await Promise.all([buildHttpdImage(), buildJobImage()]);
}, 10 * 60_000);

// Only after each test has asserted that nothing was left: this is for a test that failed halfway.
afterAll(sweepAll);

/** curl in a step: retries while a just-started nested server (or the port proxies before it) is not up yet. */
const CURL = 'curl --silent --show-error --fail --max-time 5 --retry 10 --retry-delay 1 --retry-all-errors';

describe('nested Docker as on a host', () => {
  test('default mounts: the workspace and RUNNER_TEMP are the same paths in nested containers, both ways, also for compose (v1) relative binds', async () => {
    const token = unique();
    await withJob({}, async job => {
      const main = await job.main();
      expect(main.warnings).toEqual([]);

      // The dind container bind-mounts both runner paths at the same path, and the daemon's data directory.
      const container = await inspectContainer(main.outputs['container-id']);
      const binds = (container.HostConfig as unknown as { Binds: string[] | null }).Binds ?? [];
      expect(binds.sort()).toEqual(
        [`${job.temp}:${job.temp}`, `${job.workspace}:${job.workspace}`, `${main.dataDir}:/setup-dind/data`].sort()
      );

      // A file the runner writes is seen by a nested container through `-v "$PWD":/src`; RUNNER_TEMP too.
      const step = await job.step(
        `${loadFromOuter(NESTED_BASE_IMAGE)}
echo "runner wrote ${token}" > file
echo "temp ${token}" > "$RUNNER_TEMP/in-temp"
docker run --rm -v "$PWD":/src ${NESTED_BASE_IMAGE} cat /src/file
docker run --rm -v "$RUNNER_TEMP":/t ${NESTED_BASE_IMAGE} cat /t/in-temp
docker run --rm -v "$PWD":/src ${NESTED_BASE_IMAGE} sh -c 'echo "nested wrote ${token}" > /src/from-nested'`,
        'step with nested bind mounts'
      );
      expect(step.stdout).toContain(`runner wrote ${token}\n`);
      expect(step.stdout).toContain(`temp ${token}\n`);

      // What the nested container wrote is on the runner, for a later step.
      const later = await job.step('cat from-nested', 'later step reading the nested file');
      expect(later.stdout).toBe(`nested wrote ${token}\n`);

      // Debian's docker-compose (v1, python) through the exported DOCKER_HOST / DOCKER_TLS_VERIFY /
      // DOCKER_CERT_PATH: a relative bind `./data:/data` resolves to the workspace, which the daemon has.
      fs.mkdirSync(path.join(job.workspace, 'app', 'data'), { recursive: true });
      fs.writeFileSync(path.join(job.workspace, 'app', 'data', 'in.txt'), `compose input ${token}\n`);
      fs.writeFileSync(
        path.join(job.workspace, 'app', 'docker-compose.yml'),
        `version: "2.4"
services:
  app:
    image: ${NESTED_BASE_IMAGE}
    volumes:
      - ./data:/data
    command: ["sh", "-c", "cat /data/in.txt && echo \\"compose wrote ${token}\\" > /data/out.txt"]
`
      );
      // This machine exports REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (the system bundle), and python
      // requests lets them override the CA that docker-py passes (psf/requests#4726): unset here, as on
      // a GitHub runner, which does not set them.
      const compose = await job.step(
        `unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
cd app
docker-compose version --short
docker-compose -p nested${token} run --rm app
docker-compose -p nested${token} down`,
        'docker-compose (v1) with a relative bind mount'
      );
      expect(compose.stdout).toMatch(/^1\.29\./);
      expect(compose.stdout).toContain(`compose input ${token}\n`);
      expect(fs.readFileSync(path.join(job.workspace, 'app', 'data', 'out.txt'), 'utf8')).toBe(
        `compose wrote ${token}\n`
      );

      // The step's own file: post checks that the action leaves nothing in RUNNER_TEMP.
      fs.rmSync(path.join(job.temp, 'in-temp'));
      await job.post({ warnings: 0, count: 1 });
    });
  });

  test("the client's key is nowhere a nested container can mount: RUNNER_TEMP's certificate directory is empty in the dind container, also through its `/`", async () => {
    await withJob({}, async job => {
      const main = await job.main();
      expect(main.warnings).toEqual([]);
      const step = await job.step(
        `${loadFromOuter(NESTED_BASE_IMAGE)}
set -e
ls "$DOCKER_CERT_PATH"
echo probe > "$RUNNER_TEMP/probe"
docker run --rm -v "$RUNNER_TEMP":/t ${NESTED_BASE_IMAGE} sh -c 'cat /t/probe; ls -A "/t/$(basename "$1")" | wc -l' sh "$DOCKER_CERT_PATH"
docker run --rm -v /:/host ${NESTED_BASE_IMAGE} sh -c 'cat "/host$1/../probe"; ls -A "/host$1" | wc -l; cat "/host$1/key.pem"' sh "$DOCKER_CERT_PATH" || echo "no key"
rm "$RUNNER_TEMP/probe"`,
        "nested containers that mount RUNNER_TEMP and the dind container's /"
      );
      // The runner's steps have the key; nested containers see RUNNER_TEMP, and the certificate directory empty.
      expect(step.stdout.replace(/^Loaded image: .*\n/m, '')).toBe(
        'ca.pem\ncert.pem\nkey.pem\nprobe\n0\nprobe\n0\nno key\n'
      );
      expect(step.stderr).toMatch(/key\.pem: No such file or directory/);
      await job.post({ warnings: 0, count: 1 });
    });
  });

  test('mounts: none bind-mounts nothing: a nested `-v "$PWD":/src` sees an empty directory of the daemon', async () => {
    await withJob({}, async job => {
      const main = await job.main({ mounts: 'none' });
      expect(main.warnings).toEqual([]);
      const container = await inspectContainer(main.outputs['container-id']);
      // Only the daemon's own data directory.
      expect((container.HostConfig as unknown as { Binds: string[] | null }).Binds ?? []).toEqual([
        `${main.dataDir}:/setup-dind/data`
      ]);
      expect(container.Mounts.filter(mount => mount.Type === 'bind').map(mount => mount.Destination)).toEqual([
        '/setup-dind/data'
      ]);

      const step = await job.step(
        `${LOAD_HTTPD}
echo runner > file
docker run --rm -v "$PWD":/src ${HTTPD_IMAGE} sh -c 'echo "entries=$(ls -A /src | wc -l)"; test ! -e /src/file && echo absent'`,
        'step with mounts: none'
      );
      expect(step.stdout).toContain('entries=0\nabsent\n');

      await job.post({ warnings: 0, count: 1 });
    });
  });

  test('ports and ip: nested published ports are reached on 127.0.0.1 through `ports`, and at the `ip` output without it; the server certificate names the container by name', async () => {
    const [same, runnerPort] = [await freePort(), await freePort()];
    await withJob({}, async job => {
      // Both forms: PORT (the same on both sides) and RUNNER_PORT:DIND_PORT.
      const main = await job.main({ ports: `${same}\n${runnerPort}:8080` });
      expect(main.warnings).toEqual([]);

      const container = await inspectContainer(main.outputs['container-id']);
      expect(container.HostConfig.PortBindings).toEqual({
        '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
        [`${same}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: String(same) }],
        '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(runnerPort) }]
      });

      // `ip` is the dind container's address on its network, exported for Testcontainers.
      const ip = main.outputs.ip;
      expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      const networks = container.NetworkSettings.Networks as Record<string, { IPAddress: string }>;
      expect(Object.keys(networks)).toEqual([`setup-dind-dind-${main.started.id}`]);
      expect(networks[`setup-dind-dind-${main.started.id}`].IPAddress).toBe(ip);
      expect(main.result.exported.TESTCONTAINERS_HOST_OVERRIDE).toBe(ip);

      await job.step(
        `${LOAD_HTTPD}
docker run -d -p ${same}:80 -e MESSAGE=same-port ${HTTPD_IMAGE} >/dev/null
docker run -d -p 8080:80 -e MESSAGE=mapped-port ${HTTPD_IMAGE} >/dev/null
docker run -d -p 8081:80 -e MESSAGE=at-ip ${HTTPD_IMAGE} >/dev/null
docker ps --format '{{.Ports}}' | sort`,
        'step starting nested servers'
      );

      const reach = await job.step(
        `echo "1: $(${CURL} http://127.0.0.1:${same}/)"
echo "2: $(${CURL} http://127.0.0.1:${runnerPort}/)"
echo "3: $(${CURL} "http://$TESTCONTAINERS_HOST_OVERRIDE:8081/")"`,
        'later step reaching the nested servers'
      );
      expect(reach.stdout).toBe('1: same-port\n2: mapped-port\n3: at-ip\n');

      // The daemon's TLS port at the ip: by the container's name resolved to it, the server certificate
      // checks out against the job's CA; by the bare address it does not, as the certificate is made
      // before the container starts, with names only (the job reaches the daemon at `host`).
      const certs = ['--cacert', 'ca.pem', '--cert', 'cert.pem', '--key', 'key.pem'].map(word =>
        word.endsWith('.pem') ? path.join(main.outputs['cert-path'], word) : word
      );
      const curl = (...args: string[]) =>
        run('curl', ['--silent', '--show-error', '--fail', '--max-time', '10', ...certs, ...args]);
      const byIp = await curl(`https://${ip}:2376/_ping`);
      expect({ code: byIp.code, body: byIp.stdout }).toEqual({ code: 60, body: '' });
      expect(byIp.stderr).toMatch(/certificate|SSL/i);
      const name = `setup-dind-dind-${main.started.id}`;
      const byName = await curl('--resolve', `${name}:2376:${ip}`, `https://${name}:2376/_ping`);
      expect({ code: byName.code, body: byName.stdout, stderr: byName.stderr }).toEqual({
        code: 0,
        body: 'OK',
        stderr: ''
      });

      await job.post({ warnings: 0, count: 1 });
    });
  });

  test('Testcontainers (the npm client) runs a container and reaches its mapped port through the exported environment alone', async () => {
    const token = unique();
    const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-nested-tc-'));
    try {
      await withJob({}, async job => {
        const main = await job.main();
        expect(main.warnings).toEqual([]);
        await job.step(LOAD_HTTPD, 'loading the images');

        fs.writeFileSync(
          path.join(scriptDir, 'tc.js'),
          `const { GenericContainer, Wait } = require('testcontainers');
(async () => {
  const container = await new GenericContainer(${JSON.stringify(HTTPD_IMAGE)})
    .withEnvironment({ MESSAGE: ${JSON.stringify(`testcontainers ${token}`)} })
    .withExposedPorts(80)
    .withWaitStrategy(Wait.forHttp('/', 80))
    .start();
  try {
    const url = 'http://' + container.getHost() + ':' + container.getMappedPort(80) + '/';
    const response = await fetch(url);
    console.log('host=' + container.getHost());
    console.log('status=' + response.status + ' body=' + (await response.text()).trim());
  } finally {
    await container.stop();
  }
})().catch(error => { console.error(error); process.exit(1); });
`
        );
        // Nothing but the job's environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
        // TESTCONTAINERS_HOST_OVERRIDE), except TESTCONTAINERS_RYUK_DISABLED: the reaper's image
        // (testcontainers/ryuk) cannot be pulled here, as no registry is reachable.
        const step = await job.run(`cd ${scriptDir} && node tc.js`, {
          NODE_PATH: path.join(REPO_ROOT, 'node_modules'),
          TESTCONTAINERS_RYUK_DISABLED: 'true'
        });
        expectExit(step, 0, 'step running Testcontainers');
        expect(step.stdout).toContain(`host=${main.outputs.ip}\n`);
        expect(step.stdout).toContain(`status=200 body=testcontainers ${token}\n`);

        // Testcontainers removed its container itself.
        const left = await job.run('docker ps --all --quiet | wc -l');
        expect(left.stdout.trim()).toBe('0');

        await job.post({ warnings: 0, count: 1 });
      });
    } finally {
      fs.rmSync(scriptDir, { recursive: true, force: true });
    }
  });

  test('mtu, registry-mirrors and insecure-registries reach the daemon: nested default and user networks get the MTU', async () => {
    await withJob({}, async job => {
      const main = await job.main({
        mtu: '1400',
        'registry-mirrors': 'http://mirror.invalid:5000',
        'insecure-registries': '10.0.0.0/8'
      });
      expect(main.warnings).toEqual([]);

      const step = await job.step(
        `${LOAD_HTTPD}
docker info --format 'mirrors={{json .RegistryConfig.Mirrors}} cidrs={{json .RegistryConfig.InsecureRegistryCIDRs}}'
echo "default=$(docker run --rm ${HTTPD_IMAGE} cat /sys/class/net/eth0/mtu)"
docker network create user-net >/dev/null
echo "user-net option=$(docker network inspect user-net --format '{{index .Options "com.docker.network.driver.mtu"}}')"
echo "user-net=$(docker run --rm --network user-net ${HTTPD_IMAGE} cat /sys/class/net/eth0/mtu)"`,
        'step reading the daemon settings'
      );
      const mirrors = JSON.parse(defined(/mirrors=(\S+)/.exec(step.stdout), 'mirrors=')[1]) as string[];
      const cidrs = JSON.parse(defined(/cidrs=(\S+)/.exec(step.stdout), 'cidrs=')[1]) as string[];
      expect(mirrors.map(mirror => mirror.replace(/\/$/, ''))).toEqual(['http://mirror.invalid:5000']);
      expect(cidrs).toContain('10.0.0.0/8');
      expect(step.stdout).toContain('default=1400\n');
      expect(step.stdout).toContain('user-net option=1400\n');
      expect(step.stdout).toContain('user-net=1400\n');

      await job.post({ warnings: 0, count: 1 });
    });
  });

  test('swarm: true makes an active single-node swarm where a stack of a locally loaded image gets a running task', async () => {
    await withJob({}, async job => {
      const main = await job.main({ swarm: 'true' });
      expect(main.warnings).toEqual([]);

      fs.writeFileSync(
        path.join(job.workspace, 'stack.yml'),
        `version: "3.8"
services:
  web:
    image: ${HTTPD_IMAGE}
    environment:
      MESSAGE: from-swarm
    ports:
      # Host mode: the ingress routing mesh needs IPVS, which this machine's kernel lacks.
      - target: 80
        published: 8082
        mode: host
`
      );
      // The image is only in the daemon: nothing to resolve on a registry (none is reachable).
      const step = await job.run(
        `${LOAD_HTTPD}
docker info --format 'swarm={{.Swarm.LocalNodeState}} managers={{.Swarm.Managers}} nodes={{.Swarm.Nodes}}'
docker stack deploy --resolve-image never -c stack.yml demo
for i in $(seq 60); do
  state=$(docker service ps demo_web --filter desired-state=running --format '{{.CurrentState}}' | head -1)
  case "$state" in Running*) break ;; esac
  sleep 1
done
echo "task=$state"
echo "reply=$(${CURL} "http://$TESTCONTAINERS_HOST_OVERRIDE:8082/")"`
      );
      expectExit(step, 0, 'step deploying a stack');
      expect(step.stdout).toContain('swarm=active managers=1 nodes=1\n');
      expect(step.stdout).toMatch(/task=Running/);
      // Published by the task, at the ip output.
      expect(step.stdout).toContain('reply=from-swarm\n');

      await job.post({ warnings: 0, count: 1 });
    });
  });
});

/**
 * A `container:` job as the runner makes it: the job's container on a network of its own, with the
 * engine's socket, RUNNER_TEMP and the workspace bind-mounted at other paths than the host's (/__w/...),
 * and each step a `docker exec` with the job's environment and file-command files in RUNNER_TEMP.
 */
class ContainerJob extends ContainerSteps {
  static readonly WORKSPACE = '/__w/repo';
  static readonly TEMP = '/__w/_temp';
  static readonly HOME = '/github/home';
  readonly root: string;
  readonly hostWorkspace: string;
  readonly hostTemp: string;
  readonly name: string;
  readonly network: string;

  /** `mtu`: the job network's, so the job container's default route has it. */
  constructor(private readonly options: { mtu?: number } = {}) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-nested-jobc-'));
    const name = `setup-dind-nested-job-${unique()}`;
    super({
      container: name,
      workspace: ContainerJob.WORKSPACE,
      temp: ContainerJob.TEMP,
      home: ContainerJob.HOME,
      hostTemp: path.join(root, 'temp')
    });
    this.root = root;
    this.hostWorkspace = path.join(root, 'repo');
    this.hostTemp = path.join(root, 'temp');
    this.name = name;
    this.network = `${name}-net`;
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.hostWorkspace);
    fs.mkdirSync(this.hostTemp);
    const mtu = this.options.mtu ? ['--opt', `com.docker.network.driver.mtu=${this.options.mtu}`] : [];
    await outerOk(['network', 'create', ...mtu, this.network]);
    await outerOk([
      'run',
      '--detach',
      '--name',
      this.name,
      '--network',
      this.network,
      '--volume',
      '/var/run/docker.sock:/var/run/docker.sock',
      ...actionMounts(),
      '--volume',
      `${this.hostWorkspace}:${ContainerJob.WORKSPACE}`,
      '--volume',
      `${this.hostTemp}:${ContainerJob.TEMP}`,
      JOB_IMAGE,
      'sh',
      '-c',
      `mkdir -p ${ContainerJob.HOME} && exec sleep infinity`
    ]);
  }

  async remove(): Promise<void> {
    await outer(['rm', '--force', '--volumes', this.name]);
    await outer(['network', 'rm', this.network]);
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

describe('a job running in a container', () => {
  // Nested traffic leaves through the runner's network: packets sized for 1500 stall where the path is smaller.
  test('mtu unset: nested networks get the MTU of the runner default route (a job network of MTU 1400)', async () => {
    const job = new ContainerJob({ mtu: 1400 });
    let posted = false;
    try {
      await job.start();
      const main = await job.runMain({ ...BASE_INPUTS, context: '', 'wait-timeout': '20' });
      const started = recordInstance(main, ContainerJob.HOME);
      expectCleanMain(main);
      const step = await job.run(
        `echo "runner=$(cat /sys/class/net/eth0/mtu)"
${LOAD_HTTPD}
echo "default=$(docker run --rm ${HTTPD_IMAGE} cat /sys/class/net/eth0/mtu)"
docker network create user-net >/dev/null
echo "user-net=$(docker run --rm --network user-net ${HTTPD_IMAGE} cat /sys/class/net/eth0/mtu)"`
      );
      expectExit(step, 0, 'step reading nested MTUs');
      expect(step.stdout).toContain('runner=1400\n');
      expect(step.stdout).toContain('default=1400\n');
      expect(step.stdout).toContain('user-net=1400\n');
      const post = await job.runPost(main.state, { ...BASE_INPUTS, context: '' });
      posted = true;
      expectCleanPosts([post], 1);
      const instance = defined(started, "main's instance");
      await expectInstanceGone(instance, path.join(job.hostTemp, `setup-dind-dind-${instance.id}`));
    } finally {
      if (!posted) await sweepAll();
      await job.remove();
    }
  }, 180_000);

  test('the daemon joins the job container network: DOCKER_HOST by name, certificates in RUNNER_TEMP, workspace mounts translated to host paths, buildx and compose; post leaves the job network', async () => {
    const job = new ContainerJob();
    const token = unique();
    let posted = false;
    try {
      await job.start();
      // A shorter wait than the default 60 s: the daemon answers in seconds, and a main that cannot reach it fails sooner.
      const main = await job.runMain({ ...BASE_INPUTS, 'wait-timeout': '20' });
      const started = defined(recordInstance(main, ContainerJob.HOME), "main's instance");
      const containerName = `setup-dind-dind-${started.id}`;
      const expected = {
        DOCKER_HOST: `tcp://${containerName}:2376`,
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: `${ContainerJob.TEMP}/${containerName}`
      };
      // Main's own result is asserted last: whatever it says, the daemon it started is checked first
      // with what it should have exported, so that one failure does not hide the others.
      if (main.exitCode !== 0) Object.assign(job.env, expected);

      // On the job container's network (and its own), with the workspace and RUNNER_TEMP mounted at the
      // job container's paths from where the engine's host has them.
      const dind = (await labelled(started.id)).containers;
      expect(dind).toHaveLength(1);
      const info = await inspectContainer(dind[0]);
      const dindNetworks = info.NetworkSettings.Networks as Record<
        string,
        { IPAddress: string; Aliases: string[] | null }
      >;
      expect(Object.keys(dindNetworks).sort()).toEqual([containerName, job.network].sort());
      const ip = dindNetworks[job.network].IPAddress;
      const binds = (info.HostConfig as unknown as { Binds: string[] | null }).Binds ?? [];
      expect(binds.sort()).toEqual(
        [
          `${job.hostTemp}:${ContainerJob.TEMP}`,
          `${job.hostWorkspace}:${ContainerJob.WORKSPACE}`,
          // The daemon's data directory, by its path on the engine's host.
          `${path.join(job.hostTemp, `${containerName}-data`)}:/setup-dind/data`
        ].sort()
      );

      fs.writeFileSync(path.join(job.hostWorkspace, 'marker'), `workspace ${token}\n`);
      const step = await job.run(
        `getent hosts ${containerName} | awk '{print "resolves=" $1}'
ls "$DOCKER_CERT_PATH" | xargs echo certs:
${LOAD_HTTPD}
docker info --format 'name={{.Name}}'
docker run --rm -v ${ContainerJob.WORKSPACE}:/src ${HTTPD_IMAGE} sh -c 'cat /src/marker; echo "nested ${token}" > /src/from-nested'
docker run -d -p 8080:80 -e MESSAGE=from-job-container ${HTTPD_IMAGE} >/dev/null
node -e 'const url = "http://${ip}:8080/";
(async () => { for (let i = 0; ; i++) { try { console.log("reply=" + (await (await fetch(url)).text()).trim()); return; } catch (e) { if (i > 20) throw e; await new Promise(r => setTimeout(r, 500)); } } })();'`
      );
      expectExit(step, 0, 'step in the job container');
      expect(step.stdout).toContain(`resolves=${ip}\n`);
      expect(step.stdout).toContain('certs: ca.pem cert.pem key.pem\n');
      expect(step.stdout).toContain('name=dind\n');
      expect(step.stdout).toContain(`workspace ${token}\n`);
      // A nested container's published port, at the daemon's address on the shared network.
      expect(step.stdout).toContain('reply=from-job-container\n');
      expect(fs.readFileSync(path.join(job.hostWorkspace, 'from-nested'), 'utf8')).toBe(`nested ${token}\n`);

      // buildx on the context (the daemon's own BuildKit, docker driver: buildx wants the context
      // selected with --context for that driver), and compose v2 with a relative bind.
      fs.mkdirSync(path.join(job.hostWorkspace, 'build'));
      fs.writeFileSync(
        path.join(job.hostWorkspace, 'build', 'Dockerfile'),
        `FROM ${HTTPD_IMAGE}\nRUN echo "built ${token}" > /built.txt\n`
      );
      fs.mkdirSync(path.join(job.hostWorkspace, 'app', 'data'), { recursive: true });
      fs.writeFileSync(path.join(job.hostWorkspace, 'app', 'data', 'in.txt'), `compose input ${token}\n`);
      fs.writeFileSync(
        path.join(job.hostWorkspace, 'app', 'compose.yml'),
        `services:
  app:
    image: ${HTTPD_IMAGE}
    volumes:
      - ./data:/data
    command: ["sh", "-c", "cat /data/in.txt && echo \\"compose wrote ${token}\\" > /data/out.txt"]
`
      );
      const context = main.outputs.context;
      const buildx = context
        ? `${NO_DOCKER_ENV} docker --context ${context} buildx build --progress plain --tag built:${token} build 2>&1 | tail -3
${NO_DOCKER_ENV} docker --context ${context} run --rm built:${token} cat /built.txt`
        : `docker buildx build --progress plain --tag built:${token} build 2>&1 | tail -3
docker run --rm built:${token} cat /built.txt`;
      const tools = await job.run(
        `${buildx}
cd app && docker compose -p nested${token} run --rm app && docker compose -p nested${token} down`
      );
      expectExit(tools, 0, 'buildx and compose in the job container');
      expect(tools.stdout).toContain(`built ${token}\n`);
      expect(tools.stdout).toContain(`compose input ${token}\n`);
      expect(fs.readFileSync(path.join(job.hostWorkspace, 'app', 'data', 'out.txt'), 'utf8')).toBe(
        `compose wrote ${token}\n`
      );

      // Post in the job container removes the daemon, its network and the certificates; the job's network stays.
      const post = await job.runPost(main.state, BASE_INPUTS);
      posted = true;
      expectCleanPosts([post], 1);
      await expectInstanceGone(started, path.join(job.hostTemp, containerName));
      const jobNetwork = JSON.parse(await outerOk(['network', 'inspect', job.network])) as Array<{
        Containers: Record<string, { Name: string }>;
      }>;
      expect(Object.values(jobNetwork[0].Containers).map(c => c.Name)).toEqual([job.name]);
      expect(await contextNames(job)).toEqual(['default']);

      // Main itself: succeeded, exported the daemon by name, and its outputs say where it is.
      expectCleanMain(main);
      expect(main.exported).toMatchObject({ ...expected, TESTCONTAINERS_HOST_OVERRIDE: ip });
      expect(main.outputs).toMatchObject({
        host: expected.DOCKER_HOST,
        'cert-path': expected.DOCKER_CERT_PATH,
        ip,
        context: 'dind'
      });
    } finally {
      if (!posted) await sweepAll();
      await job.remove();
    }
  }, 180_000);
});
