// Main: start the daemon, secure it, hand it to later steps.
import * as core from '@actions/core';
import type Docker from 'dockerode';
import { prepareCache, restoreDaemonData, verifyRestoredData } from './cache';
import { createContext } from './context';
import {
  containerCreateOptions,
  containerLog,
  DaemonNotReadyError,
  diagnose,
  networkCreateOptions,
  publishedPort,
  serverSubjectAltNames,
  setupArchive,
  waitForDaemon
} from './daemon';
import { connectOuterEngine, describeEngine, outerEngineSettings, type EngineSettings } from './engine';
import { daemonHost, exportDockerEnvironment, setDaemonOutputs, writeClientCertificates } from './environment';
import { ensureImage } from './image';
import { getInputs, type ActionInputs } from './inputs';
import { newInstance } from './instance';
import { INSTANCE_LABEL, Outputs } from './constants';
import { formatSeconds, Timeline } from './report';
import { formatBytes } from './units';
import { saveInstanceState, type InstanceState } from './state';
import { certificateLifetimeHours, generateTlsMaterial, type TlsMaterial } from './tls';

const FAILURE_LOG_LINES = 50;

export async function runMain(): Promise<void> {
  const timeline = new Timeline();
  try {
    await setUp(timeline);
  } catch (error) {
    core.setFailed((error as Error).message);
  } finally {
    await timeline.writeSummary('setup-dind: daemon');
  }
}

async function setUp(timeline: Timeline): Promise<void> {
  if (process.platform !== 'linux') {
    throw new Error(`dind needs a Linux runner: this one runs ${process.platform}. Use runs-on: ubuntu-latest or a Linux self-hosted runner.`);
  }
  const inputs = getInputs();
  const instance = newInstance(inputs.name);
  const engine = outerEngineSettings();
  const state: InstanceState = { instance, engine };
  saveInstanceState(state);
  const docker = connectOuterEngine(engine);

  const { material, cache } = await timeline.phase(`Prepare ${inputs.image}, certificates, network and cache`, () => prepare(docker, engine, inputs, state, timeline));
  const { container, port, version } = await timeline.phase('Start the daemon', () => startDaemon(docker, inputs, state, material));

  const host = daemonHost(port);
  await timeline.phase('Hand the daemon to later steps', async () => {
    if (inputs.setEnv) {
      exportDockerEnvironment(host, instance.certDir, engine);
      core.info(`Exported DOCKER_HOST=${host}, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH=${instance.certDir}`);
    }
    if (inputs.context) {
      state.context = await createContext(
        { name: inputs.context, instanceId: instance.id, host, certDir: instance.certDir, isLive: id => hasInstance(docker, id) },
        core.warning
      );
      saveInstanceState(state);
      core.info(`Docker context '${state.context}' points at the daemon.`);
    }
    setDaemonOutputs({ host, certPath: instance.certDir, containerId: container.id, context: state.context ?? '', version });
    core.setOutput(Outputs.CacheHit, String(cache?.restored.hit ?? false));
    core.setOutput(Outputs.CacheKey, cache?.restored.key ?? cache?.setup.exactPrefix ?? '');
    core.setOutput(Outputs.CacheSize, String(cache?.restored.bytes ?? 0));
  });
  timeline.fact('Daemon', `Docker ${version} at ${host}`);
  if (state.context) timeline.fact('Context', state.context);
}

/** Everything that does not need the container, at once: the image pull overlaps the cache download. */
async function prepare(docker: Docker, engine: EngineSettings, inputs: ActionInputs, state: InstanceState, timeline: Timeline) {
  const { instance } = state;
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(`Cannot reach the Docker engine at ${describeEngine(engine)}: ${(error as Error).message}. setup-dind needs a Docker engine on the runner (and the job's user allowed to use it).`);
  }
  const [material, imageId, , restore] = await Promise.all([
    (async () => {
      const tls = await generateTlsMaterial(serverSubjectAltNames(instance), certificateLifetimeHours(process.env.RUNNER_ENVIRONMENT));
      await writeClientCertificates(instance.certDir, tls);
      core.info(`Certificates valid until ${tls.notAfter.toISOString()}; client files in ${instance.certDir}`);
      return tls;
    })(),
    ensureImage(docker, inputs.image, inputs.pull),
    docker.createNetwork(networkCreateOptions(instance)),
    (async () => {
      const setup = await prepareCache(inputs, instance);
      if (!setup) return undefined;
      state.cache = setup;
      saveInstanceState(state);
      const started = performance.now();
      const restored = await restoreDaemonData(setup);
      return { setup, restored, seconds: (performance.now() - started) / 1000 };
    })()
  ]);
  state.imageId = imageId;
  saveInstanceState(state);
  let cache = restore;
  if (restore?.restored.key && !(await verifyRestoredData(restore.setup, imageId))) cache = { ...restore, restored: { hit: false, bytes: 0 } };
  if (cache) {
    state.cache = { ...cache.setup, restoredKey: cache.restored.key };
    saveInstanceState(state);
    timeline.fact('Cache restored', cache.restored.key ? `${formatBytes(cache.restored.bytes)} in ${formatSeconds(cache.seconds)} (${cache.restored.hit ? 'hit' : 'fallback key'}): ${cache.restored.key}` : 'nothing to restore');
  }
  return { material, cache };
}

async function startDaemon(docker: Docker, inputs: ActionInputs, state: InstanceState, material: TlsMaterial) {
  const { instance } = state;
  const container = await docker.createContainer(
    containerCreateOptions({ instance, image: inputs.image, privileged: inputs.privileged, dockerdArgs: inputs.dockerdArgs, dataDir: state.cache?.dataDir })
  );
  await container.putArchive(await setupArchive(material, inputs.daemonConfig), { path: '/' });
  await container.start();
  const port = publishedPort(await container.inspect());
  state.port = port;
  saveInstanceState(state);
  core.info(`Container ${instance.containerName} started; daemon port published on 127.0.0.1:${port}`);
  try {
    const version = await waitForDaemon({ host: '127.0.0.1', port, ca: material.caCert, cert: material.clientCert, key: material.clientKey }, container, inputs.waitTimeoutSeconds * 1000);
    core.info(`Docker ${version} answers over mutual TLS.`);
    return { container, port, version };
  } catch (error) {
    if (!(error instanceof DaemonNotReadyError)) throw error;
    const log = await containerLog(container, FAILURE_LOG_LINES).catch(() => '(the log could not be read)');
    const state = await container.inspect().then(info => info.State.Status, () => 'unknown');
    core.info(`Container state: ${state}. Last ${FAILURE_LOG_LINES} log lines:\n${log}`);
    const hint = diagnose(log, inputs.privileged);
    throw new Error(`${error.message}${hint ? ` ${hint}` : ''} The daemon's log is above, in the 'Start the daemon' group.`);
  }
}

async function hasInstance(docker: Docker, instanceId: string): Promise<boolean> {
  const containers = await docker.listContainers({ filters: { label: [`${INSTANCE_LABEL}=${instanceId}`], status: ['running'] } });
  return containers.length > 0;
}
