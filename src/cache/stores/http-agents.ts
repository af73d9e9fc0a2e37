// The connections of every request to the cache (Twirp calls, blob downloads and uploads): kept alive,
// and through the proxy the runner's environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY and their
// lowercase forms), decided by @actions/http-client's own functions so that this action goes where
// the runner's other actions go: loopback always direct, NO_PROXY's '*', host:port and leading-dot
// entries as it reads them. https goes through a CONNECT tunnel, http is forwarded in absolute form.
import * as http from 'node:http';
import * as https from 'node:https';
import * as core from '@actions/core';
import { getProxyUrl } from '@actions/http-client/lib/proxy';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';

type Protocol = 'http:' | 'https:';

const direct: Record<Protocol, http.Agent> = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true })
};
/** Proxy agents by the target's protocol and the proxy's URL: one pool of connections for each. */
const proxied = new Map<string, http.Agent>();
/** Hosts whose route the debug log has told. */
const told = new Set<string>();

/** The proxy a request to `url` goes through; undefined: direct. */
export function proxyFor(url: URL): URL | undefined {
  const proxy = getProxyUrl(url);
  // http-client's own test: a variable it cannot read as a proxy's URL (no host) means no proxy.
  return proxy?.hostname ? proxy : undefined;
}

export function agentFor(url: URL): http.Agent {
  const protocol: Protocol = url.protocol === 'https:' ? 'https:' : 'http:';
  const proxy = proxyFor(url);
  if (!told.has(url.host)) {
    told.add(url.host);
    // The proxy without its credentials.
    core.debug(
      `Cache requests to ${url.host}: ${proxy ? `through the proxy ${proxy.protocol}//${proxy.host}` : 'direct'}`
    );
  }
  if (!proxy) return direct[protocol];
  const key = `${protocol} ${proxy.href}`;
  let agent = proxied.get(key);
  if (!agent) {
    // The URL as written (percent-encoded credentials): the agents decode them themselves.
    agent =
      protocol === 'https:'
        ? new HttpsProxyAgent(proxy.href, { keepAlive: true })
        : new HttpProxyAgent(proxy.href, { keepAlive: true });
    proxied.set(key, agent);
  }
  return agent;
}

/**
 * Ends `request` with `error()` when it has no connection after `ms`. A proxy's tunnel is made before
 * the request gets its socket, where the socket's idle time-out does not reach, and destroy() alone
 * says nothing until a socket comes: a proxy that never answers the CONNECT would hold the request
 * forever. The error is emitted here; a tunnel that comes later is destroyed with the request.
 */
export function limitConnect(request: http.ClientRequest, ms: number, error: () => Error): void {
  const timer = setTimeout(() => {
    const reason = error();
    request.destroy(reason);
    request.emit('error', reason);
  }, ms);
  const stop = () => clearTimeout(timer);
  request.once('socket', stop);
  request.once('close', stop);
}
