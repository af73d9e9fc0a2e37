// Which of the daemon's images the job used, so that the cache drops the ones no job needs any more.
// The daemon keeps only its last 256 events and no event says which images a build started FROM: main
// starts a recorder of the events that name images, inside the dind container, and post adds what the
// daemon shows itself (containers still there, images tagged during the job) and the bases of every
// image used (a build's result starts with its base's layers).
import type Docker from 'dockerode';
import * as tar from 'tar-stream';
import { CONTAINER_SETUP_DIR } from '../daemon/facts';

/** The recorder's log, in the container (not in /var/lib/docker: it is not cached). */
export const USAGE_LOG = `${CONTAINER_SETUP_DIR}/image-events.jsonl`;
/**
 * The recorder's pid: the entrypoint ends it before it stops dockerd, which otherwise waits 5 s for
 * its open event stream before it exits.
 */
export const RECORDER_PID = `${CONTAINER_SETUP_DIR}/recorder.pid`;

/** Container creations name their image; image events name what was pulled, loaded, imported or tagged. */
const USAGE_EVENTS = {
  type: ['container', 'image'],
  event: ['create', 'pull', 'load', 'import', 'tag']
} satisfies Record<string, string[]>;

/**
 * The daemon's own socket inside the container: the recorder needs no certificates. Whole seconds: the
 * CLI reads a fraction after the dot as nanoseconds.
 */
export function recorderCommand(sinceMs: number): string[] {
  const filters = Object.entries(USAGE_EVENTS).flatMap(([key, values]) =>
    values.flatMap(value => ['--filter', `${key}=${value}`])
  );
  // The image's environment must not point the CLI elsewhere (docker:dind's entrypoint uses these names).
  const script =
    'log=$1; pid=$2; since=$3; shift 3; echo $$ >"$pid"; unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT; exec docker -H unix:///var/run/docker.sock events --since "$since" --format "{{json .}}" "$@" >"$log" 2>&1';
  return ['sh', '-c', script, 'sh', USAGE_LOG, RECORDER_PID, String(Math.floor(sinceMs / 1000)), ...filters];
}

/** Starts the recorder; returns the exec's id so post can tell whether it kept running. */
export async function startUsageRecorder(container: Docker.Container, sinceMs: number): Promise<string> {
  const exec = await container.exec({ Cmd: recorderCommand(sinceMs), AttachStdout: false, AttachStderr: false });
  await exec.start({ Detach: true });
  return exec.id;
}

