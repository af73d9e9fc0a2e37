// The test runner's reader of file commands (GITHUB_ENV, GITHUB_OUTPUT, GITHUB_STATE), in both forms
// the runner accepts, and against what @actions/core really writes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as core from '@actions/core';
import { actionNode, evaluateDefault, parseFileCommands, type JobStatus } from '../support/runner';

describe('parseFileCommands', () => {
  const delimiter = 'ghadelimiter_0b9e3c6a-6a4e-4a8f-9d43-2f1c1f0e7d55';

  test.each<[string, string, Record<string, string>]>([
    ['an empty file', '', {}],
    ['key=value lines', 'A=1\nB=two\n', { A: '1', B: 'two' }],
    ['no final newline', 'A=1', { A: '1' }],
    ['a value with =', 'A=x=y\n', { A: 'x=y' }],
    ['an empty value', 'A=\n', { A: '' }],
    ['a value with <<', 'A=x<<y\n', { A: 'x<<y' }],
    ['blank lines between', 'A=1\n\n\nB=2\n', { A: '1', B: '2' }],
    ['the last value wins', 'A=1\nA=2\n', { A: '2' }],
    ['a heredoc', 'K<<EOF\nline 1\nline 2\nEOF\n', { K: 'line 1\nline 2' }],
    ['a one-line heredoc', `K<<${delimiter}\nvalue\n${delimiter}\n`, { K: 'value' }],
    ['an empty heredoc value', `K<<${delimiter}\n\n${delimiter}\n`, { K: '' }],
    ['a heredoc with blank lines, = and <<', `K<<${delimiter}\na=b\n\nc<<d\n${delimiter}\n`, { K: 'a=b\n\nc<<d' }],
    ['a heredoc value ending in a newline', `K<<${delimiter}\nx\n\n${delimiter}\n`, { K: 'x\n' }],
    ['a heredoc that mentions its delimiter inside a line', `K<<EOF\nnot EOF here\nEOF\n`, { K: 'not EOF here' }],
    ['both forms mixed', `A=1\nK<<${delimiter}\nx\ny\n${delimiter}\nB=2\n`, { A: '1', K: 'x\ny', B: '2' }]
  ])('%s', (_name, text, values) => {
    expect(parseFileCommands(text)).toEqual(values);
  });

  describe('what @actions/core writes', () => {
    const commands = ['GITHUB_OUTPUT', 'GITHUB_ENV', 'GITHUB_STATE'] as const;
    const saved = Object.fromEntries([...commands, 'SETUP_DIND_TEST_VARIABLE'].map(name => [name, process.env[name]]));
    let dir: string;
    const file = (name: (typeof commands)[number]) => path.join(dir, name.toLowerCase());

    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-dind-file-commands-'));
      for (const name of commands) {
        fs.writeFileSync(file(name), '');
        process.env[name] = file(name);
      }
    });

    afterEach(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });

    test('reads back outputs, exported variables and state exactly', () => {
      const outputs = { host: 'tcp://127.0.0.1:32768', multi: 'line 1\n\nline 3\n', json: '{"a":"b=c"}', empty: '' };
      for (const [name, value] of Object.entries(outputs)) core.setOutput(name, value);
      core.exportVariable('SETUP_DIND_TEST_VARIABLE', 'x=y');
      core.saveState('instance', '{"id":"abcdef01"}');

      const written = fs.readFileSync(file('GITHUB_OUTPUT'), 'utf8');
      expect(written).toMatch(/^host<<ghadelimiter_[0-9a-f-]{36}\n/);
      expect(parseFileCommands(written)).toEqual(outputs);
      expect(parseFileCommands(fs.readFileSync(file('GITHUB_ENV'), 'utf8'))).toEqual({
        SETUP_DIND_TEST_VARIABLE: 'x=y'
      });
      expect(parseFileCommands(fs.readFileSync(file('GITHUB_STATE'), 'utf8'))).toEqual({
        instance: '{"id":"abcdef01"}'
      });
    });
  });
});

describe('actionNode: the node that runs dist/', () => {
  test.each<[string, string | undefined, string]>([
    ["unset: the tests' node", undefined, process.execPath],
    ["empty: the tests' node", '', process.execPath],
    ['an absolute path that exists', '/bin/sh', '/bin/sh']
  ])('%s', (_name, value, node) => {
    expect(actionNode({ SETUP_DIND_NODE: value })).toBe(node);
  });

  test.each(['node', 'bin/node', '/nonexistent/bin/node'])('refuses %p, naming the variable', value => {
    expect(() => actionNode({ SETUP_DIND_NODE: value })).toThrow(
      `SETUP_DIND_NODE must be the absolute path of a node binary, or unset; got '${value}'.`
    );
  });
});

describe("evaluateDefault: action.yml's defaults as the runner evaluates them for a step", () => {
  test.each<[string, JobStatus, string]>([
    ['on-change', 'failure', 'on-change'],
    ['${{ job.status }}', 'success', 'success'],
    ['${{job.status}}', 'failure', 'failure'],
    ['${{ job.status }}', 'cancelled', 'cancelled'],
    ['', 'success', '']
  ])('%p with the job %p → %p', (value, status, expected) => {
    expect(evaluateDefault(value, status)).toBe(expected);
  });

  test('an expression the emulation does not know fails the test instead of reaching the action verbatim', () => {
    expect(() => evaluateDefault('${{ github.token }}', 'success')).toThrow(/cannot evaluate/);
  });
});
