// Preparing and starting the dind container and waiting for its daemon, within the wait-timeout: with one
// fresh start when the state restored for it is what keeps dockerd from becoming ready.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import {
  containerCreateOptions,
  containerLog,
  coldWaitMs,
  DaemonNotReadyError,
  daemonConfig,
  diagnose,
  lastLogLine,
  networkAddresses,
  networkCreateOptions,
  publishedPort,
  READY_STEADINESS,
  restoredWaitMs,
  serverArchive,
  serverSubjectAltNames,
  setupArchive,
  waitForDaemon,
  type DaemonConfigInputs,
  type PortMapping
} from './container';
import { DataFiles, prepareEmptyData, readDataEvents, type DataEvents } from './data-image';
import { ensureImage, type PullPolicy } from './image';
import { newInstance, type Instance } from './instance';
import {
  bindMountPlan,
  placementOf,
  reachability,
  startsAfresh,
  type DaemonAddress,
  type Placement,
  type Reach
} from './placement';
import type { CertificateAuthority, KeyPair } from './tls';
import {
  connectOuterEngine,
  describeEngine,
  outerEngineSettings,
  type EngineSettings,
  type TlsEndpoint
} from '../runner/engine';
import { defaultRouteMtu, detectRunnerContainer, engineHostPath, engineUnreachableMessage } from '../runner/host';
import { errorMessage } from '../util/errors';
import { shortId } from '../util/units';

const FAILURE_LOG_LINES = 50;

/** The inputs the daemon's start reads. */
export interface DaemonInputs extends DaemonConfigInputs {
  image: string;
  privileged: boolean;
  /** Runner paths bind-mounted at the same path; undefined: the workspace and RUNNER_TEMP. */
  mounts?: string[];
  ports: PortMapping[];
  waitTimeoutSeconds: number;
}

/** What the daemon starts on the state restored for it asks of that state (main's cache). */
export interface RestoredData {
  readonly restoredKey: string | undefined;
  /** The daemon starts now: its image use is the job's from here. */
  daemonStarts(): void;
  /** At the daemon's first answer. */
  recordUsage(container: Docker.Container): Promise<void>;
  /** The state did not do: the daemon starts empty (`containerGone`: the container went with it). */
  refuse(options?: { containerGone?: boolean }): Promise<void>;
}

/** Everything the start needs that main made before it. */
export interface DaemonSetup {
  authority: CertificateAuthority;
  client: KeyPair;
  /** Issued before the container starts when it can be (see lateServerCertificate). */
  server?: KeyPair;
  /** The data directory as the engine's host has it; undefined: the instance's volume holds the data. */
  dataDir?: string;
  cache?: RestoredData;
}

/** Where main keeps the address at which the job reaches the daemon, once it runs. */
export interface EndpointRecord {
  set(patch: { endpoint: DaemonAddress }): void;
}

/** A new daemon's names, and the outer engine it will run on, as main finds it. */
export function newDaemon(name: string): { instance: Instance; engine: EngineSettings; docker: Docker } {
  const engine = outerEngineSettings();
  return { instance: newInstance(name), engine, docker: connectOuterEngine(engine) };
}

/** Where the daemon will sit: on the runner's host, or beside the job's container. The engine must answer. */
export async function findPlacement(docker: Docker, engine: EngineSettings): Promise<Placement> {
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(engineUnreachableMessage(describeEngine(engine), errorMessage(error)), { cause: error });
  }
  const runner = await detectRunnerContainer(docker);
  const placement = placementOf(runner);
  core.debug(`Placement: ${JSON.stringify(placement)}`);
  if (runner) core.info(`The job runs in container ${shortId(runner.id)} (networks: ${runner.networks.join(', ')}).`);
  return placement;
}

/** The inputs the daemon's preparation reads. */
interface PrepareInputs {
  image: string;
  pull: PullPolicy;
  cache: boolean;
}

/** What the engine and the runner's disk hold for the container before it starts. */
interface Preparing {
  /** The data directory as the engine's host has it, made; undefined: the engine cannot bind-mount it. */
  dataDir?: string;
  /** The image's id, once pulled when the pull policy says. */
  imageId: Promise<string>;
  /** The daemon's network, once made. */
  network: Promise<unknown>;
}

