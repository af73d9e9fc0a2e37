// The mutual-TLS material, checked with node:crypto and @peculiar/x509 rather than with the code that
// made it, and used for a real handshake on 127.0.0.1.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate } from 'node:crypto';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import {
  certificateLifetimeHours,
  createAuthority,
  type CertificateAuthority,
  type KeyPair,
  type SubjectAltNames
} from '../../../src/daemon/tls';

/** What serverSubjectAltNames gives: loopback, the instance's names, and the container's addresses. */
const SANS: SubjectAltNames = {
  dns: ['localhost', 'dind', 'setup-dind-dind-abcdef01'],
  ip: ['127.0.0.1', '::1', '172.18.0.2', '172.17.0.3']
};
const LIFETIME_HOURS = 7;
const NOW = new Date('2030-06-15T12:34:56.789Z');
const HOUR_MS = 3600 * 1000;

/** An authority and what it issued. */
interface Issued {
  authority: CertificateAuthority;
  server: KeyPair;
  client: KeyPair;
}

async function issueFrom(authority: CertificateAuthority, sans: SubjectAltNames = SANS): Promise<Issued> {
  const [server, client] = await Promise.all([authority.issueServer(sans), authority.issueClient()]);
  return { authority, server, client };
}

let material: Issued;
/** A second authority: the "other CA" of every negative case. */
let other: Issued;
let ca: X509Certificate;
let server: X509Certificate;
let client: X509Certificate;

beforeAll(async () => {
  [material, other] = await Promise.all([
    createAuthority(LIFETIME_HOURS, NOW).then(a => issueFrom(a)),
    createAuthority(LIFETIME_HOURS).then(a => issueFrom(a))
  ]);
  ca = new X509Certificate(material.authority.caCert);
  server = new X509Certificate(material.server.cert);
  client = new X509Certificate(material.client.cert);
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

describe('the authority', () => {
  test('exposes its CA certificate, its end of validity and two issuers: nothing else', () => {
    expect(Object.keys(material.authority).sort()).toEqual(['caCert', 'issueClient', 'issueServer', 'notAfter']);
    expect(material.authority.caCert).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n?$/);
    expect(JSON.stringify(material.authority)).not.toMatch(/PRIVATE KEY/);
  });

  test('generates its CA key non-extractable, and keys for what it issues extractable', async () => {
    const generateKey = jest.spyOn(webcrypto.subtle, 'generateKey');
    try {
      const authority = await createAuthority(1);
      const caKeys = await Promise.all(generateKey.mock.results.map(result => result.value as Promise<CryptoKeyPair>));
      expect(caKeys.map(keys => keys.privateKey.extractable)).toEqual([false]);
      await expect(webcrypto.subtle.exportKey('pkcs8', caKeys[0].privateKey)).rejects.toThrow();
      // That key is the CA's: its public half is the CA certificate's.
      const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', caKeys[0].publicKey));
      expect(spki.equals(new X509Certificate(authority.caCert).publicKey.export({ type: 'spki', format: 'der' }))).toBe(
        true
      );

      generateKey.mockClear();
      await authority.issueServer(SANS);
      await authority.issueClient();
      const issuedKeys = await Promise.all(
        generateKey.mock.results.map(result => result.value as Promise<CryptoKeyPair>)
      );
      expect(issuedKeys.map(keys => keys.privateKey.extractable)).toEqual([true, true]);
    } finally {
      generateKey.mockRestore();
    }
  });

  test('issues a fresh key pair every time', async () => {
    const [a, b] = await Promise.all([material.authority.issueServer(SANS), material.authority.issueServer(SANS)]);
    expect(a.key).not.toBe(b.key);
    expect(a.cert).not.toBe(b.cert);
    for (const pair of [a, b]) expect(new X509Certificate(pair.cert).checkIssued(ca)).toBe(true);
  });
});

describe('the chain', () => {
  test('the CA is a self-signed CA certificate', () => {
    expect(ca.ca).toBe(true);
    expect(ca.issuer).toBe(ca.subject);
    expect(ca.verify(ca.publicKey)).toBe(true);
  });

  test('the CA may sign end-entity certificates only (path length 0), and nothing else', () => {
    const cert = new x509.X509Certificate(material.authority.caCert);
    const constraints = cert.getExtension(x509.BasicConstraintsExtension);
    expect(constraints?.ca).toBe(true);
    expect(constraints?.pathLength).toBe(0);
    expect(constraints?.critical).toBe(true);
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
    );
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
  ])("the %s certificate does not verify against another authority's CA", (_name, cert) => {
    const otherCa = new X509Certificate(other.authority.caCert);
    expect(cert().verify(otherCa.publicKey)).toBe(false);
    expect(cert().checkIssued(otherCa)).toBe(false);
  });

  test("another authority's certificates do not verify against this CA", () => {
    for (const pem of [other.server.cert, other.client.cert]) {
      expect(new X509Certificate(pem).verify(ca.publicKey)).toBe(false);
    }
  });

  test('every certificate has its own serial number', () => {
    const serials = [
      material.authority.caCert,
      material.server.cert,
      material.client.cert,
      other.authority.caCert,
      other.server.cert,
      other.client.cert
    ].map(pem => new X509Certificate(pem).serialNumber);
    expect(new Set(serials).size).toBe(serials.length);
  });
});

