// What main hands to post through the runner's step state (GITHUB_STATE, read back as STATE_*).
// Main saves it before creating anything and again as it learns more, so a post after a main that
// failed or was killed halfway still knows what to clean up.
import * as core from '@actions/core';
import { StateKeys } from './runner/contract';
import type { CacheSetup } from './cache/restore';
import type { EngineSettings } from './runner/engine';
import type { Instance } from './daemon/instance';

export interface DaemonAddress {
  host: string;
  port: number;
}

export interface InstanceState {
  instance: Instance;
  /** The outer engine, as main found it: post must not follow the DOCKER_* main exported. */
  engine: EngineSettings;
  /** The Docker CLI context actually created, once it is. */
  context?: string;
  /** The buildx builder main creates (docker-container driver), from just before it does. */
  builder?: string;
  /** Where this job reaches the daemon (127.0.0.1 and the published port, or its name on a shared network), once it runs. */
  endpoint?: DaemonAddress;
  /** The dind image's id: a cache records what made it. */
  imageId?: string;
  /** Present when the cache is on for this job. */
  cache?: CacheSetup;
}

export function saveInstanceState(state: InstanceState): void {
  core.saveState(StateKeys.Instance, JSON.stringify(state));
}

/** Undefined when main never got as far as saving it (or never ran). */
export function loadInstanceState(): InstanceState | undefined {
  const raw = core.getState(StateKeys.Instance);
  return raw ? (JSON.parse(raw) as InstanceState) : undefined;
}
