import * as core from '@actions/core';
import { errorMessage } from './errors';

/** Runs one step of a cleanup that must go on whatever fails: on failure warns and gives `fallback`. */
export async function bestEffort<T>(what: string, run: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await run();
  } catch (error) {
    core.warning(`Could not ${what}: ${errorMessage(error)}`);
    return fallback;
  }
}
