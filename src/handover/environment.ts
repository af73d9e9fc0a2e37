// What later steps get: client certificates on disk, DOCKER_* variables and the action's outputs.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import { BUILDX_BUILDER_ENV, DockerEnv, OUTER_ENGINE_ENV, Outputs, TESTCONTAINERS_HOST_ENV } from '../runner/contract';
import type { EngineSettings } from '../runner/engine';
import type { KeyPair } from '../daemon/tls';

/** The Docker CLI's file names in DOCKER_CERT_PATH. */
export const CLIENT_FILES = { ca: 'ca.pem', cert: 'cert.pem', key: 'key.pem' } as const;

/** Directory 0700 and key 0600, whatever the umask: only the job's user may read the key. */
export async function writeClientCertificates(dir: string, caCert: string, client: KeyPair): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const write = async (name: string, content: string, mode: number) => {
    const file = path.join(dir, name);
    await fs.writeFile(file, content, { mode });
    await fs.chmod(file, mode);
  };
  await Promise.all([
    write(CLIENT_FILES.ca, caCert, 0o644),
    write(CLIENT_FILES.cert, client.cert, 0o644),
    write(CLIENT_FILES.key, client.key, 0o600)
  ]);
}

/** DOCKER_* for later steps, and a note of the outer engine so that a second instance starts beside this one. */
export function exportDockerEnvironment(host: string, certDir: string, outer: EngineSettings): void {
  if (!process.env[OUTER_ENGINE_ENV]) core.exportVariable(OUTER_ENGINE_ENV, JSON.stringify(outer));
  core.exportVariable(DockerEnv.Host, host);
  core.exportVariable(DockerEnv.TlsVerify, '1');
  core.exportVariable(DockerEnv.CertPath, certDir);
}

/** Testcontainers maps ports on the daemon's host: it must dial the dind container, not DOCKER_HOST's address. */
export function exportTestcontainersHost(ip: string): void {
  core.exportVariable(TESTCONTAINERS_HOST_ENV, ip);
}

/** The builder buildx, docker/build-push-action and compose use in later steps of this job alone. */
export function exportBuildxBuilder(name: string): void {
  core.exportVariable(BUILDX_BUILDER_ENV, name);
}

export interface DaemonOutputs {
  host: string;
  certPath: string;
  containerId: string;
  context: string;
  version: string;
  ip: string;
}

export function setDaemonOutputs(outputs: DaemonOutputs): void {
  core.setOutput(Outputs.Host, outputs.host);
  core.setOutput(Outputs.CertPath, outputs.certPath);
  core.setOutput(Outputs.ContainerId, outputs.containerId);
  core.setOutput(Outputs.Context, outputs.context);
  core.setOutput(Outputs.Version, outputs.version);
  core.setOutput(Outputs.Ip, outputs.ip);
}
