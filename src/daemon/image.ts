// Getting the dind image onto the outer engine, as the `pull` input says, with readable progress.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { Inputs } from '../runner/contract';
import { formatBytes } from '../util/units';
import { errorMessage } from '../util/errors';

export const PULL_POLICIES = ['missing', 'always', 'never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

interface PullEvent {
  id?: string;
  status?: string;
  error?: string;
  progressDetail?: { current?: number; total?: number };
}

const PROGRESS_EVERY_MS = 5000;

/** The image's id, or undefined when the engine does not have it. */
async function presentImageId(docker: Docker, image: string): Promise<string | undefined> {
  try {
    return (await docker.getImage(image).inspect()).Id;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw error;
  }
}

/** Returns the image's id. */
export async function ensureImage(docker: Docker, image: string, policy: PullPolicy): Promise<string> {
  const present = policy === 'always' ? undefined : await presentImageId(docker, image);
  if (present) {
    core.info(`Image ${image} is present on the engine.`);
    return present;
  }
  if (policy === 'never') {
    throw new Error(
      `Image ${image} is not on the engine and input '${Inputs.Pull}' is 'never': load or build it in an earlier step, or set '${Inputs.Pull}: missing'.`
    );
  }
  core.info(`Pulling ${image} ...`);
  await pull(docker, image);
  const pulled = await presentImageId(docker, image);
  if (!pulled) throw new Error(`Pulled ${image}, but the engine does not list it.`);
  return pulled;
}

/** Prints each layer's milestones and, every few seconds, the bytes downloaded so far. */
async function pull(docker: Docker, image: string): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.pull(image);
  } catch (error) {
    throw new Error(`Could not pull ${image}: ${errorMessage(error)}`, { cause: error });
  }
  const layers = new Map<string, { current: number; total: number }>();
  let lastReport = Date.now();
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, events: PullEvent[]) => {
        const failed = error?.message ?? events.find(event => event.error)?.error;
        if (failed) reject(new Error(`Could not pull ${image}: ${failed}`));
        else resolve();
      },
      (event: PullEvent) => {
        if (event.error) return;
        if (event.id && event.progressDetail?.total) {
          layers.set(event.id, { current: event.progressDetail.current ?? 0, total: event.progressDetail.total });
        }
        if (
          event.status &&
          !event.progressDetail?.total &&
          !/^(Waiting|Downloading|Extracting|Verifying Checksum)$/.test(event.status)
        ) {
          core.info(event.id ? `${event.id}: ${event.status}` : event.status);
        }
        if (Date.now() - lastReport >= PROGRESS_EVERY_MS) {
          lastReport = Date.now();
          const done = [...layers.values()].reduce((sum, layer) => sum + layer.current, 0);
          const total = [...layers.values()].reduce((sum, layer) => sum + layer.total, 0);
          core.info(`... ${formatBytes(done)} of ${formatBytes(total)}`);
        }
      }
    );
  });
}
