// Main's step: a failure fails the job, with the reason; the summary is written either way.
import * as core from '@actions/core';
import { setUp } from './setup';
import { errorMessage } from './util/errors';
import { silenceUrlParseDeprecation } from './util/node-warnings';
import { Timeline } from './util/report';

async function runMain(): Promise<void> {
  const timeline = new Timeline();
  try {
    await setUp(timeline);
  } catch (error) {
    core.setFailed(errorMessage(error));
  } finally {
    await timeline.writeSummary('setup-dind: daemon');
  }
}

silenceUrlParseDeprecation();
// Exit explicitly: a cache request that never answered must not keep the step running.
void runMain().finally(() => process.exit());
