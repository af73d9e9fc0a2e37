// Post's side of the handover: what later steps got is taken back (the builder, the client's
// certificates, the context), and post reaches the daemon with those certificates meanwhile.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type Docker from 'dockerode';
import { removeBuilder } from './buildx';
import { removeContext } from './context';
import { CLIENT_FILES } from './environment';
import type { Instance } from '../daemon/instance';
import type { DaemonAddress } from '../daemon/placement';
import { connect, tlsClientOptions } from '../runner/engine';

/** Post's steps on the Docker CLI and the runner's disk for what main handed over (see PostSteps). */
export function handoverSteps(instance: Instance, made: { builder?: string; context?: string }) {
  return {
    builder: made.builder,
    removeBuilder,
    removeCertificates: () => fs.rm(instance.certDir, { recursive: true, force: true }),
    context: made.context,
    removeContext: async (name: string) => void (await removeContext(name, instance.id))
  };
}

/** A client of the daemon over mutual TLS, with the client's certificates main wrote. */
export async function daemonClient(certDir: string, address: DaemonAddress): Promise<Docker> {
  const read = (name: string) => fs.readFile(path.join(certDir, name), 'utf8');
  const [ca, cert, key] = await Promise.all([read(CLIENT_FILES.ca), read(CLIENT_FILES.cert), read(CLIENT_FILES.key)]);
  return connect(tlsClientOptions({ ...address, ca, cert, key }));
}
