// The one version of what a saved state is made of: keys, part names, manifests, the service's scope
// and the runner's store layout all carry it, so a change to any of them is a new version, and states
// of another version simply stop matching (a cache written by an older action is never read).
const FORMAT_VERSION = 2;

/**
 * Names everything of this version: every key of ours starts with it (a state's, and its parts'), and
 * the runner's store keeps this version in a directory of this name (one of another is left alone).
 */
export const FORMAT_NAME = `setup-dind-v${FORMAT_VERSION}`;
export const PART_KEY_PREFIX = `${FORMAT_NAME}-part-`;
export const MANIFEST_FORMAT = `setup-dind/${FORMAT_VERSION}` as const;
/** The service matches keys only within one version string: ours scopes our entries apart. */
export const SERVICE_SCOPE = `setup-dind daemon data, ext4 image chunks, v${FORMAT_VERSION}`;
