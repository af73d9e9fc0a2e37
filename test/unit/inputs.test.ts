// getInputs() against tables of input maps. Defaults come from action.yml itself, so the test breaks
// when action.yml and the parser drift apart.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { Outputs } from '../../src/runner/contract';
import { daemonConfig, type PortMapping } from '../../src/daemon/container';
import {
  getInputs,
  getJobStatus,
  InputError,
  parseCacheDir,
  parseList,
  parseMounts,
  parseMtu,
  parsePorts,
  splitShellWords,
  type ActionInputs
} from '../../src/inputs';
import { DEFAULT_IMAGE } from '../../src/daemon/facts';
import { DEFAULT_BUILDX_IMAGE } from '../../src/handover/buildx';

interface Manifest {
  inputs: Record<string, { description: string; default?: string | number | boolean }>;
  outputs: Record<string, { description: string }>;
}

const manifest = parse(fs.readFileSync(path.join(__dirname, '..', '..', 'action.yml'), 'utf8')) as Manifest;
// The runner passes every default as a string (INPUT_* variables); an absent default is ''.
const DEFAULTS: Record<string, string> = Object.fromEntries(
  Object.entries(manifest.inputs).map(([name, spec]) => [name, spec.default === undefined ? '' : String(spec.default)])
);

/** A reader as the runner would give it: action.yml's defaults, overridden by `with:` values. */
function reader(overrides: Record<string, string> = {}, seen: string[] = []): (name: string) => string {
  for (const name of Object.keys(overrides)) {
    if (!(name in DEFAULTS)) throw new Error(`test error: '${name}' is not an input in action.yml`);
  }
  const values = { ...DEFAULTS, ...overrides };
  return name => {
    if (!(name in DEFAULTS)) throw new Error(`getInputs read '${name}', which action.yml does not declare`);
    seen.push(name);
    return values[name];
  };
}

function inputsWith(overrides: Record<string, string>): ActionInputs {
  return getInputs(reader(overrides));
}

