// A disk probe, at the start and the end of every repetition, on each filesystem the methods use: a
// fixed small write made durable (64 MiB, dd conv=fsync) and the creation of 5000 small files (bash
// builtins, no fork per file). A repetition on a slow disk, or a filesystem still busy with what an
// earlier method removed, shows here rather than only as a slow method.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { now, sh } from './proc';

const PROBE_WRITE_MIB = 64;
const PROBE_FILES = 5000;

export interface ProbeResult {
  /** Seconds for dd of PROBE_WRITE_MIB MiB with conv=fsync. */
  writeSeconds: number;
  /** Seconds to create PROBE_FILES files of 1 byte (not synced). */
  createSeconds: number;
}

export async function probeDisk(dir: string): Promise<ProbeResult> {
  const work = fs.mkdtempSync(path.join(dir, 'probe-'));
  try {
    const write = await sh(`dd if=/dev/zero of="$1/write" bs=1M count=${PROBE_WRITE_MIB} conv=fsync status=none`, {
      args: [work]
    });
    const files = path.join(work, 'files');
    fs.mkdirSync(files);
    const started = now();
    await sh(`cd "$1"; for ((i = 0; i < ${PROBE_FILES}; i++)); do printf x >"f$i"; done`, { args: [files] });
    const createSeconds = now() - started;
    return { writeSeconds: write.seconds, createSeconds };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
