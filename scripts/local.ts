// Runs the action end to end on the local engine, as a job would: main, a step that runs a nested
// container through the exported environment, then post. Usage: npm run local [-- image]
import { execFileSync } from 'node:child_process';
import { Job } from '../test/support/runner';

const TEST_IMAGE = 'setup-dind-test/dind:trixie';

async function main(): Promise<void> {
  const image = process.argv[2] ?? TEST_IMAGE;
  const job = new Job();
  const show = (title: string, out: { exitCode: number; stdout: string; stderr: string }) =>
    console.log(`\n===== ${title} (exit ${out.exitCode}) =====\n${out.stdout}${out.stderr}`);
  try {
    show('main', await job.runMain({ image, pull: 'never', cache: 'false' }));
    // No registry here: the nested container's image goes in from the outer engine.
    const inner = await job.run(
      `docker -H unix:///var/run/docker.sock save debian:trixie-slim | docker load && docker run --rm debian:trixie-slim sh -c 'echo hello from a nested container; cat /etc/debian_version'`
    );
    show('step: docker run through the exported DOCKER_HOST', inner);
    for (const post of await job.finish()) show('post', post);
  } finally {
    job.cleanup();
  }
}

if (process.argv[2] === undefined) execFileSync('bash', ['test/dind-image/build.sh'], { stdio: 'inherit' });
void main();
