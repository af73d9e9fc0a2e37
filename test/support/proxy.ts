// A runner behind an HTTP proxy: a real proxy (Debian's tinyproxy, which scripts/engine-up.sh installs)
// and a firewall rule that resets every connection to a service but the proxy's, so that a job reaches
// the service through the proxy or not at all. The service must be named by a name that is not
// loopback's: @actions/http-client never sends localhost nor 127.* through a proxy; and a name, not an
// address: https-proxy-agent checks the certificate of a service named by an address against 'localhost'.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as dns from 'node:dns/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './net';

/** The user tinyproxy drops to (Debian's package makes it): the one user the rule lets through. */
const PROXY_USER = 'tinyproxy';
/** Names the rules of this module, with the pid of the process that made each (a killed run's are swept). */
const RULE_COMMENT = 'setup-dind-test-direct-route';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const START_ATTEMPTS = 3;

/**
 * This machine by a name that is not loopback's (as a runner knows a service by its name), and the
 * IPv4 address the name resolves to.
 */
export async function serviceHost(): Promise<{ name: string; address: string }> {
  const name = os.hostname();
  if (/^localhost$/i.test(name)) throw new Error('This machine is named localhost: no name for a proxied service.');
  const { address } = await dns.lookup(name, { family: 4 });
  return { name, address };
}

export interface Proxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** The request line of every request it received so far: `CONNECT host:port HTTP/1.1`, `GET http://… HTTP/1.1`. */
  requests(): string[];
  stop(): Promise<void>;
}

/** Starts tinyproxy in the foreground on a free port of 127.0.0.1, logging each request. Needs root. */
export async function startProxy(): Promise<Proxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-proxy-'));
  fs.chmodSync(dir, 0o755);
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startTinyproxy(dir, await freePort());
      } catch (error) {
        // Another process may take the port between freePort() and tinyproxy's bind.
        if (attempt === START_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function startTinyproxy(dir: string, port: number): Promise<Proxy> {
  const config = path.join(dir, 'tinyproxy.conf');
  // No ConnectPort line: CONNECT to any port (the test services have ephemeral ones).
  fs.writeFileSync(
    config,
    [
      `User ${PROXY_USER}`,
      `Group ${PROXY_USER}`,
      'Listen 127.0.0.1',
      `Port ${port}`,
      'Timeout 60',
      'MaxClients 100',
      'LogLevel Connect',
      ''
    ].join('\n'),
    { mode: 0o644 }
  );
  const child = spawn('tinyproxy', ['-d', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', chunk => (log += chunk));
  child.stderr.on('data', chunk => (log += chunk));
  const exited = new Promise<void>(resolve => child.once('close', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    await listening(port, exited, () => log);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => [...log.matchAll(/Request \(file descriptor \d+\): (.+)$/gm)].map(match => match[1]),
    stop: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** Resolves once something accepts connections on the port; rejects if tinyproxy exits first. */
async function listening(port: number, exited: Promise<void>, log: () => string): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !gone) {
    const accepted = await new Promise<boolean>(resolve => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (accepted) return;
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  throw new Error(`tinyproxy did not listen on port ${port}:\n${log()}`);
}

export interface ClosedRoute {
  /** Connections the rule has refused so far (the SYNs it answered with a reset). */
  blocked(): number;
  /** Removes the rule. */
  open(): void;
}

function iptables(args: string[]): string {
  return execFileSync('iptables', ['-w', ...args], { stdio: 'pipe' }).toString();
}

/**
 * Refuses (a reset) every TCP connection to host:port that a process of any user but the proxy's opens, until
 * open(). Rules a killed test run left (their process is gone) are removed first. Needs root.
 */
export function closeDirectRoute(host: string, port: number): ClosedRoute {
  sweepRules();
  const comment = `${RULE_COMMENT}:pid=${process.pid}:port=${port}`;
  const rule = [
    // New connections only: a closed connection's last packets have no owner, and would match '!'.
    ...['-p', 'tcp', '--syn', '-d', host, '--dport', String(port)],
    ...['-m', 'owner', '!', '--uid-owner', PROXY_USER],
    ...['-m', 'comment', '--comment', comment],
    ...['-j', 'REJECT', '--reject-with', 'tcp-reset']
  ];
  iptables(['-I', 'OUTPUT', '1', ...rule]);
  let opened = false;
  return {
    blocked: () => {
      const line = iptables(['-L', 'OUTPUT', '-v', '-x', '-n'])
        .split('\n')
        .find(row => row.includes(`/* ${comment} */`));
      if (!line) throw new Error(`no rule ${comment} in OUTPUT`);
      return Number(line.trim().split(/\s+/)[0]);
    },
    open: () => {
      if (opened) return;
      opened = true;
      iptables(['-D', 'OUTPUT', ...rule]);
    }
  };
}

function sweepRules(): void {
  for (const line of iptables(['-S', 'OUTPUT']).split('\n')) {
    const pid = new RegExp(`--comment ${RULE_COMMENT}:pid=(\\d+):`).exec(line)?.[1];
    if (pid && !alive(Number(pid))) iptables(['-D', ...line.trim().split(/\s+/).slice(1)]);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
