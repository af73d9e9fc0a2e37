// Which images a job used, and which the cache drops: pure functions, so every case is a row.
import {
  familiarReference,
  imageFacts,
  matchesReference,
  planEviction,
  recorderCommand,
  referencesInEvents,
  usedImages,
  USAGE_LOG,
  RECORDER_PID,
  type ImageFacts,
  type UsageSignals
} from '../../../src/cache/usage';
import type Docker from 'dockerode';

const HOUR = 3_600_000;
const id = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
const image = (n: number, overrides: Partial<ImageFacts> = {}): ImageFacts => ({
  id: id(n),
  tags: [],
  digests: [],
  layers: [],
  lastTagged: 0,
  ...overrides
});

describe('recorderCommand', () => {
  test('streams the image-naming events since the daemon started into the log, through the daemon socket', () => {
    const command = recorderCommand(1795768629_900);
    expect(command.slice(0, 2)).toEqual(['sh', '-c']);
    expect(command.slice(3, 7)).toEqual(['sh', USAGE_LOG, RECORDER_PID, '1795768629']);
    expect(command.slice(7)).toEqual([
      '--filter',
      'type=container',
      '--filter',
      'type=image',
      '--filter',
      'event=create',
      '--filter',
      'event=pull',
      '--filter',
      'event=load',
      '--filter',
      'event=import',
      '--filter',
      'event=tag'
    ]);
    expect(command[2]).toContain('exec docker -H unix:///var/run/docker.sock events --since "$since"');
  });
});

describe('referencesInEvents', () => {
  test('container creations name their image; image events their id and name; other lines are skipped', () => {
    const lines = [
      JSON.stringify({
        Type: 'container',
        Action: 'create',
        Actor: { ID: 'c1', Attributes: { image: 'alpine:3', name: 'x' } }
      }),
      JSON.stringify({ Type: 'image', Action: 'tag', Actor: { ID: id(1), Attributes: { name: 'built:one' } } }),
      JSON.stringify({
        Type: 'image',
        Action: 'pull',
        Actor: { ID: 'busybox:latest', Attributes: { name: 'busybox' } }
      }),
      JSON.stringify({ Type: 'volume', Action: 'create', Actor: { ID: 'v', Attributes: { driver: 'local' } } }),
      'Error response from daemon: something',
      '',
      JSON.stringify({ Type: 'container', Action: 'create', Actor: { ID: 'c2', Attributes: { image: 'alpine:3' } } })
    ];
    expect(referencesInEvents(lines.join('\n')).sort()).toEqual(
      ['alpine:3', 'built:one', 'busybox', 'busybox:latest', id(1)].sort()
    );
  });
});

describe('familiarReference', () => {
  test.each([
    ['alpine', 'alpine:latest'],
    ['alpine:3', 'alpine:3'],
    ['docker.io/library/alpine:3', 'alpine:3'],
    ['index.docker.io/library/alpine', 'alpine:latest'],
    ['docker.io/user/app', 'user/app:latest'],
    ['registry:5000/app', 'registry:5000/app:latest'],
    ['registry:5000/app:v1', 'registry:5000/app:v1'],
    ['alpine@sha256:abc', 'alpine@sha256:abc'],
    ['alpine:3@sha256:abc', 'alpine@sha256:abc'],
    ['ghcr.io/o/app:1', 'ghcr.io/o/app:1']
  ])('%p → %p', (reference, familiar) => {
    expect(familiarReference(reference)).toBe(familiar);
  });
});

describe('matchesReference', () => {
  const alpine = image(1, { tags: ['alpine:3', 'alpine:latest'], digests: ['alpine@sha256:dd'] });
  test.each([
    ['alpine', true],
    ['docker.io/library/alpine:3', true],
    ['alpine:edge', false],
    ['alpine@sha256:dd', true],
    [id(1), true],
    ['1111111111', true],
    ['sha256:1111', true],
    ['2222', false],
    ['other', false]
  ])('%p: %p', (reference, matches) => {
    expect(matchesReference(alpine, reference)).toBe(matches);
  });
});

