// actions-runner-controller's runner pods, reproduced with plain containers on the local engine.
//
// dind mode (charts/gha-runner-scale-set, containerMode.type: dind): a privileged `dind` sidecar runs
// `dockerd --host=unix:///var/run/docker.sock --group=123`; the runner container (user runner, uid 1001,
// in group docker, gid 123) has DOCKER_HOST=unix:///var/run/docker.sock; both mount the `dind-sock`
// emptyDir at /var/run and the `work` emptyDir at /home/runner/_work, and share the pod's network
// namespace. Here: the sidecar is setup-dind-test/dind:trixie (the stand-in for docker:dind) with those
// arguments, the runner container joins its network namespace (`--network container:`), and the two
// emptyDirs are directories of this machine, mode 0777 as Kubernetes makes them. The action's dist/ runs
// in the runner container as the runner user, as the runner runs a step: its daemon is started by the
// sidecar's engine, with the paths both containers share.
//
// kubernetes mode: no engine at all; jobs run as pods through container hooks. Main must fail at once
// and say what to use instead, both where a step runs on the runner (ACTIONS_RUNNER_CONTAINER_HOOKS in
// its environment) and in the job's pod (Kubernetes' variables only).
//
// The pods have no network but loopback: nothing can be pulled (images are `docker save | docker load`ed
// into the sidecar's engine), and the cache service emulation, which listens on this machine's
// 127.0.0.1, is relayed onto the pod's 127.0.0.1 through a unix socket in a mounted directory.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { actionMounts, ContainerSteps } from '../support/container-job';
import { defined } from '../support/defined';
import {
  buildImage,
  labelled,
  outer,
  OUTER_SOCKET,
  outerEnv,
  outerOk,
  run,
  savedInstance,
  TEST_IMAGE
} from '../support/engine';
import { buildHttpdImage, buildJobImage, HTTPD_IMAGE, JOB_IMAGE } from '../support/images';
import { BASE_INPUTS, loadFromOuter, summaryRows, unique } from '../support/job';
import type { StepResult } from '../support/runner';
import { commands, expectCleanMain, expectCleanPosts, expectExit } from '../support/steps';

jest.setTimeout(20 * 60_000);

/**
 * ARC's runner image (ghcr.io/actions/actions-runner) as far as the action can tell: user runner, uid
 * 1001, in group docker, gid 123, with a docker CLI (and buildx). socat for the cache service relay;
 * zstd for a node without zlib's zstd (the runner's own node24 has it; the tests may run node 20).
 */
const RUNNER_IMAGE = 'setup-dind-test/arc-runner:trixie';
const RUNNER_DOCKERFILE = `FROM ${JOB_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends socat zstd \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \\
 && if getent group docker >/dev/null; then groupmod --gid 123 docker; else groupadd --gid 123 docker; fi \\
 && useradd --create-home --uid 1001 --user-group --groups docker runner \\
 && test "$(id -G runner)" = "1001 123"
`;

/** The pod template's paths and the sidecar's group (charts/gha-runner-scale-set/templates/_helpers.tpl). */
const RUNNER_WORK = '/home/runner/_work';
const SOCKET_DIR = '/var/run';
const DOCKER_GROUP_GID = 123;
/** The hooks' job pod mounts the work volume here (runner-container-hooks, packages/k8s). */
const JOB_POD_WORK = '/__w';
/** The runner's layout under the work directory: _temp, and <repository>/<repository>. */
const REPOSITORY = 'repo';

let server: CacheServer;
const pods = new Set<Pod>();

beforeAll(async () => {
  await Promise.all([
    buildHttpdImage(),
    (async () => {
      await buildJobImage();
      await buildImage(RUNNER_IMAGE, RUNNER_DOCKERFILE);
    })()
  ]);
  server = await startCacheServer();
}, 15 * 60_000);

afterAll(async () => {
  // For a test that failed halfway: each removes its pods itself.
  for (const pod of pods) await pod.remove();
  await server?.stop();
}, 5 * 60_000);

