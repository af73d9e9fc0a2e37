// Facts about where the job runs: the MTU of the default route (from fixture /proc and /sys files),
// the container the job runs in (against a fake engine), where the engine's host has a path, and the
// error main fails with when there is no engine.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Docker from 'dockerode';
import {
  defaultRouteMtu,
  candidateIds,
  detectRunnerContainer,
  engineHostPath,
  engineUnreachableMessage,
  type RunnerContainer
} from '../../../src/runner/host';
// The modules themselves (not import * copies), so that a spy on them is what src/ calls.
import nodeFs = require('node:fs');
import nodeOs = require('node:os');

const HEADER =
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT                                                       ';
/** A /proc/net/route line: destination and mask in the kernel's little-endian hex. */
const route = (iface: string, destination: string, gateway = '00000000', mask = '00000000') =>
  `${iface}\t${destination}\t${gateway}\t0003\t0\t0\t100\t${mask}\t0\t0\t0                                                                               `;

describe('defaultRouteMtu', () => {
  let root: string;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-route-'));
  });

  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** Writes <root>/route and <root>/net/<iface>/mtu; returns the two paths defaultRouteMtu takes. */
  function fixture(routeText: string | undefined, mtus: Record<string, string>): [string, string] {
    const routeFile = path.join(root, 'route');
    if (routeText !== undefined) fs.writeFileSync(routeFile, routeText);
    for (const [iface, mtu] of Object.entries(mtus)) {
      fs.mkdirSync(path.join(root, 'net', iface), { recursive: true });
      fs.writeFileSync(path.join(root, 'net', iface, 'mtu'), mtu);
    }
    return [routeFile, path.join(root, 'net')];
  }

  test.each<[string, string | undefined, Record<string, string>, number | undefined]>([
    [
      'the default route on eth0',
      [HEADER, route('eth0', '00000000', '0100A8C0'), route('eth0', '0000A8C0', '00000000', '00FFFFFF'), ''].join('\n'),
      { eth0: '1500\n' },
      1500
    ],
    [
      'a cloud NIC with jumbo frames',
      [HEADER, route('ens5', '00000000', '01001FAC'), ''].join('\n'),
      { ens5: '9001\n' },
      9001
    ],
    [
      'the default route after other routes',
      [
        HEADER,
        route('docker0', '000011AC', '00000000', '0000FFFF'),
        route('eth0', '0000A8C0', '00000000', '00FFFFFF'),
        route('eth0', '00000000', '0100A8C0'),
        ''
      ].join('\n'),
      { docker0: '1500\n', eth0: '1400\n' },
      1400
    ],
    [
      'the first of two default routes',
      [HEADER, route('wg0', '00000000'), route('eth0', '00000000', '0100A8C0')].join('\n'),
      { wg0: '1420\n', eth0: '1500\n' },
      1420
    ],
    [
      'no trailing newline, no newline after the MTU',
      [HEADER, route('eth0', '00000000', '0100A8C0')].join('\n'),
      { eth0: '1450' },
      1450
    ],
    [
      'no default route',
      [HEADER, route('eth0', '0000A8C0', '00000000', '00FFFFFF'), ''].join('\n'),
      { eth0: '1500\n' },
      undefined
    ],
    ['only the header (an IPv6-only host)', HEADER + '\n', {}, undefined],
    ['an empty route table file', '', {}, undefined],
    ['no route table file', undefined, { eth0: '1500\n' }, undefined],
    [
      "no MTU file for the default route's interface",
      [HEADER, route('eth0', '00000000', '0100A8C0'), ''].join('\n'),
      { eth1: '1500\n' },
      undefined
    ],
    ['an MTU of 0', [HEADER, route('eth0', '00000000', '0100A8C0'), ''].join('\n'), { eth0: '0\n' }, undefined],
    [
      'an MTU that is no number',
      [HEADER, route('eth0', '00000000', '0100A8C0'), ''].join('\n'),
      { eth0: 'n/a\n' },
      undefined
    ]
  ])('%s', (_name, routeText, mtus, expected) => {
    expect(defaultRouteMtu(...fixture(routeText, mtus))).toBe(expected);
  });
});

