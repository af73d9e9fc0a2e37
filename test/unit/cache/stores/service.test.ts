// The contract with @actions/cache's internals (its generated Twirp client and its configuration
// reader, pinned to an exact version in package.json): what this action sends and reads, against a
// local HTTP server that answers as the service does. An upgrade that moves or changes them fails here.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  availability,
  CacheServiceError,
  CACHE_VERSION,
  isRateLimit,
  ServiceStore
} from '../../../../src/cache/stores/service';
import { defined } from '../../../support/defined';

interface Call {
  method: string;
  path: string;
  authorization?: string;
  body: Record<string, unknown>;
}

let server: http.Server;
let calls: Call[] = [];
let answer: (call: Call) => { status: number; body: object; headers?: Record<string, string> };
let uploads: Array<[string, Buffer | { file: string; bytes: number }]> = [];
/** The store, with uploads recorded instead of sent (blob transfers are not this contract); a stream read whole. */
const store = () =>
  new ServiceStore(async (url, data) => {
    if (Buffer.isBuffer(data) || 'file' in data) {
      uploads.push([url, data]);
      return Buffer.isBuffer(data) ? data.length : data.bytes;
    }
    const pieces: Buffer[] = [];
    for await (const piece of data) pieces.push(piece);
    uploads.push([url, Buffer.concat(pieces)]);
    return Buffer.concat(pieces).length;
  });