describe('subject alternative names', () => {
  const sanOf = (pem: string) => new x509.X509Certificate(pem).getExtension(x509.SubjectAlternativeNameExtension);

  test('the server certificate names exactly the ones asked, container addresses included', () => {
    expect(sanOf(material.server.cert)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'localhost' },
      { type: 'dns', value: 'dind' },
      { type: 'dns', value: 'setup-dind-dind-abcdef01' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
      { type: 'ip', value: '172.18.0.2' },
      { type: 'ip', value: '172.17.0.3' }
    ]);
  });

  test.each(['localhost', 'dind', 'setup-dind-dind-abcdef01'])('a TLS client accepts the host name %p', host => {
    expect(server.checkHost(host)).toBe(host);
  });

  test.each(['127.0.0.1', '::1', '172.18.0.2', '172.17.0.3'])('a TLS client accepts the address %p', ip => {
    expect(server.checkIP(ip)).toBe(ip);
  });

  test.each(['example.com', 'dind.example.com', 'setup-dind-dind'])('a TLS client refuses the host name %p', host => {
    expect(server.checkHost(host)).toBeUndefined();
  });

  test.each(['172.18.0.3', '10.0.0.1', '0.0.0.0'])('a TLS client refuses the address %p', ip => {
    expect(server.checkIP(ip)).toBeUndefined();
  });

  test('the client certificate names nothing', () => {
    expect(sanOf(material.client.cert)).toBeNull();
  });

  test.each<[string, SubjectAltNames, Array<{ type: string; value: string }>]>([
    [
      'one of each',
      { dns: ['db'], ip: ['10.0.0.7'] },
      [
        { type: 'dns', value: 'db' },
        { type: 'ip', value: '10.0.0.7' }
      ]
    ],
    [
      'names only',
      { dns: ['a', 'b'], ip: [] },
      [
        { type: 'dns', value: 'a' },
        { type: 'dns', value: 'b' }
      ]
    ],
    [
      'addresses only',
      { dns: [], ip: ['192.168.1.2', 'fd00::2'] },
      [
        { type: 'ip', value: '192.168.1.2' },
        { type: 'ip', value: 'fd00::2' }
      ]
    ]
  ])('other names give other SANs: %s', async (_name, sans, names) => {
    const custom = await material.authority.issueServer(sans);
    expect(sanOf(custom.cert)?.names.toJSON()).toEqual(names);
  });
});

describe('subjects', () => {
  test.each([
    ['CA', 'CN=setup-dind CA', () => ca],
    ['server', 'CN=setup-dind daemon', () => server],
    ['client', 'CN=setup-dind client', () => client]
  ])('the %s certificate is %s', (_name, subject, cert) => {
    expect(cert().subject.replace(/\n/g, ', ')).toBe(subject);
  });
});

describe('extended key usage', () => {
  test.each([
    ['server', 'serverAuth', x509.ExtendedKeyUsage.serverAuth, () => material.server.cert],
    ['client', 'clientAuth', x509.ExtendedKeyUsage.clientAuth, () => material.client.cert]
  ])('the %s certificate is for %s only, and only signs', (_name, _usageName, usage, pem) => {
    const cert = new x509.X509Certificate(pem());
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([usage]);
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
  });

  test.each([
    ['server', () => material.server.cert],
    ['client', () => material.client.cert]
  ])("the %s certificate names its issuer's key", (_name, pem) => {
    const issuedBy = new x509.X509Certificate(pem()).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
    const caKeyId = new x509.X509Certificate(material.authority.caCert).getExtension(
      x509.SubjectKeyIdentifierExtension
    )?.keyId;
    expect(issuedBy).toBeDefined();
    expect(issuedBy).toBe(caKeyId);
  });
});

