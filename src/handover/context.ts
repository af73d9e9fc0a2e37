// A Docker CLI context for the daemon: buildx and other tools ignore DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH and want a context. The CLI copies the client key into ~/.docker/contexts, which
// every job of the runner's user shares: names can collide between parallel jobs, and post must remove it.
import * as os from 'node:os';
import * as path from 'node:path';
import type * as exec from '@actions/exec';
import { withFileLock } from '../util/file-lock';
import { dockerCli as docker } from './docker-cli';
import { CLIENT_FILES } from './environment';

const DESCRIPTION_PREFIX = 'setup-dind instance ';

/**
 * `docker context create` checks that the name is free, then writes the endpoint and the TLS files
 * apart, without a lock: two jobs of one user creating one name at once could both succeed, leaving
 * one's address with the other's CA. Every look-then-change of a context here holds this lock, in
 * the CLI's configuration directory (where the contexts are).
 */
function contextLock(): string {
  return path.join(process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker'), 'setup-dind-contexts.lock');
}

export function contextDescription(instanceId: string): string {
  return `${DESCRIPTION_PREFIX}${instanceId}`;
}

/** `docker context create`'s endpoint: the daemon and the client's files. */
export function contextEndpoint(host: string, certDir: string): string {
  return [
    `host=${host}`,
    `ca=${path.join(certDir, CLIENT_FILES.ca)}`,
    `cert=${path.join(certDir, CLIENT_FILES.cert)}`,
    `key=${path.join(certDir, CLIENT_FILES.key)}`
  ].join(',');
}

/** Whether a context exists, and which setup-dind instance made it (none: someone else did). */
async function contextOwner(name: string): Promise<{ exists: boolean; instanceId?: string }> {
  // The CLI's --format cannot reach Metadata.Description (an untyped map): read the JSON.
  const inspected = await docker(['context', 'inspect', name]);
  if (inspected.exitCode !== 0) return { exists: false };
  const [context] = JSON.parse(inspected.stdout) as Array<{ Metadata?: { Description?: string } }>;
  const description = context?.Metadata?.Description ?? '';
  return {
    exists: true,
    instanceId: description.startsWith(DESCRIPTION_PREFIX) ? description.slice(DESCRIPTION_PREFIX.length) : undefined
  };
}

export interface ContextRequest {
  name: string;
  instanceId: string;
  host: string;
  certDir: string;
  /** Whether the instance that owns a context of that name still runs (a stale one is replaced). */
  isLive: (instanceId: string) => Promise<boolean>;
}

/**
 * Creates the context and returns the name it got. A context left by a setup-dind instance that is gone
 * is replaced; one in use by a live instance (a parallel job) or made by someone else is kept, and ours
 * gets a unique name instead, with a warning. Any other refusal of the CLI fails with the CLI's message.
 */
export async function createContext(request: ContextRequest, warn: (message: string) => void): Promise<string> {
  return withFileLock(contextLock(), () => createContextLocked(request, warn));
}

async function createContextLocked(request: ContextRequest, warn: (message: string) => void): Promise<string> {
  let owner = await contextOwner(request.name);
  if (owner.exists && owner.instanceId !== undefined && !(await request.isLive(owner.instanceId))) {
    await removeContextNamed(request.name);
    owner = { exists: false };
  }
  if (!owner.exists) {
    const created = await create(request.name, request);
    if (created.exitCode === 0) return request.name;
    // Someone not holding the lock (not setup-dind) may have taken the name meanwhile; else the CLI says what is wrong.
    owner = await contextOwner(request.name);
    if (!owner.exists) throw createFailed(created);
  }
  const unique = `${request.name}-${request.instanceId}`;
  const why = owner.instanceId ? 'in use by another running setup-dind instance' : 'not made by setup-dind';
  warn(
    `A Docker context named '${request.name}' already exists (${why}); this daemon's context is '${unique}' instead (see the 'context' output).`
  );
  const created = await create(unique, request);
  if (created.exitCode !== 0) throw createFailed(created);
  return unique;
}

function createFailed(created: exec.ExecOutput): Error {
  return new Error(`docker context create failed: ${created.stderr.trim() || created.stdout.trim()}`);
}

function create(name: string, request: ContextRequest): Promise<exec.ExecOutput> {
  return docker([
    'context',
    'create',
    name,
    '--description',
    contextDescription(request.instanceId),
    '--docker',
    contextEndpoint(request.host, request.certDir)
  ]);
}

/** Removes the context (and the key copy in it) if it is still this instance's. */
export async function removeContext(name: string, instanceId: string): Promise<boolean> {
  return withFileLock(contextLock(), async () => {
    const owner = await contextOwner(name);
    if (owner.instanceId !== instanceId) return false;
    await removeContextNamed(name);
    return true;
  });
}

async function removeContextNamed(name: string): Promise<void> {
  const removed = await docker(['context', 'rm', '--force', name]);
  if (removed.exitCode !== 0) throw new Error(`docker context rm failed: ${removed.stderr.trim()}`);
}