/** The data directory, made now; the image and the network, on their way. */
export async function prepareDaemon(
  docker: Docker,
  inputs: PrepareInputs,
  instance: Instance,
  placement: Placement
): Promise<Preparing> {
  const dataDir = engineHostPath(placement.runner, instance.dataDir);
  if (dataDir === undefined && inputs.cache) {
    core.warning(
      `Cache off: the engine cannot bind-mount ${instance.dataDir} from inside this job's container (RUNNER_TEMP is not a bind mount of the engine's host).`
    );
  }
  // Before the container exists: the engine would make a missing bind-mount source itself, as root.
  if (dataDir !== undefined) await fs.mkdir(instance.dataDir, { recursive: true, mode: 0o755 });
  return {
    dataDir,
    imageId: ensureImage(docker, inputs.image, inputs.pull),
    network: docker.createNetwork(networkCreateOptions(instance))
  };
}

/** What the entrypoint did with the data directory, read once the daemon answers. */
export async function dataReady(instance: Instance): Promise<DataEvents> {
  const events = await readDataEvents(instance.dataDir);
  if (events.mountedIn) core.info(`The daemon's filesystem was ready in ${events.mountedIn}.`);
  return events;
}

/** The runner paths to mount at the same path in the daemon: the workspace and RUNNER_TEMP unless `mounts` says. */
function bindMounts(inputs: DaemonInputs, placement: Placement): Array<{ source: string; target: string }> {
  const paths =
    inputs.mounts ?? [process.env.GITHUB_WORKSPACE, process.env.RUNNER_TEMP].filter((p): p is string => Boolean(p));
  const { mounts, unreachable } = bindMountPlan(paths, placement.runner);
  for (const target of unreachable)
    core.warning(
      `Not mounting ${target} into the daemon: it is not a bind mount of this job's container, so the engine cannot see it.`
    );
  return mounts;
}

export function endpointOf(address: DaemonAddress, prepared: DaemonSetup): TlsEndpoint {
  return { ...address, ca: prepared.authority.caCert, cert: prepared.client.cert, key: prepared.client.key };
}

/** A started dind container, and how this job reaches it. */
interface Launched {
  container: Docker.Container;
  reach: Reach;
  addresses: Record<string, string>;
}

/**
 * Waits for the daemon of the container launched `first`, within the wait-timeout. A daemon that does not become ready on a
 * restored state gets a fresh filesystem and starts again, with the rest of the time: whatever the state
 * holds that stops dockerd, a cache writer cannot fail the job with it.
 */
export async function startDaemon(
  docker: Docker,
  inputs: DaemonInputs,
  instance: Instance,
  record: EndpointRecord,
  prepared: DaemonSetup,
  placement: Placement,
  first: Launched
) {
  const budgetMs = inputs.waitTimeoutSeconds * 1000;
  const restoredKey = prepared.cache?.restoredKey;
  let launched = first;
  const waitStarted = Date.now();
  try {
    return await becomeReady(launched, prepared, restoredKey ? restoredWaitMs(budgetMs) : budgetMs);
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    const log = await showFailure(launched.container);
    if (!prepared.cache || !startsAfresh(await readDataEvents(instance.dataDir), restoredKey))
      throw notReady(error, log, inputs);
    const line = lastLogLine(log);
    await startOver(
      launched.container,
      docker.getVolume(instance.volumeName),
      instance.dataDir,
      prepared.cache,
      `${error.message}${line ? ` Its last log line: "${line}".` : ''}`
    );
  }
  launched = await launchDaemon(docker, inputs, instance, record, prepared, placement);
  prepared.cache?.daemonStarts();
  try {
    return await becomeReady(launched, prepared, coldWaitMs(budgetMs, Date.now() - waitStarted));
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    throw notReady(error, await showFailure(launched.container), inputs);
  }
}

/**
 * Creates and starts the dind container with its setup, and the server's certificate once its addresses
 * are known. Its entrypoint waits for the data directory's mode before it starts dockerd.
 */
