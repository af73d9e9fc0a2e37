import { runMain } from './setup';

// Exit explicitly: a cache request that never answered must not keep the step running.
void runMain().finally(() => process.exit());
