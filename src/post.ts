import { runPost } from './teardown';

void runPost();
