// Post: stop the daemon cleanly, show its log, and remove everything main made for it. Post never
// fails the job: each step warns on error and the next one still runs.
import * as fs from 'node:fs/promises';
import * as core from '@actions/core';
import { INSTANCE_LABEL } from './constants';
import { removeContext } from './context';
import { containerLog } from './daemon';
import { connectOuterEngine } from './engine';
import { Timeline } from './report';
import { loadInstanceState, type InstanceState } from './state';

/** dockerd stops its own containers on SIGTERM; give it the time the Docker CLI would. */
const STOP_GRACE_SECONDS = 30;

export async function runPost(): Promise<void> {
  const timeline = new Timeline();
  try {
    const state = loadInstanceState();
    if (!state) {
      core.info('Nothing to clean up: main did not start a daemon.');
      return;
    }
    await tearDown(state, timeline);
    await timeline.writeSummary('setup-dind: teardown');
  } catch (error) {
    core.warning(`Cleaning up the dind daemon failed: ${(error as Error).message}`);
  }
}

async function tearDown(state: InstanceState, timeline: Timeline): Promise<void> {
  const { instance } = state;
  const docker = connectOuterEngine(state.engine);
  const label = { label: [`${INSTANCE_LABEL}=${instance.id}`] };

  const containers = await attempt('list the dind containers', () => docker.listContainers({ all: true, filters: label }), []);
  for (const summary of containers) {
    const container = docker.getContainer(summary.Id);
    if (summary.State === 'running') {
      await timeline.phase('Stop the daemon', () => attempt('stop the daemon', () => container.stop({ t: STOP_GRACE_SECONDS }), undefined));
    }
    await core.group(`Daemon log (${instance.containerName})`, async () => {
      core.info(await attempt('read the daemon log', () => containerLog(container), ''));
    });
  }
  await timeline.phase('Remove the container, network, certificates and context', async () => {
    for (const summary of containers) {
      // The image declares VOLUME /var/lib/docker: without v the data would stay behind as a volume.
      await attempt(`remove container ${summary.Id.slice(0, 12)}`, () => docker.getContainer(summary.Id).remove({ force: true, v: true }), undefined);
    }
    const networks = await attempt('list networks', () => docker.listNetworks({ filters: label }), []);
    for (const network of networks) {
      await attempt(`remove network ${network.Name}`, () => docker.getNetwork(network.Id).remove(), undefined);
    }
    await attempt('remove the client certificates', () => fs.rm(instance.certDir, { recursive: true, force: true }), undefined);
    if (state.context) {
      const context = state.context;
      await attempt(`remove context ${context}`, () => removeContext(context, instance.id), false);
    }
    core.info(`Removed ${containers.length} container(s) and ${networks.length} network(s) of ${instance.containerName}.`);
  });
}

/** Runs one cleanup step; on failure warns and goes on with `fallback`. */
async function attempt<T>(what: string, run: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await run();
  } catch (error) {
    core.warning(`Could not ${what}: ${(error as Error).message}`);
    return fallback;
  }
}
