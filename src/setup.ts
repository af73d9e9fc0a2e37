// Main's order: start the daemon, secure it, hand it to later steps.
import { MainCache, setCacheOutputs } from './cache/restore';
import {
  dataReady,
  endpointOf,
  findPlacement,
  launchDaemon,
  newDaemon,
  prepareDaemon,
  startDaemon,
  type DaemonSetup
} from './daemon/start';
import { buildxPlugin, describeBuilder, handOver, issueCertificates, setUpBuilder } from './handover/hand-over';
import { getInputs } from './inputs';
import { SavedState } from './state';
import type { Timeline } from './util/report';

/** What main made before the daemon starts; the cache is main's. */
interface Prepared extends DaemonSetup {
  cache?: MainCache;
}

export async function setUp(timeline: Timeline): Promise<void> {
  if (process.platform !== 'linux') {
    throw new Error(
      `dind needs a Linux runner: this one runs ${process.platform}. Use runs-on: ubuntu-latest or a Linux self-hosted runner.`
    );
  }
  const inputs = getInputs();
  const buildx = await buildxPlugin(inputs);
  const { instance, engine, docker } = newDaemon(inputs.name);
  const state = new SavedState({ instance, engine });

  // Everything the container needs, at once: the image pull, the certificates and the network; the server's
  // certificate too, unless it must name an address the container gets only once it runs. The cache's
  // restore starts with them and goes on while the container starts (`restoring`).
  const { prepared, restoring, placement } = await timeline.phase(
    `Prepare ${inputs.image}, certificates, network and cache`,
    async () => {
      const placement = await findPlacement(docker, engine);
      const daemon = await prepareDaemon(docker, inputs, instance, placement);
      const restoring =
        daemon.dataDir === undefined ? undefined : MainCache.restore(inputs, instance, daemon.imageId, state);
      // Awaited once the container is started; a failure meanwhile fails main there, or before.
      restoring?.catch(() => undefined);
      const [tls, imageId] = await Promise.all([
        issueCertificates(instance, placement),
        daemon.imageId,
        daemon.network
      ]);
      state.set({ imageId });
      const prepared: Prepared = { ...tls, dataDir: daemon.dataDir };
      return { prepared, restoring: restoring ?? Promise.resolve(undefined), placement };
    }
  );
  // The container starts while the cache is restored: its entrypoint waits for the data (see entrypoint.sh).
  const restores = inputs.cache && prepared.dataDir !== undefined;
  const first = await timeline.phase(
    `Start the container${restores ? ', and restore the cache meanwhile' : ''}`,
    async () => {
      const launched = await launchDaemon(docker, inputs, instance, state, prepared, placement);
      prepared.cache = await restoring;
      // The entrypoint may start dockerd from now on: the job's use of its images starts here.
      prepared.cache?.daemonStarts();
      return launched;
    }
  );
  const { container, reach, addresses, version, recorder } = await timeline.phase('Start the daemon', () =>
    startDaemon(docker, inputs, instance, state, prepared, placement, first)
  );

  await timeline.phase('Hand the daemon to later steps', async () => {
    if (prepared.dataDir !== undefined) {
      const events = await dataReady(instance);
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
