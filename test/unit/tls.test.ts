// The mutual-TLS material, checked with node:crypto and @peculiar/x509 rather than with the code that
// made it, and used for a real handshake on 127.0.0.1.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { certificateLifetimeHours, generateTlsMaterial, type SubjectAltNames, type TlsMaterial } from '../../src/tls';

const SANS: SubjectAltNames = { dns: ['localhost', 'dind', 'setup-dind-dind-abcdef01'], ip: ['127.0.0.1', '::1'] };
const LIFETIME_HOURS = 7;
const NOW = new Date('2030-06-15T12:34:56.789Z');
const HOUR_MS = 3600 * 1000;

let material: TlsMaterial;
let other: TlsMaterial;
let ca: X509Certificate;
let server: X509Certificate;
let client: X509Certificate;

beforeAll(async () => {
  [material, other] = await Promise.all([generateTlsMaterial(SANS, LIFETIME_HOURS, NOW), generateTlsMaterial(SANS, LIFETIME_HOURS)]);
  ca = new X509Certificate(material.caCert);
  server = new X509Certificate(material.serverCert);
  client = new X509Certificate(material.clientCert);
});

describe('certificateLifetimeHours', () => {
  test.each([
    ['github-hosted', 7],
    ['self-hosted', 121],
    [undefined, 121],
    ['', 121],
    ['something-new', 121]
  ])('%p: %p hours', (environment, hours) => {
    expect(certificateLifetimeHours(environment)).toBe(hours);
  });
});

describe('the chain', () => {
  test('the CA is a self-signed CA certificate', () => {
    expect(ca.ca).toBe(true);
    expect(ca.issuer).toBe(ca.subject);
    expect(ca.verify(ca.publicKey)).toBe(true);
  });

  test.each([
    ['server', () => server],
    ['client', () => client]
  ])('the %s certificate is issued by the CA, and is no CA itself', (_name, cert) => {
    expect(cert().ca).toBe(false);
    expect(cert().issuer).toBe(ca.subject);
    expect(cert().checkIssued(ca)).toBe(true);
    expect(cert().verify(ca.publicKey)).toBe(true);
  });

  test.each([
    ['server', () => server],
    ['client', () => client]
  ])("the %s certificate does not verify against another call's CA", (_name, cert) => {
    const otherCa = new X509Certificate(other.caCert);
    expect(cert().verify(otherCa.publicKey)).toBe(false);
    expect(cert().checkIssued(otherCa)).toBe(false);
  });

  test('every certificate has its own serial number', () => {
    const serials = [ca, server, client, new X509Certificate(other.caCert)].map(cert => cert.serialNumber);
    expect(new Set(serials).size).toBe(serials.length);
  });
});

describe('subject alternative names', () => {
  const sanOf = (pem: string) => new x509.X509Certificate(pem).getExtension(x509.SubjectAlternativeNameExtension);

  test('the server certificate names exactly the ones asked', () => {
    expect(sanOf(material.serverCert)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'localhost' },
      { type: 'dns', value: 'dind' },
      { type: 'dns', value: 'setup-dind-dind-abcdef01' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' }
    ]);
  });

  test.each(['localhost', 'dind', 'setup-dind-dind-abcdef01'])('a TLS client accepts the host name %p', host => {
    expect(server.checkHost(host)).toBe(host);
  });

  test.each(['127.0.0.1', '::1'])('a TLS client accepts the address %p', ip => {
    expect(server.checkIP(ip)).toBe(ip);
  });

  test.each(['example.com', 'dind.example.com', 'setup-dind-dind'])('a TLS client refuses the host name %p', host => {
    expect(server.checkHost(host)).toBeUndefined();
  });

  test('the client certificate names nothing', () => {
    expect(sanOf(material.clientCert)).toBeNull();
  });

  test('other names give other SANs', async () => {
    const custom = await generateTlsMaterial({ dns: ['db'], ip: ['10.0.0.7'] }, 1, NOW);
    expect(sanOf(custom.serverCert)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'db' },
      { type: 'ip', value: '10.0.0.7' }
    ]);
  });
});

describe('extended key usage', () => {
  test.each([
    ['server', () => material.serverCert, x509.ExtendedKeyUsage.serverAuth],
    ['client', () => material.clientCert, x509.ExtendedKeyUsage.clientAuth]
  ])('the %s certificate is for %s only', (_name, pem, usage) => {
    const eku = new x509.X509Certificate(pem()).getExtension(x509.ExtendedKeyUsageExtension);
    expect(eku?.usages).toEqual([usage]);
  });
});

