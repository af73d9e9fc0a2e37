// Post's order, against steps that only record what is asked of them: what must come before what, and
// that a failing step never stops the ones after it.
import * as core from '@actions/core';
import { newInstance } from '../../src/daemon/instance';
import { tearDown, type CacheSteps, type PostSteps } from '../../src/teardown';
import { Timeline } from '../../src/util/report';

/** Steps that log their calls; `fail` names the steps that throw. */
function recordingSteps(options: { cache?: boolean; graceful?: boolean; fail?: string[] } = {}) {
  const calls: string[] = [];
  const step =
    <T>(name: string, result: T) =>
    async (...args: unknown[]): Promise<T> => {
      calls.push([name, ...args].join(' '));
      if (options.fail?.includes(name)) throw new Error(`${name} failed`);
      return result;
    };
  const cache: CacheSteps = {
    stopsGracefully: state => {
      calls.push(`stopsGracefully ${state}`);
      return state === 'running' && options.graceful === true;
    },
    save: step('save', undefined),
    keepImage: step('keepImage', undefined),
    bound: step('bound', undefined)
  };
  const steps: PostSteps = {
    builder: 'builder-1',
    removeBuilder: step('removeBuilder', undefined),
    listContainers: step('listContainers', [{ Id: 'c1', State: 'running' }]),
    planCache: step('planCache', options.cache === false ? undefined : cache),
    stop: step('stop', undefined),
    log: step('log', 'the log'),
    removeContainer: step('removeContainer', undefined),
    removeNetworks: step('removeNetworks', 1),
    removeVolumes: step('removeVolumes', 1),
    removeData: step('removeData', undefined),
    removeCertificates: step('removeCertificates', undefined),
    context: 'dind',
    removeContext: step('removeContext', undefined)
  };
  return { calls, steps };
}

const instance = newInstance('dind');

beforeEach(() => {
  jest.spyOn(core, 'info').mockImplementation(() => undefined);
  jest.spyOn(core, 'warning').mockImplementation(() => undefined);
  jest.spyOn(core, 'startGroup').mockImplementation(() => undefined);
  jest.spyOn(core, 'endGroup').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

describe('tearDown: the order of post', () => {
  test('a save: builder, plan, graceful stop, log, save, container, kept image, the rest, bound', async () => {
    const { calls, steps } = recordingSteps({ graceful: true });
    await tearDown(instance, new Timeline(), steps);
    expect(calls).toEqual([
      'removeBuilder builder-1',
      'listContainers',
      'planCache c1',
      'stopsGracefully running',
      'stop c1',
      'log c1',
      'save',
      'removeContainer c1',
      'keepImage',
      'removeNetworks',
      'removeVolumes',
      'removeData',
      'removeCertificates',
      'removeContext dind',
      'bound'
    ]);
  });

  test('nothing to save: no graceful stop, the removal ends the daemon', async () => {
    const { calls, steps } = recordingSteps({ graceful: false });
    await tearDown(instance, new Timeline(), steps);
    expect(calls).not.toContain('stop c1');
    expect(calls.indexOf('log c1')).toBeLessThan(calls.indexOf('removeContainer c1'));
  });

  test('no cache: the same order without its steps', async () => {
    const { calls, steps } = recordingSteps({ cache: false });
    await tearDown(instance, new Timeline(), steps);
    expect(calls).toEqual([
      'removeBuilder builder-1',
      'listContainers',
      'planCache c1',
      'log c1',
      'removeContainer c1',
      'removeNetworks',
      'removeVolumes',
      'removeData',
      'removeCertificates',
      'removeContext dind'
    ]);
  });

  test('a stopped daemon: the plan is told none runs', async () => {
    const { calls, steps } = recordingSteps();
    steps.listContainers = async () => [{ Id: 'c1', State: 'exited' }];
    await tearDown(instance, new Timeline(), steps);
    expect(calls).toContain('planCache ');
    expect(calls).not.toContain('stop c1');
  });

  test('every step that fails warns, and every step after it still runs', async () => {
    const failing = [
      'removeBuilder',
      'stop',
      'log',
      'removeContainer',
      'removeNetworks',
      'removeVolumes',
      'removeData',
      'removeCertificates',
      'removeContext'
    ];
    const { calls, steps } = recordingSteps({ graceful: true, fail: failing });
    await tearDown(instance, new Timeline(), steps);
    expect(calls.map(call => call.split(' ')[0])).toEqual([
      'removeBuilder',
      'listContainers',
      'planCache',
      'stopsGracefully',
      'stop',
      'log',
      'save',
      'removeContainer',
      'keepImage',
      'removeNetworks',
      'removeVolumes',
      'removeData',
      'removeCertificates',
      'removeContext',
      'bound'
    ]);
    expect(jest.mocked(core.warning).mock.calls.map(([message]) => String(message))).toEqual([
      'Could not remove buildx builder builder-1: removeBuilder failed',
      'Could not stop the daemon: stop failed',
      'Could not read the daemon log: log failed',
      'Could not remove container c1: removeContainer failed',
      'Could not list networks: removeNetworks failed',
      'Could not list volumes: removeVolumes failed',
      `Could not remove the daemon's data in ${instance.dataDir}: removeData failed`,
      'Could not remove the client certificates: removeCertificates failed',
      'Could not remove context dind: removeContext failed'
    ]);
  });
});
