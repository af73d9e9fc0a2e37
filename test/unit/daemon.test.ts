// The pure builders of the dind container: its command line, create options, setup archive, and the
// readers of what the engine answers (published port, multiplexed log, failure hints).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type Docker from 'dockerode';
import * as tar from 'tar-stream';
import { INSTANCE_LABEL } from '../../src/constants';
import {
  containerCreateOptions,
  demultiplex,
  diagnose,
  dockerdCommand,
  networkCreateOptions,
  publishedPort,
  serverSubjectAltNames,
  setupArchive
} from '../../src/daemon';
import { newInstance } from '../../src/instance';
import type { TlsMaterial } from '../../src/tls';

// A fixed id: a random one could contain "2375" and break the "no 2375 anywhere" check.
const instance = newInstance('dind', '/runner/temp', 'abcdef01');

describe('dockerdCommand', () => {
  const fixed = [
    'dockerd',
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
    [['--mtu=1400', '--label', 'a=b c'], [...fixed, '--mtu=1400', '--label', 'a=b c']]
  ])('user args %j', (userArgs, expected) => {
    expect(dockerdCommand(userArgs)).toEqual(expected);
  });

  test('listens on exactly one address, TLS-verified on 2376, never 2375', () => {
    const command = dockerdCommand(['--debug']);
    expect(command.filter(word => word.startsWith('--host') || word.startsWith('-H'))).toEqual(['--host=tcp://0.0.0.0:2376']);
    expect(command).toContain('--tlsverify');
    expect(command.join(' ')).not.toContain('2375');
  });
});

describe('serverSubjectAltNames', () => {
  test.each([
    [newInstance('dind', '/t', '00000000'), ['localhost', 'dind', 'setup-dind-dind-00000000']],
    [newInstance('db-2', '/t', '1234abcd'), ['localhost', 'db-2', 'setup-dind-db-2-1234abcd']]
  ])('names for %j', (forInstance, dns) => {
    expect(serverSubjectAltNames(forInstance)).toEqual({ dns, ip: ['127.0.0.1', '::1'] });
  });
});

