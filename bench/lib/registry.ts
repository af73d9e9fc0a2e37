// A local registry from Debian's `docker-registry` package (distribution 2.8), for scenario 2d. It
// runs as a child of the benchmark with its storage in the run's temp dir, and is stopped by its pid.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { dockerOut, run, sh, sleep } from './proc';

const START_TIMEOUT_MS = 30_000;

/** Installs the package when the binary is missing (apt-get, as root). */
export async function ensureDockerRegistry(): Promise<string> {
  const found = await run('bash', ['-c', 'command -v docker-registry'], { allowFail: true });
  if (found.code !== 0) {
    console.log('  installing Debian package docker-registry (apt-get install -y docker-registry)');
    const install =
      'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null';
    // The lists may be missing or stale on a fresh machine: update once and retry.
    const first = await sh(install, { allowFail: true, timeoutMs: 10 * 60_000 });
    if (first.code !== 0) await sh(`apt-get update -qq && ${install}`, { timeoutMs: 10 * 60_000 });
  }
  return (await run('docker-registry', ['--version'])).stdout.trim();
}

/** A free TCP port on `host` (the usual bind-to-0 probe). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** The host's address on the default bridge: how a container (and a dind daemon in it) reaches the host. */
export async function bridgeGateway(): Promise<string> {
  // Node lists only interfaces that are up and running; docker0 has no carrier while no container uses it.
  const docker0 = os.networkInterfaces().docker0?.find(address => address.family === 'IPv4')?.address;
  if (docker0) return docker0;
  const ip = await run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'docker0'], { allowFail: true });
  const match = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(ip.stdout);
  if (match) return match[1];
  const gateway = await dockerOut([
    'network',
    'inspect',
    'bridge',
    '--format',
    '{{range .IPAM.Config}}{{.Gateway}}{{end}}'
  ]);
  if (!gateway)
    throw new Error(
      'cannot tell the host address on the docker bridge (no docker0 address, no gateway in `docker network inspect bridge`)'
    );
  return gateway;
}

export interface Registry {
  addr: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `docker-registry serve` on `addr` with its blobs in `storageDir`; resolves once /v2/ answers.
 * `onStart` gets its stop as soon as it runs, so that a cleanup while it starts still ends it.
 */
export async function startRegistry(
  addr: string,
  storageDir: string,
  workDir: string,
  onStart: (stop: () => Promise<void>, pid: number) => void
): Promise<Registry> {
  fs.mkdirSync(storageDir, { recursive: true });
  const config = path.join(workDir, `registry-${addr.replace(/[^0-9a-z]/gi, '_')}.yml`);
  fs.writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storageDir}`,
      'http:',
      `  addr: ${addr}`,
      ''
    ].join('\n')
  );
  const logFile = path.join(workDir, `registry-${addr.replace(/[^0-9a-z]/gi, '_')}.log`);
  const log = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error('docker-registry did not start');
  const pid = child.pid;
  let exited = false;
  const exit = new Promise<void>(resolve => child.once('exit', () => ((exited = true), resolve())));
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exit;
    clearTimeout(timer);
  };
  onStart(stop, pid);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new Error(`docker-registry exited at start: ${fs.readFileSync(logFile, 'utf8').slice(-500)}`);
    if ((await httpStatus(`http://${addr}/v2/`)) === 200) return { addr, pid, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry did not answer on ${addr} within ${START_TIMEOUT_MS / 1000} s`);
    }
    await sleep(100);
  }
}

function httpStatus(url: string): Promise<number> {
  return new Promise(resolve => {
    const request = http.get(url, response => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.setTimeout(2000, () => request.destroy());
    request.on('error', () => resolve(0));
  });
}
