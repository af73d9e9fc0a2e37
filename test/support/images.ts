// Images the suites build on the outer engine (nothing can be pulled here), from debian:trixie-slim.
import * as path from 'node:path';
import { buildImage, NESTED_BASE_IMAGE, outerEnv, run } from './engine';

/**
 * The dind test image with dockerd 28, the one docker:28-dind (the action's default image) runs: Debian
 * sid's docker.io, containerd and runc on trixie (test/dind-image/Dockerfile).
 */
export const DOCKERD28_IMAGE = 'setup-dind-test/dind:sid';

export function buildDockerd28Image(): Promise<void> {
  return buildDindImage(DOCKERD28_IMAGE, 'sid');
}

/**
 * Builds a dind test image with test/dind-image/build.sh (cached by the engine's layer cache), its dockerd
 * from Debian `suite`, or from SETUP_DIND_TEST_DOCKER_SUITE (trixie's when unset) when none is given.
 * Throws with build.sh's output when the image cannot be built.
 */
export async function buildDindImage(tag: string, suite?: string): Promise<void> {
  const script = path.resolve(__dirname, '..', 'dind-image', 'build.sh');
  const env = outerEnv({
    SETUP_DIND_TEST_IMAGE: tag,
    ...(suite === undefined ? {} : { SETUP_DIND_TEST_DOCKER_SUITE: suite })
  });
  const built = await run('bash', [script], { env, timeoutMs: 15 * 60_000 });
  if (built.code !== 0) throw new Error(`build.sh could not build ${tag} (${built.code}):\n${built.stderr.trim()}`);
  if (built.stdout.trim().split('\n').pop() !== tag)
    throw new Error(`build.sh printed '${built.stdout.trim()}', expected '${tag}'`);
}

/**
 * A small HTTP server for nested containers: Debian's busybox-static (httpd, sh and the usual tools) on
 * an empty base, 2 MB, so that loading it into each daemon takes a fraction of a second (debian:trixie-slim
 * itself takes 5-10 s). It serves $MESSAGE on port 80, and stops at once on SIGTERM. Its build stage is
 * tagged too, so it is reused and nothing is left dangling.
 */
export const HTTPD_IMAGE = 'setup-dind-test/httpd:trixie';
const HTTPD_BUILD_STAGE = { target: 'busybox', tag: 'setup-dind-test/busybox-static:trixie' };
const HTTPD_DOCKERFILE = `FROM ${NESTED_BASE_IMAGE} AS busybox
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \\
 && mkdir -p /out/bin /out/www /out/tmp && cp /bin/busybox /out/bin/busybox && /out/bin/busybox --list | grep -qx httpd \\
 && for applet in $(/out/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "/out/bin/$applet"; done
FROM scratch
COPY --from=busybox /out/ /
ENV PATH=/bin MESSAGE=hello
EXPOSE 80
# A shell as PID 1 that stops on SIGTERM (httpd as PID 1 would ignore it, and each stop wait 10 s).
CMD ["sh", "-c", "echo \\"$MESSAGE\\" > /www/index.html; httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait"]
`;

export async function buildHttpdImage(): Promise<void> {
  await buildImage(HTTPD_BUILD_STAGE.tag, HTTPD_DOCKERFILE, HTTPD_BUILD_STAGE.target);
  await buildImage(HTTPD_IMAGE, HTTPD_DOCKERFILE);
}

/** One static binary (/ldconfig, a nested container that runs and exits), loaded into a daemon in a second. */
export const TINY_IMAGE = 'setup-dind-test/tiny:latest';

export function buildTinyImage(): Promise<void> {
  return buildImage(
    TINY_IMAGE,
    `FROM ${NESTED_BASE_IMAGE} AS src\nFROM scratch\nCOPY --from=src /sbin/ldconfig /ldconfig\n`
  );
}

/** A job container's image: Debian's docker CLI with the buildx and compose (v2) plugins; node comes from the runner. */
export const JOB_IMAGE = 'setup-dind-test/job:trixie';
const JOB_DOCKERFILE = `FROM ${NESTED_BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-cli docker-buildx docker-compose \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \\
 && docker --version && docker buildx version && docker compose version
`;

export function buildJobImage(): Promise<void> {
  return buildImage(JOB_IMAGE, JOB_DOCKERFILE);
}
