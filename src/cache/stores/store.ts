// What the cache keeps, whatever keeps it: named immutable blobs (frames by their hash in the runner's
// store, parts by their key in the Actions cache service) and manifests by their key. The runner's store
// (local.ts) and the cache service (service.ts) both keep both; test/support/store-contract.ts holds
// them to the same rules. What a store gives back is hostile input: the reader bounds what it takes.
// Each is bounded its own way: the runner's store by LocalStore.enforceLimit, which post calls; the
// service by GitHub's eviction of the least recently used entries past the repository's quota, which
// no job calls, so ServiceStore has no bound of its own.
import type { Manifest, ManifestLimits } from '../manifest';

/** A blob to write from a file, whose size is known. */
export interface BlobFile {
  file: string;
  bytes: number;
}

export interface ReadOptions {
  /**
   * The most it reads: the blob's recorded length, or the range's. A blob (or range) larger is refused,
   * never read whole: no bytes (undefined, with a warning) or an error, as the store says.
   */
  maxBytes: number;
  /** Only these bytes of the blob. */
  range?: { offset: number; length: number };
  /** Reads into the start of this buffer (the result is a view of it) instead of a new one. */
  into?: Buffer;
  /** Hears how many bytes of `into` are in place as they arrive, where the store reads in pieces. */
  received?: (bytes: number) => void;
}

/** Whether a write stored the blob, or found its name taken: a name never changes what it holds. */
export type WriteOutcome = 'written' | 'exists';

export interface BlobStore {
  has(name: string): Promise<boolean>;
  /** The blob `name` (or a range of it); undefined when there is none, or it went missing since `has`. */
  read(name: string, options: ReadOptions): Promise<Buffer | undefined>;
  /** Stores a blob under a name that is free; one taken is never written over. */
  write(name: string, data: Buffer | BlobFile): Promise<WriteOutcome>;
}

/** The newest manifest a store names: its key, and the manifest where the store read it to say so. */
export interface FoundManifest {
  key: string;
  manifest?: Manifest;
}

export interface ManifestStore {
  /** The newest manifest for the first of `prefixes` that a key starts with, as the cache service matches. */
  findManifest(prefixes: string[], limits: ManifestLimits): Promise<FoundManifest | undefined>;
  /** The manifest of `key`; undefined when there is none. One malformed or too large is refused. */
  readManifest(key: string, limits: ManifestLimits): Promise<Manifest | undefined>;
  /**
   * Keeps a manifest under its key. The cache service keeps the first (its entries are immutable); the
   * runner's store the last, whose time makes it the newest.
   */
  writeManifest(manifest: Manifest): Promise<WriteOutcome>;
}
