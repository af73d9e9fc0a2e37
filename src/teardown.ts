// Post: stop the daemon cleanly, save its data to the cache, show its log, and remove everything
// main made for it. Post never fails the job: each step warns on error and the next one still runs.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { removeBuilder } from './handover/buildx';
import {
  contentKey,
  decideAfterStop,
  decideSave,
  evictUnusedImages,
  keptImageKey,
  mayKeepImage,
  pruneForCache,
  saveBlocker,
  saveDaemonData,
  stopsGracefully,
  type Eviction,
  type SaveDecision
} from './cache/save';
import { readRestoredManifest, type CacheSetup } from './cache/restore';
import { availability } from './cache/stores/service';
import { INSTANCE_LABEL } from './runner/contract';
import { removeContext } from './handover/context';
import { containerLog } from './daemon/container';
import { connect, connectOuterEngine, tlsClientOptions } from './runner/engine';
import { DataFiles, readDataEvents } from './daemon/data-image';
import { CLIENT_FILES } from './handover/environment';
import { errorMessage } from './util/errors';
import { getJobStatus } from './inputs';
import { LocalStore, type Eviction as StoreEviction } from './cache/stores/local';
import type { Manifest } from './cache/manifest';
import type { SaveResult } from './cache/image/pack';
import { Timeline } from './util/report';
import { loadInstanceState, type DaemonAddress, type InstanceState } from './state';
import { formatBytes, formatDuration, shortId } from './util/units';

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
  const cacheSetup = state.cache;
  const store = cacheSetup?.cacheDir ? await LocalStore.open(cacheSetup.cacheDir) : undefined;
  const plan = cacheSetup
    ? await timeline.phase('Decide whether to save the cache', () =>
        planSave(state, cacheSetup, store !== undefined, docker, daemon?.Id)
      )
    : undefined;
  const decision = plan?.decision;
  if (decision)
    core.info(
      decision.save
        ? `Saving the cache as ${decision.key} once the daemon has stopped.`
        : `Not saving the cache: ${decision.reason}.`
    );
  if (plan?.eviction) reportEviction(plan.eviction, state.cache?.keepUnusedMs, timeline);
  const keepsImage =
    store !== undefined &&
    mayKeepImage(
      decision,
      await bestEffort('check the cache directory', () => store.holdsImagesOf(instance.dataDir), false)
    );

  for (const summary of containers) {
    const container = docker.getContainer(summary.Id);
    if (stopsGracefully(summary.State, decision, keepsImage)) {
      await timeline.phase('Stop the daemon', () =>
        bestEffort('stop the daemon', () => container.stop({ t: STOP_GRACE_SECONDS }), undefined)
      );
    }
    await core.group(`Daemon log (${instance.containerName})`, async () => {
      core.info(await bestEffort('read the daemon log', () => containerLog(container), ''));
    });
  }

  /** The state the daemon's image holds, once stopped cleanly, for the runner's store to keep whole. */
  let keptKey: string | undefined;
  /** Whether post wrote to the runner's store (a save, or a kept image): it then bounds it, once. */
  let storeWritten = false;
  if (state.cache && decision) {
    const cache = state.cache;
    const unmounted = (decision.save || keepsImage) && (await readDataEvents(instance.dataDir)).unmounted;
    const final = decideAfterStop(decision, unmounted);
    let saved: SaveResult | undefined;
    if (final.save) {
      const remote = availability().writable;
      saved = await timeline.phase('Save the cache', () =>
        saveDaemonData(
          cache,
          final.key,
          state.imageId ?? '',
          plan.eviction?.lastUsed ?? {},
          plan.restored,
          remote,
          store
        )
      );
      storeWritten = store !== undefined;
      timeline.fact('Cache', saved ? describeSave(saved, remote) : 'not saved: the save failed (see the warning)');
    } else {
      if (final.warn) core.warning(`Not saving the cache: ${final.reason}.`);
      timeline.fact('Cache', `not saved: ${final.reason}`);
    }
    if (keepsImage) keptKey = keptImageKey(final, unmounted, cache.restoredKey, saved);
  }

  await timeline.phase('Remove the container, network, data, certificates and context', async () => {
    for (const summary of containers) {
      // The image declares VOLUME /var/lib/docker: without v the data would stay behind as a volume.
      await bestEffort(
        `remove container ${shortId(summary.Id)}`,
        () => docker.getContainer(summary.Id).remove({ force: true, v: true }),
        undefined
      );
    }
    // Once the container is gone, nothing has the image open any more.
    if (store && keptKey !== undefined) {
      const key = keptKey;
      const image = path.join(instance.dataDir, DataFiles.image);
      if (
        await bestEffort('keep the filesystem image in the cache directory', () => store.keepImage(key, image), false)
      ) {
        storeWritten = true;
        core.info(
          `Kept the daemon's filesystem image in the cache directory as ${key}: the next job here takes it whole.`
        );
      }
    }
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
  if (store && cacheSetup?.cacheDir && storeWritten) {
    const { cacheDir, cacheDirMaxBytes } = cacheSetup;
    const bounded = await bestEffort(
      'bound the cache directory',
      () => store.enforceLimit(cacheDirMaxBytes),
      undefined
    );
    if (bounded) timeline.fact('Cache directory', describeDirectory(cacheDir, bounded));
  }
}

function describeDirectory(
  cacheDir: string,
  { left, removedFrames, removedImages, removedBytes }: StoreEviction
): string {
  const removed = [
    removedFrames > 0 ? `${removedFrames} chunks` : '',
    removedImages > 0 ? `${removedImages} kept images` : ''
  ].filter(Boolean);
  return `${cacheDir}: ${formatBytes(left.bytes)} in ${left.frames} chunks and ${left.images} kept images${removed.length > 0 ? `; removed the least recently used ${removed.join(' and ')} (${formatBytes(removedBytes)})` : ''}`;
}

/**
 * While the daemon still runs: drop what the next job should not inherit (its containers and volumes,
 * images no job uses any more), fingerprint the rest, and decide. A daemon that is not running may have
 * died mid-write: its data is never saved.
 */
async function planSave(
  state: InstanceState,
  cache: CacheSetup,
  store: boolean,
  docker: Docker,
  daemonContainerId: string | undefined
): Promise<{ decision: SaveDecision; eviction?: Eviction; restored?: Manifest }> {
  const service = availability();
  const jobStatus = getJobStatus();
  core.debug(
    `Save policy '${cache.savePolicy}', job status '${jobStatus}', cache service writable: ${service.writable}, runner's store: ${store}`
  );
  const blocker = saveBlocker(cache, jobStatus, service.writable, store, service.reason);
  if (blocker) return { decision: { save: false, reason: blocker } };
  if (!daemonContainerId || state.endpoint === undefined)
    return {
      decision: {
        save: false,
        reason: 'the daemon was not running at the end of the job, so its data may be inconsistent'
      }
    };
  try {
    const [dind, restored] = await Promise.all([
      daemonClient(state.instance.certDir, state.endpoint),
      readRestoredManifest(state.instance.dataDir)
    ]);
    const eviction = await evictUnusedImages(cache, restored, docker, docker.getContainer(daemonContainerId), dind);
    const content = await pruneForCache(dind);
    return { decision: decideSave(cache, contentKey(cache, content), state.instance.id), eviction, restored };
  } catch (error) {
    return { decision: { save: false, reason: `the daemon could not be read (${errorMessage(error)})` } };
  }
}

function describeSave(result: SaveResult, remote: boolean): string {
  const local = result.localBytes > 0 ? `, ${formatBytes(result.localBytes)} written to the cache directory` : '';
  const sizes = `${formatBytes(result.storedBytes)} in ${result.chunks} chunks: ${remote ? `${formatBytes(result.uploadedBytes)} uploaded, ` : ''}${formatBytes(result.reusedBytes)} reused${local}`;
  return result.saved ? `saved ${sizes}, as ${result.key}` : `not saved: ${result.reason} (${sizes})`;
}

function reportEviction(eviction: Eviction, keepUnusedMs: number | undefined, timeline: Timeline): void {
  if (eviction.skipped) {
    core.warning(`Not dropping unused images from the cache: ${eviction.skipped}.`);
    timeline.fact('Unused images', `kept: ${eviction.skipped}`);
  } else if (eviction.evicted.length > 0) {
    const after = keepUnusedMs === 0 ? 'not used by this job' : `not used for ${formatDuration(keepUnusedMs ?? 0)}`;
    core.info(`Dropped from the cache, ${after}: ${eviction.evicted.join(', ')}`);
    timeline.fact('Unused images', `dropped ${eviction.evicted.length}, ${after}: ${eviction.evicted.join(', ')}`);
  }
}

async function daemonClient(certDir: string, address: DaemonAddress): Promise<Docker> {
  const read = (name: string) => fs.readFile(path.join(certDir, name), 'utf8');
  const [ca, cert, key] = await Promise.all([read(CLIENT_FILES.ca), read(CLIENT_FILES.cert), read(CLIENT_FILES.key)]);
  return connect(tlsClientOptions({ ...address, ca, cert, key }));
}

/** Runs one cleanup step; on failure warns and goes on with `fallback`. */
async function bestEffort<T>(what: string, run: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await run();
  } catch (error) {
    core.warning(`Could not ${what}: ${errorMessage(error)}`);
    return fallback;
  }
}