interface PodOptions {
  /** ARC's dind mode: the privileged sidecar engine, its socket in the shared dind-sock volume. */
  sidecar: boolean;
  /** Where the work volume is mounted: the runner's _work, or the job pod's /__w. */
  work?: string;
  /** The user the container runs as (the runner image's runner; the job pod's image's own: root). */
  user?: string;
  /** The container's environment, as its pod spec gives it. */
  env?: Record<string, string>;
}

/**
 * One runner pod: a runner container and, in dind mode, the sidecar engine whose network namespace it
 * shares. The emptyDir volumes are directories under `root` on this machine.
 */
class Pod {
  readonly id = unique();
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-arc-'));
  readonly hostWork = path.join(this.root, 'work');
  readonly hostSocketDir = path.join(this.root, 'dind-sock');
  private readonly hostRelay = path.join(this.root, 'relay');
  readonly sidecar = `setup-dind-arc-${this.id}-dind`;
  readonly runner = `setup-dind-arc-${this.id}-runner`;
  readonly work: string;
  private readonly relays: Array<{ server: net.Server; sockets: Set<net.Socket> }> = [];

  constructor(readonly options: PodOptions) {
    this.work = options.work ?? RUNNER_WORK;
    pods.add(this);
  }

  /** The sidecar's engine, from this machine. */
  get engine(): string {
    return `unix://${this.hostSocketDir}/docker.sock`;
  }

  get workspace(): string {
    return path.posix.join(this.work, REPOSITORY, REPOSITORY);
  }

  get temp(): string {
    return path.posix.join(this.work, '_temp');
  }

  /** Where this machine sees a path under the work volume. */
  onHost(podPath: string): string {
    return path.join(this.hostWork, path.posix.relative(this.work, podPath));
  }

  async start(): Promise<void> {
    for (const dir of [this.hostWork, this.hostSocketDir, this.hostRelay]) {
      fs.mkdirSync(dir);
      fs.chmodSync(dir, 0o777);
    }
    const volumes = ['--volume', `${this.hostWork}:${this.work}`];
    if (this.options.sidecar) {
      volumes.push('--volume', `${this.hostSocketDir}:${SOCKET_DIR}`);
      await outerOk([
        'run',
        '--detach',
        '--name',
        this.sidecar,
        '--privileged',
        '--network',
        'none',
        ...volumes,
        TEST_IMAGE,
        'dockerd',
        `--host=unix://${SOCKET_DIR}/docker.sock`,
        `--group=${DOCKER_GROUP_GID}`
      ]);
      await this.awaitEngine();
      // What the sidecar's engine would pull: the dind image (main gets pull: never) and the nested one.
      const loaded = await run(
        'bash',
        [
          '-c',
          'set -o pipefail; docker -H "$1" save "$2" "$3" | docker -H "$4" load --quiet',
          'bash',
          OUTER_SOCKET,
          TEST_IMAGE,
          HTTPD_IMAGE,
          this.engine
        ],
        { timeoutMs: 10 * 60_000 }
      );
      if (loaded.code !== 0) throw new Error(`Loading the images into the sidecar's engine failed: ${loaded.stderr}`);
    }
    await outerOk([
      'run',
      '--detach',
      '--name',
      this.runner,
      '--network',
      this.options.sidecar ? `container:${this.sidecar}` : 'none',
      ...(this.options.user ? ['--user', this.options.user] : []),
      ...Object.entries(this.options.env ?? {}).flatMap(([name, value]) => ['--env', `${name}=${value}`]),
      ...volumes,
      '--volume',
      `${this.hostRelay}:/relay`,
      ...actionMounts(),
      RUNNER_IMAGE,
      'sleep',
      'infinity'
    ]);
    // The runner makes its temp directory and the workspace, as its own user.
    await this.exec(['mkdir', '-p', this.temp, this.workspace]);
  }

  /** The sidecar's startupProbe runs `docker info` until it answers; so does this. */
  private async awaitEngine(): Promise<void> {
    for (let attempt = 0; attempt < 240; attempt++) {
      if ((await run('docker', ['-H', this.engine, 'info', '--format', '{{.ID}}'])).code === 0) return;
      await new Promise(resolve => setTimeout(resolve, 500));
    }
    const log = await outer(['logs', '--tail', '50', this.sidecar]);
    throw new Error(`The sidecar's engine did not answer at ${this.engine}:\n${log.stdout}${log.stderr}`);
  }

