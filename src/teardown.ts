// Post: stop the daemon cleanly, save its data to the cache, show its log, and remove everything
// main made for it. Post never fails the job: each step warns on error and the next one still runs.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { removeBuilder } from './handover/buildx';
import { PostCache } from './cache/save';
import { INSTANCE_LABEL } from './runner/contract';
import { removeContext } from './handover/context';
import { containerLog } from './daemon/container';
import { connect, connectOuterEngine, tlsClientOptions } from './runner/engine';
import { CLIENT_FILES } from './handover/environment';
import { errorMessage } from './util/errors';
import { bestEffort } from './util/best-effort';
import { getJobStatus } from './inputs';
import type { DaemonAddress } from './daemon/placement';
import { Timeline } from './util/report';
import { loadInstanceState, type InstanceState } from './state';
import { shortId } from './util/units';

/** dockerd stops its own containers on SIGTERM; give it the time the Docker CLI would. */
const STOP_GRACE_SECONDS = 30;

export async function runPost(): Promise<void> {
  const timeline = new Timeline();
  const state = loadInstanceState();
  if (!state) {
    core.info('Nothing to clean up: main did not start a daemon.');
    return;
  }
  try {
    await tearDown(state, timeline);
  } catch (error) {
    core.warning(`Cleaning up the dind daemon failed: ${errorMessage(error)}`);
  } finally {
    await timeline.writeSummary('setup-dind: teardown');
  }
}

async function tearDown(state: InstanceState, timeline: Timeline): Promise<void> {
  const { instance } = state;
  const docker = connectOuterEngine(state.engine);
  const label = { label: [`${INSTANCE_LABEL}=${instance.id}`] };
  // First, while the daemon runs, so that buildx can also remove the BuildKit container in it.
  const builder = state.builder;
  if (builder)
    await timeline.phase('Remove the buildx builder', () =>
      bestEffort(`remove buildx builder ${builder}`, () => removeBuilder(builder), undefined)
    );

  const containers = await bestEffort(
    'list the dind containers',
    () => docker.listContainers({ all: true, filters: label }),
    []
  );
  const daemon = containers.find(summary => summary.State === 'running');
  const endpoint = state.endpoint;
  const cache =
    state.cache &&
    (await PostCache.plan({
      setup: state.cache,
      instanceId: instance.id,
      imageId: state.imageId ?? '',
      daemonContainerId: daemon?.Id,
      jobStatus: getJobStatus(),
      docker,
      connectDaemon: endpoint && (() => daemonClient(instance.certDir, endpoint)),
      timeline
    }));

  for (const summary of containers) {
    const container = docker.getContainer(summary.Id);
    if (cache?.stopsGracefully(summary.State)) {
      await timeline.phase('Stop the daemon', () =>
        bestEffort('stop the daemon', () => container.stop({ t: STOP_GRACE_SECONDS }), undefined)
      );
    }
    await core.group(`Daemon log (${instance.containerName})`, async () => {
      core.info(await bestEffort('read the daemon log', () => containerLog(container), ''));
    });
  }
  await cache?.save();

  await timeline.phase('Remove the container, network, data, certificates and context', async () => {
    for (const summary of containers) {
      // The image declares VOLUME /var/lib/docker: without v the data would stay behind as a volume.
      await bestEffort(
        `remove container ${shortId(summary.Id)}`,
        () => docker.getContainer(summary.Id).remove({ force: true, v: true }),
        undefined
      );
    }
    await cache?.keepImage();
    const networks = await bestEffort('list networks', () => docker.listNetworks({ filters: label }), []);
    for (const network of networks) {
      await bestEffort(`remove network ${network.Name}`, () => docker.getNetwork(network.Id).remove(), undefined);
    }
    // One file however much the daemon held (daemon/data-image.ts), and the entrypoint's notes.
    await bestEffort(
      `remove the daemon's data in ${instance.dataDir}`,
      () => fs.rm(instance.dataDir, { recursive: true, force: true }),
      undefined
    );
    await bestEffort(
      'remove the client certificates',
      () => fs.rm(instance.certDir, { recursive: true, force: true }),
      undefined
    );
    if (state.context) {
      const context = state.context;
      await bestEffort(`remove context ${context}`, () => removeContext(context, instance.id), false);
    }
    core.info(
      `Removed ${containers.length} container(s) and ${networks.length} network(s) of ${instance.containerName}.`
    );
  });
  await cache?.bound();
}

async function daemonClient(certDir: string, address: DaemonAddress): Promise<Docker> {
  const read = (name: string) => fs.readFile(path.join(certDir, name), 'utf8');
  const [ca, cert, key] = await Promise.all([read(CLIENT_FILES.ca), read(CLIENT_FILES.cert), read(CLIENT_FILES.key)]);
  return connect(tlsClientOptions({ ...address, ca, cert, key }));
}
