// The cache service as the raw methods use it, and their pipelines: a level's newest state and the
// signed URLs of its parts, looked up as the action does (untimed), and the bash of N streams of ranged
// curl GETs into a sink.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Manifest } from '../../src/cache/manifest';
import type { CacheServer } from '../../test/support/cache-server';
import { defined } from '../../test/support/defined';
import type { LevelInfo } from './model';
import { readManifest, spanLines, type Span } from './parts';

const TWIRP = 'twirp/github.actions.results.api.v1.CacheService';

/** The signed download URL of the entry `key` (or the newest under it, as a prefix). */
async function lookupUrl(server: CacheServer, key: string, version: string): Promise<{ key: string; url: string }> {
  const response = await fetch(`${server.url}${TWIRP}/GetCacheEntryDownloadURL`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.env.ACTIONS_RUNTIME_TOKEN}` },
    body: JSON.stringify({ key, restore_keys: [key], version })
  });
  const body = (await response.json()) as { ok?: boolean; signed_download_url?: string; matched_key?: string };
  if (!body.ok || !body.signed_download_url) throw new Error(`no cache entry under ${key}`);
  return { key: body.matched_key ?? '', url: body.signed_download_url };
}

const CURL = `curl --silent --show-error --fail --noproxy '*'`;

/** A level's newest state as the action would restore it: its manifest and fresh URLs of its parts. */
export async function levelState(
  server: CacheServer,
  level: LevelInfo
): Promise<{ manifest: Manifest; urls: string[] }> {
  // A level's key prefix and version are known once the seeding job has saved it.
  const prefix = defined(level.prefix, `key prefix of the ${level.targetMB} MB level`);
  const version = defined(level.version, `cache version of the ${level.targetMB} MB level`);
  const entry = await lookupUrl(server, prefix, version);
  const response = await fetch(entry.url);
  if (!response.ok) throw new Error(`manifest ${entry.key}: HTTP ${response.status}`);
  const manifest = await readManifest(Buffer.from(await response.arrayBuffer()));
  const urls = await Promise.all(manifest.parts.map(async part => (await lookupUrl(server, part.key, version)).url));
  return { manifest, urls };
}

/**
 * Bash for N streams at once, each a run of `curl -r` over its spans (one ranged GET at a time, in part
 * order) piped into `$sink` with "$g" the stream's number; fails if any stream fails.
 */
export function streamsScript(listDir: string, streams: number, sink: string): string {
  return [
    `fetch() { while read -r range url; do ${CURL} -r "$range" "$url"; done <"$1"; }`,
    'pids=()',
    `for ((g = 0; g < ${streams}; g++)); do`,
    `  (fetch "${listDir}/spans.$g" | ${sink}) &`,
    '  pids+=($!)',
    'done',
    'for pid in "${pids[@]}"; do wait "$pid"; done'
  ].join('\n');
}

/** Writes one span list per stream into a fresh directory under `parent` (URLs change: they are signed per lookup). */
export function writeSpanLists(parent: string, groups: Span[][], urls: string[], prefix: string): string {
  const dir = fs.mkdtempSync(path.join(parent, prefix));
  groups.forEach((group, g) => fs.writeFileSync(path.join(dir, `spans.${g}`), spanLines(group, urls)));
  return dir;
}

/** Everything the entries added since `before` (a save of a measurement): removed, so that the level's newest state stays the seeded one. */
export async function dropNewEntries(server: CacheServer, before: Set<string>): Promise<number> {
  const removed = await server.evict(entry => !before.has(entry.key));
  return removed.length;
}
