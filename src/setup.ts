// Main: start the daemon, secure it, hand it to later steps.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { builderName, buildkitdConfig, buildxVersion, createBuilder, DOCKER_DRIVER_BUILDER } from './handover/buildx';
import { MainCache } from './cache/restore';
import { INSTANCE_LABEL, Outputs } from './runner/contract';
import { createContext } from './handover/context';
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
  waitForDaemon
} from './daemon/container';
import {
  connect,
  connectOuterEngine,
  describeEngine,
  outerEngineSettings,
  tlsClientOptions,
  type EngineSettings,
  type TlsEndpoint
} from './runner/engine';
import {
  exportBuildxBuilder,
  exportDockerEnvironment,
  exportTestcontainersHost,
  setDaemonOutputs,
  writeClientCertificates
} from './handover/environment';
import { DataFiles, prepareEmptyData, readDataEvents } from './daemon/data-image';
import { errorMessage } from './util/errors';
import { ensureImage } from './daemon/image';
import { getInputs, type ActionInputs } from './inputs';
import { newInstance } from './daemon/instance';
import { Timeline } from './util/report';
import {
  bindMountPlan,
  dataOutcome,
  lateServerCertificate,
  placementOf,
  reachability,
  startsAfresh,
  type Placement,
  type Reach,
  type DaemonAddress
} from './daemon/placement';
import { defaultRouteMtu, detectRunnerContainer, engineHostPath, engineUnreachableMessage } from './runner/host';
import { SavedState } from './state';
import { certificateLifetimeHours, createAuthority, type CertificateAuthority, type KeyPair } from './daemon/tls';
import { shortId } from './util/units';
import { SWARM_PORT } from './daemon/facts';

const FAILURE_LOG_LINES = 50;

export async function runMain(): Promise<void> {
  const timeline = new Timeline();
  try {
    await setUp(timeline);
  } catch (error) {
    core.setFailed(errorMessage(error));
  } finally {
    await timeline.writeSummary('setup-dind: daemon');
  }
}

interface Prepared {
  authority: CertificateAuthority;
  client: KeyPair;
  /** Issued before the container starts when it can be (see lateServerCertificate). */
  server?: KeyPair;
  /** The data directory as the engine's host has it; undefined: the image's own /var/lib/docker volume. */
  dataDir?: string;
  cache?: MainCache;
}

async function setUp(timeline: Timeline): Promise<void> {
  if (process.platform !== 'linux') {
    throw new Error(
      `dind needs a Linux runner: this one runs ${process.platform}. Use runs-on: ubuntu-latest or a Linux self-hosted runner.`
    );
  }
  const inputs = getInputs();
  // Before anything starts: a runner without the plugin has nothing to clean up.
  const buildx = inputs.buildx ? await buildxVersion() : undefined;
  const instance = newInstance(inputs.name);
  const engine = outerEngineSettings();
  const state = new SavedState({ instance, engine });
  const docker = connectOuterEngine(engine);

  const { prepared, placement } = await timeline.phase(
    `Prepare ${inputs.image}, certificates, network and cache`,
    async () => {
      await reachEngine(docker, engine);
      const runner = await detectRunnerContainer(docker);
      const placement = placementOf(runner);
      core.debug(`Placement: ${JSON.stringify(placement)}`);
      if (runner)
        core.info(`The job runs in container ${shortId(runner.id)} (networks: ${runner.networks.join(', ')}).`);
      return { prepared: await prepare(docker, inputs, state, placement), placement };
    }
  );
  const { container, reach, addresses, version, recorder } = await timeline.phase('Start the daemon', () =>
    startDaemon(docker, inputs, state, prepared, placement)
  );

  await timeline.phase('Hand the daemon to later steps', async () => {
    await checkData(state, prepared, timeline);
    await recorder;
    if (inputs.setEnv) {
      exportDockerEnvironment(reach.dockerHost, instance.certDir, engine);
      if (reach.ip) exportTestcontainersHost(reach.ip);
      core.info(`Exported DOCKER_HOST=${reach.dockerHost}, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH=${instance.certDir}`);
    }
    if (inputs.swarm)
      await initSwarm(connect(tlsClientOptions(endpointOf(reach.address, prepared))), addresses[instance.networkName]);
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
      state.set({ context });
      core.info(`Docker context '${context}' points at the daemon.`);
    }
    const cache = prepared.cache;
    setDaemonOutputs({
      host: reach.dockerHost,
      certPath: instance.certDir,
      containerId: container.id,
      context: state.current.context ?? '',
      version,
      ip: reach.ip ?? ''
    });
    core.setOutput(Outputs.CacheHit, String(cache?.outputs.hit ?? false));
    core.setOutput(Outputs.CacheKey, cache?.outputs.key ?? '');
    core.setOutput(Outputs.CacheSize, String(cache?.outputs.bytes ?? 0));
    timeline.fact(
      'Daemon',
      `Docker ${version} at ${reach.dockerHost}${reach.ip ? ` (container address ${reach.ip})` : ''}`
    );
  });
  const context = state.current.context;
  if (context) timeline.fact('Context', context);
  if (buildx) {
    const builder = await timeline.phase('Set up the buildx builder', () => setUpBuilder(inputs, state));
    timeline.fact('Buildx builder', `${builder}: ${describeBuilder(inputs, state)}; ${buildx}`);
  }
}