  /** A command in the runner container, as its user; throws when it fails. */
  async exec(command: string[], user?: string): Promise<string> {
    const result = await run(
      'docker',
      ['-H', OUTER_SOCKET, 'exec', ...(user ? ['--user', user] : []), this.runner, ...command],
      { env: outerEnv() }
    );
    if (result.code !== 0)
      throw new Error(`${command.join(' ')} in ${this.runner} failed (${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  /** The docker CLI against the sidecar's engine. */
  inner(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return run('docker', ['-H', this.engine, ...args]);
  }

  /** A job of this pod, its steps run as the runner runs them. */
  job(env: Record<string, string> = {}): ContainerSteps {
    return new ContainerSteps({
      container: this.runner,
      workspace: this.workspace,
      temp: this.temp,
      home: this.work === RUNNER_WORK ? '/home/runner' : '/github/home',
      hostTemp: this.onHost(this.temp),
      env,
      stepTimeoutMs: 10 * 60_000
    });
  }

  /**
   * Makes a service that listens on this machine's 127.0.0.1:`port` reachable at the same address in the
   * pod (its URLs, which name that address, then work there too): socat in the runner container listens
   * there and forwards to a unix socket in the mounted relay directory, where this process forwards on.
   */
  async relayLoopback(port: number): Promise<void> {
    const socketPath = path.join(this.hostRelay, `${port}.sock`);
    const sockets = new Set<net.Socket>();
    const relay = net.createServer(client => {
      const upstream = net.connect(port, '127.0.0.1');
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      }
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      relay.once('error', reject);
      relay.listen(socketPath, resolve);
    });
    this.relays.push({ server: relay, sockets });
    fs.chmodSync(socketPath, 0o666);
    await outerOk([
      'exec',
      '--detach',
      '--user',
      '0',
      this.runner,
      'socat',
      `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`,
      `UNIX-CONNECT:/relay/${port}.sock`
    ]);
    await this.exec([
      'bash',
      '-c',
      `for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && exit 0; sleep 0.1; done; echo "nothing listens on 127.0.0.1:${port}" >&2; exit 1`
    ]);
  }

  async remove(): Promise<void> {
    if (!pods.delete(this)) return;
    // The runner first: the sidecar's engine takes its containers (the daemon's) down with it.
    await outer(['rm', '--force', '--volumes', this.runner]);
    await outer(['rm', '--force', '--volumes', this.sidecar]);
    for (const { server: relay, sockets } of this.relays) {
      for (const socket of sockets) socket.destroy();
      await new Promise(resolve => relay.close(resolve));
    }
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** The instance main saved in its state: its id and certificate directory (a pod path). */
function instanceOf(main: StepResult): { id: string; certDir: string } {
  const saved = savedInstance(main.state);
  if (!saved) throw new Error(`main saved no instance state:\n${main.stdout}\n${main.stderr}`);
  return saved.instance;
}

const lines = (text: string) => text.split('\n').filter(Boolean);

/**
 * Nothing of the instance is left: no container, network or volume in the sidecar's engine (which had
 * nothing else), and in RUNNER_TEMP nothing but the runner's own file-command files.
 */
async function expectNothingLeft(pod: Pod, instance: { id: string; certDir: string }): Promise<void> {
  expect(await labelled(instance.id, pod.engine)).toEqual({ containers: [], networks: [], volumes: [] });
  const [containers, volumes] = await Promise.all([
    pod.inner(['ps', '--all', '--quiet']),
    pod.inner(['volume', 'ls', '--quiet'])
  ]);
  expect({ containers: lines(containers.stdout), volumes: lines(volumes.stdout) }).toEqual({
    containers: [],
    volumes: []
  });
  const dataDir = pod.onHost(`${instance.certDir}-data`);
  expect({ dataDir, exists: fs.existsSync(dataDir) }).toEqual({ dataDir, exists: false });
  expect(fs.readdirSync(pod.onHost(pod.temp))).toEqual(['_runner_file_commands']);
}

/** A dind-mode pod, started, with the cache service relayed into it. */
async function dindPod(): Promise<Pod> {
  const pod = new Pod({
    sidecar: true,
    user: 'runner',
    env: { DOCKER_HOST: `unix://${SOCKET_DIR}/docker.sock`, RUNNER_WAIT_FOR_DOCKER_IN_SECONDS: '120' }
  });
  await pod.start();
  await pod.relayLoopback(Number(new URL(server.url).port));
  return pod;
}

