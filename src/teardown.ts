// Post's order: stop the daemon cleanly, save its data to the cache, show its log, and remove everything
// main made for it. Post never fails the job: each step warns on error and the next one still runs.
import * as core from '@actions/core';
import type { Instance } from './daemon/instance';
import { bestEffort } from './util/best-effort';
import type { Timeline } from './util/report';
import { shortId } from './util/units';

/** The cache's part of post, planned while the daemon runs (see PostCache). */
export interface CacheSteps {
  stopsGracefully(containerState: string): boolean;
  save(): Promise<void>;
  keepImage(): Promise<void>;
  bound(): Promise<void>;
}

/** What post does to the world, one call per step, each made by its domain (post.ts); tearDown says the order. */
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
  /** Removes the instance's volumes (even those of a container already gone); returns how many there were. */
  removeVolumes(): Promise<number>;
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
    const volumes = await bestEffort('list volumes', () => steps.removeVolumes(), 0);
    await bestEffort(`remove the daemon's data in ${instance.dataDir}`, () => steps.removeData(), undefined);
    await bestEffort('remove the client certificates', () => steps.removeCertificates(), undefined);
    const context = steps.context;
    if (context) await bestEffort(`remove context ${context}`, () => steps.removeContext(context), undefined);
    core.info(
      `Removed ${containers.length} container(s), ${networks} network(s) and ${volumes} volume(s) of ${instance.containerName}.`
    );
  });
  await cache?.bound();
}
