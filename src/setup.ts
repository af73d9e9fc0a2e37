// Main: start the daemon, secure it, hand it to later steps.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { buildxVersion } from './handover/buildx';
import { describeBuilder, handOver, issueCertificates, setUpBuilder } from './handover/hand-over';
import { MainCache, setCacheOutputs } from './cache/restore';
import { networkCreateOptions } from './daemon/container';
import { readDataEvents } from './daemon/data-image';
import { ensureImage } from './daemon/image';
import { newInstance } from './daemon/instance';
import type { Placement } from './daemon/placement';
import { endpointOf, findPlacement, startDaemon, type DaemonSetup } from './daemon/start';
import { getInputs, type ActionInputs } from './inputs';
import { connectOuterEngine, outerEngineSettings } from './runner/engine';
import { engineHostPath } from './runner/host';
import { SavedState } from './state';
import { errorMessage } from './util/errors';
import { Timeline } from './util/report';

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
      const placement = await findPlacement(docker, engine);
      return { prepared: await prepare(docker, inputs, state, placement), placement };
    }
  );
  const { container, reach, addresses, version, recorder } = await timeline.phase('Start the daemon', () =>
    startDaemon(docker, inputs, instance, state, prepared, placement)
  );

  await timeline.phase('Hand the daemon to later steps', async () => {
    if (prepared.dataDir !== undefined) {
      const events = await readDataEvents(instance.dataDir);
      if (events.mountedIn) core.info(`The daemon's filesystem was ready in ${events.mountedIn}.`);
      await prepared.cache?.checkData(events, timeline);
    }
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
    issueCertificates(instance, placement),
    imageId,
    docker.createNetwork(networkCreateOptions(instance)),
    dataDir === undefined ? undefined : MainCache.restore(inputs, instance, imageId, state)
  ]);
  state.set({ imageId: await imageId });
  return { ...tls, dataDir, cache };
}