describe("actions-runner-controller's dind mode", () => {
  test("main in the runner container starts the daemon on the sidecar's engine at the paths both share; a nested container sees the workspace through a relative bind mount; job 1 saves the cache, job 2 in a new pod restores it; post leaves nothing", async () => {
    const token = unique();
    const inputs = { ...BASE_INPUTS, cache: 'true', 'cache-key': `arc-${token}` };

    // Job 1, in a pod of its own (ARC's runners are ephemeral: a pod per job).
    const first = await dindPod();
    const job1 = first.job(server.env);
    const main1 = await job1.runMain(inputs);
    const instance1 = instanceOf(main1);
    expectCleanMain(main1);
    // The runner container is no container of the sidecar's engine: nothing to join, no path to translate.
    expect(main1.stdout).not.toContain('The job runs in container');
    // Reached on the pod's loopback, where the sidecar's engine published the daemon's port.
    expect(main1.outputs.host).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(main1.exported).toMatchObject({
      DOCKER_HOST: main1.outputs.host,
      DOCKER_TLS_VERIFY: '1',
      DOCKER_CERT_PATH: instance1.certDir
    });
    expect(instance1.certDir.startsWith(`${first.temp}/`)).toBe(true);
    expect(main1.outputs['cache-hit']).toBe('false');

    // The daemon is the sidecar engine's container, not this machine's engine's; it mounts the
    // workspace and RUNNER_TEMP at the runner's own paths, which are the sidecar's too.
    expect(await labelled(instance1.id)).toEqual({ containers: [], networks: [], volumes: [] });
    const inside = await labelled(instance1.id, first.engine);
    expect(inside.containers).toHaveLength(1);
    const inspected = await first.inner([
      'container',
      'inspect',
      '--format',
      '{{json .HostConfig.Binds}}',
      inside.containers[0]
    ]);
    expectExit({ exitCode: inspected.code, ...inspected }, 0, 'inspect');
    expect(JSON.parse(inspected.stdout) as string[]).toEqual(
      expect.arrayContaining([`${first.workspace}:${first.workspace}`, `${first.temp}:${first.temp}`])
    );

    // A later step: the job's file, a nested container through the exported DOCKER_HOST that reads it
    // through a relative bind mount and writes back. The image comes from the sidecar's engine, the
    // runner's own at ${SOCKET_DIR}/docker.sock, which is loadFromOuter's (as a pull would: nothing can be
    // pulled here), and is what the cache will carry.
    const step = await job1.run(
      `echo "user=$(id -un) groups=$(id -Gn) socket=$(stat -c '%U:%G %a' ${SOCKET_DIR}/docker.sock)"
echo "workspace ${token}" > marker
${loadFromOuter(HTTPD_IMAGE)}
docker info --format 'daemon={{.Name}}'
docker run --rm -v ./:/src ${HTTPD_IMAGE} sh -c 'cat /src/marker; echo "nested ${token}" > /src/from-nested'`
    );
    expectExit(step, 0, 'step with a nested container');
    // As in ARC: the runner's user may use the sidecar's socket through the docker group (--group=123).
    expect(step.stdout).toContain('user=runner groups=runner docker socket=root:docker 660\n');
    expect(step.stdout).toContain('daemon=dind\n');
    expect(step.stdout).toContain(`workspace ${token}\n`);
    expect(fs.readFileSync(path.join(first.onHost(first.workspace), 'from-nested'), 'utf8')).toBe(`nested ${token}\n`);

    const post1 = await job1.runPost(main1.state, inputs);
    expectCleanPosts([post1], 1);
    expect(summaryRows(post1.summary).Cache).toMatch(/^saved /);
    const saved = server.entries().find(entry => entry.key.includes(`-arc-${token}+`));
    expect(saved).toBeDefined();
    await expectNothingLeft(first, instance1);
    await first.remove();

    // Job 2, in a new pod: the daemon starts with the saved images, nothing loaded this time.
    const second = await dindPod();
    const job2 = second.job(server.env);
    const main2 = await job2.runMain(inputs);
    const instance2 = instanceOf(main2);
    expectCleanMain(main2);
    expect(main2.outputs['cache-hit']).toBe('true');
    expect(main2.outputs['cache-key']).toBe(defined(saved, 'entry saved by job 1').key);
    const sidecarImage = await second.inner(['image', 'inspect', '--format', '{{.Id}}', HTTPD_IMAGE]);
    const restored = await job2.run(
      `echo "image=$(docker image inspect --format '{{.Id}}' ${HTTPD_IMAGE})"
docker run --rm ${HTTPD_IMAGE} echo "restored ${token}"`
    );
    expectExit(restored, 0, 'step using the restored image');
    expect(restored.stdout).toContain(`image=${sidecarImage.stdout.trim()}\n`);
    expect(restored.stdout).toContain(`restored ${token}\n`);

    const post2 = await job2.runPost(main2.state, inputs);
    expectCleanPosts([post2], 1);
    await expectNothingLeft(second, instance2);
    await second.remove();
  });
});

