// Uploads of cache entries' blobs through the Azure SDK the cache service hands out URLs for: blocks
// in parallel. Only post loads this (the SDK is a third of a bundle).
import { BlockBlobClient } from '@azure/storage-blob';

const UPLOAD_BLOCK_BYTES = 16 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 8;

export async function uploadFile(uploadUrl: string, file: string): Promise<void> {
  await new BlockBlobClient(uploadUrl).uploadFile(file, {
    blockSize: UPLOAD_BLOCK_BYTES,
    concurrency: UPLOAD_CONCURRENCY
  });
}

export async function uploadData(uploadUrl: string, data: Buffer): Promise<void> {
  await new BlockBlobClient(uploadUrl).uploadData(data, {
    blockSize: UPLOAD_BLOCK_BYTES,
    concurrency: UPLOAD_CONCURRENCY
  });
}
