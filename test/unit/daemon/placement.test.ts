// Main's pure decisions about where the daemon sits: which networks it joins, the address later steps
// use, when the server's certificate can be issued, what is bind-mounted, what the entrypoint's report means.
import { parseDataEvents } from '../../../src/daemon/data-image';
import { newInstance } from '../../../src/daemon/instance';
import {
  bindMountPlan,
  dataOutcome,
  daemonHost,
  lateServerCertificate,
  placementOf,
  reachability,
  startsAfresh
} from '../../../src/daemon/placement';
import type { RunnerContainer } from '../../../src/runner/host';

const instance = newInstance('dind', '/runner/temp', 'abcd1234');
const runner = (networks: string[], mounts: RunnerContainer['mounts'] = []): RunnerContainer => ({
  id: 'f'.repeat(64),
  networks,
  mounts
});

describe('placementOf: the runner container networks the daemon joins', () => {
  test.each([
    ['a bare host', undefined, []],
    ['a job container on its own network', runner(['github_network_1']), ['github_network_1']],
    ['a runner on the default bridge', runner(['bridge']), ['bridge']],
    ['host and none cannot be joined', runner(['host']), []],
    ['only the joinable ones, in order', runner(['none', 'net-b', 'host', 'bridge']), ['net-b', 'bridge']]
  ])('%s', (_, container, expected) => {
    expect(placementOf(container).sharedNetworks).toEqual(expected);
  });
});

describe('reachability: the address later steps use, and where nested ports are', () => {
  const addresses = { [instance.networkName]: '172.30.0.2', github_network_1: '172.31.0.5', bridge: '172.17.0.9' };
  test.each([
    [
      'a bare host: the published port on loopback, nested ports at the own network address',
      [] as string[],
      { address: { host: '127.0.0.1', port: 49153 }, dockerHost: 'tcp://127.0.0.1:49153', ip: '172.30.0.2' }
    ],
    [
      'a shared user network: by container name (DNS), the daemon port itself',
      ['github_network_1'],
      {
        address: { host: instance.containerName, port: 2376 },
        dockerHost: `tcp://${instance.containerName}:2376`,
        ip: '172.31.0.5'
      }
    ],
    [
      'the default bridge has no DNS: by address',
      ['bridge'],
      { address: { host: '172.17.0.9', port: 2376 }, dockerHost: 'tcp://172.17.0.9:2376', ip: '172.17.0.9' }
    ],
    [
      'the first shared network the daemon has an address on',
      ['not-joined', 'bridge', 'github_network_1'],
      { address: { host: '172.17.0.9', port: 2376 }, dockerHost: 'tcp://172.17.0.9:2376', ip: '172.17.0.9' }
    ]
  ])('%s', (_, sharedNetworks, expected) => {
    expect(reachability(instance, 49153, addresses, { sharedNetworks })).toEqual(expected);
  });
});

describe('lateServerCertificate: only an address the engine assigns at start makes the certificate wait', () => {
  test.each([
    [[], false],
    [['github_network_1'], false],
    [['bridge'], true],
    [['github_network_1', 'bridge'], false]
  ])('shared networks %p → %p', (sharedNetworks, expected) => {
    expect(lateServerCertificate({ sharedNetworks })).toBe(expected);
  });
});

describe('bindMountPlan: runner paths as the engine host has them', () => {
  test('a bare host mounts every path as is (normalised)', () => {
    expect(bindMountPlan(['/home/runner/work/repo/repo', '/home/runner/work/_temp/'], undefined)).toEqual({
      mounts: [
        { source: '/home/runner/work/repo/repo', target: '/home/runner/work/repo/repo' },
        { source: '/home/runner/work/_temp', target: '/home/runner/work/_temp/' }
      ],
      unreachable: []
    });
  });

  test('in a container, paths under its bind mounts are translated and the others are reported', () => {
    const container = runner(['bridge'], [{ source: '/srv/runner/_work', destination: '/__w' }]);
    expect(bindMountPlan(['/__w/repo/repo', '/__w/_temp', '/tmp/elsewhere'], container)).toEqual({
      mounts: [
        { source: '/srv/runner/_work/repo/repo', target: '/__w/repo/repo' },
        { source: '/srv/runner/_work/_temp', target: '/__w/_temp' }
      ],
      unreachable: ['/tmp/elsewhere']
    });
  });
});

describe("dataOutcome: what the entrypoint's report means for the job's cache", () => {
  test.each([
    ['mounted', 'mounted in 0.4 s', 'setup-dind-v2-x', { kind: 'image' }],
    ['no loop device', 'plain no loop device', 'setup-dind-v2-x', { kind: 'plain', reason: 'no loop device' }],
    [
      'a restored state that failed its check',
      'discarded e2fsck found errors\nmounted in 1 s',
      'setup-dind-v2-x',
      { kind: 'discarded', reason: 'e2fsck found errors' }
    ],
    ['discarded, but nothing was restored', 'discarded e2fsck found errors', undefined, { kind: 'image' }]
  ])('%s', (_, report, restoredKey, expected) => {
    expect(dataOutcome(parseDataEvents(report), restoredKey)).toEqual(expected);
  });
});

describe('startsAfresh: a daemon that did not become ready starts again on a fresh filesystem', () => {
  test.each([
    ['on a restored state it mounted', 'mounted in 0.4 s (restored)', 'setup-dind-v2-x', true],
    ['before the entrypoint mounted a restored state (its check held it up)', '', 'setup-dind-v2-x', true],
    ['on a fresh filesystem: nothing was restored', 'mounted in 0.4 s (new)', undefined, false],
    [
      'on the fresh filesystem that replaced a state that failed its check',
      'discarded e2fsck found errors\nmounted in 1 s (new)',
      'setup-dind-v2-x',
      false
    ],
    ['without a filesystem image', 'plain no loop device', 'setup-dind-v2-x', false]
  ])('%s: %p', (_, report, restoredKey, expected) => {
    expect(startsAfresh(parseDataEvents(report), restoredKey)).toBe(expected);
  });
});

describe('daemonHost', () => {
  test.each<[string, number, string]>([
    ['127.0.0.1', 32768, 'tcp://127.0.0.1:32768'],
    ['setup-dind-dind-abcdef01', 2376, 'tcp://setup-dind-dind-abcdef01:2376'],
    ['172.17.0.3', 2376, 'tcp://172.17.0.3:2376']
  ])('%s port %p: %s', (host, port, expected) => {
    expect(daemonHost(host, port)).toBe(expected);
  });
});