describe("actions-runner-controller's kubernetes mode", () => {
  // No sidecar, no socket: what the runner pod of the kubernetes mode has. A step runs on the runner
  // only where ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER is false; by default every step runs in the job's
  // pod, with the job's environment and the pod's, and not the runner's.
  test.each<[string, PodOptions]>([
    [
      'a step on the runner (ACTIONS_RUNNER_CONTAINER_HOOKS set, DOCKER_HOST a socket that does not exist)',
      {
        sidecar: false,
        user: 'runner',
        env: {
          ACTIONS_RUNNER_CONTAINER_HOOKS: '/home/runner/k8s/index.js',
          ACTIONS_RUNNER_POD_NAME: 'arc-runner-set-abcde-runner-fghij',
          ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER: 'false',
          DOCKER_HOST: `unix://${SOCKET_DIR}/docker.sock`
        }
      }
    ],
    [
      "a step in the job's pod (Kubernetes' variables, no DOCKER_HOST)",
      {
        sidecar: false,
        work: JOB_POD_WORK,
        env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }
      }
    ]
  ])('%s: main fails at once, naming the mode and what to use instead; nothing is left behind', async (_, options) => {
    const pod = new Pod(options);
    try {
      await pod.start();
      const job = pod.job();
      const inputs = { ...BASE_INPUTS, cache: 'true' };
      const main = await job.runMain(inputs);
      expectExit(main, 1, 'main');
      const errors = commands(main.stdout, 'error');
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/actions-runner-controller's kubernetes mode/);
      expect(errors[0]).toContain(
        defined(options.env, 'env of the case').ACTIONS_RUNNER_CONTAINER_HOOKS
          ? 'ACTIONS_RUNNER_CONTAINER_HOOKS is set'
          : 'KUBERNETES_SERVICE_HOST is set'
      );
      expect(errors[0]).toContain(`none at unix://${SOCKET_DIR}/docker.sock`);
      expect(errors[0]).toMatch(/Use actions-runner-controller's dind mode \(containerMode\.type: dind/);
      expect(errors[0]).toMatch(/or a runner with a Docker engine\.$/);
      expect(main.exported).toEqual({});
      const post = await job.runPost(main.state, inputs);
      expectExit(post, 0, 'post');
      expect(commands(post.stdout, 'error')).toEqual([]);
      expect(fs.readdirSync(pod.onHost(pod.temp))).toEqual(['_runner_file_commands']);
      if (main.state.instance)
        expect(await labelled(instanceOf(main).id)).toEqual({ containers: [], networks: [], volumes: [] });
    } finally {
      await pod.remove();
    }
  });
});