export async function launchDaemon(
  docker: Docker,
  inputs: DaemonInputs,
  instance: Instance,
  record: EndpointRecord,
  prepared: DaemonSetup,
  placement: Placement
): Promise<Launched> {
  const container = await docker.createContainer(
    containerCreateOptions({
      instance,
      image: inputs.image,
      privileged: inputs.privileged,
      dockerdArgs: inputs.dockerdArgs,
      dataDir: prepared.dataDir,
      mounts: bindMounts(inputs, placement),
      ports: inputs.ports
    })
  );
  for (const network of placement.sharedNetworks) {
    await docker.getNetwork(network).connect({ Container: container.id, EndpointConfig: { Aliases: [instance.name] } });
  }
  const config = daemonConfig(inputs, defaultRouteMtu());
  await container.putArchive(await setupArchive(prepared.authority.caCert, config, prepared.server), { path: '/' });
  await container.start();
  const info = await container.inspect();
  const port = publishedPort(info);
  const addresses = networkAddresses(info);
  const reach = reachability(instance, port, addresses, placement);
  core.debug(
    `Published port ${port}, addresses ${JSON.stringify(addresses)}: the job reaches the daemon at ${reach.address.host}:${reach.address.port}`
  );
  record.set({ endpoint: reach.address });
  if (!prepared.server) {
    const sans = serverSubjectAltNames(instance, Object.values(addresses));
    await container.putArchive(await serverArchive(await prepared.authority.issueServer(sans)), { path: '/' });
  }
  const where = Object.entries(addresses)
    .map(([network, ip]) => `${ip} on ${network}`)
    .join(', ');
  core.info(`Container ${instance.containerName} started (${where}); daemon port published on 127.0.0.1:${port}`);
  return { container, reach, addresses };
}

/** Waits for the daemon; the image usage recorder starts at its first answer, during the readiness period. */
async function becomeReady(launched: Launched, prepared: DaemonSetup, timeoutMs: number) {
  const { container, reach } = launched;
  let recorder: Promise<void> | undefined;
  try {
    const version = await waitForDaemon(
      endpointOf(reach.address, prepared),
      container,
      timeoutMs,
      READY_STEADINESS,
      () => {
        recorder = prepared.cache?.recordUsage(container);
      }
    );
    core.info(`Docker ${version} answers over mutual TLS at ${reach.dockerHost}.`);
    return { ...launched, version, recorder: recorder ?? prepared.cache?.recordUsage(container) };
  } catch (error) {
    // Settled before the container goes: it records into the cache's setup.
    await recorder;
    throw error;
  }
}

/** The state and the last log lines of a container whose daemon did not become ready, in the log; returns the lines. */
async function showFailure(container: Docker.Container): Promise<string> {
  const log = await containerLog(container, FAILURE_LOG_LINES).catch(() => '(the log could not be read)');
  const status = await container.inspect().then(
    inspected => inspected.State.Status,
    () => 'unknown'
  );
  core.info(`Container state: ${status}. Last ${FAILURE_LOG_LINES} log lines:\n${log}`);
  return log;
}

function notReady(error: DaemonNotReadyError, log: string, inputs: DaemonInputs): Error {
  const hint = diagnose(log, inputs.privileged);
  return new Error(
    `${error.message}${hint ? ` ${hint}` : ''} The daemon's log is above, in the 'Start the daemon' group.`,
    { cause: error }
  );
}

/**
 * The daemon did not become ready on the restored state: the container goes with its volumes, the
 * data directory gets a fresh image for a cold start, and the state is refused (post saves over it).
 */
async function startOver(
  container: Docker.Container,
  volume: Docker.Volume,
  dataDir: string,
  cache: RestoredData,
  why: string
): Promise<void> {
  const key = cache.restoredKey;
  await container.remove({ force: true, v: true });
  await volume.remove();
  // The image may be another runner user's (kept whole in cache-dir): a new file, not a rewrite of it.
  await Promise.all([DataFiles.image, DataFiles.events].map(name => fs.rm(path.join(dataDir, name), { force: true })));
  await prepareEmptyData(dataDir);
  await cache.refuse({ containerGone: true });
  core.warning(`The cache ${key} was not used: the daemon did not start on it. ${why} The daemon starts empty.`);
}
