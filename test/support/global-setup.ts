// Jest globalSetup of the `integration` project: runs once before any integration test file.
// A missing engine, base image or dind test image FAILS the run (never a silent skip): in CI
// an integration suite that did not run must not look green.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OUTER_SOCKET, TEST_IMAGE, NESTED_BASE_IMAGE, outerEnv } from './engine';
import { buildDindImage } from './images';

const REPO_ROOT = path.resolve(__dirname, '..', '..');

function fail(what: string, error: unknown): never {
  const detail = (error as { stderr?: Buffer | string }).stderr?.toString().trim() || (error as Error).message;
  throw new Error(`Integration tests cannot run: ${what}.\n${detail}`);
}

export default async function globalSetup(): Promise<void> {
  const docker = (args: string[]) =>
    execFileSync('docker', ['-H', OUTER_SOCKET, ...args], { env: outerEnv(), stdio: 'pipe', timeout: 30_000 })
      .toString()
      .trim();
  try {
    docker(['version', '--format', '{{.Server.Version}}']);
  } catch (error) {
    fail(`the Docker engine at ${OUTER_SOCKET} does not answer`, error);
  }
  try {
    docker(['image', 'inspect', '--format', '{{.Id}}', NESTED_BASE_IMAGE]);
  } catch (error) {
    fail(`base image ${NESTED_BASE_IMAGE} is not on the engine (nothing can be pulled here)`, error);
  }
  try {
    await buildDindImage(TEST_IMAGE);
    docker(['image', 'inspect', '--format', '{{.Id}}', TEST_IMAGE]);
  } catch (error) {
    fail(`the dind test image ${TEST_IMAGE} could not be built with test/dind-image/build.sh`, error);
  }
  for (const entry of ['dist/main/index.js', 'dist/post/index.js']) {
    if (!fs.existsSync(path.join(REPO_ROOT, entry)))
      fail(`${entry} is missing`, new Error('run `npm run build` first'));
  }
  // The tests run the bundle, as the runner does: say so when it is older than the sources.
  const built = fs.statSync(path.join(REPO_ROOT, 'dist/main/index.js')).mtimeMs;
  const newer = fs.readdirSync(path.join(REPO_ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter(file => {
    const stat = fs.statSync(path.join(REPO_ROOT, 'src', file));
    return stat.isFile() && stat.mtimeMs > built;
  });
  if (newer.length > 0)
    console.warn(
      `integration tests run dist/, which is older than src/${newer.join(', src/')}: run \`npm run build\` to test the current sources.`
    );
}
