// Reliability and security of the bundled action (dist/) on the real engine, through the runner
// emulation: inputs that must be refused before anything is made, faults during and between the steps,
// and what an attacker on the runner could find (listeners, keys, logs, certificate lifetimes).
// What lifecycle.test.ts and cache.test.ts already prove is not repeated here (see docs/reliability.md).
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { createAuthority } from '../../src/daemon/tls';
import { createContext, removeContext } from '../../src/handover/context';
import { dockerCli } from '../../src/handover/docker-cli';
import { writeClientCertificates } from '../../src/handover/environment';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { defined } from '../support/defined';
import {
  buildImage,
  containerVolumes,
  labelled,
  NESTED_BASE_IMAGE,
  outerOk,
  run,
  savedInstance,
  tcpConnect,
  type Started,
  volumeExists
} from '../support/engine';
import { buildTinyImage, TINY_IMAGE } from '../support/images';
import {
  contextNames,
  delta,
  loadFromOuter,
  NO_DOCKER_ENV,
  OUTER_DOCKER,
  portOf,
  sweepAll,
  TestJob,
  unique,
  withJob,
  type MainStep
} from '../support/job';
import type { StepResult } from '../support/runner';
import { commands, expectExit } from '../support/steps';

jest.setTimeout(180_000);

/** Built in beforeAll: `dockerd` is a script that prints a line and sleeps forever. */
const HANG_IMAGE = 'setup-dind-test/reliability-hang:trixie';
const HANG_LINE = 'fake dockerd: sleeping forever';

let server: CacheServer;
/** Real messages, printed at the end for docs/reliability.md. */
const messages: string[] = [];

beforeAll(async () => {
  await buildImage(
    HANG_IMAGE,
    `FROM ${NESTED_BASE_IMAGE}\nRUN printf '#!/bin/sh\\necho "${HANG_LINE}"\\nexec sleep infinity\\n' > /usr/local/bin/dockerd && chmod 755 /usr/local/bin/dockerd\n`
  );
  // Small enough to load into a daemon on a 40 MiB tmpfs.
  await buildTinyImage();
  server = await startCacheServer();
}, 600_000);

afterAll(async () => {
  await sweepAll();
  await server?.stop();
  if (messages.length > 0) console.log(`Messages seen:\n${messages.join('\n')}`);
});

// ---------------------------------------------------------------------------------------------------
// Helpers

function note(what: string, message: string | undefined): void {
  messages.push(`- ${what}: ${message ?? '(none)'}`);
}

