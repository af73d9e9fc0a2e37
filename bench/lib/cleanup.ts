// Everything the benchmark creates registers how to remove it here, as soon as it exists; the stack
// unwinds in reverse at the end, on failure, and on SIGINT/SIGTERM.
import { killLiveChildren } from './proc';

interface Task {
  what: string;
  run: () => Promise<void> | void;
}

export class Cleanup {
  private readonly tasks: Task[] = [];
  private readonly hooks: Task[] = [];
  private running?: Promise<void>;

  /** Runs before any removal: stops what could still create things (builds in flight). */
  first(what: string, run: () => Promise<void> | void): void {
    this.hooks.push({ what, run });
  }

  /** Registers a removal; the returned function runs it now (and unregisters it). */
  add(what: string, run: () => Promise<void> | void): () => Promise<void> {
    const task = { what, run };
    this.tasks.push(task);
    return async () => {
      const index = this.tasks.indexOf(task);
      if (index < 0) return;
      this.tasks.splice(index, 1);
      await task.run();
    };
  }

  /** Whether the unwinding has begun (a signal, or the end): nothing new should start then. */
  get started(): boolean {
    return this.running !== undefined;
  }

  /** Runs every registered removal, newest first; a failing one is reported and the rest still run. */
  runAll(): Promise<void> {
    this.running ??= (async () => {
      for (const hook of this.hooks) {
        try {
          await hook.run();
        } catch (error) {
          console.warn(`  cleanup: could not ${hook.what}: ${(error as Error).message}`);
        }
      }
      for (let task = this.tasks.pop(); task; task = this.tasks.pop()) {
        try {
          await task.run();
        } catch (error) {
          console.warn(`  cleanup: could not ${task.what}: ${(error as Error).message}`);
        }
      }
    })();
    return this.running;
  }

  /** On SIGINT/SIGTERM: end our children, unwind, exit. */
  onSignals(): void {
    let signalled = false;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        if (signalled) return;
        signalled = true;
        console.warn(`\n${signal}: cleaning up before exit…`);
        killLiveChildren();
        void this.runAll().finally(() => process.exit(130));
      });
    }
  }
}
