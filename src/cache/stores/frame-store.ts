// Frames by the hash of the chunk they hold: what a restore reads without the network and a save
// writes, whatever keeps them (the runner's own store, input cache-dir).

export interface FrameStore {
  has(hash: string): Promise<boolean>;
  /**
   * Reads no more than `maxBytes` (the frame's recorded length). Undefined when it went missing
   * (another job's cleanup) since `has` said it was there, or is not a frame that may be read.
   */
  read(hash: string, maxBytes: number): Promise<Buffer | undefined>;
  /** Keeps a frame for the next job: one fetched from the cache service, or one a save made. */
  write(hash: string, frame: Buffer): Promise<void>;
}
