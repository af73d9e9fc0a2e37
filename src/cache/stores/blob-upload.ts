// Uploads of cache entries' blobs through the Azure SDK the cache service hands out URLs for: blocks
// in parallel. Only post loads this (the SDK is a third of a bundle).
import type { Agent } from 'node:http';
import * as core from '@actions/core';
import { AnonymousCredential, BlockBlobClient, type BlockBlobClientOptions } from '@azure/storage-blob';
import { agentFor } from './http-agents';

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

export async function uploadFile(uploadUrl: string, file: string): Promise<void> {
  const started = Date.now();
  await client(uploadUrl).uploadFile(file, {
    blockSize: UPLOAD_BLOCK_BYTES,
    concurrency: UPLOAD_CONCURRENCY
  });
  core.debug(`Uploaded ${file} to ${new URL(uploadUrl).host} in ${Date.now() - started} ms`);
}

export async function uploadData(uploadUrl: string, data: Buffer): Promise<void> {
  const started = Date.now();
  await client(uploadUrl).uploadData(data, {
    blockSize: UPLOAD_BLOCK_BYTES,
    concurrency: UPLOAD_CONCURRENCY
  });
  core.debug(`Uploaded ${data.length} bytes to ${new URL(uploadUrl).host} in ${Date.now() - started} ms`);
}