describe('engineHostPath', () => {
  const runner = (mounts: RunnerContainer['mounts']): RunnerContainer => ({
    id: 'f'.repeat(64),
    networks: ['bridge'],
    mounts
  });
  const MOUNTS: RunnerContainer['mounts'] = [
    { source: '/srv/runner/work', destination: '/__w' },
    { source: '/srv/temp', destination: '/__w/_temp' },
    { source: '/srv/a-b', destination: '/a/b' },
    { source: '/var/run/docker.sock', destination: '/var/run/docker.sock' }
  ];

  test.each<[string, string, string | undefined, RunnerContainer | undefined]>([
    ['a bare host: the path as it is', '/home/runner/work/_temp', '/home/runner/work/_temp', undefined],
    ['a bare host: any path', '/', '/', undefined],
    ['the mount point itself', '/__w', '/srv/runner/work', runner(MOUNTS)],
    ['under a mount', '/__w/repo/repo', '/srv/runner/work/repo/repo', runner(MOUNTS)],
    ['a nested mount point: the longest mount wins', '/__w/_temp', '/srv/temp', runner(MOUNTS)],
    [
      'under a nested mount',
      '/__w/_temp/setup-dind-dind-abcdef01-data',
      '/srv/temp/setup-dind-dind-abcdef01-data',
      runner(MOUNTS)
    ],
    [
      'a sibling that shares the nested mount point as a prefix',
      '/__w/_tempx/y',
      '/srv/runner/work/_tempx/y',
      runner(MOUNTS)
    ],
    ['a trailing slash', '/__w/repo/', '/srv/runner/work/repo', runner(MOUNTS)],
    ['under /a/b', '/a/b/c', '/srv/a-b/c', runner(MOUNTS)],
    ['/a/bc is not under a mount at /a/b', '/a/bc', undefined, runner(MOUNTS)],
    ['/a/bc/d is not under a mount at /a/b', '/a/bc/d', undefined, runner(MOUNTS)],
    ['a parent of a mount point', '/a', undefined, runner(MOUNTS)],
    ['outside every mount', '/home/runner/work', undefined, runner(MOUNTS)],
    ['the root', '/', undefined, runner(MOUNTS)],
    ['a file mount', '/var/run/docker.sock', '/var/run/docker.sock', runner(MOUNTS)],
    ['a container without bind mounts', '/__w', undefined, runner([])],
    ['the mounts in another order', '/__w/_temp/x', '/srv/temp/x', runner([...MOUNTS].reverse())],
    // Found by this test: the prefix test runs on the raw string and path.relative then climbs out of
    // the mount ('/__w/../etc' is '/etc', which no mount covers; the answer is '/srv/runner/etc').
    ['BUG: a path that climbs out of its mount with ..', '/__w/../etc', undefined, runner(MOUNTS)]
  ])('%s: %s → %s', (_name, localPath, expected, forRunner) => {
    expect(engineHostPath(forRunner, localPath)).toBe(expected);
  });
});

