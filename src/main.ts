import { runMain } from './setup';

void runMain();