describe('containerCreateOptions', () => {
  const create = (privileged: boolean, dockerdArgs: string[] = []) =>
    containerCreateOptions({ instance, image: 'docker:28-dind', privileged, dockerdArgs });

  test.each([true, false])('privileged: %p is passed through', privileged => {
    expect(create(privileged).HostConfig?.Privileged).toBe(privileged);
  });

  test('identity: name, image, host name, network and its alias', () => {
    const options = create(true);
    expect(options.name).toBe('setup-dind-dind-abcdef01');
    expect(options.Image).toBe('docker:28-dind');
    expect(options.Hostname).toBe('dind');
    expect(options.HostConfig?.NetworkMode).toBe(instance.networkName);
    expect(options.NetworkingConfig).toEqual({ EndpointsConfig: { [instance.networkName]: { Aliases: ['dind'] } } });
  });

  test('the TLS port is published on 127.0.0.1 only, on a port the engine picks', () => {
    const options = create(true);
    expect(options.ExposedPorts).toEqual({ '2376/tcp': {} });
    expect(options.HostConfig?.PortBindings).toEqual({ '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
    expect(options.HostConfig?.PublishAllPorts).toBeFalsy();
  });

  test('the instance label carries the instance id', () => {
    expect(create(true).Labels).toEqual({ [INSTANCE_LABEL]: 'abcdef01' });
  });

  test("the action's entrypoint runs dockerd's command line", () => {
    const options = create(false, ['--debug']);
    expect(options.Entrypoint).toEqual(['/bin/sh', '/setup-dind/entrypoint.sh']);
    expect(options.Cmd).toEqual(dockerdCommand(['--debug']));
  });

  test('DOCKER_TLS_CERTDIR is set, and empty', () => {
    const env = create(true).Env ?? [];
    expect(env.filter(entry => entry.startsWith('DOCKER_TLS_CERTDIR'))).toEqual(['DOCKER_TLS_CERTDIR=']);
  });

  test.each([
    [undefined, undefined],
    ['/runner/temp/setup-dind-cache', ['/runner/temp/setup-dind-cache:/var/lib/docker']]
  ])('data directory %p: binds %p', (dataDir, binds) => {
    const options = containerCreateOptions({ instance, image: 'docker:28-dind', privileged: true, dockerdArgs: [], dataDir });
    expect(options.HostConfig?.Binds).toEqual(binds);
  });

  test('2375 (the plain-text port) appears nowhere', () => {
    expect(JSON.stringify(create(true, ['--debug']))).not.toContain('2375');
    expect(JSON.stringify(create(false))).not.toContain('2375');
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
  const inspected = (ports: unknown) => ({ NetworkSettings: { Ports: ports } }) as unknown as Docker.ContainerInspectInfo;

  test.each([
    ['loopback binding', { '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '49153' }] }, 49153],
    ['loopback among others', { '2376/tcp': [{ HostIp: '0.0.0.0', HostPort: '1111' }, { HostIp: '127.0.0.1', HostPort: '32768' }] }, 32768],
    ['empty HostIp', { '2376/tcp': [{ HostIp: '', HostPort: '5555' }] }, 5555],
    ['other ports beside', { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }], '2376/tcp': [{ HostIp: '127.0.0.1', HostPort: '40000' }] }, 40000]
  ])('%s', (_name, ports, port) => {
    expect(publishedPort(inspected(ports))).toBe(port);
  });

  test.each([
    ['no Ports', undefined],
    ['empty Ports', {}],
    ['port not published (null)', { '2376/tcp': null }],
    ['no bindings', { '2376/tcp': [] }],
    ['only 2375 published', { '2375/tcp': [{ HostIp: '127.0.0.1', HostPort: '2375' }] }],
    ['only on all interfaces', { '2376/tcp': [{ HostIp: '0.0.0.0', HostPort: '1111' }, { HostIp: '::', HostPort: '1111' }] }]
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
    ['stdout and stderr, in order', Buffer.concat([frame(1, 'out 1\n'), frame(2, 'err 1\n'), frame(1, 'out 2\n')]), 'out 1\nerr 1\nout 2\n'],
    ['an empty frame', Buffer.concat([frame(1, ''), frame(2, 'x')]), 'x'],
    ['a frame larger than 255 bytes', frame(2, 'y'.repeat(70000)), 'y'.repeat(70000)],
    ['a character split across frames', Buffer.concat([frame(1, euro.subarray(0, 2)), frame(2, euro.subarray(2))]), '€'],
    ['a raw (non-multiplexed) log', Buffer.from('time="2025-01-01" level=info msg="API listen on [::]:2376"\n'), 'time="2025-01-01" level=info msg="API listen on [::]:2376"\n'],
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
    ['unprivileged iptables', 'failed to start daemon: Error initializing network controller: iptables failed: operation not permitted', false, NEEDS_PRIVILEGED],
    ['privileged but denied', 'mount: permission denied (are you root?)', true, LACKS_PERMISSION],
    ['port taken', 'failed to load listeners: listen tcp 0.0.0.0:2376: bind: address already in use', true, PORT_TAKEN],
    ['listener failure', 'failed to load listeners: could not load x509 key pair', true, TLS],
    ['bad certificate', 'http: TLS handshake error from 172.18.0.1:4242: tls: bad certificate', true, TLS],
    ['storage driver', 'failed to start daemon: error initializing graphdriver: driver not supported: overlay2', true, STORAGE],
    ['overlay unsupported', 'overlay2 is not supported over overlayfs', true, STORAGE],
    ['healthy log', 'level=info msg="API listen on [::]:2376"', true, undefined],
    ['empty log, privileged', '', true, undefined],
    ['empty log, unprivileged', '', false, NEEDS_PRIVILEGED],
    ['unknown failure, unprivileged', 'something odd happened', false, NEEDS_PRIVILEGED],
    ['an optional helper missing, unprivileged', 'exec: "fuse-overlayfs": executable file not found in $PATH\nfailed to mount overlay: operation not permitted', false, NEEDS_PRIVILEGED],
    ['hint found on a later line', 'level=info msg="Starting up"\nexec: "dockerd": executable file not found in $PATH\n', true, NO_DOCKERD]
  ])('%s', (_name, log, privileged, hint) => {
    const found = diagnose(log, privileged);
    if (hint === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(hint);
  });
});

describe('setupArchive', () => {
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
          entries.push({ name: header.name, type: header.type ?? 'file', mode: header.mode ?? -1, content: Buffer.concat(chunks).toString('utf8') });
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

  const material: TlsMaterial = {
    caCert: '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n',
    serverCert: '-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n',
    serverKey: '-----BEGIN PRIVATE KEY-----\nSERVER KEY\n-----END PRIVATE KEY-----\n',
    clientCert: '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n',
    clientKey: '-----BEGIN PRIVATE KEY-----\nCLIENT KEY\n-----END PRIVATE KEY-----\n',
    notAfter: new Date(0)
  };
  const config = { 'registry-mirrors': ['https://mirror.example'], features: { 'containerd-snapshotter': true }, mtu: 1400 };
  let entries: ArchiveEntry[];
  const entry = (name: string) => {
    const found = entries.find(e => e.name === name);
    if (!found) throw new Error(`no ${name} in the archive: ${entries.map(e => e.name).join(', ')}`);
    return found;
  };

  beforeAll(async () => {
    entries = await entriesOf(await setupArchive(material, config));
  });

  test('holds exactly the setup directory, its certs directory and five files', () => {
    expect(entries.map(e => [e.name, e.type])).toEqual([
      ['setup-dind/', 'directory'],
      ['setup-dind/certs/', 'directory'],
      ['setup-dind/entrypoint.sh', 'file'],
      ['setup-dind/daemon.json', 'file'],
      ['setup-dind/certs/ca.pem', 'file'],
      ['setup-dind/certs/server-cert.pem', 'file'],
      ['setup-dind/certs/server-key.pem', 'file']
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
    ['setup-dind/daemon.json', 0o644],
    ['setup-dind/certs/ca.pem', 0o644],
    ['setup-dind/certs/server-cert.pem', 0o644],
    ['setup-dind/certs/server-key.pem', 0o600]
  ])('%s has mode %o', (name, mode) => {
    expect(entry(name).mode & 0o7777).toBe(mode);
  });

  test('daemon.json is the config given', () => {
    const daemonJson = entry('setup-dind/daemon.json').content;
    expect(JSON.parse(daemonJson)).toEqual(config);
    expect(daemonJson.endsWith('\n')).toBe(true);
  });

  test('an empty config gives an empty daemon.json object', async () => {
    const empty = await entriesOf(await setupArchive(material, {}));
    expect(JSON.parse(empty.find(e => e.name === 'setup-dind/daemon.json')!.content)).toEqual({});
  });

  test('the entrypoint script and the server material are the ones given', () => {
    const script = fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'entrypoint.sh'), 'utf8');
    expect(entry('setup-dind/entrypoint.sh').content).toBe(script);
    expect(script.startsWith('#!/bin/sh\n')).toBe(true);
    expect(entry('setup-dind/certs/ca.pem').content).toBe(material.caCert);
    expect(entry('setup-dind/certs/server-cert.pem').content).toBe(material.serverCert);
    expect(entry('setup-dind/certs/server-key.pem').content).toBe(material.serverKey);
  });

  test('the client key and certificate stay out of the container', () => {
    for (const e of entries) {
      expect(e.content).not.toContain('CLIENT KEY');
      expect(e.content).not.toContain('CLIENT\n');
    }
  });

  test('every path the container is created with is in the archive', () => {
    const options = containerCreateOptions({ instance, image: 'docker:28-dind', privileged: true, dockerdArgs: [] });
    const paths = [
      (options.Entrypoint as string[])[1],
      ...(options.Cmd ?? []).filter(word => /^--(tlscacert|tlscert|tlskey|config-file)=/.test(word)).map(word => word.split('=')[1])
    ];
    expect(paths).toHaveLength(5);
    for (const file of paths) expect(entry(file.slice(1)).type).toBe('file');
  });
});
