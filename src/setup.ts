// Main: start the daemon, secure it, hand it to later steps.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { builderName, buildkitdConfig, buildxVersion, createBuilder, DOCKER_DRIVER_BUILDER } from './handover/buildx';
import {
  prepareCache,
  prepareEmptyData,
  restoreDaemonData,
  type CacheSetup,
  type RestoreResult
} from './cache/restore';
import { INSTANCE_LABEL, Outputs, SWARM_PORT } from './runner/contract';
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
import { DataFiles, readDataEvents } from './daemon/data-image';
import { errorMessage } from './util/errors';
import { ensureImage } from './daemon/image';
import { getInputs, type ActionInputs } from './inputs';
import { newInstance } from './daemon/instance';
import { formatSeconds, Timeline } from './util/report';
import {
  bindMountPlan,
  dataOutcome,
  lateServerCertificate,
  placementOf,
  reachability,
  startsAfresh,
  type Placement,
  type Reach
} from './daemon/placement';
import { defaultRouteMtu, detectRunnerContainer, engineHostPath, engineUnreachableMessage } from './runner/host';
import { saveInstanceState, type DaemonAddress, type InstanceState } from './state';
import { certificateLifetimeHours, createAuthority, type CertificateAuthority, type KeyPair } from './daemon/tls';
import { formatBytes, shortId } from './util/units';
import { startUsageRecorder } from './cache/usage';

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
  cache?: { setup: CacheSetup; restored: RestoreResult; seconds: number };
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
  const state: InstanceState = { instance, engine };
  saveInstanceState(state);
  const docker = connectOuterEngine(engine);

  const { prepared, restoring, placement } = await timeline.phase(
    `Prepare ${inputs.image}, certificates, network and cache`,
    async () => {
      await reachEngine(docker, engine);
      const runner = await detectRunnerContainer(docker);
      const placement = placementOf(runner);
      core.debug(`Placement: ${JSON.stringify(placement)}`);
      if (runner)
        core.info(`The job runs in container ${shortId(runner.id)} (networks: ${runner.networks.join(', ')}).`);
      return { ...(await prepare(docker, inputs, state, placement)), placement };
    }
  );
  // The container starts while the cache is restored: its entrypoint waits for the data (see entrypoint.sh).
  const restores = inputs.cache && prepared.dataDir !== undefined;
  const first = await timeline.phase(
    `Start the container${restores ? ', and restore the cache meanwhile' : ''}`,
    async () => {
      const launched = await launch(docker, inputs, state, prepared, placement);
      await awaitData(state, prepared, restoring);
      return launched;
    }
  );
  const { container, reach, addresses, version, recorder } = await timeline.phase('Start the daemon', () =>
    startDaemon(docker, inputs, state, prepared, placement, first)
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
      state.context = await createContext(
        {
          name: inputs.context,
          instanceId: instance.id,
          host: reach.dockerHost,
          certDir: instance.certDir,
          isLive: id => hasInstance(docker, id)
        },
        core.warning
      );
      saveInstanceState(state);
      core.info(`Docker context '${state.context}' points at the daemon.`);
    }
    const cache = prepared.cache;
    setDaemonOutputs({
      host: reach.dockerHost,
      certPath: instance.certDir,
      containerId: container.id,
      context: state.context ?? '',
      version,
      ip: reach.ip ?? ''
    });
    core.setOutput(Outputs.CacheHit, String(cache?.restored.hit ?? false));
    core.setOutput(Outputs.CacheKey, cache?.restored.key ?? cache?.setup.exactPrefix ?? '');
    core.setOutput(Outputs.CacheSize, String(cache?.restored.bytes ?? 0));
    timeline.fact(
      'Daemon',
      `Docker ${version} at ${reach.dockerHost}${reach.ip ? ` (container address ${reach.ip})` : ''}`
    );
  });
  if (state.context) timeline.fact('Context', state.context);
  if (buildx) {
    const builder = await timeline.phase('Set up the buildx builder', () => setUpBuilder(inputs, state));
    timeline.fact('Buildx builder', `${builder}: ${describeBuilder(inputs, state)}; ${buildx}`);
  }
}

