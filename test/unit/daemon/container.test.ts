// The pure builders of the dind container: its command line, daemon.json, create options, the two
// archives put into it, and the readers of what the engine answers (published port, addresses,
// multiplexed log, failure hints).
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import type Docker from 'dockerode';
import * as tar from 'tar-stream';
import { INSTANCE_LABEL } from '../../../src/runner/contract';
import {
  coldWaitMs,
  containerCreateOptions,
  hiddenPaths,
  DaemonNotReadyError,
  daemonConfig,
  demultiplex,
  diagnose,
  dockerdCommand,
  lastLogLine,
  networkAddresses,
  networkCreateOptions,
  publishedPort,
  READY_STEADINESS,
  restoredWaitMs,
  serverArchive,
  serverSubjectAltNames,
  setupArchive,
  setupScript,
  waitForDaemon,
  type ContainerSpec,
  type DaemonConfigInputs
} from '../../../src/daemon/container';
import { newInstance } from '../../../src/daemon/instance';
import { createAuthority, type KeyPair } from '../../../src/daemon/tls';
import { defined } from '../../support/defined';

// A fixed id: a random one could contain "2375" and break the "no 2375 anywhere" checks.
const instance = newInstance('dind', '/runner/temp', 'abcdef01');

describe('dockerdCommand', () => {
  const fixed = [
    'dockerd',
    '--host=unix:///var/run/docker.sock',
    '--host=tcp://0.0.0.0:2376',
    '--tlsverify',
    '--tlscacert=/setup-dind/certs/ca.pem',
    '--tlscert=/setup-dind/certs/server-cert.pem',
    '--tlskey=/setup-dind/certs/server-key.pem',
    '--config-file=/setup-dind/daemon.json'
  ];

  test.each<[string[], string[]]>([
    [[], fixed],
    [['--debug'], [...fixed, '--debug']],
    [
      ['--mtu=1400', '--label', 'a=b c'],
      [...fixed, '--mtu=1400', '--label', 'a=b c']
    ]
  ])('user args %j', (userArgs, expected) => {
    expect(dockerdCommand(userArgs)).toEqual(expected);
  });

  test('listens on the container-local unix socket and on one network address, TLS-verified on 2376, never 2375', () => {
    const command = dockerdCommand(['--debug']);
    const hosts = command
      .filter(word => word.startsWith('--host') || word.startsWith('-H'))
      .map(word => word.replace(/^--host=/, ''));
    expect(hosts).toEqual(['unix:///var/run/docker.sock', 'tcp://0.0.0.0:2376']);
    expect(hosts.filter(host => !host.startsWith('unix://'))).toEqual(['tcp://0.0.0.0:2376']);
    expect(command).toContain('--tlsverify');
    expect(command.join(' ')).not.toContain('2375');
  });
});

describe('serverSubjectAltNames', () => {
  test.each<[string, ReturnType<typeof newInstance>, string[], string[], string[]]>([
    [
      'no addresses',
      newInstance('dind', '/t', '00000000'),
      [],
      ['localhost', 'dind', 'setup-dind-dind-00000000'],
      ['127.0.0.1', '::1']
    ],
    [
      'one network',
      newInstance('dind', '/t', '00000000'),
      ['172.18.0.2'],
      ['localhost', 'dind', 'setup-dind-dind-00000000'],
      ['127.0.0.1', '::1', '172.18.0.2']
    ],
    [
      'the own network and a job container network',
      newInstance('db-2', '/t', '1234abcd'),
      ['172.18.0.2', '172.17.0.5'],
      ['localhost', 'db-2', 'setup-dind-db-2-1234abcd'],
      ['127.0.0.1', '::1', '172.18.0.2', '172.17.0.5']
    ]
  ])('%s', (_name, forInstance, addresses, dns, ip) => {
    expect(serverSubjectAltNames(forInstance, addresses)).toEqual({ dns, ip });
  });
});

describe('networkAddresses', () => {
  const inspected = (networks: unknown) =>
    ({ NetworkSettings: { Networks: networks } }) as unknown as Docker.ContainerInspectInfo;

  test.each<[string, unknown, Record<string, string>]>([
    ['no Networks', undefined, {}],
    ['null Networks', null, {}],
    ['no networks', {}, {}],
    [
      'one network',
      { 'setup-dind-dind-abcdef01': { IPAddress: '172.18.0.2' } },
      { 'setup-dind-dind-abcdef01': '172.18.0.2' }
    ],
    [
      'two networks',
      {
        'setup-dind-dind-abcdef01': { IPAddress: '172.18.0.2', Gateway: '172.18.0.1' },
        bridge: { IPAddress: '172.17.0.3' }
      },
      { 'setup-dind-dind-abcdef01': '172.18.0.2', bridge: '172.17.0.3' }
    ],
    [
      'a network without an IPv4 address (not connected yet, or IPv6 only)',
      { a: { IPAddress: '', GlobalIPv6Address: 'fd00::2' }, b: { IPAddress: '10.0.0.2' } },
      { b: '10.0.0.2' }
    ]
  ])('%s', (_name, networks, addresses) => {
    expect(networkAddresses(inspected(networks))).toEqual(addresses);
  });
});

