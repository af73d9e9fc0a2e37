// The cache entry's blob, uploaded through the Azure SDK the cache service hands out URLs for: blocks
// in parallel from a stream of unknown length. Only post loads this (the SDK is a third of a bundle).
import type { Readable } from 'node:stream';
import { BlobClient } from '@azure/storage-blob';

const UPLOAD_BLOCK_BYTES = 32 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 4;

export async function uploadBlob(uploadUrl: string, archive: Readable): Promise<void> {
  await new BlobClient(uploadUrl).getBlockBlobClient().uploadStream(archive, UPLOAD_BLOCK_BYTES, UPLOAD_CONCURRENCY);
}