interface EngineEvent {
  Type?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** The image references in a stream of events (JSON, one per line). Lines that are not events are skipped. */
export function referencesInEvents(text: string): string[] {
  const references = new Set<string>();
  for (const line of text.split('\n')) {
    let event: EngineEvent;
    try {
      event = JSON.parse(line) as EngineEvent;
    } catch {
      continue;
    }
    const attributes = event.Actor?.Attributes ?? {};
    const named =
      event.Type === 'container'
        ? [attributes.image]
        : event.Type === 'image'
          ? [event.Actor?.ID, attributes.name]
          : [];
    for (const reference of named) if (reference) references.add(reference);
  }
  return [...references];
}

export interface ImageFacts {
  id: string;
  tags: string[];
  digests: string[];
  /** Diff ids, bottom first. */
  layers: string[];
  /** When a tag was last put on it (ms since the epoch); builds, pulls and loads tag. */
  lastTagged: number;
}

export function imageFacts(inspected: Docker.ImageInspectInfo): ImageFacts {
  // dockerode's types lack Metadata.
  const metadata = (inspected as { Metadata?: { LastTagTime?: string } }).Metadata;
  const lastTagged = metadata?.LastTagTime ? Date.parse(metadata.LastTagTime) : NaN;
  return {
    id: inspected.Id,
    tags: (inspected.RepoTags ?? []).filter(tag => tag !== '<none>:<none>'),
    digests: (inspected.RepoDigests ?? []).filter(digest => !digest.startsWith('<none>@')),
    layers: inspected.RootFS?.Layers ?? [],
    lastTagged: Number.isNaN(lastTagged) ? 0 : lastTagged
  };
}

/** A reference as the daemon lists it: Docker Hub's prefixes dropped, `latest` when no tag or digest. */
export function familiarReference(reference: string): string {
  const name = reference.replace(/^(docker\.io|index\.docker\.io)\//, '').replace(/^library\//, '');
  if (name.includes('@')) return name.replace(/:[^/@]+@/, '@');
  return name.slice(name.lastIndexOf('/') + 1).includes(':') ? name : `${name}:latest`;
}

const IMAGE_ID_PREFIX = /^(sha256:)?([0-9a-f]{4,64})$/;

export function matchesReference(image: ImageFacts, reference: string): boolean {
  const id = IMAGE_ID_PREFIX.exec(reference);
  if (id && image.id.startsWith(`sha256:${id[2]}`)) return true;
  const familiar = familiarReference(reference);
  return [...image.tags, ...image.digests].some(name => familiarReference(name) === familiar);
}

export interface UsageSignals {
  /** Image references the job's events named. */
  references: string[];
  /** Images of the containers still on the daemon. */
  containerImageIds: string[];
  /** When the job's daemon started (ms since the epoch). */
  since: number;
}

/** The ids of the images the job used, and of the images those were built on. */
export function usedImages(images: ImageFacts[], signals: UsageSignals): Set<string> {
  const used = new Set(
    images
      .filter(
        image =>
          signals.containerImageIds.includes(image.id) ||
          image.lastTagged >= signals.since ||
          signals.references.some(reference => matchesReference(image, reference))
      )
      .map(image => image.id)
  );
  const direct = images.filter(image => used.has(image.id));
  // A base's layers start every image built FROM it (transitively, so one pass finds them all).
  for (const image of images) {
    if (image.layers.length > 0 && direct.some(child => isPrefix(image.layers, child.layers))) used.add(image.id);
  }
  return used;
}

function isPrefix(prefix: string[], list: string[]): boolean {
  return prefix.length <= list.length && prefix.every((item, index) => list[index] === item);
}

/** When each image was last used (ISO times), as the cache records it. */
export type LastUsed = Record<string, string>;

export interface EvictionPlan {
  /** With the last use recorded for each, in case one cannot be removed. */
  evict: Array<{ image: ImageFacts; lastUsed: string }>;
  /** The record to save: the images kept. */
  lastUsed: LastUsed;
}

/**
 * Images unused for `keepUnusedMs` go (undefined: never). An image the record does not know (a cache
 * saved before it had one) counts as last used when that cache was saved.
 */
export function planEviction(
  images: ImageFacts[],
  used: Set<string>,
  record: { lastUsed: LastUsed; savedAt: number },
  now: number,
  keepUnusedMs: number | undefined
): EvictionPlan {
  const evict: EvictionPlan['evict'] = [];
  const lastUsed: LastUsed = {};
  for (const image of images) {
    const recorded = record.lastUsed[image.id] ? Date.parse(record.lastUsed[image.id]) : record.savedAt;
    const last = new Date(used.has(image.id) ? now : recorded).toISOString();
    if (!used.has(image.id) && keepUnusedMs !== undefined && now - recorded >= keepUnusedMs)
      evict.push({ image, lastUsed: last });
    else lastUsed[image.id] = last;
  }
  return { evict, lastUsed };
}

export interface JobUsage {
  images: ImageFacts[];
  used: Set<string>;
  /** Set when the recorder did not run all along: usage then comes from the daemon's last 256 events only. */
  partial?: string;
}

/**
 * Reads what the job used from the running daemon (`dind`) and, through the outer engine, the
 * recorder's log in the daemon's container.
 */
export async function collectUsage(
  outer: Docker,
  container: Docker.Container,
  dind: Docker,
  recorderExecId: string | undefined,
  since: number
): Promise<JobUsage> {
  const recorder = recorderExecId
    ? await outer
        .getExec(recorderExecId)
        .inspect()
        .catch(() => undefined)
    : undefined;
  let events: string;
  let partial: string | undefined;
  if (recorder?.Running) {
    events = await readContainerFile(container, USAGE_LOG);
  } else {
    partial = recorder
      ? `the image usage recorder stopped (exit code ${recorder.ExitCode})`
      : 'the image usage recorder did not start';
    events = await streamText(
      await dind.getEvents({
        since: Math.floor(since / 1000),
        until: Math.ceil(Date.now() / 1000),
        filters: JSON.stringify(USAGE_EVENTS)
      })
    );
  }
  const containers = await dind.listContainers({ all: true });
  const images = await Promise.all(
    (await dind.listImages()).map(async summary => imageFacts(await dind.getImage(summary.Id).inspect()))
  );
  const used = usedImages(images, {
    references: referencesInEvents(events),
    containerImageIds: containers.map(summary => summary.ImageID),
    since
  });
  return { images, used, partial };
}

async function streamText(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

/** A file of a container (running or not), read through the engine's archive API. */
async function readContainerFile(container: Docker.Container, file: string): Promise<string> {
  const archive = await container.getArchive({ path: file });
  const extract = tar.extract();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (_header, stream, next) => {
      stream.on('data', (chunk: unknown) => void chunks.push(chunk as Buffer));
      stream.on('end', next);
      stream.on('error', reject);
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  archive.pipe(extract);
  await done;
  return Buffer.concat(chunks).toString('utf8');
}