describe('daemonConfig', () => {
  const SNAPSHOTTER = 'containerd-snapshotter';
  const BRIDGE_MTU = (mtu: number) => ({
    'default-network-opts': { bridge: { 'com.docker.network.driver.mtu': String(mtu) } }
  });
  const inputs = (overrides: Partial<DaemonConfigInputs> = {}): DaemonConfigInputs => ({
    daemonConfig: {},
    dockerdArgs: [],
    registryMirrors: [],
    insecureRegistries: [],
    cache: false,
    ...overrides
  });

  test.each<[string, Partial<DaemonConfigInputs>, number | undefined, Record<string, unknown>]>([
    ['nothing asked, no runner MTU', {}, undefined, {}],
    ["nothing asked, the runner's MTU is the usual 1500", {}, 1500, {}],
    [
      "the runner's MTU below 1500 goes to dockerd and to new bridge networks",
      {},
      1400,
      { mtu: 1400, ...BRIDGE_MTU(1400) }
    ],
    ["not the runner's MTU above 1500: the dind container's own link is 1500", {}, 9001, {}],
    ['the mtu input, with no runner MTU', { mtu: 1450 }, undefined, { mtu: 1450, ...BRIDGE_MTU(1450) }],
    ["the mtu input wins over the runner's", { mtu: 1450 }, 1400, { mtu: 1450, ...BRIDGE_MTU(1450) }],
    ["mtu input 1500 wins over the runner's", { mtu: 1500 }, 1400, { mtu: 1500, ...BRIDGE_MTU(1500) }],
    [
      "daemon-config's mtu wins, and its networks are the user's business",
      { daemonConfig: { mtu: 1300 } },
      1400,
      { mtu: 1300 }
    ],
    [
      "daemon-config's mtu wins over the mtu input too",
      { daemonConfig: { mtu: 1300 }, mtu: 1450 },
      1400,
      { mtu: 1300 }
    ],
    ['--mtu=N in dockerd-args wins', { dockerdArgs: ['--mtu=1300'] }, 1400, {}],
    ['--mtu N in dockerd-args wins', { dockerdArgs: ['--debug', '--mtu', '1300'] }, 1400, {}],
    [
      'other flags do not count as an MTU',
      { dockerdArgs: ['--debug', '--mtu-extra=1'] },
      1400,
      { mtu: 1400, ...BRIDGE_MTU(1400) }
    ],
    [
      "daemon-config's default-network-opts are kept as they are",
      { daemonConfig: { 'default-network-opts': { overlay: { 'com.docker.network.driver.mtu': '1350' } } } },
      1400,
      { mtu: 1400, 'default-network-opts': { overlay: { 'com.docker.network.driver.mtu': '1350' } } }
    ],
    [
      "daemon-config's other settings are kept",
      { daemonConfig: { debug: true, features: { 'containerd-snapshotter': true }, 'log-level': 'warn' } },
      1400,
      { debug: true, features: { 'containerd-snapshotter': true }, 'log-level': 'warn', mtu: 1400, ...BRIDGE_MTU(1400) }
    ],
    [
      'registry mirrors',
      { registryMirrors: ['https://mirror.example'] },
      undefined,
      { 'registry-mirrors': ['https://mirror.example'] }
    ],
    [
      "registry mirrors are appended to daemon-config's, without duplicates",
      {
        daemonConfig: { 'registry-mirrors': ['https://a.example', 'https://b.example'] },
        registryMirrors: ['https://b.example', 'https://c.example', 'https://c.example']
      },
      undefined,
      { 'registry-mirrors': ['https://a.example', 'https://b.example', 'https://c.example'] }
    ],
    [
      'insecure registries',
      { insecureRegistries: ['r.example:5000', '10.0.0.0/8'] },
      undefined,
      { 'insecure-registries': ['r.example:5000', '10.0.0.0/8'] }
    ],
    [
      "insecure registries are appended to daemon-config's, without duplicates",
      {
        daemonConfig: { 'insecure-registries': ['r.example:5000'] },
        insecureRegistries: ['s.example:5000', 'r.example:5000']
      },
      undefined,
      { 'insecure-registries': ['r.example:5000', 's.example:5000'] }
    ],
    [
      "no inputs leave daemon-config's lists alone",
      { daemonConfig: { 'registry-mirrors': ['https://a.example', 'https://a.example'], 'insecure-registries': [] } },
      undefined,
      { 'registry-mirrors': ['https://a.example', 'https://a.example'], 'insecure-registries': [] }
    ],
    [
      'everything at once',
      {
        daemonConfig: { debug: true },
        mtu: 1280,
        registryMirrors: ['https://m.example'],
        insecureRegistries: ['r.example:5000']
      },
      1500,
      {
        debug: true,
        mtu: 1280,
        ...BRIDGE_MTU(1280),
        'registry-mirrors': ['https://m.example'],
        'insecure-registries': ['r.example:5000']
      }
    ],
    [
      'the cache on: the containerd image store off',
      { cache: true },
      undefined,
      { features: { [SNAPSHOTTER]: false } }
    ],
    [
      'the cache on: other features kept',
      { cache: true, daemonConfig: { features: { cdi: true } } },
      undefined,
      { features: { cdi: true, [SNAPSHOTTER]: false } }
    ],
    [
      "the cache on: the user's choice kept",
      { cache: true, daemonConfig: { features: { [SNAPSHOTTER]: true } } },
      undefined,
      { features: { [SNAPSHOTTER]: true } }
    ],
    ['the cache on: not when a flag sets features', { cache: true, dockerdArgs: ['--feature', 'cdi'] }, undefined, {}],
    [
      'the cache on: features that are not an object left to dockerd',
      { cache: true, daemonConfig: { features: 'x' } },
      undefined,
      { features: 'x' }
    ]
  ])('%s', (_name, overrides, runnerMtu, expected) => {
    expect(daemonConfig(inputs(overrides), runnerMtu)).toEqual(expected);
  });

  test("leaves the user's daemon-config as it was", () => {
    const user = { 'registry-mirrors': ['https://a.example'], 'insecure-registries': ['r.example:5000'], debug: true };
    const before = structuredClone(user);
    const config = daemonConfig(
      inputs({
        daemonConfig: user,
        registryMirrors: ['https://b.example'],
        insecureRegistries: ['s.example:5000'],
        mtu: 1400
      }),
      1400
    );
    expect(user).toEqual(before);
    expect(config['registry-mirrors']).not.toBe(user['registry-mirrors']);
  });
});