const saved = { ...process.env };

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let text = '';
    req.on('data', chunk => (text += chunk));
    req.on('end', () => {
      const call = {
        method: defined(req.method, 'request method'),
        path: defined(req.url, 'request URL'),
        authorization: req.headers.authorization,
        body: JSON.parse(text) as Record<string, unknown>
      };
      calls.push(call);
      const { status, body, headers } = answer(call);
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise(resolve => server.close(resolve)));
beforeEach(() => {
  calls = [];
  uploads = [];
  process.env.ACTIONS_RESULTS_URL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  process.env.ACTIONS_RUNTIME_TOKEN = 'token';
  process.env.ACTIONS_CACHE_SERVICE_V2 = 'True';
  process.env.GITHUB_SERVER_URL = 'https://github.com';
  delete process.env.ACTIONS_CACHE_MODE;
});
afterEach(() => {
  process.env = { ...saved };
});

const twirp = (method: string) => `/twirp/github.actions.results.api.v1.CacheService/${method}`;

test('lookup: the request the service expects, and its answer read back', async () => {
  answer = () => ({ status: 200, body: { ok: true, signed_download_url: 'https://blob/x?sas', matched_key: 'key-1' } });
  expect(await store().findManifest(['key-', 'k'])).toEqual({ key: 'key-1' });
  expect(calls).toEqual([
    {
      method: 'POST',
      path: twirp('GetCacheEntryDownloadURL'),
      authorization: 'Bearer token',
      body: { key: 'key-', restore_keys: ['k'], version: CACHE_VERSION }
    }
  ]);
  calls = [];
  expect(await store().match('key-')).toBe('key-1');
  expect(calls.map(call => call.body)).toEqual([{ key: 'key-', version: CACHE_VERSION }]);
  answer = () => ({ status: 200, body: { ok: false } });
  expect(await store().findManifest(['none'])).toBeUndefined();
  expect(await store().has('none')).toBe(false);
});

test('a write reserves, uploads and finalizes; a conflict (HTTP 409) means the name is taken', async () => {
  answer = call =>
    call.path === twirp('CreateCacheEntry')
      ? { status: 200, body: { ok: true, signed_upload_url: 'https://blob/up' } }
      : { status: 200, body: { ok: true, entry_id: '7' } };
  const written = store();
  expect(await written.write('k', Buffer.alloc(123))).toBe('written');
  expect(written.uploadedBytes).toBe(123);
  expect(calls.map(call => call.body)).toEqual([
    { key: 'k', version: CACHE_VERSION },
    { key: 'k', version: CACHE_VERSION, size_bytes: '123' }
  ]);
  expect(uploads).toEqual([['https://blob/up', Buffer.alloc(123)]]);
  answer = () => ({ status: 409, body: { code: 'already_exists', msg: 'cache entry exists' } });
  expect(await store().write('k', Buffer.alloc(1))).toBe('exists');
  expect(uploads).toHaveLength(1);
  answer = call =>
    call.path === twirp('CreateCacheEntry')
      ? { status: 200, body: { ok: true, signed_upload_url: 'https://blob/up' } }
      : { status: 200, body: { ok: false, message: 'too large' } };
  await expect(store().write('k', { file: '/part', bytes: 1 })).rejects.toThrow(
    'the cache service did not commit k: too large'
  );
});

test('a streamed write reserves before its first piece, uploads the pieces as they come, and finalizes with their size; one whose source fails is never finalized', async () => {
  answer = call =>
    call.path === twirp('CreateCacheEntry')
      ? { status: 200, body: { ok: true, signed_upload_url: 'https://blob/up' } }
      : { status: 200, body: { ok: true, entry_id: '7' } };
  const reservedFirst: boolean[] = [];
  async function* pieces(fail: boolean) {
    reservedFirst.push(calls.length === 1);
    yield Buffer.from('ab');
    yield Buffer.from('cde');
    if (fail) throw new Error('the scan failed');
  }
  const written = store();
  expect(await written.write('p', pieces(false))).toBe('written');
  expect(written.uploadedBytes).toBe(5);
  expect(calls.map(call => call.body)).toEqual([
    { key: 'p', version: CACHE_VERSION },
    { key: 'p', version: CACHE_VERSION, size_bytes: '5' }
  ]);
  expect(uploads).toEqual([['https://blob/up', Buffer.from('abcde')]]);
  calls = [];
  const failed = store();
  await expect(failed.write('q', pieces(true))).rejects.toThrow('the scan failed');
  expect(calls.map(call => call.body)).toEqual([{ key: 'q', version: CACHE_VERSION }]);
  expect(failed.uploadedBytes).toBe(0);
  expect(reservedFirst).toEqual([true, true]);
});

test("a store made without an upload (main's) writes nothing", async () => {
  await expect(new ServiceStore().write('k', Buffer.alloc(1))).rejects.toThrow(
    'this step only reads the cache service'
  );
  expect(calls).toEqual([]);
});

test('a rate limit (HTTP 429) is not retried, and says when it resets', async () => {
  answer = () => ({
    status: 429,
    body: { code: 'resource_exhausted', msg: 'rate limited' },
    headers: { 'retry-after': '60' }
  });
  const error = await store()
    .match('k')
    .catch((e: unknown) => e);
  expect(isRateLimit(error)).toBe(true);
  expect(error).toMatchObject({
    status: 429,
    retryAfter: 60,
    message: 'GetCacheEntryDownloadURL answered HTTP 429: rate limited'
  });
  expect(calls).toHaveLength(1);
});

test('a server error is retried once; a client error is not', async () => {
  answer = () => ({ status: 500, body: { code: 'internal', msg: 'boom' } });
  await expect(store().write('k', Buffer.alloc(1))).rejects.toMatchObject({ status: 500 });
  expect(calls).toHaveLength(2);
  calls = [];
  answer = () => ({ status: 400, body: { code: 'invalid_argument', msg: 'bad key' } });
  await expect(store().write('k', Buffer.alloc(1))).rejects.toThrow(
    new CacheServiceError('CreateCacheEntry answered HTTP 400: bad key', 400)
  );
  expect(calls).toHaveLength(1);
});

test('no answer at all is an error with status 0', async () => {
  process.env.ACTIONS_RESULTS_URL = 'http://127.0.0.1:1/';
  await expect(store().has('k')).rejects.toMatchObject({ status: 0 });
});

test.each<[string, Record<string, string | undefined>, object]>([
  ['the v2 service', {}, { readable: true, writable: true }],
  [
    'ACTIONS_CACHE_MODE=read',
    { ACTIONS_CACHE_MODE: 'read' },
    { readable: true, writable: false, reason: "ACTIONS_CACHE_MODE is 'read'" }
  ],
  ['ACTIONS_CACHE_MODE=write-only', { ACTIONS_CACHE_MODE: 'write-only' }, { readable: false, writable: true }],
  [
    'GitHub Enterprise Server (legacy service only)',
    { GITHUB_SERVER_URL: 'https://ghes.example.com' },
    { readable: false, writable: false, reason: expect.stringMatching(/Enterprise Server has only the legacy service/) }
  ],
  [
    'the legacy service only',
    { ACTIONS_CACHE_SERVICE_V2: undefined },
    { readable: false, writable: false, reason: expect.stringMatching(/v2 is not available/) }
  ],
  [
    'no results URL',
    { ACTIONS_RESULTS_URL: undefined },
    { readable: false, writable: false, reason: 'the Actions cache service is not available to this job' }
  ],
  [
    'no token',
    { ACTIONS_RUNTIME_TOKEN: undefined },
    { readable: false, writable: false, reason: 'the Actions cache service is not available to this job' }
  ]
])('availability: %s', (_name, env, expected) => {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  expect(availability()).toMatchObject(expected);
});
