// Every name the runner contract knows us by: inputs, outputs, state, labels, environment.

export const Inputs = {
  Image: 'image',
  Name: 'name',
  Pull: 'pull',
  DockerdArgs: 'dockerd-args',
  DaemonConfig: 'daemon-config',
  WaitTimeout: 'wait-timeout',
  Privileged: 'privileged',
  SetEnv: 'set-env',
  Context: 'context',
  Cache: 'cache',
  CacheKey: 'cache-key',
  CacheSave: 'cache-save',
  JobStatus: 'job-status',
  CacheMaxSize: 'cache-max-size',
  CacheEvictAfter: 'cache-evict-after',
  CacheDir: 'cache-dir',
  CacheDirMaxSize: 'cache-dir-max-size',
  Mounts: 'mounts',
  Ports: 'ports',
  Mtu: 'mtu',
  RegistryMirrors: 'registry-mirrors',
  InsecureRegistries: 'insecure-registries',
  Swarm: 'swarm',
  Buildx: 'buildx',
  BuildxDriver: 'buildx-driver',
  BuildxImage: 'buildx-image',
  BuildkitdConfigInline: 'buildkitd-config-inline'
} as const;

export const Outputs = {
  Host: 'host',
  CertPath: 'cert-path',
  ContainerId: 'container-id',
  Context: 'context',
  Version: 'version',
  CacheHit: 'cache-hit',
  CacheKey: 'cache-key',
  CacheSize: 'cache-size',
  Ip: 'ip',
  Builder: 'builder'
} as const;

/** Keys of the step state main leaves for post (STATE_* in post). */
export const StateKeys = {
  Instance: 'instance'
} as const;

/** Label put on everything the action creates, with the instance id as value, so post can find it all. */
export const INSTANCE_LABEL = 'io.github.setup-dind.instance';

/** Environment variables the Docker CLI (and docker-modem) read. */
export const DockerEnv = {
  Host: 'DOCKER_HOST',
  TlsVerify: 'DOCKER_TLS_VERIFY',
  CertPath: 'DOCKER_CERT_PATH',
  /** Read by the CLI only: a context to use instead of DOCKER_HOST. */
  Context: 'DOCKER_CONTEXT'
} as const;

/**
 * Exported next to DOCKER_HOST: the engine the job had before any setup-dind step, so that a second
 * instance in the same job starts beside the first one rather than inside it.
 */
export const OUTER_ENGINE_ENV = 'SETUP_DIND_OUTER_ENGINE';

/** buildx (and docker/build-push-action, compose) build with the builder of this name when no --builder is given. */
export const BUILDX_BUILDER_ENV = 'BUILDX_BUILDER';

/** Testcontainers reaches mapped ports of its containers at this address instead of DOCKER_HOST's. */
export const TESTCONTAINERS_HOST_ENV = 'TESTCONTAINERS_HOST_OVERRIDE';