describe('containerCreateOptions', () => {
  const spec = (overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
    instance,
    image: 'docker:28-dind',
    privileged: true,
    dockerdArgs: [],
    mounts: [],
    ports: [],
    ...overrides
  });
  const create = (overrides: Partial<ContainerSpec> = {}) => containerCreateOptions(spec(overrides));

  test.each([true, false])('privileged: %p is passed through', privileged => {
    expect(create({ privileged }).HostConfig.Privileged).toBe(privileged);
  });

  test.each([true, false])('privileged %p: docker-init reaps zombies, in a private cgroup namespace', privileged => {
    const { HostConfig } = create({ privileged });
    expect(HostConfig.Init).toBe(true);
    expect(HostConfig.CgroupnsMode).toBe('private');
  });

  test('identity: name, image, host name, network and its alias', () => {
    const options = create();
    expect(options.name).toBe('setup-dind-dind-abcdef01');
    expect(options.Image).toBe('docker:28-dind');
    expect(options.Hostname).toBe('dind');
    expect(options.HostConfig.NetworkMode).toBe(instance.networkName);
    expect(options.NetworkingConfig).toEqual({ EndpointsConfig: { [instance.networkName]: { Aliases: ['dind'] } } });
  });

  test.each([undefined, '/runner/temp/data'])(
    "data directory %p: /var/lib/docker is the instance's own volume, labelled as the container, never an anonymous one",
    dataDir => {
      const { HostConfig, Labels } = create({ dataDir });
      expect(HostConfig.Mounts).toEqual([
        {
          Type: 'volume',
          Source: instance.volumeName,
          Target: '/var/lib/docker',
          VolumeOptions: { NoCopy: false, Labels, DriverConfig: { Name: 'local', Options: {} } }
        }
      ]);
    }
  );

  test('with no ports asked, only the TLS port is published: on 127.0.0.1, on a port the engine picks', () => {
    const options = create();
    expect(options.ExposedPorts).toEqual({ '2376/tcp': {} });
    expect(options.HostConfig.PortBindings).toEqual({ '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
    expect(options.HostConfig.PublishAllPorts).toBeFalsy();
  });

  const DAEMON_PORT = { '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] };
  test.each<[string, ContainerSpec['ports'], Record<string, object>, Record<string, unknown>]>([
    [
      'one port, same on both sides',
      [{ host: 8080, container: 8080 }],
      { '8080/tcp': {} },
      { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }] }
    ],
    [
      'a runner port to another dind port',
      [{ host: 15432, container: 5432 }],
      { '5432/tcp': {} },
      { '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '15432' }] }
    ],
    [
      'several ports',
      [
        { host: 80, container: 8080 },
        { host: 6379, container: 6379 },
        { host: 65535, container: 1 }
      ],
      { '8080/tcp': {}, '6379/tcp': {}, '1/tcp': {} },
      {
        '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '80' }],
        '6379/tcp': [{ HostIp: '127.0.0.1', HostPort: '6379' }],
        '1/tcp': [{ HostIp: '127.0.0.1', HostPort: '65535' }]
      }
    ]
  ])(
    'ports: %s: exposed and published on 127.0.0.1 on the fixed runner port, beside the TLS port',
    (_name, ports, exposed, bindings) => {
      const options = create({ ports });
      expect(options.ExposedPorts).toEqual({ '2376/tcp': {}, ...exposed });
      expect(options.HostConfig.PortBindings).toEqual({ ...DAEMON_PORT, ...bindings });
    }
  );

  // `ports: 8080:80, 8081:80` (which parsePorts accepts, as `docker run -p` does): the PortBindings entry
  // for 80/tcp is built once per mapping with Object.fromEntries, so the last mapping replaces the first.
  test('BUG: one dind port published on two runner ports keeps both bindings (only the last survives)', () => {
    const options = create({
      ports: [
        { host: 8080, container: 80 },
        { host: 8081, container: 80 }
      ]
    });
    expect(options.ExposedPorts).toEqual({ '2376/tcp': {}, '80/tcp': {} });
    expect(options.HostConfig.PortBindings).toEqual({
      ...DAEMON_PORT,
      '80/tcp': [
        { HostIp: '127.0.0.1', HostPort: '8080' },
        { HostIp: '127.0.0.1', HostPort: '8081' }
      ]
    });
  });

  test('every binding is on 127.0.0.1, never on all interfaces', () => {
    const options = create({
      ports: [
        { host: 8080, container: 80 },
        { host: 9000, container: 9000 }
      ]
    });
    const bindings = Object.values(options.HostConfig.PortBindings as Record<string, Array<{ HostIp: string }>>).flat();
    expect(bindings.length).toBe(3);
    for (const binding of bindings) expect(binding.HostIp).toBe('127.0.0.1');
  });

  test('the instance label carries the instance id', () => {
    expect(create().Labels).toEqual({ [INSTANCE_LABEL]: 'abcdef01' });
  });

  test("the action's entrypoint runs dockerd's command line", () => {
    const options = create({ privileged: false, dockerdArgs: ['--debug'] });
    expect(options.Entrypoint).toEqual(['/bin/sh', '/setup-dind/entrypoint.sh']);
    expect(options.Cmd).toEqual(dockerdCommand(['--debug']));
  });

  test('DOCKER_TLS_CERTDIR is set, and empty', () => {
    const env = create().Env ?? [];
    expect(env.filter(entry => entry.startsWith('DOCKER_TLS_CERTDIR'))).toEqual(['DOCKER_TLS_CERTDIR=']);
  });

  test.each<[string, string | undefined, ContainerSpec['mounts'], string[]]>([
    ['nothing', undefined, [], []],
    ['the data directory', '/runner/temp/setup-dind-cache', [], ['/runner/temp/setup-dind-cache:/setup-dind/data']],
    [
      'mounts at the same path',
      undefined,
      [
        { source: '/home/runner/work/repo/repo', target: '/home/runner/work/repo/repo' },
        { source: '/home/runner/work/_temp', target: '/home/runner/work/_temp' }
      ],
      ['/home/runner/work/repo/repo:/home/runner/work/repo/repo', '/home/runner/work/_temp:/home/runner/work/_temp']
    ],
    [
      'a mount from elsewhere on the engine host (a runner in a container)',
      undefined,
      [{ source: '/srv/runner/work', target: '/__w' }],
      ['/srv/runner/work:/__w']
    ],
    [
      'the data directory first, then the mounts in order',
      '/srv/runner/temp/data',
      [
        { source: '/srv/b', target: '/b' },
        { source: '/srv/a', target: '/a' }
      ],
      ['/srv/runner/temp/data:/setup-dind/data', '/srv/b:/b', '/srv/a:/a']
    ]
  ])('binds: %s', (_name, dataDir, mounts, binds) => {
    expect(create({ dataDir, mounts }).HostConfig.Binds).toEqual(binds);
  });

  test.each<[string, string[], string[]]>([
    ['no mounts', [], []],
    ['RUNNER_TEMP, where it lies', ['/home/runner/work/repo/repo', '/runner/temp'], [instance.certDir]],
    ['a parent of RUNNER_TEMP', ['/runner'], [instance.certDir]],
    ['the directory itself', [instance.certDir], [instance.certDir]],
    ['/', ['/'], [instance.certDir]],
    ['a trailing slash', ['/runner/temp/'], [instance.certDir]],
    ['a sibling whose name starts the same', ['/runner/tem', '/runner/temp2'], []],
    ['a directory inside it', [`${instance.certDir}/sub`], []]
  ])("the client's certificates are covered where a mount shows them: %s", (_name, targets, hidden) => {
    expect(hiddenPaths(instance.certDir, targets)).toEqual(hidden);
    const mounts = targets.map(target => ({ source: `/host${target}`, target }));
    expect(create({ mounts }).HostConfig.Tmpfs).toEqual(
      Object.fromEntries(hidden.map(hiddenPath => [hiddenPath, 'ro,size=4k']))
    );
  });

  test("the daemon's unix socket stays inside the container: nothing binds or publishes it", () => {
    const options = create({ dataDir: '/d', mounts: [{ source: '/w', target: '/w' }] });
    const { Cmd, ...rest } = options;
    expect(Cmd).toContain('--host=unix:///var/run/docker.sock');
    expect(JSON.stringify(rest)).not.toMatch(/docker\.sock|\/var\/run|"\/run/);
  });

  test.each<[string, Partial<ContainerSpec>]>([
    ['defaults, privileged', {}],
    ['unprivileged, with a flag', { privileged: false, dockerdArgs: ['--debug'] }],
    [
      'data directory, mounts and ports',
      {
        dataDir: '/runner/temp/data',
        mounts: [{ source: '/w', target: '/w' }],
        ports: [
          { host: 8080, container: 80 },
          { host: 2376, container: 5000 }
        ]
      }
    ]
  ])('2375 (the plain-text port) appears nowhere: %s', (_name, overrides) => {
    expect(JSON.stringify(create(overrides))).not.toContain('2375');
  });
});

describe('networkCreateOptions', () => {
  test('a labelled bridge network named after the instance', () => {
    expect(networkCreateOptions(instance)).toEqual({
      Name: 'setup-dind-dind-abcdef01',
      Driver: 'bridge',
      CheckDuplicate: true,
      Labels: { [INSTANCE_LABEL]: 'abcdef01' }
    });
  });
});

describe('publishedPort', () => {
  const inspected = (ports: unknown) =>
    ({ NetworkSettings: { Ports: ports } }) as unknown as Docker.ContainerInspectInfo;

  test.each([
    ['loopback binding', { '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '49153' }] }, 49153],
    [
      'loopback among others',
      {
        '2376/tcp': [
          { HostIp: '0.0.0.0', HostPort: '1111' },
          { HostIp: '127.0.0.1', HostPort: '32768' }
        ]
      },
      32768
    ],
    ['empty HostIp', { '2376/tcp': [{ HostIp: '', HostPort: '5555' }] }, 5555],
    [
      'other ports beside',
      {
        '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }],
        '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '40000' }]
      },
      40000
    ]
  ])('%s', (_name, ports, port) => {
    expect(publishedPort(inspected(ports))).toBe(port);
  });

  test.each([
    ['no Ports', undefined],
    ['empty Ports', {}],
    ['port not published (null)', { '2376/tcp': null }],
    ['no bindings', { '2376/tcp': [] }],
    ['only 2375 published', { '2375/tcp': [{ HostIp: '127.0.0.1', HostPort: '2375' }] }],
    [
      'only on all interfaces',
      {
        '2376/tcp': [
          { HostIp: '0.0.0.0', HostPort: '1111' },
          { HostIp: '::', HostPort: '1111' }
        ]
      }
    ]
  ])('%s: throws', (_name, ports) => {
    expect(() => publishedPort(inspected(ports))).toThrow("The engine did not publish the daemon's port 2376/tcp.");
  });
});

describe('demultiplex', () => {
  /** One frame of the Engine's stream format: [stream, 0, 0, 0, size (uint32 BE)] + payload. */
  const frame = (stream: 0 | 1 | 2, payload: string | Buffer) => {
    const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(body.length, 4);
    return Buffer.concat([header, body]);
  };
  const euro = Buffer.from('€', 'utf8');

  test.each<[string, Buffer, string]>([
    ['stdout only', frame(1, 'hello\n'), 'hello\n'],
    [
      'stdout and stderr, in order',
      Buffer.concat([frame(1, 'out 1\n'), frame(2, 'err 1\n'), frame(1, 'out 2\n')]),
      'out 1\nerr 1\nout 2\n'
    ],
    ['an empty frame', Buffer.concat([frame(1, ''), frame(2, 'x')]), 'x'],
    ['a frame larger than 255 bytes', frame(2, 'y'.repeat(70000)), 'y'.repeat(70000)],
    [
      'a character split across frames',
      Buffer.concat([frame(1, euro.subarray(0, 2)), frame(2, euro.subarray(2))]),
      '€'
    ],
    [
      'a raw (non-multiplexed) log',
      Buffer.from('time="2025-01-01" level=info msg="API listen on [::]:2376"\n'),
      'time="2025-01-01" level=info msg="API listen on [::]:2376"\n'
    ],
    ['a raw log shorter than a header', Buffer.from('hi'), 'hi'],
    ['nothing', Buffer.alloc(0), '']
  ])('%s', (_name, raw, text) => {
    expect(demultiplex(raw)).toBe(text);
  });
});

describe('diagnose', () => {
  const NO_DOCKERD = /no 'dockerd' on its PATH/;
  const NO_SH = /no \/bin\/sh/;
  const NEEDS_PRIVILEGED = /set 'privileged: true'/;
  const LACKS_PERMISSION = /lacks a permission.*sysbox/;
  const PORT_TAKEN = /port the daemon needs is taken/;
  const TLS = /TLS listener/;
  const STORAGE = /storage driver is not supported/;

  test.each<[string, string, boolean, RegExp | undefined]>([
    ['dockerd missing (exec)', 'exec: "dockerd": executable file not found in $PATH', true, NO_DOCKERD],
    ['dockerd missing (sh)', '/setup-dind/entrypoint.sh: exec: line 11: dockerd: not found', true, NO_DOCKERD],
    ['/bin/sh missing', 'exec /bin/sh: no such file or directory', true, NO_SH],
    ['unprivileged mount', 'mount: permission denied (are you root?)', false, NEEDS_PRIVILEGED],
    [
      'unprivileged iptables',
      'failed to start daemon: Error initializing network controller: iptables failed: operation not permitted',
      false,
      NEEDS_PRIVILEGED
    ],
    ['privileged but denied', 'mount: permission denied (are you root?)', true, LACKS_PERMISSION],
    ['port taken', 'failed to load listeners: listen tcp 0.0.0.0:2376: bind: address already in use', true, PORT_TAKEN],
    ['listener failure', 'failed to load listeners: could not load x509 key pair', true, TLS],
    ['bad certificate', 'http: TLS handshake error from 172.18.0.1:4242: tls: bad certificate', true, TLS],
    [
      'storage driver',
      'failed to start daemon: error initializing graphdriver: driver not supported: overlay2',
      true,
      STORAGE
    ],
    ['overlay unsupported', 'overlay2 is not supported over overlayfs', true, STORAGE],
    ['healthy log', 'level=info msg="API listen on [::]:2376"', true, undefined],
    ['empty log, privileged', '', true, undefined],
    ['empty log, unprivileged', '', false, NEEDS_PRIVILEGED],
    ['unknown failure, unprivileged', 'something odd happened', false, NEEDS_PRIVILEGED],
    [
      'an optional helper missing, unprivileged',
      'exec: "fuse-overlayfs": executable file not found in $PATH\nfailed to mount overlay: operation not permitted',
      false,
      NEEDS_PRIVILEGED
    ],
    [
      'hint found on a later line',
      'level=info msg="Starting up"\nexec: "dockerd": executable file not found in $PATH\n',
      true,
      NO_DOCKERD
    ]
  ])('%s', (_name, log, privileged, hint) => {
    const found = diagnose(log, privileged);
    if (hint === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(hint);
  });
});

interface ArchiveEntry {
  name: string;
  type: string;
  mode: number;
  content: string;
}

async function entriesOf(archive: Buffer): Promise<ArchiveEntry[]> {
  const extract = tar.extract();
  const entries: ArchiveEntry[] = [];
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', chunk => chunks.push(chunk as Buffer));
      stream.on('end', () => {
        entries.push({
          name: header.name,
          type: header.type ?? 'file',
          mode: header.mode ?? -1,
          content: Buffer.concat(chunks).toString('utf8')
        });
        next();
      });
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(archive);
  await done;
  return entries;
}

const CA_CERT = '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n';
const SERVER: KeyPair = {
  cert: '-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n',
  key: '-----BEGIN PRIVATE KEY-----\nSERVER KEY\n-----END PRIVATE KEY-----\n'
};
const CONFIG = {
  'registry-mirrors': ['https://mirror.example'],
  features: { 'containerd-snapshotter': true },
  mtu: 1400
};

function finder(entries: () => ArchiveEntry[]) {
  return (name: string) => {
    const found = entries().find(e => e.name === name);
    if (!found)
      throw new Error(
        `no ${name} in the archive: ${entries()
          .map(e => e.name)
          .join(', ')}`
      );
    return found;
  };
}

describe('setupArchive', () => {
  let entries: ArchiveEntry[];
  const entry = finder(() => entries);

  beforeAll(async () => {
    entries = await entriesOf(await setupArchive(CA_CERT, CONFIG));
  });

  test('holds exactly the setup directory, its certs directory and four files', () => {
    expect(entries.map(e => [e.name, e.type])).toEqual([
      ['setup-dind/', 'directory'],
      ['setup-dind/certs/', 'directory'],
      ['setup-dind/entrypoint.sh', 'file'],
      ['setup-dind/check-data.sh', 'file'],
      ['setup-dind/daemon.json', 'file'],
      ['setup-dind/certs/ca.pem', 'file']
    ]);
  });

  test('every directory comes before anything in it', () => {
    entries.forEach((e, index) => {
      const parent = e.name.replace(/\/$/, '').replace(/[^/]+$/, '');
      if (parent === '') return;
      const parentIndex = entries.findIndex(d => d.type === 'directory' && d.name === parent);
      expect(parentIndex).toBeGreaterThanOrEqual(0);
      expect(parentIndex).toBeLessThan(index);
    });
  });

  test.each([
    ['setup-dind/', 0o755],
    ['setup-dind/certs/', 0o755],
    ['setup-dind/entrypoint.sh', 0o755],
    ['setup-dind/check-data.sh', 0o755],
    ['setup-dind/daemon.json', 0o644],
    ['setup-dind/certs/ca.pem', 0o644]
  ])('%s has mode %o', (name, mode) => {
    expect(entry(name).mode & 0o7777).toBe(mode);
  });

  test('daemon.json is the config given', () => {
    const daemonJson = entry('setup-dind/daemon.json').content;
    expect(JSON.parse(daemonJson)).toEqual(CONFIG);
    expect(daemonJson.endsWith('\n')).toBe(true);
  });

  test('an empty config gives an empty daemon.json object', async () => {
    const empty = await entriesOf(await setupArchive(CA_CERT, {}));
    expect(
      JSON.parse(
        defined(
          empty.find(e => e.name === 'setup-dind/daemon.json'),
          'daemon.json'
        ).content
      )
    ).toEqual({});
  });

  test.each(['entrypoint.sh', 'check-data.sh'] as const)('the script %s is the one in src/', name => {
    const script = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'src', 'daemon', name), 'utf8');
    expect(setupScript(name)).toBe(script);
    expect(entry(`setup-dind/${name}`).content).toBe(script);
    expect(script.startsWith('#!/bin/sh\n')).toBe(true);
  });

  test('the CA certificate is the one given', () => {
    expect(entry('setup-dind/certs/ca.pem').content).toBe(CA_CERT);
  });

  test('the entrypoint runs the data check where the archive puts it', () => {
    expect(setupScript('entrypoint.sh')).toContain('sh /setup-dind/check-data.sh "$lib"');
  });

  test('no private key goes in before the container starts: no server key, no ready marker', () => {
    for (const e of entries) expect(e.content).not.toContain('PRIVATE KEY');
    expect(entries.map(e => e.name)).not.toEqual(expect.arrayContaining(['setup-dind/certs/server-key.pem']));
    expect(entries.map(e => e.name)).not.toEqual(expect.arrayContaining(['setup-dind/certs/ready']));
  });
});

describe('serverArchive', () => {
  let entries: ArchiveEntry[];
  const entry = finder(() => entries);

  beforeAll(async () => {
    entries = await entriesOf(await serverArchive(SERVER));
  });

  test('holds the server certificate, its key, then the ready marker last', () => {
    expect(entries.map(e => [e.name, e.type])).toEqual([
      ['setup-dind/certs/server-cert.pem', 'file'],
      ['setup-dind/certs/server-key.pem', 'file'],
      ['setup-dind/certs/ready', 'file']
    ]);
  });

  test.each([
    ['setup-dind/certs/server-cert.pem', 0o644],
    ['setup-dind/certs/server-key.pem', 0o600],
    ['setup-dind/certs/ready', 0o644]
  ])('%s has mode %o', (name, mode) => {
    expect(entry(name).mode & 0o7777).toBe(mode);
  });

  test.each<[string, () => string]>([
    ['setup-dind/certs/server-cert.pem', () => SERVER.cert],
    ['setup-dind/certs/server-key.pem', () => SERVER.key],
    ['setup-dind/certs/ready', () => '']
  ])('%s holds what was given', (name, content) => {
    expect(entry(name).content).toBe(content());
  });

  test('writes only into the certs directory the setup archive made', async () => {
    const setupDirs = (await entriesOf(await setupArchive(CA_CERT, {})))
      .filter(e => e.type === 'directory')
      .map(e => e.name);
    for (const e of entries) expect(setupDirs).toContain(e.name.replace(/[^/]+$/, ''));
  });

  test('the entrypoint waits for exactly this marker before it runs dockerd', () => {
    const script = setupScript('entrypoint.sh');
    const marker = '/' + entries[entries.length - 1].name;
    const wait = script.indexOf(`while [ ! -e ${marker} ]`);
    expect(wait).toBeGreaterThan(0);
    // Every way to dockerd goes through run(), which waits first.
    const run = script.indexOf('run() {');
    expect(script.indexOf('await_certificate', run)).toBeGreaterThan(run);
    expect(script.indexOf('"$@" &', run)).toBeGreaterThan(script.indexOf('await_certificate', run));
    expect(script.match(/exec "\$@"/g)).toBeNull();
  });
});

test('every path the container is created with is in the setup or the server archive', async () => {
  const options = containerCreateOptions({
    instance,
    image: 'docker:28-dind',
    privileged: true,
    dockerdArgs: [],
    mounts: [],
    ports: []
  });
  const archived = [
    ...(await entriesOf(await setupArchive(CA_CERT, {}))),
    ...(await entriesOf(await serverArchive(SERVER)))
  ];
  const paths = [
    (options.Entrypoint as string[])[1],
    ...(options.Cmd ?? [])
      .filter(word => /^--(tlscacert|tlscert|tlskey|config-file)=/.test(word))
      .map(word => word.split('=')[1])
  ];
  expect(paths).toHaveLength(5);
  for (const file of paths) expect(archived.filter(e => e.name === file.slice(1) && e.type === 'file')).toHaveLength(1);
});

describe('waitForDaemon', () => {
  // TLS handshakes on a busy 2-core machine: generous time per test (nothing asserts on it).
  jest.setTimeout(30_000);
  // A stand-in daemon on loopback, mutual TLS as dockerd's: each new TCP connection is answered, reset
  // (as the engine's port proxy does while nothing listens behind it) or held (dockerd bound but not yet serving).
  type Behaviour = 'answer' | 'reset' | 'hold';
  const STEADY = { steadyMs: 300, intervalMs: 20 };
  let tlsFiles: { ca: string; server: KeyPair; client: KeyPair };
  let behave: (connection: number) => Behaviour;
  let connections: Array<{ at: number; behaviour: Behaviour }>;
  let requests: Array<{ at: number; path: string }>;
  let tcp: net.Server;
  let port: number;

  beforeAll(async () => {
    const authority = await createAuthority(1);
    tlsFiles = {
      ca: authority.caCert,
      server: await authority.issueServer({ dns: ['localhost'], ip: ['127.0.0.1'] }),
      client: await authority.issueClient()
    };
  });

  beforeEach(async () => {
    connections = [];
    requests = [];
    behave = () => 'answer';
    const daemon = https.createServer(
      {
        ca: tlsFiles.ca,
        cert: tlsFiles.server.cert,
        key: tlsFiles.server.key,
        requestCert: true,
        rejectUnauthorized: true
      },
      (request, response) => {
        requests.push({ at: Date.now(), path: request.url ?? '' });
        if (request.url?.endsWith('/version')) response.end(JSON.stringify({ Version: '26.1.5' }));
        else response.end('OK');
      }
    );
    tcp = net.createServer(socket => {
      const behaviour = behave(connections.length);
      connections.push({ at: Date.now(), behaviour });
      if (behaviour === 'reset') socket.resetAndDestroy();
      else if (behaviour === 'answer') daemon.emit('connection', socket);
      else setTimeout(() => daemon.emit('connection', socket), 400);
    });
    await new Promise<void>(resolve => tcp.listen(0, '127.0.0.1', resolve));
    port = (tcp.address() as net.AddressInfo).port;
  });

  afterEach(async () => {
    await new Promise(resolve => tcp.close(resolve));
  });

  const endpoint = () => ({
    host: '127.0.0.1',
    port,
    ca: tlsFiles.ca,
    cert: tlsFiles.client.cert,
    key: tlsFiles.client.key
  });
  const container = (running: () => boolean = () => true) =>
    ({
      inspect: async () => ({ State: { Running: running(), ExitCode: 1, Error: '' } })
    }) as unknown as Docker.Container;
  const answered = () => requests.filter(r => r.path.endsWith('/_ping') || r.path.endsWith('/version'));

  test('a daemon that answers at once is ready after it has kept answering for the steady period, each time on a new connection', async () => {
    await expect(waitForDaemon(endpoint(), container(), 10_000, STEADY)).resolves.toBe('26.1.5');
    const ready = Date.now();
    // Measured to the moment it said ready, on the same clock as the server's: the server sees each
    // request before the client sees its answer, so the gap between two requests may be a little shorter.
    expect(ready - answered()[0].at).toBeGreaterThanOrEqual(STEADY.steadyMs);
    // No keep-alive: as many connections as requests, as each later CLI call connects anew.
    expect(connections).toHaveLength(requests.length);
    expect(requests.length).toBeGreaterThanOrEqual(3);
  });

  test('resets before the daemon listens, then answers: ready', async () => {
    behave = n => (n < 5 ? 'reset' : 'answer');
    await expect(waitForDaemon(endpoint(), container(), 10_000, STEADY)).resolves.toBe('26.1.5');
    expect(connections.slice(0, 5).every(c => c.behaviour === 'reset')).toBe(true);
  });

  test('a ping held while the daemon starts gets the time left, not a short timeout', async () => {
    behave = n => (n === 0 ? 'hold' : 'answer');
    await expect(waitForDaemon(endpoint(), container(), 10_000, STEADY)).resolves.toBe('26.1.5');
    expect(connections[0].behaviour).toBe('hold');
  });

  test('answers once, then resets for a while: not ready until it has answered without a failure for the steady period', async () => {
    // Connection 0 answers the ping, 1 the version; then 300 ms of resets, then answers again.
    let flapUntil = 0;
    behave = n => {
      if (n < 2) return 'answer';
      if (n === 2) flapUntil = Date.now() + 300;
      return Date.now() < flapUntil ? 'reset' : 'answer';
    };
    await expect(waitForDaemon(endpoint(), container(), 10_000, STEADY)).resolves.toBe('26.1.5');
    const ready = Date.now();
    const lastReset = Math.max(...connections.filter(c => c.behaviour === 'reset').map(c => c.at));
    expect(connections.some(c => c.behaviour === 'reset')).toBe(true);
    // Ready only after a whole steady period of answers that began after the last reset.
    expect(answered().filter(r => r.at > lastReset).length).toBeGreaterThanOrEqual(2);
    expect(ready - lastReset).toBeGreaterThanOrEqual(STEADY.steadyMs);
  });

  test('answers once, then resets until the timeout: not ready, and the error says it answered but not steadily', async () => {
    behave = n => (n < 2 ? 'answer' : 'reset');
    // Long enough for resets after the answer even when the machine is busy (each attempt is a TLS handshake).
    const waited = waitForDaemon(endpoint(), container(), 3_000, STEADY);
    await expect(waited).rejects.toBeInstanceOf(DaemonNotReadyError);
    await expect(waited).rejects.toThrow(
      /^The daemon did not answer within 3 s without a failure for 0\.3 s \(last error: .*ECONNRESET.*\)\.$/
    );
  });

  test('never answers: the timeout error as before', async () => {
    behave = () => 'reset';
    await expect(waitForDaemon(endpoint(), container(), 500, STEADY)).rejects.toThrow(
      /^The daemon did not answer within 0\.5 s \(last error: [^)]*\)\.$/
    );
  });

  test('a container that stopped fails at once', async () => {
    behave = () => 'reset';
    const started = Date.now();
    await expect(
      waitForDaemon(
        endpoint(),
        container(() => false),
        10_000,
        STEADY
      )
    ).rejects.toThrow(/The dind container stopped \(exit code 1\) before its daemon answered/);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  test('the steady period by default: a quarter of a second, five fresh connections', () => {
    expect(READY_STEADINESS).toEqual({ steadyMs: 250, intervalMs: 50 });
  });
});

describe('restoredWaitMs: what a daemon on a restored state may take of the wait-timeout', () => {
  test.each([
    [60_000, 40_000],
    [120_000, 100_000],
    [30_000, 15_000],
    [10_000, 5_000],
    [0, 0]
  ])('of %p ms: %p ms, the rest kept for a cold start', (waitTimeoutMs, expected) => {
    expect(restoredWaitMs(waitTimeoutMs)).toBe(expected);
  });
});

describe('coldWaitMs: what the cold start that replaces a restored state may take of the wait-timeout', () => {
  test.each([
    ['the restored daemon exited at once: nearly all of it', 60_000, 2_000, 58_000],
    ['the restored daemon took its whole share: the rest', 60_000, 40_000, 20_000],
    ['replacing it took time too: never less than the reserve', 60_000, 45_000, 20_000],
    ['a long wait-timeout: the reserve is at most 20 s', 300_000, 290_000, 20_000],
    ['a short wait-timeout: half of it', 10_000, 9_000, 5_000]
  ])('%s (of %p ms, %p ms gone): %p ms', (_, waitTimeoutMs, elapsedMs, expected) => {
    expect(coldWaitMs(waitTimeoutMs, elapsedMs)).toBe(expected);
  });
});

describe("lastLogLine: dockerd's last words", () => {
  test.each([
    [
      'the last line, whatever came before',
      'time="x" level=info msg="starting"\nfailed to start daemon: unexpected EOF\n',
      'failed to start daemon: unexpected EOF'
    ],
    ['trailing blank lines and spaces skipped', 'first\n  second  \n\n\n', 'second'],
    ['an empty log', '', ''],
    ['a long line, bounded', 'x'.repeat(1000), `${'x'.repeat(300)}…`]
  ])('%s', (_, log, expected) => {
    expect(lastLogLine(log)).toBe(expected);
  });
});
