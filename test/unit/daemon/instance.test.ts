// newInstance: the names of everything made for one daemon, and where its client certificates go.
import * as os from 'node:os';
import * as path from 'node:path';
import { newInstance } from '../../../src/daemon/instance';

describe('newInstance', () => {
  test.each([
    ['dind', '/runner/temp', 'abcdef01', 'setup-dind-dind-abcdef01'],
    ['db-2', '/home/runner/work/_temp', '00ff00ff', 'setup-dind-db-2-00ff00ff'],
    ['My.Daemon_1', '/tmp', '12345678', 'setup-dind-My.Daemon_1-12345678']
  ])('name %p in %p with id %p', (name, tempDir, id, base) => {
    expect(newInstance(name, tempDir, id)).toEqual({
      id,
      name,
      containerName: base,
      networkName: base,
      volumeName: base,
      certDir: path.join(tempDir, base),
      dataDir: path.join(tempDir, `${base}-data`)
    });
  });

  test('the certificate directory is directly under the temp directory given', () => {
    const instance = newInstance('dind', '/runner/temp/');
    expect(path.dirname(instance.certDir)).toBe('/runner/temp');
    expect(path.basename(instance.certDir)).toBe(instance.containerName);
  });

  describe('temp directory default', () => {
    const saved = process.env.RUNNER_TEMP;
    afterEach(() => {
      if (saved === undefined) delete process.env.RUNNER_TEMP;
      else process.env.RUNNER_TEMP = saved;
    });

    test('RUNNER_TEMP when set', () => {
      process.env.RUNNER_TEMP = '/runner/temp';
      expect(path.dirname(newInstance('dind').certDir)).toBe('/runner/temp');
    });

    test.each([
      ['unset', undefined],
      ['empty', '']
    ])('the OS temp directory when RUNNER_TEMP is %s', (_name, value) => {
      if (value === undefined) delete process.env.RUNNER_TEMP;
      else process.env.RUNNER_TEMP = value;
      expect(path.dirname(newInstance('dind').certDir)).toBe(os.tmpdir());
    });
  });

  test('ids are 8 hex digits, unique across calls, and part of every name', () => {
    const instances = Array.from({ length: 500 }, () => newInstance('dind', '/t'));
    expect(new Set(instances.map(i => i.id)).size).toBe(instances.length);
    expect(new Set(instances.map(i => i.containerName)).size).toBe(instances.length);
    for (const instance of instances) {
      expect(instance.id).toMatch(/^[0-9a-f]{8}$/);
      expect(instance.containerName).toBe(`setup-dind-dind-${instance.id}`);
      expect(instance.networkName).toBe(instance.containerName);
    }
  });
});