describe('detectRunnerContainer', () => {
  const ID_A = 'a'.repeat(64);
  const ID_B = 'b0'.repeat(32);
  const HOSTNAME = 'c0ffee123456';

  let dir: string;
  /** Markers that exist, of /.dockerenv and /run/.containerenv. */
  let markers: string[];
  let asked: string[];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-mountinfo-'));
    markers = ['/.dockerenv'];
    asked = [];
    const existsSync = nodeFs.existsSync;
    jest
      .spyOn(nodeFs, 'existsSync')
      .mockImplementation(file =>
        file === '/.dockerenv' || file === '/run/.containerenv' ? markers.includes(String(file)) : existsSync(file)
      );
    jest.spyOn(nodeOs, 'hostname').mockReturnValue(HOSTNAME);
  });

  afterEach(() => {
    jest.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function mountinfo(...ids: string[]): string {
    const file = path.join(dir, 'mountinfo');
    const lines = [
      '1234 1200 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X',
      ...ids.flatMap((id, index) => [
        `${1300 + index} 1234 8:1 /var/lib/docker/containers/${id}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw`,
        `${1400 + index} 1234 8:1 /var/lib/docker/containers/${id}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw`
      ]),
      '1500 1234 8:1 /srv/runner/work /__w rw,relatime - ext4 /dev/sda1 rw'
    ];
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  }

  const inspectInfo = (id: string) =>
    ({
      Id: id,
      NetworkSettings: {
        Networks: { bridge: { IPAddress: '172.17.0.2' }, github_network_1: { IPAddress: '172.20.0.2' } }
      },
      Mounts: [
        { Type: 'bind', Source: '/srv/runner/work', Destination: '/__w' },
        { Type: 'volume', Name: 'v', Source: '/var/lib/docker/volumes/v/_data', Destination: '/cache' },
        { Type: 'bind', Source: '/var/run/docker.sock', Destination: '/var/run/docker.sock' }
      ]
    }) as unknown as Docker.ContainerInspectInfo;

  /** An engine that knows the containers given, by full id or by host name. */
  function engine(known: Record<string, Docker.ContainerInspectInfo>): Docker {
    return {
      getContainer: (id: string) => ({
        inspect: async () => {
          asked.push(id);
          if (known[id]) return known[id];
          throw new Error(`(HTTP code 404) no such container - No such container: ${id}`);
        }
      })
    } as unknown as Docker;
  }

  const EXPECTED_A: RunnerContainer = {
    id: ID_A,
    networks: ['bridge', 'github_network_1'],
    mounts: [
      { source: '/srv/runner/work', destination: '/__w' },
      { source: '/var/run/docker.sock', destination: '/var/run/docker.sock' }
    ]
  };

  test('on a bare host (no container marker), the engine is not asked', async () => {
    markers = [];
    await expect(
      detectRunnerContainer(engine({ [ID_A]: inspectInfo(ID_A) }), mountinfo(ID_A))
    ).resolves.toBeUndefined();
    expect(asked).toEqual([]);
  });

  test.each(['/.dockerenv', '/run/.containerenv'])(
    'in a container marked by %s, its id from the mount table: networks and bind mounts only',
    async marker => {
      markers = [marker];
      await expect(detectRunnerContainer(engine({ [ID_A]: inspectInfo(ID_A) }), mountinfo(ID_A))).resolves.toEqual(
        EXPECTED_A
      );
      expect(asked).toEqual([ID_A]);
    }
  );

  test('ids from the mount table come first, then the host name; the first the engine knows wins', async () => {
    const result = await detectRunnerContainer(
      engine({ [ID_B]: inspectInfo(ID_B), [HOSTNAME]: inspectInfo(ID_A) }),
      mountinfo(ID_A, ID_B)
    );
    expect(result?.id).toBe(ID_B);
    expect(asked).toEqual([ID_A, ID_B]);
  });

  test('without a mount table, the host name', async () => {
    await expect(
      detectRunnerContainer(engine({ [HOSTNAME]: inspectInfo(ID_A) }), path.join(dir, 'no-such-file'))
    ).resolves.toEqual(EXPECTED_A);
    expect(asked).toEqual([HOSTNAME]);
  });

  test('an id repeated in the mount table is asked once', async () => {
    await detectRunnerContainer(engine({}), mountinfo(ID_A, ID_A));
    expect(asked).toEqual([ID_A, HOSTNAME]);
  });

  test('a container the engine does not know (another engine, or podman): undefined', async () => {
    await expect(detectRunnerContainer(engine({}), mountinfo(ID_A))).resolves.toBeUndefined();
    expect(asked).toEqual([ID_A, HOSTNAME]);
  });

  test('a container with no networks and no mounts', async () => {
    const bare = { Id: ID_A, NetworkSettings: { Networks: null } } as unknown as Docker.ContainerInspectInfo;
    await expect(detectRunnerContainer(engine({ [ID_A]: bare }), mountinfo(ID_A))).resolves.toEqual({
      id: ID_A,
      networks: [],
      mounts: []
    });
  });
});

