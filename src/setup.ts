// Main: start the daemon, secure it, hand it to later steps.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { buildxVersion } from './handover/buildx';
import { describeBuilder, handOver, setUpBuilder } from './handover/hand-over';
import { MainCache, setCacheOutputs } from './cache/restore';
import { networkCreateOptions, serverSubjectAltNames } from './daemon/container';
import { connectOuterEngine, describeEngine, outerEngineSettings, type EngineSettings } from './runner/engine';
import { writeClientCertificates } from './handover/environment';
import { readDataEvents } from './daemon/data-image';
import { errorMessage } from './util/errors';
import { ensureImage } from './daemon/image';
import { getInputs, type ActionInputs } from './inputs';
import { newInstance } from './daemon/instance';
import { Timeline } from './util/report';
import { dataOutcome, lateServerCertificate, placementOf, type Placement } from './daemon/placement';
import { detectRunnerContainer, engineHostPath, engineUnreachableMessage } from './runner/host';
import { SavedState } from './state';
import { certificateLifetimeHours, createAuthority } from './daemon/tls';
import { shortId } from './util/units';
import { endpointOf, startDaemon, type DaemonSetup } from './daemon/start';

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

/** What main made before the daemon starts; the cache is main's. */
interface Prepared extends DaemonSetup {
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
    startDaemon(docker, inputs, instance, state, prepared, placement)
  );

  await timeline.phase('Hand the daemon to later steps', async () => {
    await checkData(state, prepared, timeline);
    await recorder;
    const endpoint = endpointOf(reach.address, prepared);
    await handOver(
      { docker, inputs, instance, engine, record: state, timeline },
      { containerId: container.id, reach, addresses, version, endpoint }
    );
    setCacheOutputs(prepared.cache);
  });
  const context = state.current.context;
  if (context) timeline.fact('Context', context);
  if (buildx) {
    const builder = await timeline.phase('Set up the buildx builder', () => setUpBuilder(inputs, instance, state));
    timeline.fact('Buildx builder', `${builder}: ${describeBuilder(inputs, state)}; ${buildx}`);
  }
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
