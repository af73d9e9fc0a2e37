// Runs the action end to end on the local engine, as two jobs of a workflow would, against an embedded
// cache service (test/support/cache-server.ts, the real v2 protocol): a cold job that builds an image
// and saves its daemon's state, then a warm job that restores it and runs the image without building.
// Usage: scripts/dev local (or npm run local [-- dind-image]); the dind image defaults to the tests' one.
import { execFileSync } from 'node:child_process';
import { startCacheServer } from '../test/support/cache-server';
import { NESTED_BASE_IMAGE, TEST_IMAGE } from '../test/support/engine';
import { loadFromOuter } from '../test/support/job';
import { Job, type StepResult } from '../test/support/runner';

const IMAGE_NAME = 'setup-dind-local/hello';

function show(title: string, out: StepResult): void {
  console.log(`\n===== ${title} (exit ${out.exitCode}) =====\n${out.stdout}${out.stderr}`);
  if (out.exitCode !== 0) throw new Error(`${title} failed`);
}

/** One job: main (timed), `steps`, post; returns main's seconds and outputs. */
async function job(
  title: string,
  env: Record<string, string>,
  image: string,
  steps: Array<[string, string]>
): Promise<{ seconds: number; outputs: Record<string, string> }> {
  const run = new Job({ env });
  try {
    const started = performance.now();
    const main = await run.runMain({ image, pull: 'never', cache: 'true' });
    const seconds = (performance.now() - started) / 1000;
    show(`${title}: main`, main);
    for (const [name, script] of steps) show(`${title}: ${name}`, await run.run(script));
    for (const post of await run.finish()) show(`${title}: post`, post);
    return { seconds, outputs: main.outputs };
  } finally {
    run.cleanup();
  }
}

async function main(): Promise<void> {
  const image = process.argv[2] ?? TEST_IMAGE;
  if (process.argv[2] === undefined)
    execFileSync('bash', ['test/dind-image/build.sh'], {
      stdio: 'inherit',
      env: { ...process.env, SETUP_DIND_TEST_IMAGE: image }
    });
  const server = await startCacheServer();
  try {
    // No registry here: the base image goes in from the outer engine; the build is what the cache keeps.
    const cold = await job('cold job', server.env, image, [
      [
        'load the base image and build one on it',
        `${loadFromOuter(NESTED_BASE_IMAGE)}\nprintf 'FROM ${NESTED_BASE_IMAGE}\\nRUN echo built by the cold job > /hello\\n' | DOCKER_BUILDKIT=0 docker build --quiet -t ${IMAGE_NAME} -`
      ]
    ]);
    const warm = await job('warm job', server.env, image, [
      ['run the image the cold job built', `docker run --rm ${IMAGE_NAME} cat /hello`]
    ]);
    console.log(
      [
        '',
        `cold job: main ${cold.seconds.toFixed(1)} s, cache-hit=${cold.outputs['cache-hit']}`,
        `warm job: main ${warm.seconds.toFixed(1)} s, cache-hit=${warm.outputs['cache-hit']}, restored ${warm.outputs['cache-size']} bytes (${warm.outputs['cache-key']})`
      ].join('\n')
    );
  } finally {
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
