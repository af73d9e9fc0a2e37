// Downloads of cache entries' blobs from the signed URLs the cache service hands out (Azure Blob
// Storage on GitHub): whole small blobs, and byte ranges of parts, several at once. A blob store
// serves one connection well below what several parallel ranged GETs of the same object reach.
import * as http from 'node:http';
import * as https from 'node:https';
import { agentFor, limitConnect } from './http-agents';

/** A response that delivers nothing for this long has stalled. */
const STALL_MS = 30_000;

export class DownloadError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 when there was no complete answer. */
    readonly status: number
  ) {
    super(message);
  }
}

/**
 * GETs `url` (bytes `range[0]` to `range[1]` inclusive when given) into memory: into the start of
 * `into` when given (the result is a view of it; `received` hears how many bytes of it are in place
 * as they arrive), else a new buffer. Refuses a body larger than asked for, than `maxBytes` or than
 * `into`, and one that ends short.
 */
export function download(
  url: string,
  options: { range?: [number, number]; maxBytes: number; into?: Buffer; received?: (bytes: number) => void }
): Promise<Buffer> {
  const target = new URL(url);
  const get = target.protocol === 'https:' ? https.get : http.get;
  const { range, into, received } = options;
  const maxBytes = into ? Math.min(options.maxBytes, into.length) : options.maxBytes;
  const headers = range ? { range: `bytes=${range[0]}-${range[1]}` } : undefined;
  return new Promise((resolve, reject) => {
    const request = get(target, { agent: agentFor(target), headers }, response => {
      const expectedStatus = range ? 206 : 200;
      if (response.statusCode !== expectedStatus) {
        response.resume();
        reject(new DownloadError(`download answered HTTP ${response.statusCode}`, response.statusCode ?? 0));
        return;
      }
      const expected = range ? range[1] - range[0] + 1 : Number(response.headers['content-length'] ?? NaN);
      if (
        range &&
        response.headers['content-range'] !== undefined &&
        !String(response.headers['content-range']).startsWith(`bytes ${range[0]}-${range[1]}/`)
      ) {
        response.destroy();
        reject(
          new DownloadError(
            `download answered the range ${response.headers['content-range']}, not ${range[0]}-${range[1]}`,
            0
          )
        );
        return;
      }
      if (expected > maxBytes) {
        response.destroy();
        reject(new DownloadError(`a blob of ${expected} bytes, more than the ${maxBytes} expected`, 0));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes || size > expected)
          response.destroy(new DownloadError(`the download went on past ${Math.min(maxBytes, expected)} bytes`, 0));
        else if (into) {
          chunk.copy(into, size - chunk.length);
          received?.(size);
        } else chunks.push(chunk);
      });
      response.on('end', () => {
        if (Number.isFinite(expected) && size !== expected)
          reject(new DownloadError(`the download ended after ${size} of ${expected} bytes`, 0));
        else resolve(into ? into.subarray(0, size) : Buffer.concat(chunks, size));
      });
      response.on('error', error =>
        reject(error instanceof DownloadError ? error : new DownloadError(error.message, 0))
      );
      response.on('aborted', () => reject(new DownloadError(`the download ended after ${size} bytes`, 0)));
    });
    const stalled = () => new DownloadError(`the download stalled for ${STALL_MS / 1000} s`, 0);
    limitConnect(request, STALL_MS, stalled);
    request.setTimeout(STALL_MS, () => request.destroy(stalled()));
    request.on('error', error => reject(error instanceof DownloadError ? error : new DownloadError(error.message, 0)));
  });
}
