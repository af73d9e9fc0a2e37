// Clients for Docker engines: the outer one the runner uses, and the dind daemon over mutual TLS.
// docker-modem fills every option a caller leaves out from DOCKER_HOST / DOCKER_TLS_VERIFY /
// DOCKER_CERT_PATH, which main exports for later steps (post included). So every client here is
// built with all connection options explicit, and with those variables hidden while it is built.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Docker from 'dockerode';
import { DockerEnv, OUTER_ENGINE_ENV } from './contract';

/** The outer engine, as the DOCKER_* variables described it when the job started. */
export interface EngineSettings {
  host?: string;
  tlsVerify?: string;
  certPath?: string;
}

/** TLS endpoint with in-memory PEM material. */
export interface TlsEndpoint {
  host: string;
  port: number;
  ca: string;
  cert: string;
  key: string;
}

type Env = Record<string, string | undefined>;

/** The outer engine: the one an earlier setup-dind step recorded, else what DOCKER_* say now. */
export function outerEngineSettings(env: Env = process.env): EngineSettings {
  const recorded = env[OUTER_ENGINE_ENV];
  if (recorded) return JSON.parse(recorded) as EngineSettings;
  const settings: EngineSettings = {};
  if (env[DockerEnv.Host]) settings.host = env[DockerEnv.Host];
  if (env[DockerEnv.TlsVerify]) settings.tlsVerify = env[DockerEnv.TlsVerify];
  if (env[DockerEnv.CertPath]) settings.certPath = env[DockerEnv.CertPath];
  return settings;
}

const UNSET = {
  socketPath: undefined,
  host: undefined,
  port: undefined,
  protocol: undefined,
  ca: undefined,
  cert: undefined,
  key: undefined,
  timeout: undefined
};

/** Complete dockerode options for the outer engine; nothing left for docker-modem to guess. */
export function engineClientOptions(
  settings: EngineSettings,
  readFile = (file: string) => fs.readFileSync(file, 'utf8')
): Docker.DockerOptions {
  const host = settings.host ?? 'unix:///var/run/docker.sock';
  if (host.startsWith('unix://'))
    return { ...UNSET, socketPath: host.slice('unix://'.length) || '/var/run/docker.sock' };
  const url = new URL(host.includes('://') ? host : `tcp://${host}`);
  if (url.protocol !== 'tcp:') {
    throw new Error(
      `The Docker engine at DOCKER_HOST=${host} is not supported: use a unix:// socket or a tcp:// address.`
    );
  }
  const tls = settings.tlsVerify === '1' || url.port === '2376' || Boolean(settings.certPath);
  const options: Docker.DockerOptions = {
    ...UNSET,
    host: url.hostname,
    port: url.port || (tls ? '2376' : '2375'),
    protocol: tls ? 'https' : 'http'
  };
  if (tls && settings.certPath) {
    options.ca = readFile(path.join(settings.certPath, 'ca.pem'));
    options.cert = readFile(path.join(settings.certPath, 'cert.pem'));
    options.key = readFile(path.join(settings.certPath, 'key.pem'));
  }
  return options;
}

export function tlsClientOptions(endpoint: TlsEndpoint): Docker.DockerOptions {
  return {
    ...UNSET,
    host: endpoint.host,
    port: endpoint.port,
    protocol: 'https',
    ca: endpoint.ca,
    cert: endpoint.cert,
    key: endpoint.key
  };
}

/** Builds a client while DOCKER_* are hidden, so docker-modem does not read files they point at. */
export function connect(options: Docker.DockerOptions): Docker {
  const saved = Object.values(DockerEnv).map(name => [name, process.env[name]] as const);
  for (const [name] of saved) delete process.env[name];
  try {
    return new Docker(options);
  } finally {
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
  }
}

export function connectOuterEngine(settings: EngineSettings): Docker {
  return connect(engineClientOptions(settings));
}

export function describeEngine(settings: EngineSettings): string {
  return settings.host ?? 'unix:///var/run/docker.sock';
}
