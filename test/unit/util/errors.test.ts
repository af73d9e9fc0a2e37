import { errorMessage } from '../../../src/util/errors';

class RestError extends Error {
  override name = 'RestError';
  constructor(
    readonly statusCode?: number,
    readonly code?: string
  ) {
    super('');
  }
}

describe('errorMessage', () => {
  test.each<[string, unknown, string]>([
    ['an Error says its message', new Error('disk full'), 'disk full'],
    ['a string is the message', 'plain', 'plain'],
    ['anything else is shown as a string', 42, '42'],
    ['an Error without a message names its kind', new Error(''), 'Error without a message'],
    [
      'an error without a message names its status and code',
      new RestError(503, 'ServerBusy'),
      'RestError without a message (code ServerBusy, status 503)'
    ],
    [
      'an error without a message names its cause',
      new Error('', { cause: new Error('socket hang up') }),
      'Error without a message (cause: socket hang up)'
    ],
    [
      'a cause without a message is described the same way',
      new Error('', { cause: Object.assign(new Error(''), { code: 'ECONNRESET' }) }),
      'Error without a message (cause: Error without a message (code ECONNRESET))'
    ]
  ])('%s', (_name, error, expected) => {
    expect(errorMessage(error)).toBe(expected);
  });
});