/** The problems getInputs reports; fails the test when it accepts the inputs. */
function problemsWith(overrides: Record<string, string>): string[] {
  try {
    getInputs(reader(overrides));
  } catch (error) {
    if (error instanceof InputError) return error.problems;
    throw error;
  }
  throw new Error(`getInputs accepted ${JSON.stringify(overrides)}`);
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const DIGEST = 'sha256:' + 'a1b2c3d4e5f6a7b8'.repeat(4);

describe('defaults from action.yml', () => {
  test('action.yml declares every input the parser knows, with a default the parser accepts', () => {
    expect(getInputs(reader())).toEqual<ActionInputs>({
      image: 'docker:28-dind',
      name: 'dind',
      pull: 'missing',
      dockerdArgs: [],
      daemonConfig: {},
      waitTimeoutSeconds: 60,
      privileged: true,
      setEnv: true,
      context: 'dind',
      cache: true,
      cacheKey: '',
      cacheSave: 'on-change',
      cacheMaxSizeBytes: 4 * GiB,
      cacheEvictAfterMs: 7 * 86_400_000,
      cacheDir: undefined,
      cacheDirMaxSizeBytes: 20 * 2 ** 30,
      mounts: undefined,
      ports: [],
      mtu: undefined,
      registryMirrors: [],
      insecureRegistries: [],
      swarm: false,
      buildx: false,
      buildxDriver: 'docker-container',
      buildxImage: 'moby/buildkit:v0.32.2',
      buildkitdConfig: {}
    });
  });

  test('the optional inputs are absent by default: default mounts, the runner MTU', () => {
    const inputs = getInputs(reader());
    // toEqual above does not tell an absent property from an undefined one.
    expect(inputs.mounts).toBeUndefined();
    expect(inputs.mtu).toBeUndefined();
  });

  test("getInputs reads every input of action.yml but post's, and only those", () => {
    const seen: string[] = [];
    getInputs(reader({}, seen));
    expect([...new Set(seen)].sort()).toEqual(
      Object.keys(manifest.inputs)
        .filter(name => name !== 'job-status')
        .sort()
    );
  });

  test("post's job-status: the runner evaluates `${{ job.status }}` for post itself; read as given, trimmed", () => {
    expect(DEFAULTS['job-status']).toBe('${{ job.status }}');
    const seen: string[] = [];
    expect(getJobStatus(reader({ 'job-status': ' failure\n' }, seen))).toBe('failure');
    expect(seen).toEqual(['job-status']);
  });

  test("the image default is the code's DEFAULT_IMAGE", () => {
    expect(DEFAULTS.image).toBe(DEFAULT_IMAGE);
  });

  test("the buildx-image default is the code's DEFAULT_BUILDX_IMAGE, a pinned BuildKit release", () => {
    expect(DEFAULTS['buildx-image']).toBe(DEFAULT_BUILDX_IMAGE);
    expect(DEFAULT_BUILDX_IMAGE).toMatch(/^moby\/buildkit:v\d+\.\d+\.\d+$/);
  });

  test.each([
    'mounts',
    'ports',
    'mtu',
    'registry-mirrors',
    'insecure-registries',
    'swarm',
    'buildx',
    'buildx-driver',
    'buildx-image',
    'buildkitd-config-inline'
  ])('action.yml declares the input %p, with a description', name => {
    expect(manifest.inputs[name]?.description).toEqual(expect.any(String));
  });
});

describe('outputs in action.yml', () => {
  test('action.yml declares every output the code sets, and only those', () => {
    expect(Object.keys(manifest.outputs).sort()).toEqual(Object.values(Outputs).sort());
  });

  test.each([
    'host',
    'cert-path',
    'container-id',
    'context',
    'version',
    'ip',
    'cache-hit',
    'cache-key',
    'cache-size',
    'builder'
  ])('%p is declared, with a description', name => {
    expect(manifest.outputs[name]?.description).toEqual(expect.any(String));
  });
});

describe.each([
  { input: 'pull', property: 'pull', allowed: ['missing', 'always', 'never'] },
  { input: 'cache-save', property: 'cacheSave', allowed: ['on-change', 'on-success', 'always', 'never'] },
  { input: 'buildx-driver', property: 'buildxDriver', allowed: ['docker-container', 'docker'] }
] as const)('enum input $input', ({ input, property, allowed }) => {
  test.each(allowed)('accepts %p', value => {
    expect(inputsWith({ [input]: value })[property]).toBe(value);
  });

  test('action.yml documents exactly these values', () => {
    const documented = [...manifest.inputs[input].description.matchAll(/`([a-z-]+)`/g)]
      .map(match => match[1])
      .filter(word => word !== 'image');
    expect(documented.sort()).toEqual([...allowed].sort());
  });

  test.each(['sometimes', 'Always', 'MISSING', 'never ever', 'on_change'])(
    'refuses %p, naming the input and the allowed values',
    value => {
      const problems = problemsWith({ [input]: value });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain(`'${input}'`);
      expect(problems[0]).toContain(`'${value}'`);
      for (const choice of allowed) expect(problems[0]).toContain(choice);
    }
  );

  test('refuses an empty value as missing', () => {
    expect(problemsWith({ [input]: '  ' })).toEqual([`Input '${input}' is required.`]);
  });
});

describe.each([
  { input: 'privileged', property: 'privileged' },
  { input: 'set-env', property: 'setEnv' },
  { input: 'cache', property: 'cache' },
  { input: 'swarm', property: 'swarm' },
  { input: 'buildx', property: 'buildx' }
] as const)('boolean input $input', ({ input, property }) => {
  test.each([
    ['true', true],
    ['True', true],
    ['TRUE', true],
    ['false', false],
    ['False', false],
    [' false ', false]
  ])('%p is %p', (raw, expected) => {
    expect(inputsWith({ [input]: raw })[property]).toBe(expected);
  });

  test.each(['yes', '1', 'on', 'tRuE', ''])('refuses %p', raw => {
    const problems = problemsWith({ [input]: raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`'${input}'`);
  });
});

describe('wait-timeout', () => {
  test.each([
    ['60', 60],
    ['1', 1],
    ['0.5', 0.5],
    [' 30 ', 30],
    ['600', 600]
  ])('%p is %p seconds', (raw, seconds) => {
    expect(inputsWith({ 'wait-timeout': raw }).waitTimeoutSeconds).toBe(seconds);
  });

  test.each(['abc', '-5', '-0.5', '0', '0.0', '1e3', '10s', '1,5', 'NaN', 'Infinity', ''])('refuses %p', raw => {
    const problems = problemsWith({ 'wait-timeout': raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Input 'wait-timeout' (must be a positive number of seconds|is required)/);
  });
});

describe('cache-max-size', () => {
  test.each([
    ['4g', 4 * GiB],
    ['4G', 4 * GiB],
    ['4gb', 4 * GiB],
    ['4GiB', 4 * GiB],
    ['500m', 500 * MiB],
    ['500M', 500 * MiB],
    ['1.5GiB', 1.5 * GiB],
    ['1.5g', 1.5 * GiB],
    ['10 MiB', 10 * MiB],
    ['1k', 1024],
    ['0.5k', 512],
    ['2t', 2 * 2 ** 40],
    ['1024', 1024],
    ['1024b', 1024],
    ['1073741824', GiB]
  ])('%p is %p bytes', (raw, bytes) => {
    expect(inputsWith({ 'cache-max-size': raw }).cacheMaxSizeBytes).toBe(bytes);
  });

  test.each(['0', '0g', '-1', '-4g', 'big', '4x', '4 g b', 'g', '1.5.2g', '0.1', '4p', '', '4 gigabytes'])(
    'refuses %p',
    raw => {
      const problems = problemsWith({ 'cache-max-size': raw });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^Input 'cache-max-size' (must be a size|is required)/);
    }
  );
});

describe('cache-evict-after', () => {
  const DAY = 86_400_000;
  test.each<[string, number | undefined]>([
    ['7d', 7 * DAY],
    ['7D', 7 * DAY],
    ['2w', 14 * DAY],
    ['12h', DAY / 2],
    ['1.5d', 1.5 * DAY],
    ['30m', 1_800_000],
    ['90s', 90_000],
    ['0', 0],
    ['never', undefined],
    ['Never', undefined]
  ])('%p is %p ms', (raw, ms) => {
    expect(inputsWith({ 'cache-evict-after': raw }).cacheEvictAfterMs).toBe(ms);
  });

  test('defaults to a week', () => {
    expect(inputsWith({}).cacheEvictAfterMs).toBe(7 * DAY);
  });

  test.each(['', '7', '-1d', '0d', 'd', '7 days', '1y', 'forever', '1e3s', '0.0'])('refuses %p', raw => {
    const problems = problemsWith({ 'cache-evict-after': raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^Input 'cache-evict-after' (must be a duration such as 7d, 12h, 30m or 2w, 0 \(drop what this job did not use\) or never; got|is required)/
    );
  });
});

describe('image', () => {
  test.each([
    'docker:28-dind',
    'docker',
    'docker:dind-rootless',
    'library/docker:28.1.1-dind',
    'registry:5000/a/b:tag',
    'localhost:5000/dind',
    'registry.example.com/team/dind:1.2',
    'ghcr.io/owner/my_image-v2:latest',
    `x@${DIGEST}`,
    `docker:28-dind@${DIGEST}`
  ])('accepts %p', image => {
    expect(inputsWith({ image }).image).toBe(image);
  });

  test.each([
    'Docker:dind',
    'docker/Dind',
    'a b',
    'docker:',
    ':28-dind',
    'docker:-dind',
    '/docker',
    'docker/',
    'a//b',
    'https://registry.example.com/dind',
    'x@sha256:abc',
    `x@${DIGEST.toUpperCase()}`,
    `docker:${'t'.repeat(129)}`
  ])('refuses %p', image => {
    const problems = problemsWith({ image });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("Input 'image' is not a valid image reference");
  });

  test("refuses '' as missing", () => {
    expect(problemsWith({ image: '' })).toEqual(["Input 'image' is required."]);
  });
});

describe('buildx-image', () => {
  test.each([
    'moby/buildkit:v0.32.2',
    'moby/buildkit:buildx-stable-1',
    'mirror.example:5000/moby/buildkit:master',
    `moby/buildkit@${DIGEST}`
  ])('accepts %p', image => {
    expect(inputsWith({ 'buildx-image': image }).buildxImage).toBe(image);
  });

  test.each(['moby/BuildKit', 'moby/buildkit:', 'https://ghcr.io/x'])('refuses %p, naming buildx-image', image => {
    expect(problemsWith({ 'buildx-image': image })).toEqual([
      expect.stringMatching(/^Input 'buildx-image' is not a valid image reference/)
    ]);
  });
});

describe('buildx with the other inputs', () => {
  test.each<[string, Record<string, string>, Partial<ActionInputs>]>([
    [
      'the docker-container driver on the default context',
      { buildx: 'true' },
      { buildx: true, buildxDriver: 'docker-container', context: 'dind' }
    ],
    [
      'the docker driver without a context: it goes through DOCKER_HOST',
      { buildx: 'true', 'buildx-driver': 'docker', context: '' },
      { buildx: true, buildxDriver: 'docker', context: '' }
    ],
    [
      'buildx off: no context and no DOCKER_HOST are fine',
      { context: '', 'set-env': 'false', 'buildx-driver': 'docker' },
      { buildx: false }
    ]
  ])('accepts %s', (_name, overrides, expected) => {
    expect(inputsWith(overrides)).toMatchObject(expected);
  });

  test.each<[string, Record<string, string>, string[]]>([
    ['the docker-container driver with an empty context', { buildx: 'true', context: '' }, ['buildx', 'context']],
    [
      'the docker-container driver with a blank context',
      { buildx: 'true', 'buildx-driver': 'docker-container', context: '  ' },
      ['buildx', 'context']
    ],
    [
      'the docker driver without DOCKER_HOST',
      { buildx: 'true', 'buildx-driver': 'docker', 'set-env': 'false' },
      ['buildx-driver', 'set-env']
    ]
  ])('refuses %s, naming the inputs and what would do', (_name, overrides, named) => {
    const problems = problemsWith(overrides);
    expect(problems).toHaveLength(1);
    for (const input of named) expect(problems[0]).toContain(`'${input}'`);
    expect(problems[0]).toMatch(/Set '|Give '/);
  });
});

describe('buildkitd-config-inline', () => {
  test.each<[string, string, Record<string, unknown>]>([
    ['empty', '  \n', {}],
    [
      'registries and other settings',
      'debug = true\n[registry."docker.io"]\nmirrors = ["mirror.gcr.io"]\n[registry."r.local:5000"]\nhttp = true\n',
      { debug: true, registry: { 'docker.io': { mirrors: ['mirror.gcr.io'] }, 'r.local:5000': { http: true } } }
    ],
    [
      'dotted keys',
      'registry."docker.io".mirrors = ["m.example"]',
      { registry: { 'docker.io': { mirrors: ['m.example'] } } }
    ],
    ['no registry', '[worker.oci]\nmax-parallelism = 4\n', { worker: { oci: { 'max-parallelism': 4 } } }]
  ])('accepts %s, parsed', (_name, text, config) => {
    expect(inputsWith({ buildx: 'true', 'buildkitd-config-inline': text }).buildkitdConfig).toEqual(config);
  });

  test.each<[string, string, RegExp]>([
    [
      'not TOML',
      '[registry."docker.io"\nmirrors = 1',
      /^Input 'buildkitd-config-inline' is not valid TOML: .+\. It takes the text of a buildkitd\.toml/
    ],
    ['a key given twice', 'debug = true\ndebug = false', /^Input 'buildkitd-config-inline' is not valid TOML: /],
    [
      'registry not a table',
      'registry = "docker.io"',
      /^Input 'buildkitd-config-inline': 'registry' must hold one table per registry .*got 'registry'\.$/
    ],
    [
      'a registry not a table',
      'registry = { "docker.io" = ["m"] }',
      /^Input 'buildkitd-config-inline': 'registry' must hold one table per registry .*got 'docker\.io'\.$/
    ]
  ])('refuses %s, naming the input', (_name, text, message) => {
    expect(problemsWith({ buildx: 'true', 'buildkitd-config-inline': text })).toEqual([expect.stringMatching(message)]);
  });

  test.each<[string, Record<string, string>, string[]]>([
    ['without buildx', {}, ['buildkitd-config-inline', 'buildx']],
    [
      'with the docker driver',
      { buildx: 'true', 'buildx-driver': 'docker' },
      ['buildkitd-config-inline', 'buildx-driver']
    ]
  ])('refuses it %s: nothing would read it', (_name, overrides, named) => {
    const problems = problemsWith({ ...overrides, 'buildkitd-config-inline': 'debug = true' });
    expect(problems).toHaveLength(1);
    for (const input of named) expect(problems[0]).toContain(`'${input}'`);
    expect(problems[0]).toMatch(/Remove it, or set '/);
  });
});

describe('name', () => {
  test.each(['dind', 'DinD', 'a', '1st', 'my-dind_1.test', 'n'.repeat(63)])('accepts %p', name => {
    expect(inputsWith({ name }).name).toBe(name);
  });

  test.each(['', '-dind', '.dind', '_dind', 'a b', 'dind/x', 'dind!', 'dïnd', 'n'.repeat(64)])('refuses %p', name => {
    const problems = problemsWith({ name });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Input 'name' /);
  });
});

describe('context', () => {
  test.each([
    ['', ''],
    ['   ', ''],
    ['dind', 'dind'],
    ['my-ctx_1.2+x', 'my-ctx_1.2+x'],
    [' ctx ', 'ctx'],
    ['ab', 'ab'],
    ['1-', '1-'],
    ['a.', 'a.']
  ])('%p gives context %p', (raw, context) => {
    expect(inputsWith({ context: raw }).context).toBe(context);
  });

  test("refuses 'default', the Docker CLI's own context", () => {
    expect(problemsWith({ context: 'default' })).toEqual([
      expect.stringMatching(/^Input 'context' cannot be 'default'/)
    ]);
  });

  // The Docker CLI's rule, ^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$: `docker context create a` fails.
  test.each(['a', '1', ' a ', '-ctx', 'a b', 'ctx/x', '.ctx', '+x', 'ctx!', 'cöntext'])(
    'refuses %p, stating the rule',
    context => {
      expect(problemsWith({ context })).toEqual([
        `Input 'context' may contain only letters, digits, _ . + - (at least two characters, starting with a letter or digit), or be empty for no context; got '${context.trim()}'.`
      ]);
    }
  );
});

describe('daemon-config', () => {
  test.each([
    ['', {}],
    ['  ', {}],
    ['{}', {}],
    ['{"registry-mirrors":["https://mirror.example"]}', { 'registry-mirrors': ['https://mirror.example'] }],
    [
      ' {"features":{"containerd-snapshotter":true},"debug":true} ',
      { features: { 'containerd-snapshotter': true }, debug: true }
    ]
  ])('%p is %p', (raw, config) => {
    expect(inputsWith({ 'daemon-config': raw }).daemonConfig).toEqual(config);
  });

  test.each([
    ['{', /is not valid JSON/],
    ['{"debug": true,}', /is not valid JSON/],
    ["{'debug': true}", /is not valid JSON/],
    ['[1, 2]', /must be a JSON object .*got an array/],
    ['[]', /must be a JSON object .*got an array/],
    ['null', /must be a JSON object .*got null/],
    ['42', /must be a JSON object .*got 42/],
    ['"text"', /must be a JSON object .*got "text"/],
    ['true', /must be a JSON object .*got true/],
    ['{"hosts":["tcp://0.0.0.0:2375"]}', /cannot set 'hosts'/],
    ['{"tls":false}', /cannot set 'tls'/],
    ['{"tlsverify":false}', /cannot set 'tlsverify'/],
    ['{"tlscacert":"/x/ca.pem"}', /cannot set 'tlscacert'/],
    ['{"tlscert":"/x/cert.pem"}', /cannot set 'tlscert'/],
    ['{"tlskey":"/x/key.pem"}', /cannot set 'tlskey'/],
    ['{"debug":true,"hosts":[],"tls":false}', /cannot set 'hosts', 'tls'/]
  ])('refuses %p', (raw, message) => {
    const problems = problemsWith({ 'daemon-config': raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Input 'daemon-config' /);
    expect(problems[0]).toMatch(message);
  });
});

describe('dockerd-args', () => {
  test.each([
    ['', []],
    ['   ', []],
    ['--mtu=1400 --debug', ['--mtu=1400', '--debug']],
    ['--label "team=a b"   --log-level \'warn\'', ['--label', 'team=a b', '--log-level', 'warn']],
    ['--storage-opt=dm.basesize=20G', ['--storage-opt=dm.basesize=20G']],
    ['--default-address-pool base=10.10.0.0/16,size=24', ['--default-address-pool', 'base=10.10.0.0/16,size=24']],
    ['--label=a\\ b', ['--label=a b']],
    ['--tls-x --hostname-ish', ['--tls-x', '--hostname-ish']],
    ['-D', ['-D']]
  ])('%p is %p', (raw, args) => {
    expect(inputsWith({ 'dockerd-args': raw }).dockerdArgs).toEqual(args);
  });

  test.each([
    ['-H tcp://0.0.0.0:2375', '-H'],
    ['-H=tcp://0.0.0.0:2375', '-H'],
    ['--debug -H unix:///var/run/docker.sock', '-H'],
    ['--host=tcp://0.0.0.0:2375', '--host'],
    ['--host tcp://0.0.0.0:2375', '--host'],
    ['"--host=tcp://0.0.0.0:2375"', '--host'],
    ['--tlsverify=false', '--tlsverify'],
    ['--tlsverify', '--tlsverify'],
    ['--tls', '--tls'],
    ['--tls=false', '--tls'],
    ['--tlscacert=/x/ca.pem', '--tlscacert'],
    ['--tlscert /x/cert.pem', '--tlscert'],
    ['--tlskey=/x/key.pem', '--tlskey'],
    ['--config-file=/etc/docker/daemon.json', '--config-file'],
    ['--config-file /tmp/other.json', '--config-file']
  ])('refuses %p, naming %p', (raw, flag) => {
    const problems = problemsWith({ 'dockerd-args': raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`Input 'dockerd-args' cannot set '${flag}'`);
  });

  // pflag (dockerd's flag parser) takes a shorthand's value attached: `-Htcp://0.0.0.0:2375` is
  // `-H tcp://0.0.0.0:2375`, and `-DH x` is `-D -H x`.
  test.each([['-Htcp://0.0.0.0:2375'], ['-DH tcp://0.0.0.0:2375'], ['-DHtcp://0.0.0.0:2375']])(
    'refuses the -H shorthand in every form pflag accepts: %p',
    raw => {
      const problems = problemsWith({ 'dockerd-args': raw });
      expect(problems).toEqual([expect.stringContaining("Input 'dockerd-args' cannot set '-H'")]);
    }
  );

  test('refuses an unclosed quote', () => {
    expect(problemsWith({ 'dockerd-args': '--label "team=a' })).toEqual([
      "Input 'dockerd-args' has an unclosed \" quote."
    ]);
  });

  test.each([
    ['--mtu=1400', '{"mtu":1500}', 'mtu'],
    ['--mtu 1400', '{"mtu":1500}', 'mtu'],
    ['--debug', '{"debug":true}', 'debug'],
    ['--log-level=warn --mtu=1400', '{"log-level":"info"}', 'log-level']
  ])('refuses %p with daemon-config %p: both set %p', (args, config, option) => {
    const problems = problemsWith({ 'dockerd-args': args, 'daemon-config': config });
    expect(problems).toEqual([expect.stringContaining(`'dockerd-args' and 'daemon-config' both set '${option}'`)]);
  });

  // dockerd compares a list flag with its daemon.json name (`--registry-mirror` is `registry-mirrors`,
  // `--label` is `labels`, `--insecure-registry` is `insecure-registries`) and refuses to start.
  // (moby daemon/config findConfigurationConflicts: NamedOption.Name(), then f.Name and f.Shorthand.)
  test.each([
    ['--registry-mirror=https://a.example', '{"registry-mirrors":["https://b.example"]}', 'registry-mirrors'],
    ['--label team=a', '{"labels":["team=b"]}', 'labels'],
    ['--insecure-registry=r.example:5000', '{"insecure-registries":["s.example:5000"]}', 'insecure-registries'],
    // dockerd also checks a flag given by its shorthand: -D is --debug.
    ['-D', '{"debug":true}', 'debug']
  ])('refuses %p with daemon-config %p (dockerd sees both as %p)', (args, config, option) => {
    const problems = problemsWith({ 'dockerd-args': args, 'daemon-config': config });
    expect(problems).toEqual([expect.stringContaining(option)]);
  });

  // Flags whose daemon.json name is not the flag's name plus nothing: conflictsBetween maps a flag to its
  // daemon.json key through CONFIG_NAME_OF_FLAG (src/inputs.ts), which lacks these (moby: the flags'
  // NamedOption names; "conflict" case of moby's TestDaemonConfigurationFeatures for --feature).
  test.each([
    ['--feature=containerd-snapshotter=true', '{"features":{"containerd-snapshotter":true}}', 'features'],
    [
      '--default-network-opt=bridge=com.docker.network.driver.mtu=1400',
      '{"default-network-opts":{"bridge":{"com.docker.network.driver.mtu":"1400"}}}',
      'default-network-opts'
    ],
    [
      '--default-address-pool base=10.10.0.0/16,size=24',
      '{"default-address-pools":[{"base":"10.20.0.0/16","size":24}]}',
      'default-address-pools'
    ],
    ['--cdi-spec-dir=/etc/cdi', '{"cdi-spec-dirs":["/var/run/cdi"]}', 'cdi-spec-dirs']
  ])('BUG: refuses %p with daemon-config %p (dockerd sees both as %p)', (args, config, option) => {
    const problems = problemsWith({ 'dockerd-args': args, 'daemon-config': config });
    expect(problems).toEqual([expect.stringContaining(option)]);
  });

  test('accepts flags and daemon-config settings that do not overlap', () => {
    const inputs = inputsWith({ 'dockerd-args': '--mtu=1400', 'daemon-config': '{"debug":true}' });
    expect(inputs.dockerdArgs).toEqual(['--mtu=1400']);
    expect(inputs.daemonConfig).toEqual({ debug: true });
  });
});

describe('parseList', () => {
  test.each<[string, string[]]>([
    ['', []],
    ['  \n , \n', []],
    ['a', ['a']],
    ['a,b', ['a', 'b']],
    ['a\nb', ['a', 'b']],
    [' a , b \n c \n\n', ['a', 'b', 'c']],
    ['a\r\nb', ['a', 'b']],
    ['a b', ['a b']]
  ])('%j is %j', (raw, items) => {
    expect(parseList(raw)).toEqual(items);
  });
});

describe('mounts', () => {
  test.each<[string, string[] | undefined]>([
    ['', undefined],
    ['  \n', undefined],
    ['none', []],
    [' none \n', []],
    ['/data', ['/data']],
    ['/data\n/cache', ['/data', '/cache']],
    ['/data, /cache', ['/data', '/cache']],
    ['/home/runner/work/my repo\n', ['/home/runner/work/my repo']],
    ['/', ['/']]
  ])('%j gives %j', (raw, mounts) => {
    expect(parseMounts(raw)).toEqual(mounts);
    expect(inputsWith({ mounts: raw }).mounts).toEqual(mounts);
  });

  test.each<[string, string]>([
    ['data', "'data'"],
    ['./data', "'./data'"],
    ['~/data', "'~/data'"],
    ['$GITHUB_WORKSPACE', "'$GITHUB_WORKSPACE'"],
    ['/ok\nrel\n/fine\nother', "'rel', 'other'"],
    ['none\n/data', "'none'"],
    ['NONE', "'NONE'"]
  ])('refuses %j, naming the input and %s', (raw, named) => {
    const problems = problemsWith({ mounts: raw });
    expect(problems).toEqual([`Input 'mounts' takes absolute paths (one per line), or 'none'; got ${named}.`]);
  });
});

describe('ports', () => {
  test.each<[string, PortMapping[]]>([
    ['', []],
    ['8080', [{ host: 8080, container: 8080 }]],
    ['15432:5432', [{ host: 15432, container: 5432 }]],
    [
      '80, 443\n9000:9001',
      [
        { host: 80, container: 80 },
        { host: 443, container: 443 },
        { host: 9000, container: 9001 }
      ]
    ],
    [
      '1\n65535',
      [
        { host: 1, container: 1 },
        { host: 65535, container: 65535 }
      ]
    ],
    // 2376 on the runner is only a runner port: the daemon's own port is the dind side.
    ['2376:5000', [{ host: 2376, container: 5000 }]],
    [
      '8080:80\n8081:80',
      [
        { host: 8080, container: 80 },
        { host: 8081, container: 80 }
      ]
    ]
  ])('%j gives %j', (raw, ports) => {
    expect(parsePorts(raw)).toEqual(ports);
    expect(inputsWith({ ports: raw }).ports).toEqual(ports);
  });

  test.each<[string, RegExp]>([
    ['0', /takes ports from 1 to 65535.*got '0'/],
    ['65536', /takes ports from 1 to 65535.*got '65536'/],
    ['8080:0', /got '0'/],
    ['-1', /got '-1'/],
    ['http', /got 'http'/],
    ['80/tcp', /got '80\/tcp'/],
    ['80/udp', /got '80\/udp'/],
    ['8080:', /got ''/],
    [':80', /got ''/],
    ['1.5', /got '1.5'/],
    ['127.0.0.1:8080:80', /takes PORT or RUNNER_PORT:DIND_PORT \(always on 127.0.0.1\); got '127.0.0.1:8080:80'/],
    ['2376', /cannot publish port 2376/],
    ['5000:2376', /cannot publish port 2376/],
    ['80\n2376', /cannot publish port 2376/]
  ])('refuses %j, naming the input', (raw, message) => {
    const problems = problemsWith({ ports: raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Input 'ports' /);
    expect(problems[0]).toMatch(message);
    expect(() => parsePorts(raw)).toThrow(problems[0]);
  });
});

describe('mtu', () => {
  test.each<[string, number | undefined]>([
    ['', undefined],
    ['   ', undefined],
    ['1400', 1400],
    [' 1450 ', 1450],
    ['576', 576],
    ['1500', 1500],
    ['9001', 9001],
    ['65535', 65535]
  ])('%j gives %p', (raw, mtu) => {
    expect(parseMtu(raw)).toBe(mtu);
    expect(inputsWith({ mtu: raw }).mtu).toBe(mtu);
  });

  test.each(['575', '0', '65536', '-1400', '1400.5', '1e3', 'auto', '0x500', '1400 bytes'])(
    'refuses %j, naming the input and the range',
    raw => {
      expect(problemsWith({ mtu: raw })).toEqual([
        `Input 'mtu' must be an MTU from 576 to 65535, or empty for the runner's; got '${raw}'.`
      ]);
    }
  );
});

describe('registry-mirrors', () => {
  test.each<[string, string[]]>([
    ['', []],
    ['https://mirror.example', ['https://mirror.example']],
    ['http://10.0.0.5:5000', ['http://10.0.0.5:5000']],
    ['https://mirror.example/v2/', ['https://mirror.example/v2/']],
    [
      'https://a.example\nhttps://b.example, http://c.example:8080',
      ['https://a.example', 'https://b.example', 'http://c.example:8080']
    ]
  ])('%j gives %j', (raw, mirrors) => {
    expect(inputsWith({ 'registry-mirrors': raw }).registryMirrors).toEqual(mirrors);
  });

  test.each<[string, string]>([
    ['mirror.example', "'mirror.example'"],
    ['ftp://mirror.example', "'ftp://mirror.example'"],
    ['https://', "'https://'"],
    ['https:///path', "'https:///path'"],
    ['//mirror.example', "'//mirror.example'"],
    ['https://ok.example\nbad\nhttp://fine.example\nworse', "'bad', 'worse'"]
  ])('refuses %j, naming the input and %s', (raw, named) => {
    expect(problemsWith({ 'registry-mirrors': raw })).toEqual([
      `Input 'registry-mirrors' takes http:// or https:// URLs; got ${named}.`
    ]);
  });

  // parseUrls (src/inputs.ts) tests only the start of each URL (/^https?:\/\/[^\s/]+/, unanchored), so a
  // mirror with a space in it passes, and dockerd then refuses to start (Go's url.Parse: invalid
  // character " " in host name) instead of the input being refused up front.
  test.each(['https://mirror example', 'https://mirror.example oops'])(
    'BUG: refuses %j, which dockerd cannot parse',
    raw => {
      expect(problemsWith({ 'registry-mirrors': raw })).toEqual([expect.stringMatching(/^Input 'registry-mirrors' /)]);
    }
  );
});

describe('insecure-registries', () => {
  test.each<[string, string[]]>([
    ['', []],
    ['r.example:5000', ['r.example:5000']],
    ['r.example:5000\n10.0.0.0/8, localhost:5000', ['r.example:5000', '10.0.0.0/8', 'localhost:5000']]
  ])('%j gives %j', (raw, registries) => {
    expect(inputsWith({ 'insecure-registries': raw }).insecureRegistries).toEqual(registries);
  });
});

describe('several bad inputs', () => {
  test('are reported together in one InputError', () => {
    const read = reader({
      image: 'a b',
      pull: 'sometimes',
      'wait-timeout': '-1',
      'daemon-config': '[]',
      'dockerd-args': '--host=tcp://0.0.0.0:2375',
      'cache-max-size': 'big',
      mounts: 'relative',
      ports: '2376',
      mtu: '100',
      'registry-mirrors': 'mirror.example',
      swarm: 'yes'
    });
    let thrown: unknown;
    try {
      getInputs(read);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InputError);
    const error = thrown as InputError;
    expect(error.name).toBe('InputError');
    expect(error.problems).toHaveLength(11);
    for (const input of [
      'image',
      'pull',
      'wait-timeout',
      'daemon-config',
      'dockerd-args',
      'cache-max-size',
      'mounts',
      'ports',
      'mtu',
      'registry-mirrors',
      'swarm'
    ]) {
      expect(error.problems.filter(problem => problem.startsWith(`Input '${input}'`))).toHaveLength(1);
    }
    expect(error.message.split('\n')).toEqual(['Invalid inputs:', ...error.problems.map(problem => `- ${problem}`)]);
  });

  test('a single bad input is the whole message', () => {
    // toThrow with an error compares the message exactly.
    expect(() => inputsWith({ pull: 'sometimes' })).toThrow(
      new Error("Input 'pull' must be one of missing, always, never; got 'sometimes'.")
    );
  });

  test('a flag conflict is reported beside other problems', () => {
    const problems = problemsWith({ 'dockerd-args': '--mtu=1400', 'daemon-config': '{"mtu":1500}', name: '-bad' });
    expect(problems).toEqual([expect.stringContaining("both set 'mtu'"), expect.stringMatching(/^Input 'name' /)]);
  });
});

describe('splitShellWords', () => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['   ', []],
    ['a', ['a']],
    ['a b  c', ['a', 'b', 'c']],
    ['\ta\n b\t', ['a', 'b']],
    ['"a b" c', ['a b', 'c']],
    ["'a b'", ['a b']],
    ['a"b c"d', ['ab cd']],
    ["a'b c'd", ['ab cd']],
    ['""', ['']],
    ["''", ['']],
    ["a '' b", ['a', '', 'b']],
    ['"it\'s"', ["it's"]],
    ['\'say "hi"\'', ['say "hi"']],
    ['"a\\"b"', ['a"b']],
    ['"a\\\\b"', ['a\\b']],
    ['"a\\$b"', ['a$b']],
    ['"a\\`b"', ['a`b']],
    ['"a\\nb"', ['a\\nb']],
    ["'a\\b'", ['a\\b']],
    ["'a\\'", ['a\\']],
    ['a\\ b', ['a b']],
    ['\\"x', ['"x']],
    ['--opt=$HOME', ['--opt=$HOME']],
    ['"$HOME" `id` $(id)', ['$HOME', '`id`', '$(id)']],
    ['--label "a=b c" --x=\'y z\'', ['--label', 'a=b c', '--x=y z']]
  ];
  test.each(cases.map(([line, words]) => [JSON.stringify(line), line, words] as const))(
    '%s → %j',
    (_name, line, words) => {
      expect(splitShellWords(line)).toEqual(words);
    }
  );

  test.each(['"abc', "'abc", 'a "b c', 'a \'b" c', '"a\\"'])('%p has an unclosed quote', line => {
    expect(() => splitShellWords(line)).toThrow(/unclosed/);
  });
});

describe('inputs that together would stop dockerd from starting', () => {
  // dockerd refuses to start when a setting is both a flag and in daemon.json (see the dockerd-args
  // conflicts above). daemon.json is daemonConfig(inputs, runner MTU): what the action writes from the
  // mtu, registry-mirrors and insecure-registries inputs must not collide with dockerd-args either.
  // Either getInputs refuses the pair, naming dockerd-args, or daemonConfig leaves the flag's setting out.
  const SETTING_OF_FLAG: Record<string, string> = {
    mtu: 'mtu',
    'default-network-opt': 'default-network-opts',
    'registry-mirror': 'registry-mirrors',
    'insecure-registry': 'insecure-registries'
  };
  const settingsOf = (args: string[]) =>
    args.flatMap(word => {
      const flag = /^--([a-z-]+)/.exec(word)?.[1];
      return flag && SETTING_OF_FLAG[flag] ? [SETTING_OF_FLAG[flag]] : [];
    });

  test.each<[string, Record<string, string>, number | undefined]>([
    ['--mtu with a runner MTU', { 'dockerd-args': '--mtu=1300' }, 1400],
    ['--mtu with the mtu input', { 'dockerd-args': '--mtu 1300', mtu: '1400' }, 1500],
    ['--registry-mirror alone', { 'dockerd-args': '--registry-mirror=https://a.example' }, 1500],
    [
      'BUG: --default-network-opt with a runner MTU below 1500',
      { 'dockerd-args': '--default-network-opt=bridge=com.docker.network.driver.mtu=1300' },
      1400
    ],
    [
      'BUG: --default-network-opt with the mtu input',
      { 'dockerd-args': '--default-network-opt=bridge=com.docker.network.driver.mtu=1300', mtu: '1400' },
      1500
    ],
    [
      'BUG: --registry-mirror with the registry-mirrors input',
      { 'dockerd-args': '--registry-mirror=https://a.example', 'registry-mirrors': 'https://b.example' },
      1500
    ],
    [
      'BUG: --insecure-registry with the insecure-registries input',
      { 'dockerd-args': '--insecure-registry=r.example:5000', 'insecure-registries': 's.example:5000' },
      1500
    ]
  ])('%s: refused, or left out of daemon.json', (_name, overrides, runnerMtu) => {
    let inputs: ActionInputs;
    try {
      inputs = inputsWith(overrides);
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).problems).toEqual([expect.stringContaining("'dockerd-args'")]);
      return;
    }
    const config = daemonConfig(inputs, runnerMtu);
    const both = settingsOf(inputs.dockerdArgs).filter(setting => setting in config);
    expect(both).toEqual([]);
  });
});

describe('cache-dir', () => {
  test.each<[string, string | undefined]>([
    ['', undefined],
    ['  ', undefined],
    ['/var/cache/setup-dind', '/var/cache/setup-dind'],
    ['/var/cache//x/../setup-dind/', '/var/cache/setup-dind/']
  ])('%p → %p', (raw, dir) => {
    expect(parseCacheDir(raw)).toBe(dir);
  });
  test('a relative path is an input error that says what is allowed', () => {
    expect(() => parseCacheDir('cache')).toThrow(
      "Input 'cache-dir' takes an absolute directory on the runner (for example /var/cache/setup-dind), or nothing; got 'cache'."
    );
  });
});
