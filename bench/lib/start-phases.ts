// Where a start's time goes, phase by phase, from the outside: the engine's times of the dind
// container (created, started), its log's timestamps (dockerd's "Starting up" and its TLS listener's
// "API listen on"), and the entrypoint's own account of the data filesystem (the data directory's
// events: e2fsck, resize, mount, check), read after main and before post.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TimedStep } from './action';
import { docker, dockerOut } from './proc';

/** The dockerd log line's time (the engine's timestamp of it) of the first line matching, ms since the epoch. */
function lineTime(log: string, pattern: RegExp, last = false): number {
  const lines = log.split('\n').filter(line => pattern.test(line));
  const line = last ? lines[lines.length - 1] : lines[0];
  return line ? Date.parse(line.slice(0, line.indexOf(' '))) : NaN;
}

/**
 * Seconds of each part of a main that started a daemon, as sample detail keys `start: …`, and the
 * entrypoint's `mounted` event as text.
 */
export async function startPhases(main: TimedStep): Promise<Record<string, number | string>> {
  const id = main.result.outputs['container-id'];
  if (!id) return {};
  const [created, started] = (await dockerOut(['inspect', '--format', '{{.Created}} {{.State.StartedAt}}', id]))
    .split(' ')
    .map(Date.parse);
  const logs = await docker(['logs', '--timestamps', id], { allowFail: true });
  const log = `${logs.stdout}\n${logs.stderr}`;
  const startingUp = lineTime(log, /msg="Starting up"/);
  const listening = lineTime(log, /msg="API listen on \[::\]:\d+"/, true);
  const ended = main.startedAt + main.seconds * 1000;
  const dataDir = (JSON.parse(main.result.state.instance) as { instance: { dataDir: string } }).instance.dataDir;
  const events = fs.readFileSync(path.join(dataDir, 'events'), 'utf8');
  const seconds = (from: number, to: number) => (to - from) / 1000;
  return {
    'start: spawn → container created (node start-up, preparation; a restore goes on)': seconds(
      main.startedAt,
      created
    ),
    'start: created → started (setup files in, runc start)': seconds(created, started),
    'start: started → dockerd runs (entrypoint: cgroups, data filesystem)': seconds(started, startingUp),
    'start: dockerd runs → TLS listener up (dockerd on the data)': seconds(startingUp, listening),
    'start: listener up → main exits (readiness, hand-over, exit)': seconds(listening, ended),
    'start: events': events.trim().split('\n').join('; ')
  };
}
