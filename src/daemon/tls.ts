// Mutual-TLS material for one daemon: a throw-away CA, a server and a client certificate.
// ECDSA P-256 keys take milliseconds (the official entrypoint's RSA-4096 keys take seconds). The CA key
// is generated non-extractable: it signs two certificates in memory and is never written anywhere.
// @peculiar/x509's dependency injection (tsyringe) needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { HOUR_MS } from '../util/units';

// @peculiar/x509 is typed against the DOM's WebCrypto; Node's is the same API.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Tolerates a runner clock a little behind the daemon's. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** GitHub ends a job after 6 hours on its runners and after 5 days on self-hosted ones. */
const LONGEST_JOB_HOURS = { 'github-hosted': 6, 'self-hosted': 5 * 24 } as const;
const VALIDITY_MARGIN_HOURS = 1;

export interface SubjectAltNames {
  dns: string[];
  ip: string[];
}

export interface KeyPair {
  cert: string;
  /** PKCS#8 PEM. */
  key: string;
}

/** A throw-away CA. Its private key lives only in this object, non-extractable. */
export interface CertificateAuthority {
  /** PEM of the CA certificate: clients and the daemon verify each other against it. */
  caCert: string;
  notAfter: Date;
  /** The daemon's certificate: every name and address a client may use must be a SAN (Go ignores the CN). */
  issueServer(sans: SubjectAltNames): Promise<KeyPair>;
  issueClient(): Promise<KeyPair>;
}

/** How long the certificates live: just past the longest a job on this kind of runner can run. */
export function certificateLifetimeHours(runnerEnvironment: string | undefined): number {
  const longest =
    runnerEnvironment === 'github-hosted' ? LONGEST_JOB_HOURS['github-hosted'] : LONGEST_JOB_HOURS['self-hosted'];
  return longest + VALIDITY_MARGIN_HOURS;
}

export async function createAuthority(lifetimeHours: number, now = new Date()): Promise<CertificateAuthority> {
  const notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = new Date(now.getTime() + lifetimeHours * HOUR_MS);
  const caKeys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, false, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=setup-dind CA',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)
    ]
  });
  const issue = async (subject: string, usage: x509.ExtendedKeyUsage, extra: x509.Extension[]): Promise<KeyPair> => {
    const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
    const cert = await x509.X509CertificateGenerator.create({
      subject,
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([usage]),
        await x509.AuthorityKeyIdentifierExtension.create(ca),
        ...extra
      ]
    });
    return { cert: cert.toString('pem'), key: await privateKeyPem(keys.privateKey) };
  };
  return {
    caCert: ca.toString('pem'),
    notAfter,
    issueServer: sans =>
      issue('CN=setup-dind daemon', x509.ExtendedKeyUsage.serverAuth, [
        new x509.SubjectAlternativeNameExtension([
          ...sans.dns.map(value => ({ type: 'dns' as const, value })),
          ...sans.ip.map(value => ({ type: 'ip' as const, value }))
        ])
      ]),
    issueClient: () => issue('CN=setup-dind client', x509.ExtendedKeyUsage.clientAuth, [])
  };
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const body = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}
