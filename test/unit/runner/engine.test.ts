// Client options for Docker engines. docker-modem fills every option left out (or absent) from
// DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, which main exports for later steps: every
// option must be there, even as undefined, and clients are built with those variables hidden.
import Docker from 'dockerode';
import {
  connect,
  engineClientOptions,
  outerEngineSettings,
  tlsClientOptions,
  type EngineSettings
} from '../../../src/runner/engine';

/** The options docker-modem would otherwise take from the environment. */
const CONNECTION_KEYS = ['socketPath', 'host', 'port', 'protocol', 'ca', 'cert', 'key'] as const;
const DOCKER_VARIABLES = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH'] as const;

function setsEveryConnectionKey(options: object): void {
  for (const key of CONNECTION_KEYS) {
    expect({ key, present: Object.prototype.hasOwnProperty.call(options, key) }).toEqual({ key, present: true });
  }
}

const fakeReadFile = (file: string) => `contents of ${file}`;

describe('engineClientOptions', () => {
  const socket = (socketPath: string) => ({
    socketPath,
    host: undefined,
    port: undefined,
    protocol: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined
  });
  const tcp = (host: string, port: string, protocol: 'http' | 'https', files?: string) => ({
    socketPath: undefined,
    host,
    port,
    protocol,
    ca: files && `contents of ${files}/ca.pem`,
    cert: files && `contents of ${files}/cert.pem`,
    key: files && `contents of ${files}/key.pem`
  });

  const cases: Array<[string, EngineSettings, object]> = [
    ['unset host: the default socket', {}, socket('/var/run/docker.sock')],
    ['unix:///x', { host: 'unix:///x' }, socket('/x')],
    ['unix:// without a path', { host: 'unix://' }, socket('/var/run/docker.sock')],
    ['a rootless socket', { host: 'unix:///run/user/1000/docker.sock' }, socket('/run/user/1000/docker.sock')],
    ['a socket ignores TLS settings', { host: 'unix:///x', tlsVerify: '1', certPath: '/certs' }, socket('/x')],
    ['tcp://h:2376 is TLS', { host: 'tcp://h:2376' }, tcp('h', '2376', 'https')],
    ['tcp://h:2375 is plain', { host: 'tcp://h:2375' }, tcp('h', '2375', 'http')],
    ['tcp://h defaults to 2375', { host: 'tcp://h' }, tcp('h', '2375', 'http')],
    ['h:2375 without a scheme', { host: 'h:2375' }, tcp('h', '2375', 'http')],
    ['an IP address', { host: 'tcp://10.1.2.3:2375' }, tcp('10.1.2.3', '2375', 'http')],
    ["tlsVerify '1' on another port", { host: 'tcp://h:2377', tlsVerify: '1' }, tcp('h', '2377', 'https')],
    ["tlsVerify '1' without a port defaults to 2376", { host: 'tcp://h', tlsVerify: '1' }, tcp('h', '2376', 'https')],
    [
      "tlsVerify '1' with certPath reads the files",
      { host: 'tcp://h:2376', tlsVerify: '1', certPath: '/certs' },
      tcp('h', '2376', 'https', '/certs')
    ],
    ['certPath alone means TLS', { host: 'tcp://h:3000', certPath: '/c' }, tcp('h', '3000', 'https', '/c')]
  ];

  test.each(cases)('%s', (_name, settings, expected) => {
    const options = engineClientOptions(settings, fakeReadFile);
    expect(options).toEqual(expected);
    setsEveryConnectionKey(options);
  });

  test('reads ca, cert and key from certPath, and nothing else', () => {
    const readFile = jest.fn(fakeReadFile);
    engineClientOptions({ host: 'tcp://h:2376', tlsVerify: '1', certPath: '/c' }, readFile);
    expect(readFile.mock.calls.map(([file]) => file).sort()).toEqual(['/c/ca.pem', '/c/cert.pem', '/c/key.pem']);
  });

  test.each<[string, EngineSettings]>([
    ['a socket', { host: 'unix:///var/run/docker.sock' }],
    ['plain tcp', { host: 'tcp://h:2375' }],
    ['TLS without certPath', { host: 'tcp://h:2376', tlsVerify: '1' }]
  ])('reads no file for %s', (_name, settings) => {
    const readFile = jest.fn(fakeReadFile);
    engineClientOptions(settings, readFile);
    expect(readFile).not.toHaveBeenCalled();
  });

  test.each(['ssh://user@builder', 'ssh://builder:22', 'npipe:////./pipe/docker_engine', 'http://h:2375', 'fd://'])(
    '%s is refused',
    host => {
      expect(() => engineClientOptions({ host }, fakeReadFile)).toThrow(
        `The Docker engine at DOCKER_HOST=${host} is not supported`
      );
    }
  );

  test('explicit undefined keeps the DOCKER_* of the environment out of a client (docker-modem)', () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = 'tcp://127.0.0.1:1';
    try {
      const modem = (
        new Docker(engineClientOptions({ host: 'unix:///x' })) as unknown as {
          modem: { host?: string; socketPath?: string; port?: string };
        }
      ).modem;
      expect({ host: modem.host, port: modem.port, socketPath: modem.socketPath }).toEqual({
        host: undefined,
        port: undefined,
        socketPath: '/x'
      });
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });
});

