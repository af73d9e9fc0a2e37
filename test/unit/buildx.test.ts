// The buildx builder's name and the `docker buildx create` command line main runs.
import { builderCreateArgs, builderName } from '../../src/buildx';
import { newInstance } from '../../src/instance';

describe('builderCreateArgs', () => {
  test.each([
    [
      { name: 'setup-dind-dind-abcdef01', context: 'dind', image: 'moby/buildkit:v0.32.2' },
      [
        'buildx',
        'create',
        '--name',
        'setup-dind-dind-abcdef01',
        '--driver',
        'docker-container',
        '--driver-opt',
        'image=moby/buildkit:v0.32.2',
        '--bootstrap',
        'dind'
      ]
    ],
    [
      {
        name: 'setup-dind-b-00000000',
        context: 'dind-00000000',
        image: 'mirror.example:5000/moby/buildkit@sha256:' + 'ab'.repeat(32)
      },
      [
        'buildx',
        'create',
        '--name',
        'setup-dind-b-00000000',
        '--driver',
        'docker-container',
        '--driver-opt',
        `image=mirror.example:5000/moby/buildkit@sha256:${'ab'.repeat(32)}`,
        '--bootstrap',
        'dind-00000000'
      ]
    ]
  ])('%o', (request, args) => {
    expect(builderCreateArgs(request)).toEqual(args);
  });

  test('the context is the one positional argument, last: buildx takes it as the endpoint', () => {
    const args = builderCreateArgs({ name: 'n', context: 'ctx', image: 'i' });
    const flagsWithValues = ['--name', '--driver', '--driver-opt'];
    const positional = args
      .slice(2)
      .filter((word, i, words) => !word.startsWith('--') && !flagsWithValues.includes(words[i - 1]));
    expect(positional).toEqual(['ctx']);
    expect(args[args.length - 1]).toBe('ctx');
  });
});

describe('builderName', () => {
  test.each([
    ['dind', 'abcdef01', 'setup-dind-dind-abcdef01'],
    ['My.DinD_2', '0a1b2c3d', 'setup-dind-my.dind_2-0a1b2c3d']
  ])('instance %p (%s) → %p', (name, id, builder) => {
    expect(builderName(newInstance(name, '/tmp', id))).toBe(builder);
  });

  test('is a name buildx accepts as given, and differs between instances of one name', () => {
    const [a, b] = [newInstance('dind', '/tmp', 'aaaaaaaa'), newInstance('dind', '/tmp', 'bbbbbbbb')];
    expect(builderName(a)).toMatch(/^[a-z][a-z0-9._-]*$/);
    expect(builderName(a)).not.toBe(builderName(b));
  });
});
