// Cache keys and save decisions: pure functions, so every case is a row.
import {
  cacheKeys,
  contentFingerprint,
  keyBase,
  sanitizeUserKey,
  saveKey,
  storageSettings,
  uncarriedStorage,
  type DaemonContent
} from '../../../src/cache/key';
import {
  decideAfterStop,
  decideSave,
  keptImageKey,
  mayKeepImage,
  saveBlocker,
  stopsGracefully
} from '../../../src/cache/save';
import type { CacheSetup } from '../../../src/cache/setup';

const base = {
  image: 'docker:28-dind',
  arch: 'x64',
  dockerdArgs: [] as string[],
  daemonConfig: {} as Record<string, unknown>
};

describe('keyBase: what a cache is valid for', () => {
  test('has the format version, architecture and a fixed-length compatibility hash', () => {
    expect(keyBase(base)).toMatch(/^setup-dind-v2-x64-[0-9a-f]{12}$/);
  });

  test.each([
    ['another image', { image: 'docker:27-dind' }],
    ['another architecture', { arch: 'arm64' }],
    ['a storage driver flag', { dockerdArgs: ['--storage-driver=vfs'] }],
    ['a storage driver flag with its value apart', { dockerdArgs: ['--storage-driver', 'vfs'] }],
    ['a storage driver in daemon.json', { daemonConfig: { 'storage-driver': 'vfs' } }],
    ['the containerd snapshotter', { daemonConfig: { features: { 'containerd-snapshotter': true } } }],
    ['userns-remap', { dockerdArgs: ['--userns-remap=default'] }]
  ])('changes with %s', (_name, change) => {
    expect(keyBase({ ...base, ...change })).not.toBe(keyBase(base));
  });

  test.each([
    ['a debug flag', { dockerdArgs: ['--debug'] }],
    ['registry mirrors', { daemonConfig: { 'registry-mirrors': ['https://mirror.example'] } }],
    ['an MTU', { dockerdArgs: ['--mtu=1400'] }]
  ])('does not change with %s (the data on disk reads the same)', (_name, change) => {
    expect(keyBase({ ...base, ...change })).toBe(keyBase(base));
  });

  test('storage settings are order-independent', () => {
    expect(storageSettings(['--storage-opt=a', '--storage-driver=overlay2'], {})).toEqual(
      storageSettings(['--storage-driver=overlay2', '--storage-opt=a'], {})
    );
  });
});

describe('uncarriedStorage: settings a restore carries nothing for', () => {
  test.each<[string, string[], Record<string, unknown>, string | undefined]>([
    ['the defaults', [], {}, undefined],
    ['overlay2 named', ['--storage-driver=overlay2'], {}, undefined],
    ['overlay2 in daemon.json', [], { 'storage-driver': 'overlay2' }, undefined],
    ['vfs as a flag', ['--storage-driver=vfs'], {}, "the storage driver is 'vfs'"],
    ['vfs as a flag and its word', ['--storage-driver', 'vfs'], {}, "the storage driver is 'vfs'"],
    ['the short flag', ['-s', 'fuse-overlayfs'], {}, "the storage driver is 'fuse-overlayfs'"],
    ['the short flag inline', ['-s=btrfs'], {}, "the storage driver is 'btrfs'"],
    ['vfs in daemon.json', [], { 'storage-driver': 'vfs' }, "the storage driver is 'vfs'"],
    ['other flags only', ['--mtu=1400', '--debug'], {}, undefined],
    [
      'the containerd image store',
      [],
      { features: { 'containerd-snapshotter': true } },
      'the containerd image store is on (containerd-snapshotter)'
    ],
    ['the containerd image store off', [], { features: { 'containerd-snapshotter': false } }, undefined],
    ...(
      [
        [['--feature', 'containerd-snapshotter'], true],
        [['--feature=containerd-snapshotter'], true],
        [['--feature', 'containerd-snapshotter=true'], true],
        [['--feature=containerd-snapshotter=1'], true],
        [['--feature', 'containerd-snapshotter=false'], false],
        [['--feature', 'other=true'], false]
      ] as const
    ).map(([args, on]): [string, string[], Record<string, unknown>, string | undefined] => [
      `flag ${args.join(' ')}`,
      [...args],
      {},
      on ? 'the containerd image store is on (containerd-snapshotter)' : undefined
    ])
  ])('%s', (_what, args, config, expected) => {
    expect(uncarriedStorage(args, config)).toBe(expected);
  });
});