describe('candidateIds', () => {
  const OWN = 'a'.repeat(64);
  const OTHER = 'b'.repeat(64);
  test("another container's mounts, seen from its engine's mount namespace, are not this process's", () => {
    const mountinfo = [
      `1300 1234 8:1 /var/lib/docker/containers/${OTHER}/hosts /var/lib/docker/overlay2/x/merged/etc/hosts rw - ext4 /dev/sda1 rw`,
      `1301 1234 8:1 /var/lib/docker/containers/${OTHER}/hostname /var/lib/docker/overlay2/x/merged/etc/hostname rw - ext4 /dev/sda1 rw`,
      `1302 1234 8:1 /var/lib/docker/containers/${OWN}/hostname /etc/hostname rw - ext4 /dev/sda1 rw`
    ].join('\n');
    expect(candidateIds(mountinfo, 'host')).toEqual([OWN, 'host']);
    expect(candidateIds(mountinfo.split('\n').slice(0, 2).join('\n'), 'host')).toEqual(['host']);
  });
});

describe('engineUnreachableMessage', () => {
  const SOCKET = 'unix:///var/run/docker.sock';
  const REASON = 'connect ENOENT /var/run/docker.sock';
  const PLAIN = `Cannot reach the Docker engine at ${SOCKET}: ${REASON}. setup-dind needs a Docker engine on the runner (and the job's user allowed to use it).`;
  /** What every message for a runner without an engine for good says to use instead. */
  const INSTEAD =
    /Use actions-runner-controller's dind mode \(containerMode\.type: dind[^)]*\), or a runner with a Docker engine\.$/;

  test('no hint in the environment: the plain message, which names the address and the reason', () => {
    expect(engineUnreachableMessage(SOCKET, REASON, {})).toBe(PLAIN);
    // Other ARC variables alone say nothing about the engine (dind mode sets DOCKER_HOST too).
    expect(
      engineUnreachableMessage(SOCKET, REASON, {
        DOCKER_HOST: SOCKET,
        RUNNER_WAIT_FOR_DOCKER_IN_SECONDS: '120',
        ACTIONS_RUNNER_CONTAINER_HOOKS: ''
      })
    ).toBe(PLAIN);
  });

  test("container hooks configured (ARC's kubernetes mode, a step on the runner): names the mode, the variable, the address and what to use instead", () => {
    const message = engineUnreachableMessage(SOCKET, REASON, {
      ACTIONS_RUNNER_CONTAINER_HOOKS: '/home/runner/k8s/index.js',
      ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER: 'false'
    });
    expect(message).toMatch(/^setup-dind cannot run in actions-runner-controller's kubernetes mode: /);
    expect(message).toContain('ACTIONS_RUNNER_CONTAINER_HOOKS is set');
    expect(message).toContain(`(none at ${SOCKET}: ${REASON})`);
    expect(message).toMatch(INSTEAD);
  });

  test('in a Kubernetes pod (the job pod of the kubernetes mode, which gets no runner variables): says so, and what to use instead', () => {
    const message = engineUnreachableMessage(SOCKET, REASON, { KUBERNETES_SERVICE_HOST: '10.96.0.1' });
    expect(message).toMatch(/^setup-dind cannot start a dind container here: this job runs in a Kubernetes pod /);
    expect(message).toContain('KUBERNETES_SERVICE_HOST is set');
    expect(message).toContain(`(none at ${SOCKET}: ${REASON})`);
    expect(message).toMatch(INSTEAD);
  });

  test("in a pod with DOCKER_HOST set (ARC's dind mode, its sidecar down): the plain message", () => {
    expect(
      engineUnreachableMessage(SOCKET, REASON, { KUBERNETES_SERVICE_HOST: '10.96.0.1', DOCKER_HOST: SOCKET })
    ).toBe(PLAIN);
  });

  test('both: the hooks variable decides (it is the more specific)', () => {
    const message = engineUnreachableMessage(SOCKET, REASON, {
      ACTIONS_RUNNER_CONTAINER_HOOKS: '/home/runner/k8s/index.js',
      KUBERNETES_SERVICE_HOST: '10.96.0.1'
    });
    expect(message).toMatch(/kubernetes mode: .*ACTIONS_RUNNER_CONTAINER_HOOKS is set/);
  });
});
