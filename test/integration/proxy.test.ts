// A runner behind an HTTP proxy: every request of the cache (the Twirp calls, the ranged downloads, the
// block uploads) goes through the proxy that HTTPS_PROXY or HTTP_PROXY names, and NO_PROXY sends a host
// around it, as @actions/http-client decides for other actions. The proxy is a real one (tinyproxy);
// the cache service is named by this machine's name (localhost and 127.* are never proxied), and a
// firewall rule refuses every connection to it but the proxy's: a job that goes around the proxy gets
// no cache, and still passes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createAuthority, type KeyPair } from '../../src/daemon/tls';
import { expectEmptyWorkingDaemon, imageTags, savedKeyOf, CACHE_INPUTS } from '../support/cache-helpers';
import { startCacheServer, type CacheServer } from '../support/cache-server';
import { buildTinyImage, TINY_IMAGE } from '../support/images';
import { delta, loadFromOuter, sweepAll, withJob } from '../support/job';
import { closeDirectRoute, serviceHost, startProxy, type ClosedRoute, type Proxy } from '../support/proxy';
import { commands } from '../support/steps';
import { silentServer } from '../support/net';

jest.setTimeout(600_000);

/** The proxy variables of this machine do not reach the jobs: each job's own say where it goes. */
const NO_PROXY_VARS = { HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', no_proxy: '' };

/** The cache services' host: this machine's name and the address it resolves to. */
let host = { name: '', address: '' };
let proxy: Proxy | undefined;
let tls: KeyPair;
let dir = '';
/** The jobs' trust in the https service's certificate (as a runner with a corporate CA has). */
let trust: Record<string, string> = {};
const measurements: string[] = [];

beforeAll(async () => {
  await buildTinyImage();
  host = await serviceHost();
  proxy = await startProxy();
  const authority = await createAuthority(1);
  tls = await authority.issueServer({ dns: [host.name], ip: [] });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-proxy-ca-'));
  fs.chmodSync(dir, 0o755);
  const caFile = path.join(dir, 'ca.pem');
  fs.writeFileSync(caFile, authority.caCert, { mode: 0o644 });
  trust = { NODE_EXTRA_CA_CERTS: caFile };
}, 600_000);

afterAll(async () => {
  await sweepAll();
  await proxy?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  if (measurements.length > 0) console.log(`Through the proxy:\n  ${measurements.join('\n  ')}`);
});

/** A cache service on this machine's address, its direct route closed, for `body`; gone however it ends. */
async function withClosedService(
  scheme: 'http' | 'https',
  body: (server: CacheServer, route: ClosedRoute) => Promise<void>
): Promise<void> {
  const server = await startCacheServer({
    host: host.address,
    hostname: host.name,
    ...(scheme === 'https' ? { tls } : {})
  });
  let route: ClosedRoute | undefined;
  try {
    route = closeDirectRoute(host.address, Number(new URL(server.url).port));
    await body(server, route);
  } finally {
    route?.open();
    await server.stop();
  }
}

describe.each<{ scheme: 'http' | 'https'; variable: string; user?: string; label: string }>([
  { scheme: 'https', variable: 'HTTPS_PROXY', user: undefined, label: 'https through HTTPS_PROXY, as root' },
  { scheme: 'https', variable: 'https_proxy', user: 'runner', label: 'https through https_proxy, as runner' },
  { scheme: 'http', variable: 'HTTP_PROXY', user: undefined, label: 'http through HTTP_PROXY, as root' }
])('$label', ({ scheme, variable, user, label }) => {
  test('a job saves and the next restores through the proxy; without it, or with the service in NO_PROXY, a job gets no cache, warns and passes', async () => {
    const p = proxy as Proxy;
    await withClosedService(scheme, async (server, route) => {
      const origin = new URL(server.url).host;
      const throughProxy = { ...NO_PROXY_VARS, ...trust, [variable]: p.url };
      /** The requests for this service the proxy received since `from`. */
      const proxied = (from: number) =>
        p
          .requests()
          .slice(from)
          .filter(line => line.includes(scheme === 'https' ? ` ${origin} ` : `//${origin}/`));

      // Cold: saves through the proxy.
      let from = p.requests().length;
      let before = server.stats();
      await withJob({ cache: server, user, env: throughProxy }, async job => {
        const main = await job.main(CACHE_INPUTS);
        expect(main.warnings).toEqual([]);
        expect(main.outputs['cache-hit']).toBe('false');
        await job.step(loadFromOuter(TINY_IMAGE), 'load the tiny image');
        const [post] = await job.post({ warnings: 0 });
        savedKeyOf(post);
      });
      expect(route.blocked()).toBe(0);
      const saved = delta(before, server.stats());
      expect(saved.lookups).toBeGreaterThanOrEqual(1);
      expect(saved.finalizes).toBeGreaterThanOrEqual(1);
      expect(saved.uploadRequests).toBeGreaterThanOrEqual(1);
      const saving = proxied(from);
      if (scheme === 'https') {
        expect(saving.length).toBeGreaterThanOrEqual(1);
        for (const line of saving) expect(line).toBe(`CONNECT ${origin} HTTP/1.1`);
      } else {
        const twirp = `http://${origin}/twirp/github.actions.results.api.v1.CacheService`;
        expect(saving).toEqual(
          expect.arrayContaining([
            `POST ${twirp}/GetCacheEntryDownloadURL HTTP/1.1`,
            `POST ${twirp}/CreateCacheEntry HTTP/1.1`,
            `POST ${twirp}/FinalizeCacheEntryUpload HTTP/1.1`,
            expect.stringMatching(new RegExp(`^PUT http://${origin}/devstoreaccount1/actions-cache/\\S+ HTTP/1\\.1$`))
          ])
        );
      }
      measurements.push(
        `${label}, save: ${saving.length} requests at the proxy for ${(saved.twirpRequests ?? 0) + (saved.uploadRequests ?? 0)} at the service`
      );

      // Warm: restores through the proxy.
      from = p.requests().length;
      before = server.stats();
      await withJob({ cache: server, user, env: throughProxy }, async job => {
        const main = await job.main(CACHE_INPUTS);
        expect(main.warnings).toEqual([]);
        expect(main.outputs['cache-hit']).toBe('true');
        expect(await imageTags(job)).toEqual([TINY_IMAGE]);
        await job.post({ warnings: 0 });
      });
      const restored = delta(before, server.stats());
      expect(restored.hits).toBeGreaterThanOrEqual(1);
      expect(restored.downloads).toBeGreaterThanOrEqual(1);
      const restoring = proxied(from);
      expect(restoring.length).toBeGreaterThanOrEqual(1);
      if (scheme === 'http')
        expect(restoring).toContainEqual(
          expect.stringMatching(new RegExp(`^GET http://${origin}/devstoreaccount1/actions-cache/\\S+ HTTP/1\\.1$`))
        );
      measurements.push(
        `${label}, restore: ${restoring.length} requests at the proxy for ${(restored.twirpRequests ?? 0) + (restored.downloads ?? 0)} at the service`
      );
      // Nothing went around the proxy.
      expect(route.blocked()).toBe(0);

      // Around the proxy: no proxy variable, then the service's address in NO_PROXY.
      for (const env of [
        { ...NO_PROXY_VARS, ...trust },
        { ...throughProxy, NO_PROXY: host.name }
      ]) {
        from = p.requests().length;
        before = server.stats();
        const blocked = route.blocked();
        await withJob({ cache: server, user, env }, async job => {
          const main = await job.main(CACHE_INPUTS);
          expect(main.warnings).toHaveLength(1);
          expect(main.warnings[0]).toMatch(/^Cache restore failed, the daemon starts empty: /);
          expect(main.outputs['cache-hit']).toBe('false');
          await expectEmptyWorkingDaemon(job);
          const [post] = await job.post({ warnings: 1 });
          expect(commands(post.stdout, 'warning')[0]).toMatch(/^Cache save failed \(the job is not affected\): /);
        });
        expect(proxied(from)).toEqual([]);
        expect(delta(before, server.stats())).toMatchObject({ twirpRequests: 0, downloads: 0, uploadRequests: 0 });
        expect(route.blocked()).toBeGreaterThan(blocked);
      }
    });
  });
});

test('a proxy that accepts but never answers: the lookup gives up after its 30 s time limit, the job warns and passes', async () => {
  const silent = await silentServer();
  try {
    await withClosedService('https', async (server, route) => {
      const env = { ...NO_PROXY_VARS, ...trust, HTTPS_PROXY: `http://127.0.0.1:${silent.port}` };
      await withJob({ cache: server, env }, async job => {
        const main = await job.main({ ...CACHE_INPUTS, 'cache-save': 'never' });
        expect(main.warnings).toHaveLength(1);
        expect(main.warnings[0]).toMatch(/^Cache restore failed, the daemon starts empty: .*no answer in 30 s/);
        expect(main.outputs['cache-hit']).toBe('false');
        await expectEmptyWorkingDaemon(job);
        await job.post({ warnings: 0 });
      });
      // One tunnel asked for, never made; nothing reached the service, nothing went around the proxy.
      expect(silent.connections()).toBe(1);
      expect(server.stats().twirpRequests).toBe(0);
      expect(route.blocked()).toBe(0);
    });
  } finally {
    await silent.close();
  }
});
