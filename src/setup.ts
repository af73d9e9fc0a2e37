// Main: start the daemon, secure it, hand it to later steps.
import * as fs from 'node:fs/promises';
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
import { endpointOf, findPlacement, launch, startDaemon, type DaemonSetup } from './daemon/start';
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

  const { prepared, restoring, placement } = await timeline.phase(
    `Prepare ${inputs.image}, certificates, network and cache`,
    async () => {
      const placement = await findPlacement(docker, engine);
      return { ...(await prepare(docker, inputs, state, placement)), placement };
    }
  );
  // The container starts while the cache is restored: its entrypoint waits for the data (see entrypoint.sh).
  const restores = inputs.cache && prepared.dataDir !== undefined;
  const first = await timeline.phase(
    `Start the container${restores ? ', and restore the cache meanwhile' : ''}`,
    async () => {
      const launched = await launch(docker, inputs, instance, state, prepared, placement);
      prepared.cache = await restoring;
      // The job's use of its images starts now, when the entrypoint may start the daemon.
      prepared.cache?.daemonStarts();
      return launched;
    }
  );
  const { container, reach, addresses, version, recorder } = await timeline.phase('Start the daemon', () =>
    startDaemon(docker, inputs, instance, state, prepared, placement, first)
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
 * Everything the container needs, at once: the image pull, the certificates and the network; the
 * server's certificate too, unless it must name an address the container gets only once it runs. The
 * cache's restore starts with them and goes on while the container starts (`restoring`).
 */
async function prepare(
  docker: Docker,
  inputs: ActionInputs,
  state: SavedState,
  placement: Placement
): Promise<{ prepared: Prepared; restoring: Promise<MainCache | undefined> }> {
  const { instance } = state.current;
  const dataDir = engineHostPath(placement.runner, instance.dataDir);
  if (dataDir === undefined && inputs.cache) {
    core.warning(
      `Cache off: the engine cannot bind-mount ${instance.dataDir} from inside this job's container (RUNNER_TEMP is not a bind mount of the engine's host).`
    );
  }
  // Before the container exists: the engine would make a missing bind-mount source itself, as root.
  if (dataDir !== undefined) await fs.mkdir(instance.dataDir, { recursive: true, mode: 0o755 });
  const imageId = ensureImage(docker, inputs.image, inputs.pull);
  const restoring =
    dataDir === undefined ? Promise.resolve(undefined) : MainCache.restore(inputs, instance, imageId, state);
  // Awaited once the container is started; a failure meanwhile fails main there, or before.
  restoring.catch(() => undefined);
  const [tls] = await Promise.all([
    issueCertificates(instance, placement),
    imageId,
    docker.createNetwork(networkCreateOptions(instance))
  ]);
  state.set({ imageId: await imageId });
  return { prepared: { ...tls, dataDir }, restoring };
}
