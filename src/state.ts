// What main hands to post through the runner's step state (GITHUB_STATE, read back as STATE_*).
// Every change is saved as it is made, so a post after a main that failed or was killed halfway still
// knows what to clean up.
import * as core from '@actions/core';
import { StateKeys } from './runner/contract';
import type { CacheRecord, CacheSetup } from './cache/setup';
import type { EngineSettings } from './runner/engine';
import type { Instance } from './daemon/instance';
import type { DaemonAddress } from './daemon/placement';

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

/** Main's record of the state: saved when created and at every change. */
export class SavedState implements CacheRecord {
  private readonly value: InstanceState;

  constructor(initial: InstanceState) {
    this.value = initial;
    this.save();
  }

  get current(): Readonly<InstanceState> {
    return this.value;
  }

  get cache(): Readonly<CacheSetup> | undefined {
    return this.value.cache;
  }

  set(patch: Partial<InstanceState>): void {
    Object.assign(this.value, patch);
    this.save();
  }

  setCache(cache: CacheSetup | undefined): void {
    this.set({ cache });
  }

  /** Changes the cache's setup in place (its holders see the change); nothing once the cache is off. */
  updateCache(patch: Partial<CacheSetup>): void {
    if (!this.value.cache) return;
    Object.assign(this.value.cache, patch);
    this.save();
  }

  private save(): void {
    core.saveState(StateKeys.Instance, JSON.stringify(this.value));
  }
}

/** Undefined when main never got as far as saving it (or never ran). */
export function loadInstanceState(): InstanceState | undefined {
  const raw = core.getState(StateKeys.Instance);
  return raw ? (JSON.parse(raw) as InstanceState) : undefined;
}
