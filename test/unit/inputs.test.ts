// getInputs() against tables of input maps. Defaults come from action.yml itself, so the test breaks
// when action.yml and the parser drift apart.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_IMAGE } from '../../src/constants';
import { getInputs, InputError, splitShellWords, type ActionInputs } from '../../src/inputs';

interface Manifest {
  inputs: Record<string, { description: string; default?: unknown }>;
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
      cacheMaxSizeBytes: 4 * GiB
    });
  });

  test('getInputs reads every input of action.yml, and only those', () => {
    const seen: string[] = [];
    getInputs(reader({}, seen));
    expect([...new Set(seen)].sort()).toEqual(Object.keys(manifest.inputs).sort());
  });

  test("the image default is the code's DEFAULT_IMAGE", () => {
    expect(DEFAULTS.image).toBe(DEFAULT_IMAGE);
  });
});

describe.each([
  { input: 'pull', property: 'pull', allowed: ['missing', 'always', 'never'] },
  { input: 'cache-save', property: 'cacheSave', allowed: ['on-change', 'always', 'never'] }
] as const)('enum input $input', ({ input, property, allowed }) => {
  test.each(allowed)('accepts %p', value => {
    expect(inputsWith({ [input]: value })[property]).toBe(value);
  });

  test('action.yml documents exactly these values', () => {
    const documented = [...manifest.inputs[input].description.matchAll(/`([a-z-]+)`/g)].map(match => match[1]).filter(word => word !== 'image');
    expect(documented.sort()).toEqual([...allowed].sort());
  });

  test.each(['sometimes', 'Always', 'MISSING', 'never ever', 'on_change'])('refuses %p, naming the input and the allowed values', value => {
    const problems = problemsWith({ [input]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`'${input}'`);
    expect(problems[0]).toContain(`'${value}'`);
    for (const choice of allowed) expect(problems[0]).toContain(choice);
  });

  test('refuses an empty value as missing', () => {
    expect(problemsWith({ [input]: '  ' })).toEqual([`Input '${input}' is required.`]);
  });
});

describe.each([
  { input: 'privileged', property: 'privileged' },
  { input: 'set-env', property: 'setEnv' },
  { input: 'cache', property: 'cache' }
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

  test.each(['0', '0g', '-1', '-4g', 'big', '4x', '4 g b', 'g', '1.5.2g', '0.1', '4p', '', '4 gigabytes'])('refuses %p', raw => {
    const problems = problemsWith({ 'cache-max-size': raw });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^Input 'cache-max-size' (must be a size|is required)/);
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
    [' ctx ', 'ctx']
  ])('%p gives context %p', (raw, context) => {
    expect(inputsWith({ context: raw }).context).toBe(context);
  });

  test("refuses 'default', the Docker CLI's own context", () => {
    expect(problemsWith({ context: 'default' })).toEqual([expect.stringMatching(/^Input 'context' cannot be 'default'/)]);
  });

  test.each(['-ctx', 'a b', 'ctx/x', '.ctx'])('refuses %p', context => {
    expect(problemsWith({ context })).toEqual([expect.stringMatching(/^Input 'context' may contain only/)]);
  });
});

describe('daemon-config', () => {
  test.each([
    ['', {}],
    ['  ', {}],
    ['{}', {}],
    ['{"registry-mirrors":["https://mirror.example"]}', { 'registry-mirrors': ['https://mirror.example'] }],
    [' {"features":{"containerd-snapshotter":true},"debug":true} ', { features: { 'containerd-snapshotter': true }, debug: true }]
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
    expect(problemsWith({ 'dockerd-args': '--label "team=a' })).toEqual(["Input 'dockerd-args' has an unclosed \" quote."]);
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

  test('accepts flags and daemon-config settings that do not overlap', () => {
    const inputs = inputsWith({ 'dockerd-args': '--mtu=1400', 'daemon-config': '{"debug":true}' });
    expect(inputs.dockerdArgs).toEqual(['--mtu=1400']);
    expect(inputs.daemonConfig).toEqual({ debug: true });
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
      'cache-max-size': 'big'
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
    expect(error.problems).toHaveLength(6);
    for (const input of ['image', 'pull', 'wait-timeout', 'daemon-config', 'dockerd-args', 'cache-max-size']) {
      expect(error.problems.filter(problem => problem.startsWith(`Input '${input}'`))).toHaveLength(1);
    }
    expect(error.message.split('\n')).toEqual(['Invalid inputs:', ...error.problems.map(problem => `- ${problem}`)]);
  });

  test('a single bad input is the whole message', () => {
    // toThrow with an error compares the message exactly.
    expect(() => inputsWith({ pull: 'sometimes' })).toThrow(new Error("Input 'pull' must be one of missing, always, never; got 'sometimes'."));
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
  test.each(cases.map(([line, words]) => [JSON.stringify(line), line, words] as const))('%s → %j', (_name, line, words) => {
    expect(splitShellWords(line)).toEqual(words);
  });

  test.each(['"abc', "'abc", 'a "b c', "a 'b\" c", '"a\\"'])('%p has an unclosed quote', line => {
    expect(() => splitShellWords(line)).toThrow(/unclosed/);
  });
});