describe('private keys', () => {
  test.each([
    ['server', () => material.server.key, () => server, () => client],
    ['client', () => material.client.key, () => client, () => server]
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

  test.each([
    ['server', () => material.server.key],
    ['client', () => material.client.key]
  ])("the %s key does not fit the other authority's certificates", (_name, pem) => {
    const key = createPrivateKey(pem());
    for (const cert of [other.server.cert, other.client.cert, other.authority.caCert])
      expect(new X509Certificate(cert).checkPrivateKey(key)).toBe(false);
  });
});

describe('validity', () => {
  const validity = (cert: X509Certificate) => ({
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo)
  });

  test('notAfter is the one returned: now + lifetime', () => {
    expect(material.authority.notAfter.getTime()).toBe(NOW.getTime() + LIFETIME_HOURS * HOUR_MS);
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

  test.each(['github-hosted', 'self-hosted'])(
    'the lifetime for %s runners shows in the certificates',
    async environment => {
      const hours = certificateLifetimeHours(environment);
      const authority = await createAuthority(hours, NOW);
      const made = await issueFrom(authority);
      for (const pem of [authority.caCert, made.server.cert, made.client.cert]) {
        const { notAfter } = validity(new X509Certificate(pem));
        expect(Math.round((notAfter.getTime() - NOW.getTime()) / HOUR_MS)).toBe(hours);
      }
    }
  );

  test('without a date, the authority starts now', async () => {
    const before = Date.now();
    const authority = await createAuthority(2);
    const after = Date.now();
    expect(authority.notAfter.getTime()).toBeGreaterThanOrEqual(before + 2 * HOUR_MS);
    expect(authority.notAfter.getTime()).toBeLessThanOrEqual(after + 2 * HOUR_MS);
    expect(new Date(new X509Certificate(authority.caCert).validFrom).getTime()).toBeLessThanOrEqual(before);
  });
});

describe('a mutual-TLS handshake on 127.0.0.1', () => {
  // Made for the present: the material above is dated in the future on purpose.
  let live: Issued;
  let daemon: https.Server;
  let port: number;
  /** A server that presents the client certificate: a client must refuse it. */
  let impostor: https.Server;
  let impostorPort: number;

  const listen = async (pair: KeyPair, caCert: string): Promise<[https.Server, number]> => {
    const server = https.createServer(
      { key: pair.key, cert: pair.cert, ca: caCert, requestCert: true, rejectUnauthorized: true },
      (request, response) => {
        const peer = (request.socket as import('node:tls').TLSSocket).getPeerCertificate();
        response.end(`hello ${String(peer.subject.CN)}`);
      }
    );
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    return [server, (server.address() as AddressInfo).port];
  };

  beforeAll(async () => {
    live = await issueFrom(await createAuthority(1));
    [daemon, port] = await listen(live.server, live.authority.caCert);
    [impostor, impostorPort] = await listen(live.client, live.authority.caCert);
  });

  afterAll(async () => {
    for (const server of [daemon, impostor]) {
      server.closeAllConnections();
      await new Promise(resolve => server.close(resolve));
    }
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
      request.on('error', error =>
        resolve({ ok: false, error: (error as NodeJS.ErrnoException).code ?? error.message })
      );
    });
  }

  const trusted = () => ({ ca: live.authority.caCert, cert: live.client.cert, key: live.client.key });

  test('a client with the client certificate gets in, and verifies the server by its IP SAN', async () => {
    await expect(get(trusted())).resolves.toEqual({ ok: true, body: 'hello setup-dind client' });
  });

  test.each(['localhost', 'dind', 'setup-dind-dind-abcdef01'])(
    'a client verifies the server under its name %p',
    async servername => {
      await expect(get({ ...trusted(), servername })).resolves.toEqual({ ok: true, body: 'hello setup-dind client' });
    }
  );

  test.each<[string, () => https.RequestOptions]>([
    ['a client with no certificate', () => ({ ca: live.authority.caCert })],
    [
      "a client with another authority's client certificate",
      () => ({ ca: live.authority.caCert, cert: other.client.cert, key: other.client.key })
    ],
    // The extended key usage matters: the server's key pair is no client's.
    [
      'a client presenting the server certificate',
      () => ({ ca: live.authority.caCert, cert: live.server.cert, key: live.server.key })
    ]
  ])('%s is refused', async (_name, options) => {
    await expect(get(options())).resolves.toMatchObject({ ok: false });
  });

  test("a client that trusts another authority's CA refuses the server", async () => {
    await expect(get({ ca: other.authority.caCert, cert: live.client.cert, key: live.client.key })).resolves.toEqual({
      ok: false,
      // Both CAs are named alike: Node reports the foreign one as a self-signed certificate in the chain.
      error: expect.stringMatching(
        /^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE)$/
      )
    });
  });

  test('a client refuses the server under a name the certificate does not carry', async () => {
    await expect(get({ ...trusted(), servername: 'evil.example' })).resolves.toEqual({
      ok: false,
      error: 'ERR_TLS_CERT_ALTNAME_INVALID'
    });
  });

  test('a client refuses a server that presents the client certificate', async () => {
    await expect(get({ ...trusted(), port: impostorPort, checkServerIdentity: () => undefined })).resolves.toEqual({
      ok: false,
      error: 'INVALID_PURPOSE'
    });
  });
});
