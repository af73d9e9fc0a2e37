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

/** Uploads a blob, from memory, from a file or as it is made, to the signed URL of a reserved entry; its bytes. */
export async function uploadBlob(uploadUrl: string, data: Buffer | BlobFile | AsyncIterable<Buffer>): Promise<number> {
  const started = Date.now();
  const options = { blockSize: UPLOAD_BLOCK_BYTES, concurrency: UPLOAD_CONCURRENCY };
  let bytes: number;
  if (Buffer.isBuffer(data)) {
    await client(uploadUrl).uploadData(data, options);
    bytes = data.length;
  } else if ('file' in data) {
    await client(uploadUrl).uploadFile(data.file, options);
    bytes = data.bytes;
  } else bytes = await uploadStream(client(uploadUrl), data);
  core.debug(`Uploaded ${bytes} bytes to ${new URL(uploadUrl).host} in ${Date.now() - started} ms`);
  return bytes;
}

/**
 * Stages each block as soon as the data has filled it, UPLOAD_CONCURRENCY at a time (the data's source
 * waits while as many are in flight), then commits the list. Returns the bytes uploaded.
 */
async function uploadStream(blob: BlockBlobClient, data: AsyncIterable<Buffer>): Promise<number> {
  const ids: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let bytes = 0;
  const stage = async (block: Buffer) => {
    // Every id of a blob has the same length.
    const id = Buffer.from(String(ids.length).padStart(8, '0')).toString('base64');
    ids.push(id);
    bytes += block.length;
    const staged: Promise<void> = blob
      .stageBlock(id, block, block.length)
      .then(
        () => undefined,
        (error: unknown) => void (failure ??= { error })
      )
      .finally(() => inFlight.delete(staged));
    inFlight.add(staged);
    if (inFlight.size >= UPLOAD_CONCURRENCY) await Promise.race(inFlight);
    if (failure) throw failure.error;
  };
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of data) {
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes >= UPLOAD_BLOCK_BYTES) {
      await stage(Buffer.concat(pending));
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) await stage(Buffer.concat(pending));
  await Promise.all(inFlight);
  if (failure) throw failure.error;
  await blob.commitBlockList(ids);
  return bytes;
}