describe('usedImages', () => {
  const since = 1_000_000;
  const base = image(1, { tags: ['base:1'], layers: ['a'] });
  const child = image(2, { tags: ['child:1'], layers: ['a', 'b'] });
  const grandchild = image(3, { tags: ['grand:1'], layers: ['a', 'b', 'c'] });
  const other = image(4, { tags: ['other:1'], layers: ['x'] });
  const empty = image(5, { tags: ['empty:1'], layers: [] });
  const images = [base, child, grandchild, other, empty];
  const none: UsageSignals = { references: [], containerImageIds: [], since };

  test.each<[string, Partial<typeof none>, number[]]>([
    ['nothing', {}, []],
    ['a container of the grandchild: it and both its bases', { containerImageIds: [id(3)] }, [1, 2, 3]],
    ['an event naming the child by tag', { references: ['child:1'] }, [1, 2]],
    ['an event naming the base by id prefix', { references: ['11111111'] }, [1]],
    ['an unknown reference', { references: ['gone:1'] }, []]
  ])('%s', (_name, signals, expected) => {
    expect([...usedImages(images, { ...none, ...signals })].sort()).toEqual(expected.map(id).sort());
  });

  test('an image tagged during the job is used (builds, pulls and loads tag); one tagged before is not', () => {
    const used = usedImages(
      [
        { ...other, lastTagged: since },
        { ...empty, lastTagged: since - 1 }
      ],
      none
    );
    expect([...used]).toEqual([id(4)]);
  });
});

describe('planEviction', () => {
  const now = 100 * HOUR;
  const kept = image(1);
  const unused = image(2);
  const unknown = image(3);
  const record = {
    lastUsed: { [id(1)]: new Date(10 * HOUR).toISOString(), [id(2)]: new Date(90 * HOUR).toISOString() },
    savedAt: 95 * HOUR
  };
  const iso = (hours: number) => new Date(hours * HOUR).toISOString();

  test.each<[string, number | undefined, number[], Record<number, number>]>([
    ['never: keeps everything and records each last use', undefined, [], { 1: 100, 2: 90, 3: 95 }],
    ['0: drops whatever this job did not use', 0, [2, 3], { 1: 100 }],
    ['10h: drops what was last used more than 10h ago', 10 * HOUR, [2], { 1: 100, 3: 95 }],
    ['a week: keeps everything recent', 168 * HOUR, [], { 1: 100, 2: 90, 3: 95 }]
  ])('%s', (_name, keep, evicted, lastUsedHours) => {
    const plan = planEviction([kept, unused, unknown], new Set([id(1)]), record, now, keep);
    expect(plan.evict.map(entry => entry.image.id)).toEqual(evicted.map(id));
    expect(plan.lastUsed).toEqual(
      Object.fromEntries(Object.entries(lastUsedHours).map(([n, hours]) => [id(Number(n)), iso(hours)]))
    );
  });

  test('an image evicted carries its last use (kept if it cannot be removed)', () => {
    const plan = planEviction([unused], new Set(), record, now, 0);
    expect(plan.evict).toEqual([{ image: unused, lastUsed: iso(90) }]);
  });
});

describe('imageFacts', () => {
  test('reads tags, digests, layers and the last tag time; drops <none> entries', () => {
    const inspected = {
      Id: id(1),
      RepoTags: ['a:1', '<none>:<none>'],
      RepoDigests: ['a@sha256:x', '<none>@sha256:y'],
      RootFS: { Type: 'layers', Layers: ['l1', 'l2'] },
      Metadata: { LastTagTime: '2026-11-27T08:00:00.5Z' }
    } as unknown as Docker.ImageInspectInfo;
    expect(imageFacts(inspected)).toEqual({
      id: id(1),
      tags: ['a:1'],
      digests: ['a@sha256:x'],
      layers: ['l1', 'l2'],
      lastTagged: Date.parse('2026-11-27T08:00:00.5Z')
    });
  });

  test('never tagged (the zero time) is long ago', () => {
    const inspected = {
      Id: id(1),
      Metadata: { LastTagTime: '0001-01-01T00:00:00Z' }
    } as unknown as Docker.ImageInspectInfo;
    expect(imageFacts(inspected).lastTagged).toBeLessThan(0);
  });
});
