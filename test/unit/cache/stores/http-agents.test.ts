import * as http from 'node:http';
import * as https from 'node:https';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { agentFor, limitConnect, proxyFor } from '../../../../src/cache/stores/http-agents';
import { silentServer } from '../../../support/net';

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'] as const;
type ProxyEnv = Partial<Record<(typeof PROXY_VARS)[number], string>>;

const saved = Object.fromEntries(PROXY_VARS.map(name => [name, process.env[name]]));

function setEnv(env: ProxyEnv): void {
  for (const name of PROXY_VARS) {
    if (env[name] === undefined) delete process.env[name];
    else process.env[name] = env[name];
  }
}

afterEach(() => setEnv(saved));

const HTTPS = { HTTPS_PROXY: 'http://proxy.corp:3128' };

describe('proxyFor: the proxy of each request, as @actions/http-client decides it', () => {
  test.each<{ what: string; env: ProxyEnv; url: string; proxy: string | undefined }>([
    { what: 'no variable: direct', env: {}, url: 'https://results.example/twirp/x', proxy: undefined },
    {
      what: 'HTTPS_PROXY for an https URL',
      env: HTTPS,
      url: 'https://results.example/twirp/x',
      proxy: 'http://proxy.corp:3128/'
    },
    {
      what: 'https_proxy is read before HTTPS_PROXY',
      env: { HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2' },
      url: 'https://results.example/',
      proxy: 'http://lower:2/'
    },
    { what: 'HTTPS_PROXY does not take http URLs', env: HTTPS, url: 'http://results.example/', proxy: undefined },
    {
      what: 'HTTP_PROXY does not take https URLs',
      env: { HTTP_PROXY: 'http://p:1' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'HTTP_PROXY for an http URL',
      env: { HTTP_PROXY: 'http://p:1' },
      url: 'http://results.example/',
      proxy: 'http://p:1/'
    },
    {
      what: 'http_proxy is read before HTTP_PROXY',
      env: { HTTP_PROXY: 'http://upper:1', http_proxy: 'http://lower:2' },
      url: 'http://results.example/',
      proxy: 'http://lower:2/'
    },
    { what: 'an empty variable: direct', env: { HTTPS_PROXY: '' }, url: 'https://results.example/', proxy: undefined },
    {
      what: 'a proxy given as host:port',
      env: { HTTPS_PROXY: '10.0.0.1:3128' },
      url: 'https://results.example/',
      proxy: 'http://10.0.0.1:3128/'
    },
    {
      // http-client reads it as a URL of the scheme 'proxy.corp:' with no host, and then uses no proxy.
      what: 'a proxy named host:port: direct, as http-client does',
      env: { HTTPS_PROXY: 'proxy.corp:3128' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'credentials stay percent-encoded in the URL',
      env: { HTTPS_PROXY: 'http://me:p%40ss@proxy.corp:3128' },
      url: 'https://results.example/',
      proxy: 'http://me:p%40ss@proxy.corp:3128/'
    },
    {
      what: 'an https proxy',
      env: { HTTPS_PROXY: 'https://proxy.corp' },
      url: 'https://results.example/',
      proxy: 'https://proxy.corp/'
    },
    // Loopback never goes through a proxy, NO_PROXY or not.
    { what: '127.0.0.1: direct', env: HTTPS, url: 'https://127.0.0.1:8443/', proxy: undefined },
    { what: '127.x.y.z: direct', env: { HTTP_PROXY: 'http://p:1' }, url: 'http://127.1.2.3/', proxy: undefined },
    { what: 'localhost: direct', env: HTTPS, url: 'https://LOCALHOST/', proxy: undefined },
    { what: '[::1]: direct', env: HTTPS, url: 'https://[::1]:8443/', proxy: undefined },
    // NO_PROXY: host names, suffixes, ports, the wildcard; case does not matter.
    {
      what: 'NO_PROXY names the host',
      env: { ...HTTPS, NO_PROXY: 'results.example' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY names a parent domain',
      env: { ...HTTPS, NO_PROXY: 'example' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY matches at a dot only',
      env: { ...HTTPS, NO_PROXY: 'example' },
      url: 'https://results-example/',
      proxy: 'http://proxy.corp:3128/'
    },
    {
      what: 'NO_PROXY with a leading dot takes the subdomains',
      env: { ...HTTPS, NO_PROXY: '.blob.example' },
      url: 'https://acct.blob.example/c/b',
      proxy: undefined
    },
    {
      what: 'NO_PROXY with a leading dot does not take the domain itself',
      env: { ...HTTPS, NO_PROXY: '.blob.example' },
      url: 'https://blob.example/c/b',
      proxy: 'http://proxy.corp:3128/'
    },
    {
      what: "NO_PROXY '*': direct",
      env: { ...HTTPS, NO_PROXY: '*' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY host:port, that port',
      env: { ...HTTPS, NO_PROXY: 'results.example:8443' },
      url: 'https://results.example:8443/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY host:port, another port',
      env: { ...HTTPS, NO_PROXY: 'results.example:8443' },
      url: 'https://results.example/',
      proxy: 'http://proxy.corp:3128/'
    },
    {
      what: "NO_PROXY host:443 takes https's default port",
      env: { ...HTTPS, NO_PROXY: 'results.example:443' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: "NO_PROXY host:80 takes http's default port",
      env: { HTTP_PROXY: 'http://p:1', NO_PROXY: 'results.example:80' },
      url: 'http://results.example/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY ignores case',
      env: { ...HTTPS, NO_PROXY: 'Results.EXAMPLE' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY: a list with blanks and empty items',
      env: { ...HTTPS, NO_PROXY: ' other.example , ,results.example ,' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'no_proxy, lowercase',
      env: { ...HTTPS, no_proxy: 'results.example' },
      url: 'https://results.example/',
      proxy: undefined
    },
    {
      what: 'no_proxy is read before NO_PROXY',
      env: { ...HTTPS, no_proxy: 'other.example', NO_PROXY: 'results.example' },
      url: 'https://results.example/',
      proxy: 'http://proxy.corp:3128/'
    },
    {
      what: 'NO_PROXY names an address',
      env: { ...HTTPS, NO_PROXY: '10.1.2.3' },
      url: 'https://10.1.2.3/',
      proxy: undefined
    },
    {
      what: 'NO_PROXY takes no CIDR ranges',
      env: { ...HTTPS, NO_PROXY: '10.0.0.0/8' },
      url: 'https://10.1.2.3/',
      proxy: 'http://proxy.corp:3128/'
    }
  ])('$what', ({ env, url, proxy }) => {
    setEnv(env);
    expect(proxyFor(new URL(url))?.href).toBe(proxy);
  });
});

describe('agentFor: one keep-alive agent per route', () => {
  test('direct: the keep-alive agent of the protocol, the same one for every host', () => {
    setEnv({});
    const agent = agentFor(new URL('https://results.example/'));
    expect(agent).toBeInstanceOf(https.Agent);
    expect(agent).not.toBeInstanceOf(HttpsProxyAgent);
    expect(agentFor(new URL('https://blob.example/b'))).toBe(agent);
    const plain = agentFor(new URL('http://results.example/'));
    expect(plain).not.toBeInstanceOf(https.Agent);
    expect(plain).toBeInstanceOf(http.Agent);
    for (const each of [agent, plain]) expect((each as http.Agent & { keepAlive: boolean }).keepAlive).toBe(true);
  });

  test('through a proxy: a tunnelling agent for https, a forwarding one for http, each kept for its proxy', () => {
    setEnv({ HTTPS_PROXY: 'http://me:p%40ss@proxy.corp:3128', HTTP_PROXY: 'http://proxy.corp:3129' });
    const tunnel = agentFor(new URL('https://results.example/'));
    expect(tunnel).toBeInstanceOf(HttpsProxyAgent);
    expect((tunnel as HttpsProxyAgent<string>).proxy.href).toBe('http://me:p%40ss@proxy.corp:3128/');
    expect((tunnel as HttpsProxyAgent<string>).keepAlive).toBe(true);
    expect(agentFor(new URL('https://blob.example/b'))).toBe(tunnel);
    const forward = agentFor(new URL('http://results.example/'));
    expect(forward).toBeInstanceOf(HttpProxyAgent);
    expect((forward as HttpProxyAgent<string>).proxy.href).toBe('http://proxy.corp:3129/');
    // Another proxy, another pool; bypassed hosts keep the direct agent.
    process.env.HTTPS_PROXY = 'http://proxy.corp:4000';
    const other = agentFor(new URL('https://results.example/'));
    expect(other).toBeInstanceOf(HttpsProxyAgent);
    expect(other).not.toBe(tunnel);
    process.env.NO_PROXY = 'results.example';
    expect(agentFor(new URL('https://results.example/'))).not.toBeInstanceOf(HttpsProxyAgent);
  });
});

describe('limitConnect', () => {
  test('a proxy that accepts but never answers the CONNECT: the request ends with the given error', async () => {
    const silent = await silentServer();
    try {
      setEnv({ HTTPS_PROXY: `http://127.0.0.1:${silent.port}` });
      const url = new URL('https://results.example/twirp/x');
      const outcome = new Promise<unknown>((resolve, reject) => {
        const request = https.get(url, { agent: agentFor(url) }, () => reject(new Error('an answer')));
        request.on('error', resolve);
        limitConnect(request, 200, () => new Error('no tunnel in time'));
      });
      await expect(outcome).resolves.toEqual(new Error('no tunnel in time'));
      expect(silent.connections()).toBe(1);
    } finally {
      await silent.close();
    }
  });
});
