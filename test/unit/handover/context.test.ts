// The Docker CLI context: the endpoint string `docker context create --docker` gets, and the
// description that marks a context as one instance's.
import * as path from 'node:path';
import { contextDescription, contextEndpoint } from '../../../src/handover/context';
import { CLIENT_FILES } from '../../../src/handover/environment';

describe('contextEndpoint', () => {
  test.each([
    [
      'tcp://127.0.0.1:32768',
      '/runner/temp/setup-dind-dind-abcdef01',
      'host=tcp://127.0.0.1:32768,ca=/runner/temp/setup-dind-dind-abcdef01/ca.pem,cert=/runner/temp/setup-dind-dind-abcdef01/cert.pem,key=/runner/temp/setup-dind-dind-abcdef01/key.pem'
    ],
    ['tcp://127.0.0.1:1', '/t/', 'host=tcp://127.0.0.1:1,ca=/t/ca.pem,cert=/t/cert.pem,key=/t/key.pem']
  ])('%s with certificates in %s', (host, certDir, endpoint) => {
    expect(contextEndpoint(host, certDir)).toBe(endpoint);
  });

  test('names the files the action writes for the client, and only those keys', () => {
    const fields = Object.fromEntries(
      contextEndpoint('tcp://127.0.0.1:40000', '/certs')
        .split(',')
        .map(field => field.split('=') as [string, string])
    );
    expect(fields).toEqual({
      host: 'tcp://127.0.0.1:40000',
      ca: path.join('/certs', CLIENT_FILES.ca),
      cert: path.join('/certs', CLIENT_FILES.cert),
      key: path.join('/certs', CLIENT_FILES.key)
    });
    expect(CLIENT_FILES).toEqual({ ca: 'ca.pem', cert: 'cert.pem', key: 'key.pem' });
  });
});

describe('contextDescription', () => {
  test.each([
    ['abcdef01', 'setup-dind instance abcdef01'],
    ['00000000', 'setup-dind instance 00000000']
  ])('%p → %p', (id, description) => {
    expect(contextDescription(id)).toBe(description);
  });

  test('different instances get different descriptions', () => {
    expect(contextDescription('aaaaaaaa')).not.toBe(contextDescription('bbbbbbbb'));
  });
});