/** The builder of later steps' buildx, made on the context for the docker-container driver. */
async function setUpBuilder(inputs: ActionInputs, state: SavedState): Promise<string> {
  let builder = DOCKER_DRIVER_BUILDER;
  const { instance, context } = state.current;
  if (inputs.buildxDriver === 'docker-container') {
    builder = builderName(instance);
    // Saved first: buildx records a builder whose bootstrap fails, and post must remove it.
    state.set({ builder });
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

function describeBuilder(inputs: ActionInputs, state: SavedState): string {
  return inputs.buildxDriver === 'docker'
    ? "docker driver, the daemon's own BuildKit through DOCKER_HOST"
    : `docker-container driver, ${inputs.buildxImage} on context ${state.current.context}`;
}

async function reachEngine(docker: Docker, engine: EngineSettings): Promise<void> {
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(engineUnreachableMessage(describeEngine(engine), errorMessage(error)), { cause: error });
  }
}

/**
 * Everything that does not need the container, at once: the image pull overlaps the cache download.
 * The server's certificate too, unless it must name an address the container gets only once it runs.
 */
async function prepare(
  docker: Docker,
  inputs: ActionInputs,
  state: SavedState,
  placement: Placement
): Promise<Prepared> {
  const { instance } = state.current;
  const dataDir = engineHostPath(placement.runner, instance.dataDir);
  if (dataDir === undefined && inputs.cache) {
    core.warning(
      `Cache off: the engine cannot bind-mount ${instance.dataDir} from inside this job's container (RUNNER_TEMP is not a bind mount of the engine's host).`
    );
  }
  const imageId = ensureImage(docker, inputs.image, inputs.pull);
  const [tls, , , cache] = await Promise.all([
    (async () => {
      const authority = await createAuthority(certificateLifetimeHours(process.env.RUNNER_ENVIRONMENT));
      const [client, server] = await Promise.all([
        authority.issueClient(),
        lateServerCertificate(placement) ? undefined : authority.issueServer(serverSubjectAltNames(instance, []))
      ]);
      await writeClientCertificates(instance.certDir, authority.caCert, client);
      core.info(`Certificates valid until ${authority.notAfter.toISOString()}; client files in ${instance.certDir}`);
      return { authority, client, server };
    })(),
    imageId,
    docker.createNetwork(networkCreateOptions(instance)),
    dataDir === undefined ? undefined : MainCache.restore(inputs, instance, imageId, state)
  ]);
  state.set({ imageId: await imageId });
  return { ...tls, dataDir, cache };
}

/** What the entrypoint did with the data: a restored state that failed its check is not the cache's any more. */
async function checkData(state: SavedState, prepared: Prepared, timeline: Timeline): Promise<void> {
  if (prepared.dataDir === undefined) return;
  const events = await readDataEvents(state.current.instance.dataDir);
  if (events.mountedIn) core.info(`The daemon's filesystem was ready in ${events.mountedIn}.`);
  const cache = prepared.cache;
  const outcome = dataOutcome(events, cache?.restoredKey);
  if (outcome.kind === 'plain') {
    if (cache)
      core.warning(`Cache off: the daemon's data could not be kept in a filesystem image (${outcome.reason}).`);
    state.setCache(undefined);
  } else if (outcome.kind === 'discarded' && cache) {
    core.warning(`The cache ${cache.restoredKey} was not used: ${outcome.reason}. The daemon started empty.`);
    await cache.refuse();
  }
  const summary = cache?.summary();
  if (summary) timeline.fact('Cache restored', summary);
}

/** The runner paths to mount at the same path in the daemon: the workspace and RUNNER_TEMP unless `mounts` says. */
function bindMounts(inputs: ActionInputs, placement: Placement): Array<{ source: string; target: string }> {
  const paths =
    inputs.mounts ?? [process.env.GITHUB_WORKSPACE, process.env.RUNNER_TEMP].filter((p): p is string => Boolean(p));
  const { mounts, unreachable } = bindMountPlan(paths, placement.runner);
  for (const target of unreachable)
    core.warning(
      `Not mounting ${target} into the daemon: it is not a bind mount of this job's container, so the engine cannot see it.`
    );
  return mounts;
}

function endpointOf(address: DaemonAddress, prepared: Prepared): TlsEndpoint {
  return { ...address, ca: prepared.authority.caCert, cert: prepared.client.cert, key: prepared.client.key };
}

/** A started dind container, and how this job reaches it. */
interface Launched {
  container: Docker.Container;
  reach: Reach;
  addresses: Record<string, string>;
}

/**
 * Starts the daemon and waits for it, within the wait-timeout. A daemon that does not become ready on a
 * restored state gets a fresh filesystem and starts again, with the rest of the time: whatever the state
 * holds that stops dockerd, a cache writer cannot fail the job with it.
 */
async function startDaemon(
  docker: Docker,
  inputs: ActionInputs,
  state: SavedState,
  prepared: Prepared,
  placement: Placement
) {
  const budgetMs = inputs.waitTimeoutSeconds * 1000;
  const restoredKey = prepared.cache?.restoredKey;
  let launched = await launch(docker, inputs, state, prepared, placement);
  const waitStarted = Date.now();
  try {
    return await becomeReady(launched, prepared, restoredKey ? restoredWaitMs(budgetMs) : budgetMs);
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    const log = await showFailure(launched.container);
    if (!prepared.cache || !startsAfresh(await readDataEvents(state.current.instance.dataDir), restoredKey))
      throw notReady(error, log, inputs);
    const line = lastLogLine(log);
    await startOver(
      launched.container,
      state,
      prepared.cache,
      `${error.message}${line ? ` Its last log line: "${line}".` : ''}`
    );
  }
  launched = await launch(docker, inputs, state, prepared, placement);
  try {
    return await becomeReady(launched, prepared, coldWaitMs(budgetMs, Date.now() - waitStarted));
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    throw notReady(error, await showFailure(launched.container), inputs);
  }
}

/** Creates and starts the dind container with its setup, and the server's certificate once its addresses are known. */
async function launch(
  docker: Docker,
  inputs: ActionInputs,
  state: SavedState,
  prepared: Prepared,
  placement: Placement
): Promise<Launched> {
  const { instance } = state.current;
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
  prepared.cache?.daemonStarts();
  await container.start();
  const info = await container.inspect();
  const port = publishedPort(info);
  const addresses = networkAddresses(info);
  const reach = reachability(instance, port, addresses, placement);
  core.debug(
    `Published port ${port}, addresses ${JSON.stringify(addresses)}: the job reaches the daemon at ${reach.address.host}:${reach.address.port}`
  );
  state.set({ endpoint: reach.address });
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
async function becomeReady(launched: Launched, prepared: Prepared, timeoutMs: number) {
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

function notReady(error: DaemonNotReadyError, log: string, inputs: ActionInputs): Error {
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
async function startOver(container: Docker.Container, state: SavedState, cache: MainCache, why: string): Promise<void> {
  const key = cache.restoredKey;
  await container.remove({ force: true, v: true });
  const { dataDir } = state.current.instance;
  // The image may be another runner user's (kept whole in cache-dir): a new file, not a rewrite of it.
  await Promise.all([DataFiles.image, DataFiles.events].map(name => fs.rm(path.join(dataDir, name), { force: true })));
  await prepareEmptyData(dataDir);
  // The usage recorder went with the container.
  state.updateCache({ usageRecorder: undefined });
  await cache.refuse();
  core.warning(`The cache ${key} was not used: the daemon did not start on it. ${why} The daemon starts empty.`);
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