describe('private keys', () => {
  test.each([
    ['server', () => material.serverKey, () => server, () => client],
    ['client', () => material.clientKey, () => client, () => server]
  ])('the %s key is PKCS#8 EC P-256 and belongs to its certificate only', (_name, pem, own, foreign) => {
    expect(pem()).toMatch(/^-----BEGIN PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END PRIVATE KEY-----\n$/);
    const key = createPrivateKey({ key: pem(), format: 'pem' });
    expect(key.type).toBe('private');
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(own().checkPrivateKey(key)).toBe(true);
    expect(foreign().checkPrivateKey(key)).toBe(false);
    const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: 'spki', format: 'der' });
    expect(spki(createPublicKey(key)).equals(spki(own().publicKey))).toBe(true);
  });
});

describe('validity', () => {
  const validity = (cert: X509Certificate) => ({ notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) });

  test('notAfter is the one returned: now + lifetime', () => {
    expect(material.notAfter.getTime()).toBe(NOW.getTime() + LIFETIME_HOURS * HOUR_MS);
  });

  test.each([
    ['CA', () => ca],
    ['server', () => server],
    ['client', () => client]
  ])('the %s certificate is valid from slightly before now until now + lifetime', (_name, cert) => {
    const { notBefore, notAfter } = validity(cert());
    // Certificates carry whole seconds.
    expect(Math.abs(notAfter.getTime() - (NOW.getTime() + LIFETIME_HOURS * HOUR_MS))).toBeLessThan(1000);
    expect(notBefore.getTime()).toBeLessThan(NOW.getTime());
    expect(notBefore.getTime()).toBeGreaterThanOrEqual(NOW.getTime() - HOUR_MS);
  });

  test.each(['github-hosted', 'self-hosted'])('the lifetime for %s runners shows in the certificates', async environment => {
    const hours = certificateLifetimeHours(environment);
    const made = await generateTlsMaterial(SANS, hours, NOW);
    const { notAfter } = validity(new X509Certificate(made.serverCert));
    expect(Math.round((notAfter.getTime() - NOW.getTime()) / HOUR_MS)).toBe(hours);
  });
});

describe('a mutual-TLS handshake on 127.0.0.1', () => {
  // Made for the present: the material above is dated in the future on purpose.
  let live: TlsMaterial;
  let daemon: https.Server;
  let port: number;

  beforeAll(async () => {
    live = await generateTlsMaterial(SANS, 1);
    daemon = https.createServer(
      { key: live.serverKey, cert: live.serverCert, ca: live.caCert, requestCert: true, rejectUnauthorized: true },
      (request, response) => {
        const peer = (request.socket as import('node:tls').TLSSocket).getPeerCertificate();
        response.end(`hello ${peer.subject.CN}`);
      }
    );
    await new Promise<void>(resolve => daemon.listen(0, '127.0.0.1', resolve));
    port = (daemon.address() as AddressInfo).port;
  });

  afterAll(async () => {
    daemon.closeAllConnections();
    await new Promise(resolve => daemon.close(resolve));
  });

  type Outcome = { ok: true; body: string } | { ok: false; error: string };

  function get(options: https.RequestOptions): Promise<Outcome> {
    return new Promise(resolve => {
      const request = https.get({ host: '127.0.0.1', port, path: '/_ping', agent: false, ...options }, response => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', chunk => (body += chunk));
        response.on('end', () => resolve({ ok: true, body }));
        response.on('error', error => resolve({ ok: false, error: error.message }));
      });
      request.on('error', error => resolve({ ok: false, error: (error as NodeJS.ErrnoException).code ?? error.message }));
    });
  }

  test('a client with the client certificate gets in, and verifies the server by its IP SAN', async () => {
    await expect(get({ ca: live.caCert, cert: live.clientCert, key: live.clientKey })).resolves.toEqual({ ok: true, body: 'hello setup-dind client' });
  });

  test('a client with no certificate is refused', async () => {
    await expect(get({ ca: live.caCert })).resolves.toMatchObject({ ok: false });
  });

  test("a client with another call's certificate is refused", async () => {
    await expect(get({ ca: live.caCert, cert: other.clientCert, key: other.clientKey })).resolves.toMatchObject({ ok: false });
  });

  test("a client that trusts another call's CA refuses the server", async () => {
    await expect(get({ ca: other.caCert, cert: live.clientCert, key: live.clientKey })).resolves.toEqual({
      ok: false,
      // Both CAs are named alike: Node reports the foreign one as a self-signed certificate in the chain.
      error: expect.stringMatching(/^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE)$/)
    });
  });

  test('a client refuses the server under a name the certificate does not carry', async () => {
    await expect(get({ ca: live.caCert, cert: live.clientCert, key: live.clientKey, servername: 'evil.example' })).resolves.toEqual({
      ok: false,
      error: 'ERR_TLS_CERT_ALTNAME_INVALID'
    });
  });
});