describe('cacheKeys and saveKey', () => {
  const b = keyBase(base);

  test.each([
    ['', `${b}+`],
    ['compose-abc123', `${b}-compose-abc123+`],
    ['has,commas and spaces', `${b}-has_commas_and_spaces+`]
  ])('user key %p → exact prefix %p, then any compatible cache', (userKey, exactPrefix) => {
    expect(cacheKeys(b, userKey)).toEqual({ exactPrefix, restoreKeys: [exactPrefix, b] });
  });

  test("one user key's prefix never matches another user key's entries", () => {
    const short = cacheKeys(b, 'abc').exactPrefix;
    const longer = saveKey(cacheKeys(b, 'abc-def').exactPrefix, '0123456789abcdef');
    expect(longer.startsWith(short)).toBe(false);
  });

  test('sanitized keys hold no commas (the service refuses them)', () => {
    expect(sanitizeUserKey('a,b;c d')).toBe('a_b_c_d');
  });
});

describe('contentFingerprint: decided from content, never from timestamps', () => {
  const content: DaemonContent = {
    images: [
      { id: 'sha256:1', tags: ['a:1', 'a:latest'] },
      { id: 'sha256:2', tags: [] }
    ],
    buildCache: ['r1', 'r2']
  };

  test('is 16 hex digits and ignores order', () => {
    const reordered: DaemonContent = {
      images: [
        { id: 'sha256:2', tags: [] },
        { id: 'sha256:1', tags: ['a:latest', 'a:1'] }
      ],
      buildCache: ['r2', 'r1']
    };
    expect(contentFingerprint(content)).toMatch(/^[0-9a-f]{16}$/);
    expect(contentFingerprint(reordered)).toBe(contentFingerprint(content));
  });

  test.each([
    ['a new image', { ...content, images: [...content.images, { id: 'sha256:3', tags: ['b:1'] }] }],
    ['a retag', { ...content, images: [{ id: 'sha256:1', tags: ['a:2'] }, content.images[1]] }],
    ['new build cache', { ...content, buildCache: [...content.buildCache, 'r3'] }]
  ])('changes with %s', (_name, changed) => {
    expect(contentFingerprint(changed)).not.toBe(contentFingerprint(content));
  });
});

describe('saving decisions', () => {
  const setup: CacheSetup = {
    dataDir: '/d',
    exactPrefix: 'p+',
    restoreKeys: ['p+', 'p'],
    savePolicy: 'on-change',
    maxBytes: 1,
    restoredKey: 'p+aaaa',
    cacheDirMaxBytes: 1
  };

  const onSuccess = (status: string) => `the job's status is '${status}' and input 'cache-save' is 'on-success'`;
  test.each([
    ['never', 'success', true, undefined, "input 'cache-save' is 'never'"],
    ['on-change', 'success', false, "ACTIONS_CACHE_MODE is 'read'", "ACTIONS_CACHE_MODE is 'read'"],
    ['always', 'success', false, undefined, 'the cache is read-only for this job'],
    ['on-change', 'success', true, undefined, undefined],
    ['always', 'success', true, undefined, undefined],
    // A failed or cancelled job's state is saved unless the policy says on-success.
    ['on-change', 'failure', true, undefined, undefined],
    ['always', 'cancelled', true, undefined, undefined],
    ['on-success', 'success', true, undefined, undefined],
    ['on-success', 'failure', true, undefined, onSuccess('failure')],
    ['on-success', 'cancelled', true, undefined, onSuccess('cancelled')],
    ['on-success', 'Success', true, undefined, onSuccess('Success')],
    ['on-success', '', true, undefined, onSuccess('unknown')],
    ['on-success', 'success', false, undefined, 'the cache is read-only for this job']
  ] as const)('policy %p, job %p, writable %p → blocker %p', (savePolicy, jobStatus, writable, reason, expected) => {
    expect(saveBlocker({ ...setup, savePolicy }, jobStatus, writable, false, reason)).toBe(expected);
  });

  test('with a cache directory, a read-only service blocks nothing; never and a failed job under on-success still block', () => {
    expect(
      saveBlocker({ ...setup, cacheDir: '/c' }, 'success', false, true, "ACTIONS_CACHE_MODE is 'read'")
    ).toBeUndefined();
    expect(saveBlocker({ ...setup, cacheDir: '/c', savePolicy: 'never' }, 'success', true, true)).toBe(
      "input 'cache-save' is 'never'"
    );
    expect(saveBlocker({ ...setup, cacheDir: '/c', savePolicy: 'on-success' }, 'failure', true, true)).toBe(
      onSuccess('failure')
    );
  });

  test('a cache directory the job may not use (refused) takes no save the service cannot', () => {
    expect(saveBlocker({ ...setup, cacheDir: '/c' }, 'success', false, false, "ACTIONS_CACHE_MODE is 'read'")).toBe(
      "ACTIONS_CACHE_MODE is 'read'"
    );
  });

  test.each([
    [
      'on-change',
      'p+aaaa',
      { save: false, reason: 'the daemon holds what was restored: nothing changed', unchanged: true }
    ],
    ['on-change', 'p+bbbb', { save: true, key: 'p+bbbb' }],
    ['on-change', 'p+aaa', { save: true, key: 'p+aaa' }],
    [
      'on-success',
      'p+aaaa',
      { save: false, reason: 'the daemon holds what was restored: nothing changed', unchanged: true }
    ],
    ['on-success', 'p+bbbb', { save: true, key: 'p+bbbb' }],
    ['always', 'p+aaaa', { save: true, key: 'p+aaaa' }]
  ] as const)('policy %p with content key %p', (savePolicy, key, expected) => {
    expect(decideSave({ ...setup, savePolicy }, key, 'u1')).toEqual(expected);
  });

  test('a variant of the content key (saved while the key itself was stuck) is the same content', () => {
    expect(decideSave({ ...setup, restoredKey: 'p+aaaa.2' }, 'p+aaaa', 'u1')).toEqual({
      save: false,
      reason: 'the daemon holds what was restored: nothing changed',
      unchanged: true
    });
  });

  test('a daemon restored from nothing always has something to save', () => {
    expect(decideSave({ ...setup, restoredKey: undefined }, 'p+aaaa', 'u1')).toEqual({ save: true, key: 'p+aaaa' });
  });

  test.each([
    ['on-change', 'p+aaaa', 'p+aaaa'],
    ['on-change', 'p+bbbb', 'p+aaaa'],
    ['always', 'p+aaaa', 'p+aaaa'],
    ['on-change', 'p+aaaa', 'p+aaaa.2']
  ] as const)(
    'over a refused state (policy %p, content key %p, refused %p): saved, under a key of its own',
    (savePolicy, key, refusedKey) => {
      // What main does on refusing: the state is no longer the restored one.
      const refused = { ...setup, savePolicy, restoredKey: undefined, refusedKey };
      expect(decideSave(refused, key, 'u1')).toEqual({ save: true, key: `${key}.u1` });
      expect(decideSave(refused, key, 'u2')).toEqual({ save: true, key: `${key}.u2` });
    }
  );
});

