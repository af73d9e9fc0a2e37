// Uploads of cache entries' blobs through the Azure SDK the cache service hands out URLs for: blocks
// in parallel. Only post loads this (the SDK is a third of a bundle).
import type { Agent } from 'node:http';
import * as core from '@actions/core';
import { AnonymousCredential, BlockBlobClient, type BlockBlobClientOptions } from '@azure/storage-blob';
import { agentFor } from './http-agents';
import type { BlobFile } from './store';

const UPLOAD_BLOCK_BYTES = 16 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 8;

/**
 * A client whose every request goes through the agent the other requests of the cache use. The SDK's
 * pipeline takes an `agent` (core-rest-pipeline's option, passed through though the storage options do
 * not name it), and one given turns off the SDK's own reading of the proxy variables, which differs
 * from http-client's: no loopback exception; in NO_PROXY no '*', no host:port, no parent domain
 * without its leading dot, and case counts.
 */
function client(uploadUrl: string): BlockBlobClient {
  const options: BlockBlobClientOptions & { agent: Agent } = { agent: agentFor(new URL(uploadUrl)) };
  return new BlockBlobClient(uploadUrl, new AnonymousCredential(), options);
}

/** Uploads a blob, from memory or from a file, to the signed URL of a reserved entry. */
export async function uploadBlob(uploadUrl: string, data: Buffer | BlobFile): Promise<void> {
  const started = Date.now();
  const options = { blockSize: UPLOAD_BLOCK_BYTES, concurrency: UPLOAD_CONCURRENCY };
  if (Buffer.isBuffer(data)) await client(uploadUrl).uploadData(data, options);
  else await client(uploadUrl).uploadFile(data.file, options);
  const what = Buffer.isBuffer(data) ? `${data.length} bytes` : data.file;
  core.debug(`Uploaded ${what} to ${new URL(uploadUrl).host} in ${Date.now() - started} ms`);
}
