// "Main reported ready" must mean that later steps' connections succeed. On the real engine, with a
// daemon that answers once and then goes away for a while (the port proxy resets every connection
// meanwhile), main must not hand that daemon over after its first answer (src/daemon/container.ts waitForDaemon).
import * as fs from 'node:fs';
import { buildImage, fromTestImage, outer, TEST_IMAGE } from '../support/engine';
import { sweepAll, withJob } from '../support/job';
import { expectExit } from '../support/steps';

jest.setTimeout(180_000);

/**
 * The dind test image, with a `dockerd` in front of the real one on PATH: it runs the real dockerd
 * with --debug, and once that logs its first API request (main's first answered ping: dockerd 26 logs
 * "Calling GET /_ping", dockerd 28 "handling GET request"), it stops it 50 ms later (SIGTERM: listeners
 * closed at once) and starts it again 5 s after it has exited. Without a steady period main hands the daemon over during that gap.
 */
const FLAP_IMAGE = fromTestImage('readiness-flap');
const STOPPING = 'flap-dockerd: stopping dockerd after its first API request';
const FLAP_SCRIPT = `#!/bin/sh
set -u
fifo=/run/flap-dockerd.fifo
rm -f "$fifo" && mkfifo "$fifo"
/usr/sbin/dockerd "$@" --debug >"$fifo" 2>&1 &
pid=$!
exec 3<"$fifo"
while IFS= read -r line <&3; do
	printf '%s\\n' "$line" >&2
	case "$line" in *'msg="Calling '* | *'msg="handling '*' request"'*) break ;; esac
done
cat <&3 >&2 &
sleep 0.05
echo "${STOPPING}" >&2
kill -TERM "$pid"
wait "$pid"
echo "flap-dockerd: dockerd stopped; starting it again in 5 s" >&2
sleep 5
exec /usr/sbin/dockerd "$@"
`;

beforeAll(async () => {
  const encoded = Buffer.from(FLAP_SCRIPT).toString('base64');
  await buildImage(
    FLAP_IMAGE,
    `FROM ${TEST_IMAGE}\nRUN echo ${encoded} | base64 -d > /usr/local/bin/dockerd && chmod 755 /usr/local/bin/dockerd\n`
  );
}, 600_000);

afterAll(sweepAll);

test('a daemon that answers once and then drops connections is not handed to later steps until it answers steadily', async () => {
  const root = await withJob({}, async job => {
    const main = await job.main({ image: FLAP_IMAGE, context: 'dind' });
    // Right after main, as a workflow's next step would: every call must succeed.
    const step = await job.run(
      `fails=0
for i in $(seq 1 10); do
  docker version --format '{{.Server.Version}}' >/dev/null || fails=$((fails + 1))
  docker --context dind version --format '{{.Server.Version}}' >/dev/null || fails=$((fails + 1))
done
echo "failed calls: $fails"
[ "$fails" -eq 0 ]`
    );
    // The fault happened, before the step ran: else this test proves nothing.
    const log = await outer(['logs', main.outputs['container-id']]);
    expect(log.stdout + log.stderr).toContain(STOPPING);
    expectExit(step, 0, 'step right after main');
    expect(step.stdout).toContain('failed calls: 0');
    await job.post();
    return job.root;
  });
  expect(fs.existsSync(root)).toBe(false);
});
