// What later steps get: the client's files on disk, DOCKER_HOST's form, and the outputs and variables
// as the runner reads them back from GITHUB_OUTPUT and GITHUB_ENV.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { Outputs, TESTCONTAINERS_HOST_ENV } from '../../../src/runner/contract';
import {
  CLIENT_FILES,
  exportTestcontainersHost,
  setDaemonOutputs,
  writeClientCertificates,
  type DaemonOutputs
} from '../../../src/handover/environment';
import type { KeyPair } from '../../../src/daemon/tls';
import { defined } from '../../support/defined';
import { parseFileCommands } from '../../support/runner';

const CA_CERT = '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n';
const CLIENT: KeyPair = {
  cert: '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n',
  key: '-----BEGIN PRIVATE KEY-----\nCLIENT KEY\n-----END PRIVATE KEY-----\n'
};

let root: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-env-'));
});

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('writeClientCertificates', () => {
  const mode = (file: string) => fs.statSync(file).mode & 0o777;

  test.each<[string, (dir: string) => void]>([
    ['a new directory', () => undefined],
    ['an existing, open directory', dir => fs.mkdirSync(dir, { mode: 0o777 })],
    [
      'an existing directory with stale, open files',
      dir => {
        fs.mkdirSync(dir);
        for (const name of Object.values(CLIENT_FILES))
          fs.writeFileSync(path.join(dir, name), 'stale', { mode: 0o666 });
      }
    ]
  ])('%s: the directory 0700, the key 0600, the certificates 0644, with the contents given', async (_name, prepare) => {
    const dir = path.join(root, 'certs');
    prepare(dir);
    fs.chmodSync(root, 0o755);
    await writeClientCertificates(dir, CA_CERT, CLIENT);
    expect(fs.readdirSync(dir).sort()).toEqual(['ca.pem', 'cert.pem', 'key.pem']);
    expect(mode(dir)).toBe(0o700);
    expect([mode(path.join(dir, 'ca.pem')), mode(path.join(dir, 'cert.pem')), mode(path.join(dir, 'key.pem'))]).toEqual(
      [0o644, 0o644, 0o600]
    );
    expect(fs.readFileSync(path.join(dir, CLIENT_FILES.ca), 'utf8')).toBe(CA_CERT);
    expect(fs.readFileSync(path.join(dir, CLIENT_FILES.cert), 'utf8')).toBe(CLIENT.cert);
    expect(fs.readFileSync(path.join(dir, CLIENT_FILES.key), 'utf8')).toBe(CLIENT.key);
  });
});

describe('as the runner reads them back', () => {
  const saved: Record<string, string | undefined> = {};

  beforeEach(() => {
    for (const name of ['GITHUB_OUTPUT', 'GITHUB_ENV', TESTCONTAINERS_HOST_ENV]) saved[name] = process.env[name];
    process.env.GITHUB_OUTPUT = path.join(root, 'output');
    process.env.GITHUB_ENV = path.join(root, 'env');
    fs.writeFileSync(process.env.GITHUB_OUTPUT, '');
    fs.writeFileSync(process.env.GITHUB_ENV, '');
  });

  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  const read = (name: 'GITHUB_OUTPUT' | 'GITHUB_ENV') =>
    parseFileCommands(fs.readFileSync(defined(process.env[name], name), 'utf8'));

  test.each<[string, DaemonOutputs]>([
    [
      'a bare host',
      {
        host: 'tcp://127.0.0.1:32768',
        certPath: '/runner/temp/setup-dind-dind-abcdef01',
        containerId: 'c'.repeat(64),
        context: 'dind',
        version: '28.5.1',
        ip: '172.18.0.2'
      }
    ],
    [
      'no context, no address',
      {
        host: 'tcp://setup-dind-dind-abcdef01:2376',
        certPath: '/t/c',
        containerId: 'd'.repeat(64),
        context: '',
        version: '28.0.0',
        ip: ''
      }
    ]
  ])('setDaemonOutputs, %s: every daemon output, ip included, under its action.yml name', (_name, outputs) => {
    setDaemonOutputs(outputs);
    expect(read('GITHUB_OUTPUT')).toEqual({
      host: outputs.host,
      'cert-path': outputs.certPath,
      'container-id': outputs.containerId,
      context: outputs.context,
      version: outputs.version,
      ip: outputs.ip
    });
    const declared = Object.keys(
      (parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'action.yml'), 'utf8')) as { outputs: object })
        .outputs
    );
    for (const name of Object.keys(read('GITHUB_OUTPUT'))) expect(declared).toContain(name);
    expect(Outputs.Ip).toBe('ip');
  });

  test.each(['172.18.0.2', '10.1.2.3'])(
    'exportTestcontainersHost(%p) exports TESTCONTAINERS_HOST_OVERRIDE for later steps',
    ip => {
      exportTestcontainersHost(ip);
      expect(read('GITHUB_ENV')).toEqual({ TESTCONTAINERS_HOST_OVERRIDE: ip });
      expect(process.env[TESTCONTAINERS_HOST_ENV]).toBe(ip);
    }
  );
});
