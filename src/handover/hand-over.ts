// The handover: what later steps get of the daemon. Its certificates, DOCKER_* and their path, the
// Testcontainers address, a single-node swarm, a Docker CLI context, the action's outputs, and a buildx
// builder on the daemon.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import {
  builderName,
  buildkitdConfig,
  buildxVersion,
  createBuilder,
  DOCKER_DRIVER_BUILDER,
  type BuildxDriver
} from './buildx';
import { createContext } from './context';
import {
  exportBuildxBuilder,
  exportDockerEnvironment,
  exportTestcontainersHost,
  setDaemonOutputs,
  writeClientCertificates
} from './environment';
import { daemonConfig, serverSubjectAltNames, type DaemonConfigInputs } from '../daemon/container';
import { SWARM_PORT } from '../daemon/facts';
import type { Instance } from '../daemon/instance';
import { lateServerCertificate, type Placement, type Reach } from '../daemon/placement';
import { certificateLifetimeHours, createAuthority, type CertificateAuthority, type KeyPair } from '../daemon/tls';
import { INSTANCE_LABEL, Outputs } from '../runner/contract';
import { connect, tlsClientOptions, type EngineSettings, type TlsEndpoint } from '../runner/engine';
import type { Timeline } from '../util/report';

/** The inputs the handover reads. */
export interface HandoverInputs {
  /** Export DOCKER_* for later steps. */
  setEnv: boolean;
  swarm: boolean;
  /** Docker CLI context to create; empty: none. */
  context: string;
}

/** The inputs the buildx builder reads. */
export interface BuilderInputs extends DaemonConfigInputs {
  buildxDriver: BuildxDriver;
  /** BuildKit for the docker-container driver. */
  buildxImage: string;
  /** The user's buildkitd.toml for the docker-container builder, parsed; empty: none. */
  buildkitdConfig: Record<string, unknown>;
}

/** Where main keeps what it made for later steps, for post to remove (the step state). */
export interface HandoverRecord {
  readonly current: { context?: string };
  set(patch: { context?: string; builder?: string }): void;
}

/** The daemon as it answers: its container, how this job reaches it, its version. */
export interface RunningDaemon {
  containerId: string;
  reach: Reach;
  addresses: Record<string, string>;
  version: string;
  endpoint: TlsEndpoint;
}

interface Handover {
  docker: Docker;
  inputs: HandoverInputs;
  instance: Instance;
  /** The outer engine, noted for a second instance in the same job. */
  engine: EngineSettings;
  record: HandoverRecord;
  timeline: Timeline;
}

/**
 * The buildx plugin's version when the inputs ask for a builder; checked before anything starts, so that
 * a runner without the plugin has nothing to clean up.
 */
export async function buildxPlugin(inputs: { buildx: boolean }): Promise<string | undefined> {
  return inputs.buildx ? buildxVersion() : undefined;
}

/**
 * The daemon's TLS material: a CA, the client's certificate, written for later steps, and the server's,
 * unless it must name an address the container gets only once it runs.
 */
export async function issueCertificates(
  instance: Instance,
  placement: Placement
): Promise<{ authority: CertificateAuthority; client: KeyPair; server?: KeyPair }> {
  const authority = await createAuthority(certificateLifetimeHours(process.env.RUNNER_ENVIRONMENT));
  const [client, server] = await Promise.all([
    authority.issueClient(),
    lateServerCertificate(placement) ? undefined : authority.issueServer(serverSubjectAltNames(instance, []))
  ]);
  await writeClientCertificates(instance.certDir, authority.caCert, client);
  core.info(`Certificates valid until ${authority.notAfter.toISOString()}; client files in ${instance.certDir}`);
  return { authority, client, server };
}