describe('tlsClientOptions', () => {
  test('mutual TLS to the endpoint, every connection key set', () => {
    const options = tlsClientOptions({ host: '127.0.0.1', port: 32768, ca: 'CA', cert: 'CERT', key: 'KEY' });
    expect(options).toEqual({ host: '127.0.0.1', port: 32768, protocol: 'https', ca: 'CA', cert: 'CERT', key: 'KEY' });
    setsEveryConnectionKey(options);
    expect(options.socketPath).toBeUndefined();
  });
});

describe('outerEngineSettings', () => {
  test.each<[string, Record<string, string | undefined>, EngineSettings]>([
    ['nothing set', {}, {}],
    ['empty variables', { DOCKER_HOST: '', DOCKER_TLS_VERIFY: '', DOCKER_CERT_PATH: '' }, {}],
    ['DOCKER_HOST only', { DOCKER_HOST: 'unix:///x' }, { host: 'unix:///x' }],
    [
      'all DOCKER_*',
      { DOCKER_HOST: 'tcp://h:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/c' },
      { host: 'tcp://h:2376', tlsVerify: '1', certPath: '/c' }
    ],
    [
      'SETUP_DIND_OUTER_ENGINE wins over DOCKER_* (an earlier instance set those)',
      {
        SETUP_DIND_OUTER_ENGINE: '{"host":"unix:///var/run/docker.sock"}',
        DOCKER_HOST: 'tcp://127.0.0.1:32768',
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: '/runner/temp/setup-dind-dind-abcdef01'
      },
      { host: 'unix:///var/run/docker.sock' }
    ],
    [
      'SETUP_DIND_OUTER_ENGINE recorded no engine at all',
      {
        SETUP_DIND_OUTER_ENGINE: '{}',
        DOCKER_HOST: 'tcp://127.0.0.1:32768',
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: '/x'
      },
      {}
    ],
    [
      'SETUP_DIND_OUTER_ENGINE with TLS',
      {
        SETUP_DIND_OUTER_ENGINE: '{"host":"tcp://outer:2376","tlsVerify":"1","certPath":"/outer"}',
        DOCKER_HOST: 'tcp://127.0.0.1:32768'
      },
      { host: 'tcp://outer:2376', tlsVerify: '1', certPath: '/outer' }
    ]
  ])('%s', (_name, env, settings) => {
    expect(outerEngineSettings(env)).toStrictEqual(settings);
  });
});

describe('connect', () => {
  const saved = Object.fromEntries(DOCKER_VARIABLES.map(name => [name, process.env[name]]));
  afterEach(() => {
    for (const name of DOCKER_VARIABLES) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  const hostile = { DOCKER_HOST: 'tcp://127.0.0.1:1', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/nonexistent' };

  test('docker-modem alone would read the files DOCKER_CERT_PATH names (the hazard)', () => {
    Object.assign(process.env, hostile);
    expect(() => new Docker(engineClientOptions({ host: 'unix:///var/run/docker.sock' }))).toThrow(/nonexistent/);
  });

  test.each<[string, Docker.DockerOptions, object]>([
    [
      'the outer socket',
      engineClientOptions({ host: 'unix:///var/run/docker.sock' }),
      { socketPath: '/var/run/docker.sock', host: undefined, protocol: 'http' }
    ],
    [
      'a plain tcp engine',
      engineClientOptions({ host: 'tcp://outer:2375' }),
      { host: 'outer', port: '2375', protocol: 'http', ca: undefined }
    ],
    [
      'the dind daemon',
      tlsClientOptions({ host: '127.0.0.1', port: 32768, ca: 'CA', cert: 'CERT', key: 'KEY' }),
      { host: '127.0.0.1', port: 32768, protocol: 'https', ca: 'CA', cert: 'CERT', key: 'KEY' }
    ]
  ])('builds a client for %s while DOCKER_* point elsewhere, then restores them', (_name, options, modem) => {
    Object.assign(process.env, hostile);
    const client = connect(options);
    expect((client as unknown as { modem: object }).modem).toMatchObject(modem);
    expect(DOCKER_VARIABLES.map(name => process.env[name])).toEqual(['tcp://127.0.0.1:1', '1', '/nonexistent']);
  });

  test('leaves unset variables unset', () => {
    for (const name of DOCKER_VARIABLES) delete process.env[name];
    connect(engineClientOptions({}));
    for (const name of DOCKER_VARIABLES) expect(name in process.env).toBe(false);
  });

  test('restores the variables when building the client throws', () => {
    Object.assign(process.env, hostile);
    // docker-modem accepts any options; an option that throws when read makes the constructor throw.
    const throwing = Object.defineProperty({}, 'host', {
      enumerable: true,
      get() {
        throw new Error('boom');
      }
    }) as Docker.DockerOptions;
    expect(() => connect(throwing)).toThrow('boom');
    expect(DOCKER_VARIABLES.map(name => process.env[name])).toEqual(['tcp://127.0.0.1:1', '1', '/nonexistent']);
  });
});
