import { silenceUrlParseDeprecation } from './util/node-warnings';
import { runPost } from './teardown';

silenceUrlParseDeprecation();
// Exit explicitly: a cache request that never answered must not keep the step running.
void runPost().finally(() => process.exit());
