// Post's step: the steps each domain takes for the instance main left, in tearDown's order. Post never
// fails the job: a failure is a warning, and the summary is written either way.
import * as core from '@actions/core';
import { PostCache } from './cache/save';
import { daemonSteps } from './daemon/remove';
import { daemonClient, handoverSteps } from './handover/take-back';
import { getJobStatus } from './inputs';
import { connectOuterEngine } from './runner/engine';
import { loadInstanceState, type InstanceState } from './state';
import { tearDown, type PostSteps } from './teardown';
import { errorMessage } from './util/errors';
import { silenceUrlParseDeprecation } from './util/node-warnings';
import { Timeline } from './util/report';

async function runPost(): Promise<void> {
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

/** The steps on the outer engine, the runner's disk and the Docker CLI, for the instance main left. */
function postSteps(state: InstanceState, timeline: Timeline): PostSteps {
  const { instance, endpoint } = state;
  const docker = connectOuterEngine(state.engine);
  return {
    ...daemonSteps(docker, instance),
    ...handoverSteps(instance, state),
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
      })
  };
}

silenceUrlParseDeprecation();
// Exit explicitly: a cache request that never answered must not keep the step running.
void runPost().finally(() => process.exit());