/** The daemon's server certificate, from a TLS handshake with the client certificate of `certDir`. */
function serverCertificate(certDir: string, host: string): Promise<tls.PeerCertificate> {
  const read = (name: string) => fs.readFileSync(path.join(certDir, name), 'utf8');
  return new Promise<tls.PeerCertificate>((resolve, reject) => {
    const socket = tls.connect(
      {
        host: '127.0.0.1',
        port: portOf(host),
        ca: read('ca.pem'),
        cert: read('cert.pem'),
        key: read('key.pem'),
        servername: 'localhost'
      },
      () => {
        resolve(socket.getPeerCertificate());
        socket.end();
      }
    );
    socket.once('error', reject);
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------------

describe('bad input: a clear error naming the input and what is allowed; nothing started, nothing left', () => {
  // [what, inputs, the input named, what the message must also say (allowed values or the cause)]
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    [
      'cache-save: sometimes',
      { 'cache-save': 'sometimes' },
      'cache-save',
      /on-change, on-success, always, never.*'sometimes'/
    ],
    ['pull: Always (case matters)', { pull: 'Always' }, 'pull', /missing, always, never.*'Always'/],
    ['wait-timeout: soon', { 'wait-timeout': 'soon' }, 'wait-timeout', /positive number of seconds.*'soon'/],
    ['wait-timeout: -5', { 'wait-timeout': '-5' }, 'wait-timeout', /positive number of seconds.*'-5'/],
    ['wait-timeout: 0', { 'wait-timeout': '0' }, 'wait-timeout', /positive number of seconds.*'0'/],
    ['cache-max-size: lots', { 'cache-max-size': 'lots' }, 'cache-max-size', /size such as 4g, 500m.*'lots'/],
    ['cache-max-size: 0', { 'cache-max-size': '0' }, 'cache-max-size', /size such as 4g.*'0'/],
    ['cache-max-size: -1g', { 'cache-max-size': '-1g' }, 'cache-max-size', /size such as 4g.*'-1g'/],
    ['cache-max-size: 4 gigs', { 'cache-max-size': '4 gigs' }, 'cache-max-size', /size such as 4g.*'4 gigs'/],
    [
      'cache-evict-after: forever',
      { 'cache-evict-after': 'forever' },
      'cache-evict-after',
      /duration such as 7d, 12h, 30m or 2w, 0 .* or never; got 'forever'/
    ],
    [
      'cache-evict-after: 7 (no unit)',
      { 'cache-evict-after': '7' },
      'cache-evict-after',
      /duration such as 7d.*got '7'/
    ],
    [
      'image: Docker:28-DIND (upper case path)',
      { image: 'Docker:28-DIND' },
      'image',
      /not a valid image reference.*'Docker:28-DIND'/
    ],
    ['image: docker:28 dind (space)', { image: 'docker:28 dind' }, 'image', /not a valid image reference/],
    [
      'image: https://registry.example/dind',
      { image: 'https://registry.example/dind' },
      'image',
      /not a valid image reference/
    ],
    ['name: my dind', { name: 'my dind' }, 'name', /letters, digits, _ \. -.*'my dind'/],
    ['name: -dind', { name: '-dind' }, 'name', /starting with a letter or digit.*'-dind'/],
    ['name: a/b', { name: 'a/b' }, 'name', /letters, digits.*'a\/b'/],
    ['name: 64 characters', { name: 'a'.repeat(64) }, 'name', /at most 63 characters/],
    // The Docker CLI refuses a one-character context name: refused up front, not as a name already taken.
    [
      'context: a (one character)',
      { context: 'a' },
      'context',
      /letters, digits, _ \. \+ - \(at least two characters.*'a'/
    ],
    [
      'daemon-config: {not json',
      { 'daemon-config': '{not json' },
      'daemon-config',
      /not valid JSON.*must be a JSON object/
    ],
    ['daemon-config: [1,2]', { 'daemon-config': '[1,2]' }, 'daemon-config', /must be a JSON object.*an array/],
    ['daemon-config: "text"', { 'daemon-config': '"text"' }, 'daemon-config', /must be a JSON object.*"text"/],
    ['daemon-config: 42', { 'daemon-config': '42' }, 'daemon-config', /must be a JSON object.*42/],
    ['daemon-config: null', { 'daemon-config': 'null' }, 'daemon-config', /must be a JSON object.*null/],
    [
      'daemon-config: {"hosts":["tcp://0.0.0.0:2375"]}',
      { 'daemon-config': '{"hosts":["tcp://0.0.0.0:2375"]}' },
      'daemon-config',
      /cannot set 'hosts'.*mutual-TLS/
    ],
    [
      'daemon-config: {"tls":false,"tlsverify":false}',
      { 'daemon-config': '{"tls":false,"tlsverify":false}' },
      'daemon-config',
      /cannot set 'tls', 'tlsverify'/
    ],
    [
      'dockerd-args: -H tcp://0.0.0.0:2375',
      { 'dockerd-args': '-H tcp://0.0.0.0:2375' },
      'dockerd-args',
      /cannot set '-H'.*mutual-TLS/
    ],
    [
      'dockerd-args: --host=tcp://0.0.0.0:2375',
      { 'dockerd-args': '--host=tcp://0.0.0.0:2375' },
      'dockerd-args',
      /cannot set '--host'/
    ],
    [
      'dockerd-args: --host tcp://10.1.2.3:2376',
      { 'dockerd-args': '--debug --host tcp://10.1.2.3:2376' },
      'dockerd-args',
      /cannot set '--host'/
    ],
    [
      'dockerd-args: -Htcp://0.0.0.0:2375',
      { 'dockerd-args': '-Htcp://0.0.0.0:2375' },
      'dockerd-args',
      /cannot set '-H'/
    ],
    [
      'dockerd-args: -DH tcp://0.0.0.0:2375',
      { 'dockerd-args': '-DH tcp://0.0.0.0:2375' },
      'dockerd-args',
      /cannot set '-H'/
    ],
    [
      'dockerd-args: "--host=tcp://0.0.0.0:2375" (quoted)',
      { 'dockerd-args': '--mtu=1400 "--host=tcp://0.0.0.0:2375"' },
      'dockerd-args',
      /cannot set '--host'/
    ],
    [
      'dockerd-args: --tlsverify=false',
      { 'dockerd-args': '--tlsverify=false' },
      'dockerd-args',
      /cannot set '--tlsverify'/
    ],
    ['dockerd-args: --tls=false', { 'dockerd-args': '--tls=false' }, 'dockerd-args', /cannot set '--tls'/],
    [
      'dockerd-args: --tlskey=/tmp/k.pem',
      { 'dockerd-args': '--tlskey=/tmp/k.pem' },
      'dockerd-args',
      /cannot set '--tlskey'/
    ]
  ];

  // Concurrently: each case is a main and a post of a second or so, and nothing is started.
  test.concurrent.each(cases)('%s', async (what, inputs, input, allowed) => {
    // A unique name (unless the case is about the name) finds anything made under it.
    const name = `bad${unique()}`;
    await withJob({}, async job => {
      const main = await job.runMain({ name, ...inputs });
      note(what, main.errors[0]);
      const error = await job.expectRefused(main, inputs.name ?? name);
      expect(error).toContain(`'${input}'`);
      expect(error).toMatch(allowed);
    });
  });

  test('several bad inputs at once: one error lists each of them', async () => {
    await withJob({}, async job => {
      const main = await job.runMain({
        'cache-save': 'maybe',
        'wait-timeout': 'x',
        'dockerd-args': '-H tcp://0.0.0.0:2375',
        name: 'no good'
      });
      expectExit(main.result, 1, 'main');
      const [error] = main.errors;
      note('four bad inputs at once', error.split('\n')[0] + ' …');
      expect(error).toMatch(/^Invalid inputs:/);
      for (const input of ['cache-save', 'wait-timeout', 'dockerd-args', 'name']) expect(error).toContain(`'${input}'`);
      expect(main.started).toBeUndefined();
      expect(fs.readdirSync(job.temp)).toEqual([]);
    });
  });

  test('a non-Linux runner (process.platform darwin, preloaded into the bundle): refused before anything', async () => {
    await withJob({ env: { RUNNER_OS: 'macOS' } }, async job => {
      const preload = path.join(job.root, 'darwin.js');
      fs.writeFileSync(preload, "Object.defineProperty(process, 'platform', { value: 'darwin' });\n");
      const name = `mac${unique()}`;
      const main = await job.startMain({ name }, ['-r', preload]).done;
      note('process.platform darwin', main.errors[0]);
      const error = await job.expectRefused(main, name);
      expect(error).toMatch(/Linux runner/);
      expect(error).toContain('darwin');
    });
  });
});

describe('faults: the right outcome, a useful message, a clean post', () => {
  test('outer engine unreachable (DOCKER_HOST=unix:///nonexistent.sock): main fails naming the address; post exits 0', async () => {
    await withJob({ env: { DOCKER_HOST: 'unix:///nonexistent.sock' } }, async job => {
      const main = await job.runMain();
      expectExit(main.result, 1, 'main');
      expect(main.errors).toHaveLength(1);
      note('engine unreachable (main)', main.errors[0]);
      expect(main.errors[0]).toContain('unix:///nonexistent.sock');
      expect(main.errors[0]).toMatch(/Cannot reach the Docker engine/);
      expect(main.result.exported).toEqual({});
      // Whatever main had saved of an instance is gone too.
      const [post] = await job.post({ count: 1 });
      note('engine unreachable (post warnings)', commands(post.stdout, 'warning').join(' | ') || '(none)');
    });
  });

  test('image cannot be pulled (pull: always, registry.invalid): main fails naming the image; post cleans', async () => {
    const image = `registry.invalid/setup-dind-test/none-${unique()}:1`;
    await withJob({}, async job => {
      const main = await job.main({ image, pull: 'always' }, 1);
      expect(main.errors).toHaveLength(1);
      note('pull fails', main.errors[0]);
      expect(main.errors[0]).toContain(image);
      expect(main.errors[0]).toMatch(/Could not pull/);
      await job.post({ warnings: 0 });
      expect(await contextNames(job)).toEqual(['default']);
    });
  });

  test('daemon never answers (dockerd sleeps forever, wait-timeout 5, cache on): main fails naming the time and shows the log; post cleans', async () => {
    await withJob({ cache: server }, async job => {
      const began = Date.now();
      const main = await job.main(
        { image: HANG_IMAGE, 'wait-timeout': '5', cache: 'true', 'cache-key': `hang-${unique()}` },
        1
      );
      const seconds = (Date.now() - began) / 1000;
      expect(main.errors).toHaveLength(1);
      note('daemon never answers', main.errors[0]);
      expect(main.errors[0]).toMatch(/did not answer within 5 s/);
      expect(main.errors[0]).toMatch(/log is above/);
      // The container's log, in main's output.
      expect(main.result.stdout).toContain(HANG_LINE);
      expect(main.result.stdout).toMatch(/Container state: running\. Last 50 log lines:/);
      expect(seconds).toBeLessThan(60);
      expect(main.result.exported).toEqual({});
      expect((await labelled(main.started.id)).containers).toHaveLength(1);
      const before = server.stats();
      const [post] = await job.post();
      note('daemon never answers (post)', /Not saving the cache: [^\n]*/.exec(post.stdout)?.[0]);
      expect(delta(before, server.stats())).toMatchObject({ creates: 0, uploadedBytes: 0 });
      expect(await contextNames(job)).toEqual(['default']);
    });
  });

  test('main killed (SIGKILL) once its container exists: post with the state written so far removes container, network, certificates and data', async () => {
    await withJob({ cache: server }, async job => {
      const main = job.startMain({ cache: 'true', 'cache-key': `killed-${unique()}`, 'cache-save': 'never' });
      let id: string | undefined;
      let containers: string[] = [];
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && containers.length === 0) {
        id = savedInstance(main.state())?.instance.id;
        if (id) containers = (await labelled(id)).containers;
        if (containers.length === 0) await sleep(50);
      }
      main.child.kill('SIGKILL');
      const killed = await main.done;
      expect(killed.result.signal).toBe('SIGKILL');
      expect(containers).toHaveLength(1);
      const started = defined(killed.started, 'instance of the killed main');
      expect(started.id).toBe(id);
      // What main had made when it was killed.
      const made = await labelled(started.id);
      expect(made.networks).toHaveLength(1);
      expect(fs.existsSync(started.certDir)).toBe(true);
      expect(fs.existsSync(`${started.certDir}-data`)).toBe(true);
      note(
        'main killed',
        `state written so far: ${Object.keys(JSON.parse(killed.result.state.instance) as object).join(', ')}`
      );

      // The runner runs post with the state written so far.
      const [post] = await job.post({ warnings: 0, count: 1 });
      note('main killed (post)', /Removed \d+ container\(s\), \d+ network\(s\)[^\n]*/.exec(post.stdout)?.[0]);
      expect(await contextNames(job)).toEqual(['default']);
    });
  });

  test('the dind container is removed (docker rm -f) during the job, cache on: post does not hang, saves nothing, cleans the rest', async () => {
    await withJob({ cache: server }, async job => {
      const main = await job.main({ cache: 'true', 'cache-key': `removed-${unique()}` });
      expect(fs.existsSync(main.dataDir)).toBe(true);
      const volumes = await containerVolumes(main.outputs['container-id']);
      expect(volumes).toHaveLength(1);
      await job.step(
        `docker volume create something >/dev/null && ${OUTER_DOCKER} rm -f ${main.outputs['container-id']} >/dev/null`,
        'change the daemon, then remove its container'
      );
      const before = server.stats();
      const began = Date.now();
      const [post] = await job.post({ warnings: 0 });
      expect(Date.now() - began).toBeLessThan(30_000);
      const reason = /Not saving the cache: [^\n]*/.exec(post.stdout)?.[0];
      note('container removed during the job (post)', reason);
      expect(reason).toMatch(/not running at the end of the job/);
      // Removed without its volumes (no -v): post still removes the daemon's.
      expect(post.stdout).toMatch(/Removed 0 container\(s\), 1 network\(s\) and 1 volume\(s\)/);
      for (const volume of volumes) expect(await volumeExists(volume)).toBe(false);
      expect(await labelled(main.started.id)).toEqual({ containers: [], networks: [], volumes: [] });
      expect(delta(before, server.stats())).toMatchObject({
        creates: 0,
        finalizes: 0,
        uploadedBytes: 0,
        uploadRequests: 0
      });
      expect(await contextNames(job)).toEqual(['default']);
    });
  });

  test('a state larger than the free space (RUNNER_TEMP a 40 MiB tmpfs, cache ~110 MB): main warns and exits 0 without writing it; the daemon starts empty and works', async () => {
    const cacheKey = `diskfull-${unique()}`;
    // Seed: a daemon holding ~110 MB of incompressible data, saved.
    await withJob({ cache: server }, async seed => {
      await seed.main({ cache: 'true', 'cache-key': cacheKey, context: '' });
      await seed.step(
        'mkdir blob && head -c 110000000 /dev/urandom > blob/random && tar -C blob -c . | docker import - setup-dind-test/random:110m >/dev/null && rm -rf blob',
        'fill the daemon'
      );
      const before = server.stats();
      const [post] = await seed.post({ warnings: 0 });
      expect(post.stdout).toMatch(/Saving the cache as /);
      // A manifest and one part with the data.
      expect(server.entries().filter(entry => entry.key.includes(cacheKey))).toHaveLength(1);
      expect(delta(before, server.stats()).uploadedBytes).toBeGreaterThan(100_000_000);
    });

    const job = new TestJob({ cache: server });
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', job.temp]);
    expect(mounted).toMatchObject({ code: 0 });
    try {
      const main = await job.main({ cache: 'true', 'cache-key': cacheKey, 'cache-save': 'never' });
      expect(main.warnings).toHaveLength(1);
      note('disk full during restore', main.warnings[0]);
      expect(main.warnings[0]).toMatch(
        // The filesystem's size is refused first (twice what this runner would make); a state whose
        // filesystem fits but whose chunks do not, by what it would write.
        /^Cache restore failed, the daemon starts empty: (a filesystem of \d+ bytes, more than the \d+ a restore takes here|\d+ bytes to write, more than the \d+ free)$/
      );
      expect(main.outputs['cache-hit']).toBe('false');
      expect(main.outputs['cache-size']).toBe('0');
      // Nothing of the state was written: the tmpfs holds only what a fresh daemon writes.
      const used = await run('bash', ['-c', 'du -s --block-size=1 "$1" | cut -f1; ls -A "$1"', 'bash', main.dataDir]);
      const [bytes, ...files] = used.stdout.trim().split('\n');
      expect(Number(bytes)).toBeLessThan(16_000_000);
      expect(files).not.toContain('manifest.json');
      const works = await job.run(
        `docker info --format '{{.Images}} {{.Containers}}'\n${loadFromOuter(TINY_IMAGE)}\ndocker run --rm ${TINY_IMAGE} /ldconfig --version | head -1`
      );
      expectExit(works, 0, 'use the empty daemon');
      expect(works.stdout).toMatch(/^0 0\n/);
      expect(works.stdout).toMatch(/ldconfig \(Debian GLIBC/);
      await job.post({ warnings: 0 });
    } finally {
      await job.dispose(() => run('umount', [job.temp]));
    }
  }, 300_000);

  test("docker context create refused (~/.docker/contexts is a file): main fails with the CLI's own message, not as a name taken; post cleans", async () => {
    await withJob({}, async job => {
      const contexts = path.join(job.home, '.docker', 'contexts');
      fs.mkdirSync(path.dirname(contexts));
      fs.writeFileSync(contexts, '');
      const main = await job.main({}, 1);
      expect(main.warnings).toEqual([]);
      expect(main.errors).toHaveLength(1);
      note('docker context create refused', main.errors[0]);
      expect(main.errors[0]).toMatch(/^docker context create failed: .*context "dind".*not a directory/);
      expect(main.outputs).toEqual({});
      await job.post({ warnings: 0 });
      expect(fs.readFileSync(contexts, 'utf8')).toBe('');
    });
  });

  test('two jobs at once on one host, same HOME, default name and context: both work on their own daemons; one context is dind, the other unique with a warning', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-shared-home-'));
    const jobs = [new TestJob({ home }), new TestJob({ home })];
    try {
      const mains = await Promise.all(jobs.map(job => job.main()));
      const [a, b] = mains;
      expect(a.outputs['container-id']).not.toBe(b.outputs['container-id']);
      expect(portOf(a.outputs.host)).not.toBe(portOf(b.outputs.host));
      expect(a.started.id).not.toBe(b.started.id);
      const contexts = [a.outputs.context, b.outputs.context];
      const plain = contexts.indexOf('dind');
      expect(plain).toBeGreaterThanOrEqual(0);
      const other = 1 - plain;
      expect(contexts[other]).toBe(`dind-${mains[other].started.id}`);
      expect(mains[plain].warnings).toEqual([]);
      expect(mains[other].warnings).toHaveLength(1);
      note('second concurrent job', mains[other].warnings[0]);
      expect(mains[other].warnings[0]).toContain(`'${contexts[other]}'`);

      // Each job reaches its own daemon, by the environment and by its context: a marker in one is not in the other.
      for (const [i, job] of jobs.entries()) {
        const marked = await job.step(
          `docker volume create marker-${i} >/dev/null && ${NO_DOCKER_ENV} docker --context ${contexts[i]} volume ls -q`,
          `marker ${i}`
        );
        expect(marked.stdout.trim()).toBe(`marker-${i}`);
      }
      const posts = await Promise.all(jobs.map(job => job.post({ warnings: 0 })));
      expect(posts.flat()).toHaveLength(2);
      expect(await contextNames(jobs[0])).toEqual(['default']);
    } finally {
      for (const job of jobs) await job.dispose();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('contexts of parallel jobs in one HOME (the real docker CLI)', () => {
  // The CLI's own create is not atomic: without the action's lock, 8 plain `docker context create`s of one
  // name at once in a shell left a context with one's address and another's CA in 5 of 30 rounds.
  test('rounds of eight creations of one name at once, then eight removals: one context gets the name, each holds its own address and CA, none is left', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-contexts-'));
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = path.join(root, 'config');
    try {
      const requests = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const authority = await createAuthority(1);
          const certDir = path.join(root, `certs-${i}`);
          await writeClientCertificates(certDir, authority.caCert, await authority.issueClient());
          return {
            name: 'dind',
            instanceId: `0000000${i}`,
            host: `tcp://127.0.0.1:${40000 + i}`,
            certDir,
            isLive: async () => true
          };
        })
      );
      for (let round = 0; round < 10; round++) {
        const names = await Promise.all(requests.map(request => createContext(request, () => undefined)));
        expect(names.filter(name => name === 'dind')).toHaveLength(1);
        expect(new Set(names).size).toBe(8);
        for (const [i, name] of names.entries()) {
          const inspected = await dockerCli(['context', 'inspect', name]);
          const [context] = JSON.parse(inspected.stdout) as Array<{
            Endpoints: { docker: { Host: string } };
            Storage: { TLSPath: string };
          }>;
          expect(context.Endpoints.docker.Host).toBe(requests[i].host);
          expect(fs.readFileSync(path.join(context.Storage.TLSPath, 'docker', 'ca.pem'), 'utf8')).toBe(
            fs.readFileSync(path.join(requests[i].certDir, 'ca.pem'), 'utf8')
          );
        }
        expect(await Promise.all(names.map((name, i) => removeContext(name, requests[i].instanceId)))).toEqual(
          names.map(() => true)
        );
        const left = await dockerCli(['context', 'ls', '--format', '{{.Name}}']);
        expect(left.stdout.trim()).toBe('default');
      }
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('security', () => {
  /** One daemon, as on a GitHub-hosted runner; the tests read it in turn, the last one runs post. */
  let job: TestJob;
  let main: MainStep;
  let started: Started;
  const steps: StepResult[] = [];

  beforeAll(async () => {
    job = new TestJob({ env: { RUNNER_ENVIRONMENT: 'github-hosted' } });
    main = await job.main();
    started = main.started;
    steps.push(main.result);
  });

  afterAll(async () => {
    await job?.dispose();
  });

  test('nothing listens on 2375: the container IP and 127.0.0.1 refuse it; inside, TCP listeners are 2376 only', async () => {
    const id = main.outputs['container-id'];
    const ip = main.outputs.ip;
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(await tcpConnect(ip, 2375)).toBe('refused');
    expect(await tcpConnect('127.0.0.1', 2375)).toBe('refused');
    expect(await tcpConnect(ip, 2376)).toBe('connected');
    // /proc/net/tcp{,6}: state 0A is LISTEN; the local port is the hex after the colon.
    const listing = await outerOk(['exec', id, 'sh', '-c', 'cat /proc/net/tcp /proc/net/tcp6']);
    const listening = listing
      .split('\n')
      .map(line => line.trim().split(/\s+/))
      .filter(fields => fields[3] === '0A')
      .map(fields => {
        const [address, port] = fields[1].split(':');
        // IPv4 addresses are little-endian hex: 0B00007F is 127.0.0.11 (Docker's embedded DNS on user networks).
        const loopback = address.length === 8 ? address.endsWith('7F') : address === '00000000000000000000000001000000';
        return { port: parseInt(port, 16), loopback };
      });
    note(
      'TCP listeners in the dind container',
      listening.map(l => `${l.port}${l.loopback ? ' (loopback)' : ''}`).join(', ')
    );
    expect(listening.filter(l => l.port === 2375)).toEqual([]);
    expect([...new Set(listening.filter(l => !l.loopback).map(l => l.port))]).toEqual([2376]);
  });

  test('the CA private key is nowhere on disk: the only private keys are the client key (RUNNER_TEMP, context copy; covered in the dind container) and the server key (in the container)', async () => {
    const caCert = new X509Certificate(fs.readFileSync(path.join(started.certDir, 'ca.pem')));
    const caPublic = caCert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
    const publicOf = (pem: string) =>
      createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('hex');
    const certPublic = (pem: string) =>
      new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }).toString('hex');

    // On the runner: RUNNER_TEMP and ~/.docker.
    const found: Array<{ where: string; pem: string }> = [];
    const grep = await run('grep', ['-rlI', '--', 'PRIVATE KEY-----', job.temp, path.join(job.home, '.docker')]);
    for (const file of grep.stdout.split('\n').filter(Boolean))
      found.push({ where: file, pem: fs.readFileSync(file, 'utf8') });
    // In the container: its whole file system (not /proc, /sys, /dev), the mounts of RUNNER_TEMP and the
    // workspace included: what a nested container can mount. The client's certificate directory is covered there.
    const id = main.outputs['container-id'];
    const inContainer = await outerOk([
      'exec',
      id,
      'sh',
      '-c',
      `grep -rlI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e 'PRIVATE KEY-----' / 2>/dev/null || true`
    ]);
    for (const file of inContainer.split('\n').filter(Boolean))
      found.push({ where: `container:${file}`, pem: await outerOk(['exec', id, 'cat', file]) });

    const contextKeys = found.filter(key => key.where.startsWith(path.join(job.home, '.docker', 'contexts')));
    note('private keys found', found.map(key => key.where.replace(job.root, '<job>')).join(', '));
    expect(found.map(key => key.where).sort()).toEqual(
      [
        path.join(started.certDir, 'key.pem'),
        'container:/setup-dind/certs/server-key.pem',
        ...contextKeys.map(key => key.where)
      ].sort()
    );
    expect(contextKeys).toHaveLength(1);
    for (const key of found)
      expect({ where: key.where, isCa: publicOf(key.pem) === caPublic }).toEqual({ where: key.where, isCa: false });
    // And each is the key of its certificate.
    const clientCert = fs.readFileSync(path.join(started.certDir, 'cert.pem'), 'utf8');
    const serverCert = await outerOk(['exec', id, 'cat', '/setup-dind/certs/server-cert.pem']);
    expect(
      publicOf(
        defined(
          found.find(key => key.where.endsWith(`${path.sep}key.pem`) && key.where.startsWith(started.certDir)),
          'client key in the cert directory'
        ).pem
      )
    ).toBe(certPublic(clientCert));
    expect(publicOf(contextKeys[0].pem)).toBe(certPublic(clientCert));
    expect(
      publicOf(
        defined(
          found.find(key => key.where === 'container:/setup-dind/certs/server-key.pem'),
          'server key in the container'
        ).pem
      )
    ).toBe(certPublic(serverCert));
    expect(certPublic(clientCert)).not.toBe(caPublic);
  });

  test('github-hosted: server (from the TLS handshake) and client certificates expire within 7 h + 1 min', async () => {
    const now = Date.now();
    const read = (name: string) => fs.readFileSync(path.join(started.certDir, name), 'utf8');
    const peer = await serverCertificate(started.certDir, main.outputs.host);
    const serverLeft = new Date(peer.valid_to).getTime() - now;
    const clientLeft = new Date(new X509Certificate(read('cert.pem')).validTo).getTime() - now;
    note('github-hosted expiry', `server ${peer.valid_to}, client ${new X509Certificate(read('cert.pem')).validTo}`);
    for (const left of [serverLeft, clientLeft]) {
      expect(left).toBeLessThanOrEqual(7 * 3600_000 + 60_000);
      expect(left).toBeGreaterThan(6 * 3600_000);
    }
  });

  test('nothing secret printed: main and post output hold no PRIVATE KEY and no key body', async () => {
    const keys = [
      fs.readFileSync(path.join(started.certDir, 'key.pem'), 'utf8'),
      await outerOk(['exec', main.outputs['container-id'], 'cat', '/setup-dind/certs/server-key.pem'])
    ];
    const posts = await job.post({ warnings: 0 });
    steps.push(...posts);
    const bodies = keys.flatMap(pem => pem.split('\n').filter(line => line && !line.startsWith('-----')));
    expect(bodies.length).toBeGreaterThan(2);
    for (const step of steps) {
      const text = `${step.stdout}\n${step.stderr}\n${step.summary}`;
      expect(text).not.toContain('PRIVATE KEY');
      for (const line of bodies) expect(text).not.toContain(line);
      // Line-wrapping aside: the whole base64 body.
      for (const pem of keys)
        expect(text.replace(/\s/g, '')).not.toContain(pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''));
    }
  });

  test('self-hosted: server and client certificates expire within 5 days + 1 h', async () => {
    await withJob({}, async selfHosted => {
      const main = await selfHosted.main();
      const now = Date.now();
      const certDir = main.outputs['cert-path'];
      const peer = await serverCertificate(certDir, main.outputs.host);
      note('self-hosted expiry', `server ${peer.valid_to}`);
      const client = fs.readFileSync(path.join(certDir, 'cert.pem'), 'utf8');
      for (const validTo of [peer.valid_to, new X509Certificate(client).validTo]) {
        const left = new Date(validTo).getTime() - now;
        expect(left).toBeLessThanOrEqual((5 * 24 + 1) * 3600_000 + 60_000);
        expect(left).toBeGreaterThan(5 * 24 * 3600_000);
      }
      await selfHosted.post({ warnings: 0 });
    });
  });
});