describe("post's decisions around the daemon's stop", () => {
  const save = { save: true, key: 'p+aaaa' } as const;
  const skip = { save: false, reason: 'the cache is read-only' } as const;
  const unchanged = { save: false, reason: 'nothing changed', unchanged: true } as const;

  test.each([
    ['running', save, false, true],
    ['running', skip, false, false],
    ['running', unchanged, false, false],
    ['running', unchanged, true, true],
    ['running', undefined, false, false],
    ['exited', save, false, false],
    ['exited', unchanged, true, false]
  ] as const)(
    'a %s container with decision %p (image kept: %p) is stopped gracefully: %p',
    (state, decision, keepsImage, expected) => {
      expect(stopsGracefully(state, decision, keepsImage)).toBe(expected);
    }
  );

  test.each([
    [save, true, true],
    [unchanged, true, true],
    [skip, true, false],
    [undefined, true, false],
    [save, false, false],
    [unchanged, false, false]
  ] as const)('decision %p, store on the same filesystem %p: may keep the image %p', (decision, same, expected) => {
    expect(mayKeepImage(decision, same)).toBe(expected);
  });

  test.each([
    ['a save that landed', save, true, { saved: true, key: 'p+aaaa.2' }, 'p+aaaa.2'],
    ['a save that failed', save, true, undefined, undefined],
    ['a save refused (the content exists)', save, true, { saved: false }, undefined],
    ['nothing changed', unchanged, true, undefined, 'p+rest'],
    ['nothing changed, not unmounted cleanly', unchanged, false, undefined, undefined],
    ['not saved for another reason', skip, true, undefined, undefined]
  ] as const)('the kept image after %s', (_, decision, unmounted, saved, expected) => {
    expect(keptImageKey(decision, unmounted, 'p+rest', saved)).toBe(expected);
  });

  test.each([
    [save, true, save],
    [save, false, { save: false, reason: "the daemon's filesystem was not unmounted cleanly", warn: true }],
    [skip, false, skip],
    [skip, true, skip]
  ] as const)('decision %p, unmounted %p → %p', (decision, unmounted, expected) => {
    expect(decideAfterStop(decision, unmounted)).toEqual(expected);
  });
});