/** Hands the running daemon to later steps, as the inputs ask. */
export async function handOver(handover: Handover, daemon: RunningDaemon): Promise<void> {
  const { docker, inputs, instance, engine, record, timeline } = handover;
  const { reach } = daemon;
  if (inputs.setEnv) {
    exportDockerEnvironment(reach.dockerHost, instance.certDir, engine);
    if (reach.ip) exportTestcontainersHost(reach.ip);
    core.info(`Exported DOCKER_HOST=${reach.dockerHost}, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH=${instance.certDir}`);
  }
  if (inputs.swarm) await initSwarm(connect(tlsClientOptions(daemon.endpoint)), daemon.addresses[instance.networkName]);
  if (inputs.context) {
    const context = await createContext(
      {
        name: inputs.context,
        instanceId: instance.id,
        host: reach.dockerHost,
        certDir: instance.certDir,
        isLive: id => hasInstance(docker, id)
      },
      core.warning
    );
    record.set({ context });
    core.info(`Docker context '${context}' points at the daemon.`);
  }
  setDaemonOutputs({
    host: reach.dockerHost,
    certPath: instance.certDir,
    containerId: daemon.containerId,
    context: record.current.context ?? '',
    version: daemon.version,
    ip: reach.ip ?? ''
  });
  timeline.fact(
    'Daemon',
    `Docker ${daemon.version} at ${reach.dockerHost}${reach.ip ? ` (container address ${reach.ip})` : ''}`
  );
}

/** The builder of later steps' buildx, made on the context for the docker-container driver. */
export async function setUpBuilder(inputs: BuilderInputs, instance: Instance, record: HandoverRecord): Promise<string> {
  let builder = DOCKER_DRIVER_BUILDER;
  const { context } = record.current;
  if (inputs.buildxDriver === 'docker-container') {
    builder = builderName(instance);
    // Saved first: buildx records a builder whose bootstrap fails, and post must remove it.
    record.set({ builder });
    // getInputs refuses this driver without a context, so main has made one.
    if (!context)
      throw new Error('The docker-container driver of buildx needs a Docker CLI context, and none was made.');
    // The MTU plays no part in pulling: the daemon's registry settings are those of daemon.json whatever it is.
    const config = buildkitdConfig(daemonConfig(inputs, undefined), inputs.buildkitdConfig);
    if (config.skipped.length > 0)
      core.info(
        `The builder's BuildKit names registries by host: it does not take ${config.skipped.map(entry => `'${entry}'`).join(', ')} (the daemon does).`
      );
    core.debug(
      `docker-container builder ${builder} on context ${context}, image ${inputs.buildxImage}, ${config.toml ? 'with a buildkitd.toml' : "BuildKit's default configuration"}`
    );
    await createBuilder({ name: builder, context, image: inputs.buildxImage, config: config.toml });
  } else {
    core.debug(
      `docker driver: builder ${builder} is the daemon's own BuildKit, reached through DOCKER_HOST; it reads daemon.json`
    );
  }
  exportBuildxBuilder(builder);
  core.setOutput(Outputs.Builder, builder);
  core.info(`Exported BUILDX_BUILDER=${builder}: buildx in later steps builds in the daemon.`);
  return builder;
}

export function describeBuilder(inputs: BuilderInputs, record: HandoverRecord): string {
  return inputs.buildxDriver === 'docker'
    ? "docker driver, the daemon's own BuildKit through DOCKER_HOST"
    : `docker-container driver, ${inputs.buildxImage} on context ${record.current.context}`;
}

/** A single-node swarm, so `docker stack deploy` works. */
async function initSwarm(dind: Docker, address: string | undefined): Promise<void> {
  await dind.swarmInit({ ListenAddr: `0.0.0.0:${SWARM_PORT}`, AdvertiseAddr: address ?? '127.0.0.1' });
  core.info('Initialised a single-node swarm.');
}

async function hasInstance(docker: Docker, instanceId: string): Promise<boolean> {
  const containers = await docker.listContainers({
    filters: { label: [`${INSTANCE_LABEL}=${instanceId}`], status: ['running'] }
  });
  return containers.length > 0;
}
