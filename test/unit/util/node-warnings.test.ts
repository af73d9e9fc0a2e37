// Node 24's url.parse deprecation (from docker-modem) is dropped; every other warning goes through as given.
import { silenceUrlParseDeprecation } from '../../../src/util/node-warnings';

describe('silenceUrlParseDeprecation', () => {
  const silenced = () => {
    const emitted: unknown[][] = [];
    const target = { emitWarning: (...args: unknown[]) => void emitted.push(args) };
    silenceUrlParseDeprecation(target);
    return { target, emitted };
  };

  test.each([
    ['positional code', ['`url.parse()` behavior is not standardized', 'DeprecationWarning', 'DEP0169']],
    ['options object', ['`url.parse()` behavior is not standardized', { type: 'DeprecationWarning', code: 'DEP0169' }]]
  ])('drops DEP0169 given with a %s', (_, args) => {
    const { target, emitted } = silenced();
    target.emitWarning(...(args as [string, ...unknown[]]));
    expect(emitted).toEqual([]);
  });

  test.each([
    [['other', 'DeprecationWarning', 'DEP0005']],
    [['other', { code: 'DEP0005' }]],
    [['a plain warning']],
    [[new Error('an Error'), 'ExperimentalWarning']],
    [['null options', null]]
  ])('passes %p through unchanged', args => {
    const { target, emitted } = silenced();
    target.emitWarning(...(args as [string, ...unknown[]]));
    expect(emitted).toEqual([args]);
  });
});
