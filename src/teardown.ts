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
import type { Instance } from './daemon/instance';
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
    await tearDown(state.instance, timeline, postSteps(state, timeline));
  } catch (error) {
    core.warning(`Cleaning up the dind daemon failed: ${errorMessage(error)}`);
  } finally {
    await timeline.writeSummary('setup-dind: teardown');
  }
}

/** The cache's part of post, planned while the daemon runs (see PostCache). */
export type CacheSteps = Pick<PostCache, 'stopsGracefully' | 'save' | 'keepImage' | 'bound'>;

/** What post does to the world, one call per step; tearDown says in which order. */
export interface PostSteps {
  /** Undefined: main made no builder. */
  builder?: string;
  removeBuilder(name: string): Promise<void>;
  listContainers(): Promise<Array<{ Id: string; State: string }>>;
  planCache(runningContainerId: string | undefined): Promise<CacheSteps | undefined>;
  stop(containerId: string): Promise<void>;
  log(containerId: string): Promise<string>;
  removeContainer(containerId: string): Promise<void>;
  /** Resolves with how many there were. */
  removeNetworks(): Promise<number>;
  removeData(): Promise<void>;
  removeCertificates(): Promise<void>;
  /** Undefined: main made no context. */
  context?: string;
  removeContext(name: string): Promise<void>;
}

/**
 * Post's order: the builder first, while the daemon runs, so that buildx can also remove the BuildKit
 * container in it; the cache's plan while the daemon still runs; the stop (graceful only when the cache
 * needs the filesystem unmounted) and the log; the save once stopped; the container, and only then (no
 * one has the image open) the image kept whole; the network, data, certificates and context; the
 * store's bound last. Each step warns on failure and the next one still runs.
 */
export async function tearDown(instance: Instance, timeline: Timeline, steps: PostSteps): Promise<void> {
  const builder = steps.builder;
  if (builder)
    await timeline.phase('Remove the buildx builder', () =>
      bestEffort(`remove buildx builder ${builder}`, () => steps.removeBuilder(builder), undefined)
    );
  const containers = await bestEffort('list the dind containers', () => steps.listContainers(), []);
  const cache = await steps.planCache(containers.find(summary => summary.State === 'running')?.Id);

  for (const summary of containers) {
    if (cache?.stopsGracefully(summary.State)) {
      await timeline.phase('Stop the daemon', () =>
        bestEffort('stop the daemon', () => steps.stop(summary.Id), undefined)
      );
    }
    await core.group(`Daemon log (${instance.containerName})`, async () => {
      core.info(await bestEffort('read the daemon log', () => steps.log(summary.Id), ''));
    });
  }
  await cache?.save();

  await timeline.phase('Remove the container, network, data, certificates and context', async () => {
    for (const summary of containers)
      await bestEffort(`remove container ${shortId(summary.Id)}`, () => steps.removeContainer(summary.Id), undefined);
    await cache?.keepImage();
    const networks = await bestEffort('list networks', () => steps.removeNetworks(), 0);
    await bestEffort(`remove the daemon's data in ${instance.dataDir}`, () => steps.removeData(), undefined);
    await bestEffort('remove the client certificates', () => steps.removeCertificates(), undefined);
    const context = steps.context;
    if (context) await bestEffort(`remove context ${context}`, () => steps.removeContext(context), undefined);
    core.info(`Removed ${containers.length} container(s) and ${networks} network(s) of ${instance.containerName}.`);
  });
  await cache?.bound();
}

/** The steps on the outer engine, the runner's disk and the Docker CLI, for the instance main left. */
function postSteps(state: InstanceState, timeline: Timeline): PostSteps {
  const { instance, endpoint } = state;
  const docker = connectOuterEngine(state.engine);
  const label = { label: [`${INSTANCE_LABEL}=${instance.id}`] };
  return {
    builder: state.builder,
    removeBuilder,
    listContainers: () => docker.listContainers({ all: true, filters: label }),
    planCache: async daemonContainerId =>
      state.cache &&
      PostCache.plan({
        setup: state.cache,
        instanceId: instance.id,
        imageId: state.imageId ?? '',
        daemonContainerId,
        jobStatus: getJobStatus(),
        docker,
        connectDaemon: endpoint && (() => daemonClient(instance.certDir, endpoint)),
        timeline
      }),
    stop: id => docker.getContainer(id).stop({ t: STOP_GRACE_SECONDS }),
    log: id => containerLog(docker.getContainer(id)),
    // The image declares VOLUME /var/lib/docker: without v the data would stay behind as a volume.
    removeContainer: id => docker.getContainer(id).remove({ force: true, v: true }),
    removeNetworks: async () => {
      const networks = await docker.listNetworks({ filters: label });
      for (const network of networks) {
        await bestEffort(`remove network ${network.Name}`, () => docker.getNetwork(network.Id).remove(), undefined);
      }
      return networks.length;
    },
    // One file however much the daemon held (daemon/data-image.ts), and the entrypoint's notes.
    removeData: () => fs.rm(instance.dataDir, { recursive: true, force: true }),
    removeCertificates: () => fs.rm(instance.certDir, { recursive: true, force: true }),
    context: state.context,
    removeContext: async name => void (await removeContext(name, instance.id))
  };
}

async function daemonClient(certDir: string, address: DaemonAddress): Promise<Docker> {
  const read = (name: string) => fs.readFile(path.join(certDir, name), 'utf8');
  const [ca, cert, key] = await Promise.all([read(CLIENT_FILES.ca), read(CLIENT_FILES.cert), read(CLIENT_FILES.key)]);
  return connect(tlsClientOptions({ ...address, ca, cert, key }));
}
