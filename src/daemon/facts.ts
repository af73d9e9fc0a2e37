// What the action fixes about every dind container: its image by default, its ports, and where our
// files go inside it.

/** The official image, pinned to a major version so a new Docker major never lands unannounced. */
export const DEFAULT_IMAGE = 'docker:28-dind';

/** The only port the daemon listens on: TLS, mutual. */
export const DAEMON_TLS_PORT = 2376;

/** Swarm's cluster-management port, inside the dind container (input `swarm`). */
export const SWARM_PORT = 2377;

/** Where the server material, daemon.json and entrypoint go inside the dind container. */
export const CONTAINER_SETUP_DIR = '/setup-dind';
