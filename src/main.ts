import { silenceUrlParseDeprecation } from './util/node-warnings';
import { runMain } from './setup';

silenceUrlParseDeprecation();
// Exit explicitly: a cache request that never answered must not keep the step running.
void runMain().finally(() => process.exit());