/** The builder of later steps' buildx, made on the context for the docker-container driver. */
async function setUpBuilder(inputs: ActionInputs, state: InstanceState): Promise<string> {
  let builder = DOCKER_DRIVER_BUILDER;
  if (inputs.buildxDriver === 'docker-container') {
    builder = builderName(state.instance);
    // Saved first: buildx records a builder whose bootstrap fails, and post must remove it.
    state.builder = builder;
    saveInstanceState(state);
    // getInputs refuses this driver without a context, so main has made one.
    if (!state.context)
      throw new Error('The docker-container driver of buildx needs a Docker CLI context, and none was made.');
    // The MTU plays no part in pulling: the daemon's registry settings are those of daemon.json whatever it is.
    const config = buildkitdConfig(daemonConfig(inputs, undefined), inputs.buildkitdConfig);
    if (config.skipped.length > 0)
      core.info(
        `The builder's BuildKit names registries by host: it does not take ${config.skipped.map(entry => `'${entry}'`).join(', ')} (the daemon does).`
      );
    core.debug(
      `docker-container builder ${builder} on context ${state.context}, image ${inputs.buildxImage}, ${config.toml ? 'with a buildkitd.toml' : "BuildKit's default configuration"}`
    );
    await createBuilder({ name: builder, context: state.context, image: inputs.buildxImage, config: config.toml });
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

function describeBuilder(inputs: ActionInputs, state: InstanceState): string {
  return inputs.buildxDriver === 'docker'
    ? "docker driver, the daemon's own BuildKit through DOCKER_HOST"
    : `docker-container driver, ${inputs.buildxImage} on context ${state.context}`;
}

async function reachEngine(docker: Docker, engine: EngineSettings): Promise<void> {
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(engineUnreachableMessage(describeEngine(engine), errorMessage(error)), { cause: error });
  }
}

/**
 * Everything the container needs, at once: the image pull, the certificates and the network; the server's
 * certificate too, unless it must name an address the container gets only once it runs. The cache's
 * restore starts with them and goes on while the container starts (`restoring`).
 */
async function prepare(
  docker: Docker,
  inputs: ActionInputs,
  state: InstanceState,
  placement: Placement
): Promise<{ prepared: Prepared; restoring: Promise<Prepared['cache']> }> {
  const { instance } = state;
  const dataDir = engineHostPath(placement.runner, instance.dataDir);
  if (dataDir === undefined && inputs.cache) {
    core.warning(
      `Cache off: the engine cannot bind-mount ${instance.dataDir} from inside this job's container (RUNNER_TEMP is not a bind mount of the engine's host).`
    );
  }
  // Before the container exists: the engine would make a missing bind-mount source itself, as root.
  if (dataDir !== undefined) await fs.mkdir(instance.dataDir, { recursive: true, mode: 0o755 });
  const imageId = ensureImage(docker, inputs.image, inputs.pull);
  const restoring = (async () => {
    if (dataDir === undefined) return undefined;
    const setup = await prepareCache(inputs, instance);
    if (!setup) {
      await prepareEmptyData(instance.dataDir);
      return undefined;
    }
    state.cache = setup;
    saveInstanceState(state);
    const started = performance.now();
    const restored = await restoreDaemonData(setup, imageId);
    return { setup, restored, seconds: (performance.now() - started) / 1000 };
  })();
  // Awaited once the container is started (awaitData); a failure meanwhile fails main there, or before.
  restoring.catch(() => undefined);
  const [tls] = await Promise.all([
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
    docker.createNetwork(networkCreateOptions(instance))
  ]);
  state.imageId = await imageId;
  saveInstanceState(state);
  return { prepared: { ...tls, dataDir }, restoring };
}

/** Waits for the restore (which leaves the data for the entrypoint), and records what it restored. */
async function awaitData(state: InstanceState, prepared: Prepared, restoring: Promise<Prepared['cache']>) {
  const cache = await restoring;
  if (cache) {
    prepared.cache = cache;
    // The job's use of its images starts now, when the entrypoint may start the daemon.
    state.cache = {
      ...cache.setup,
      restoredKey: cache.restored.key,
      refusedKey: cache.restored.refusedKey,
      usageSince: Date.now()
    };
  }
  saveInstanceState(state);
}

/** What the entrypoint did with the data: a restored state that failed its check is not the cache's any more. */
async function checkData(state: InstanceState, prepared: Prepared, timeline: Timeline): Promise<void> {
  if (prepared.dataDir === undefined) return;
  const events = await readDataEvents(state.instance.dataDir);
  if (events.mountedIn) core.info(`The daemon's filesystem was ready in ${events.mountedIn}.`);
  const cache = prepared.cache;
  const outcome = dataOutcome(events, cache?.restored.key);
  if (outcome.kind === 'plain') {
    if (cache)
      core.warning(`Cache off: the daemon's data could not be kept in a filesystem image (${outcome.reason}).`);
    state.cache = undefined;
  } else if (outcome.kind === 'discarded' && cache) {
    core.warning(`The cache ${cache.restored.key} was not used: ${outcome.reason}. The daemon started empty.`);
    await refuseRestored(state, cache);
  }
  saveInstanceState(state);
  if (cache && state.cache) {
    const { restored, seconds } = cache;
    const { refusedKey } = state.cache;
    timeline.fact(
      'Cache restored',
      restored.key
        ? `${formatBytes(restored.bytes)} in ${formatSeconds(seconds)} (${restored.hit ? 'hit' : 'fallback key'}; ${formatBytes(restored.downloadedBytes)} downloaded, ${formatBytes(restored.localBytes)} from the cache directory${restored.wholeImage ? ', as its kept filesystem image' : ''}): ${restored.key}`
        : refusedKey
          ? `not used: ${refusedKey}; the daemon started empty`
          : 'nothing to restore'
    );
  }
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
 * Waits for the daemon of the container `first` (launched), within the wait-timeout. A daemon that does not become ready on a
 * restored state gets a fresh filesystem and starts again, with the rest of the time: whatever the state
 * holds that stops dockerd, a cache writer cannot fail the job with it.
 */
async function startDaemon(
  docker: Docker,
  inputs: ActionInputs,
  state: InstanceState,
  prepared: Prepared,
  placement: Placement,
  first: Launched
) {
  const budgetMs = inputs.waitTimeoutSeconds * 1000;
  const restoredKey = prepared.cache?.restored.key;
  let launched = first;
  const waitStarted = Date.now();
  try {
    return await becomeReady(launched, state, prepared, restoredKey ? restoredWaitMs(budgetMs) : budgetMs);
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    const log = await showFailure(launched.container);
    if (!prepared.cache || !startsAfresh(await readDataEvents(state.instance.dataDir), restoredKey))
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
    return await becomeReady(launched, state, prepared, coldWaitMs(budgetMs, Date.now() - waitStarted));
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    throw notReady(error, await showFailure(launched.container), inputs);
  }
}

/** Creates and starts the dind container with its setup, and the server's certificate once its addresses are known. */
async function launch(
  docker: Docker,
  inputs: ActionInputs,
  state: InstanceState,
  prepared: Prepared,
  placement: Placement
): Promise<Launched> {
  const { instance } = state;
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
  if (state.cache) state.cache.usageSince = Date.now();
  await container.start();
  const info = await container.inspect();
  const port = publishedPort(info);
  const addresses = networkAddresses(info);
  const reach = reachability(instance, port, addresses, placement);
  core.debug(
    `Published port ${port}, addresses ${JSON.stringify(addresses)}: the job reaches the daemon at ${reach.address.host}:${reach.address.port}`
  );
  state.endpoint = reach.address;
  saveInstanceState(state);
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
async function becomeReady(launched: Launched, state: InstanceState, prepared: Prepared, timeoutMs: number) {
  const { container, reach } = launched;
  let recorder: Promise<void> | undefined;
  try {
    const version = await waitForDaemon(
      endpointOf(reach.address, prepared),
      container,
      timeoutMs,
      READY_STEADINESS,
      () => {
        recorder = recordUsage(state, container);
      }
    );
    core.info(`Docker ${version} answers over mutual TLS at ${reach.dockerHost}.`);
    return { ...launched, version, recorder: recorder ?? recordUsage(state, container) };
  } catch (error) {
    // Settled before the container goes: it records into state.cache.
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
async function startOver(
  container: Docker.Container,
  state: InstanceState,
  cache: NonNullable<Prepared['cache']>,
  why: string
): Promise<void> {
  const key = cache.restored.key;
  await container.remove({ force: true, v: true });
  const { dataDir } = state.instance;
  // The image may be another runner user's (kept whole in cache-dir): a new file, not a rewrite of it.
  await Promise.all([DataFiles.image, DataFiles.events].map(name => fs.rm(path.join(dataDir, name), { force: true })));
  await prepareEmptyData(dataDir);
  if (state.cache) state.cache.usageRecorder = undefined;
  await refuseRestored(state, cache);
  core.warning(`The cache ${key} was not used: the daemon did not start on it. ${why} The daemon starts empty.`);
}

/** The restored state is not the job's: no cache hit, nothing of it reused by post, which saves over it. */
async function refuseRestored(state: InstanceState, cache: NonNullable<Prepared['cache']>): Promise<void> {
  if (state.cache) {
    state.cache.refusedKey = cache.restored.key;
    state.cache.restoredKey = undefined;
  }
  cache.restored = { hit: false, bytes: 0, downloadedBytes: 0, localBytes: 0 };
  await fs.rm(path.join(state.instance.dataDir, DataFiles.manifest), { force: true });
  saveInstanceState(state);
}

/** Records which images the job uses, for post to drop the ones no job uses any more. */
async function recordUsage(state: InstanceState, container: Docker.Container): Promise<void> {
  if (state.cache?.usageSince === undefined || state.cache.keepUnusedMs === undefined) return;
  state.cache.usageRecorder = await startUsageRecorder(container, state.cache.usageSince).catch(error => {
    core.warning(
      `Cannot record which images the job uses (${errorMessage(error)}): post will not drop unused images from the cache.`
    );
    return undefined;
  });
  saveInstanceState(state);
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
