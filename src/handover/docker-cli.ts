// The runner's docker CLI for commands that name the daemon by context (`docker context`, `docker
// buildx`): without the variables that select a daemon, which would override or contradict the context.
import * as exec from '@actions/exec';
import { DockerEnv } from '../runner/contract';

/** Such commands need no DOCKER_HOST, and post may run after the certificates DOCKER_CERT_PATH names are gone. */
const DAEMON_SELECTION: string[] = Object.values(DockerEnv);

/** Runs `docker args…`; never throws for a non-zero exit (the caller reads exitCode). */
export async function dockerCli(args: string[]): Promise<exec.ExecOutput> {
  // DOCKER_CONFIG stays: it says where the contexts, the CLI plugins and buildx's builders live.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && !DAEMON_SELECTION.includes(entry[0])
    )
  );
  return exec.getExecOutput('docker', args, { silent: true, ignoreReturnCode: true, env });
}
