// The buildx builder's name, the `docker buildx create` command line main runs, and the buildkitd.toml
// it gives the builder.
import { parse } from 'smol-toml';
import { builderCreateArgs, builderName, buildkitdConfig } from '../../../src/handover/buildx';
import { newInstance } from '../../../src/daemon/instance';

describe('builderCreateArgs', () => {
  test.each([
    [
      { name: 'setup-dind-dind-abcdef01', context: 'dind', image: 'moby/buildkit:v0.32.2' },
      [
        'buildx',
        'create',
        '--name',
        'setup-dind-dind-abcdef01',
        '--driver',
        'docker-container',
        '--driver-opt',
        'image=moby/buildkit:v0.32.2',
        '--bootstrap',
        'dind'
      ]
    ],
    [
      {
        name: 'setup-dind-b-00000000',
        context: 'dind-00000000',
        image: 'mirror.example:5000/moby/buildkit@sha256:' + 'ab'.repeat(32)
      },
      [
        'buildx',
        'create',
        '--name',
        'setup-dind-b-00000000',
        '--driver',
        'docker-container',
        '--driver-opt',
        `image=mirror.example:5000/moby/buildkit@sha256:${'ab'.repeat(32)}`,
        '--bootstrap',
        'dind-00000000'
      ]
    ]
  ])('%o', (request, args) => {
    expect(builderCreateArgs(request)).toEqual(args);
  });

  test('a config file goes in as --buildkitd-config, before the context', () => {
    expect(builderCreateArgs({ name: 'n', context: 'ctx', image: 'i' }, '/tmp/x/buildkitd.toml')).toEqual([
      'buildx',
      'create',
      '--name',
      'n',
      '--driver',
      'docker-container',
      '--driver-opt',
      'image=i',
      '--buildkitd-config',
      '/tmp/x/buildkitd.toml',
      '--bootstrap',
      'ctx'
    ]);
  });

  test.each([undefined, '/tmp/x/buildkitd.toml'])(
    'the context is the one positional argument, last: buildx takes it as the endpoint (config file %p)',
    configFile => {
      const args = builderCreateArgs({ name: 'n', context: 'ctx', image: 'i' }, configFile);
      const flagsWithValues = ['--name', '--driver', '--driver-opt', '--buildkitd-config'];
      const positional = args
        .slice(2)
        .filter((word, i, words) => !word.startsWith('--') && !flagsWithValues.includes(words[i - 1]));
      expect(positional).toEqual(['ctx']);
      expect(args[args.length - 1]).toBe('ctx');
    }
  );
});

describe('buildkitdConfig', () => {
  test.each<[string, Record<string, unknown>, Record<string, unknown>, Record<string, unknown> | undefined, string[]]>([
    ['nothing to set: no file', {}, {}, undefined, []],
    ['other daemon.json settings play no part', { mtu: 1400, debug: true }, {}, undefined, []],
    [
      'mirrors: host[:port][/path] for docker.io, in order, once each',
      {
        'registry-mirrors': [
          'https://mirror.gcr.io',
          'https://harbor.example:8443/proxy.docker.io/',
          'https://mirror.gcr.io/'
        ]
      },
      {},
      { registry: { 'docker.io': { mirrors: ['mirror.gcr.io', 'harbor.example:8443/proxy.docker.io'] } } },
      []
    ],
    [
      'an http:// mirror: its host is reached over plain HTTP',
      { 'registry-mirrors': ['http://10.0.0.5:5000'] },
      {},
      { registry: { 'docker.io': { mirrors: ['10.0.0.5:5000'] }, '10.0.0.5:5000': { http: true } } },
      []
    ],
    [
      'insecure registries: HTTPS without verification, then HTTP; CIDRs are not hosts',
      { 'insecure-registries': ['registry.local:5000', '10.1.0.0/16', 'fd00::/8', 'http://r2.local/'] },
      {},
      {
        registry: {
          'registry.local:5000': { http: true, insecure: true },
          'r2.local': { http: true, insecure: true }
        }
      },
      ['10.1.0.0/16', 'fd00::/8']
    ],
    [
      'a mirror that is also insecure: one table',
      { 'registry-mirrors': ['http://m.local:5000'], 'insecure-registries': ['m.local:5000'] },
      {},
      { registry: { 'docker.io': { mirrors: ['m.local:5000'] }, 'm.local:5000': { http: true, insecure: true } } },
      []
    ],
    [
      'what daemon.json holds that is not a mirror URL is left out, and said',
      { 'registry-mirrors': ['mirror.gcr.io', 'ftp://m.example', 42], 'insecure-registries': 'r.local' },
      {},
      undefined,
      ['mirror.gcr.io', 'ftp://m.example']
    ],
    [
      "the user's text alone, kept as given",
      {},
      { debug: true, worker: { oci: { 'max-parallelism': 4 } } },
      { debug: true, worker: { oci: { 'max-parallelism': 4 } } },
      []
    ],
    [
      "the user's registry table replaces the action's for that registry; the others stay",
      { 'registry-mirrors': ['https://mirror.gcr.io'], 'insecure-registries': ['r.local:5000'] },
      { debug: true, registry: { 'docker.io': { mirrors: ['own.example'] }, 'ghcr.io': { mirrors: ['g.example'] } } },
      {
        debug: true,
        registry: {
          'docker.io': { mirrors: ['own.example'] },
          'r.local:5000': { http: true, insecure: true },
          'ghcr.io': { mirrors: ['g.example'] }
        }
      },
      []
    ],
    [
      "a user's table without mirrors still replaces the action's: what the user writes for a registry is what BuildKit gets",
      { 'registry-mirrors': ['https://mirror.gcr.io'] },
      { registry: { 'docker.io': { 'ca-certs': ['/etc/ca.pem'] } } },
      { registry: { 'docker.io': { 'ca-certs': ['/etc/ca.pem'] } } },
      []
    ]
  ])('%s', (_name, daemonJson, inline, expected, skipped) => {
    const config = buildkitdConfig(daemonJson, inline);
    expect(config.toml === undefined ? undefined : parse(config.toml)).toEqual(expected);
    expect(config.skipped).toEqual(skipped);
  });

  test('the text is the TOML buildkitd reads: quoted registry names as table headers', () => {
    const { toml } = buildkitdConfig(
      { 'registry-mirrors': ['https://mirror.gcr.io'], 'insecure-registries': ['r.local:5000'] },
      {}
    );
    expect(toml).toContain('[registry."docker.io"]\nmirrors = [ "mirror.gcr.io" ]');
    expect(toml).toContain('[registry."r.local:5000"]\nhttp = true\ninsecure = true');
  });
});

describe('builderName', () => {
  test.each([
    ['dind', 'abcdef01', 'setup-dind-dind-abcdef01'],
    ['My.DinD_2', '0a1b2c3d', 'setup-dind-my.dind_2-0a1b2c3d']
  ])('instance %p (%s) → %p', (name, id, builder) => {
    expect(builderName(newInstance(name, '/tmp', id))).toBe(builder);
  });

  test('is a name buildx accepts as given, and differs between instances of one name', () => {
    const [a, b] = [newInstance('dind', '/tmp', 'aaaaaaaa'), newInstance('dind', '/tmp', 'bbbbbbbb')];
    expect(builderName(a)).toMatch(/^[a-z][a-z0-9._-]*$/);
    expect(builderName(a)).not.toBe(builderName(b));
  });
});
