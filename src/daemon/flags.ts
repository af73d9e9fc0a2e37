// dockerd's flags, and the daemon.json keys they set: dockerd refuses a setting given both ways.

/** dockerd's flags whose daemon.json name differs (lists take a plural; short flags). */
const CONFIG_NAME_OF_FLAG: Record<string, string> = {
  'registry-mirror': 'registry-mirrors',
  'insecure-registry': 'insecure-registries',
  label: 'labels',
  'dns-opt': 'dns-opts',
  'storage-opt': 'storage-opts',
  'log-opt': 'log-opts',
  'exec-opt': 'exec-opts',
  'default-ulimit': 'default-ulimits',
  'authorization-plugin': 'authorization-plugins',
  'add-runtime': 'runtimes',
  feature: 'features',
  'default-network-opt': 'default-network-opts',
  'default-address-pool': 'default-address-pools',
  'cdi-spec-dir': 'cdi-spec-dirs',
  D: 'debug',
  G: 'group',
  l: 'log-level',
  p: 'pidfile'
};

/** The long option name of a flag word (`--mtu=1400` → `mtu`), or undefined for a value word. */
export function optionName(word: string): string | undefined {
  if (!word.startsWith('--')) return undefined;
  return word.slice(2).split('=')[0];
}

/** The daemon.json keys the flags set: dockerd refuses daemon.json to set them too. */
export function flagConfigNames(args: string[]): Set<string> {
  return new Set(args.flatMap(configNames));
}

/** The daemon.json keys a flag word sets: long flags by name, combined short flags letter by letter. */
function configNames(word: string): string[] {
  const option = optionName(word);
  if (option) return [CONFIG_NAME_OF_FLAG[option] ?? option];
  const shorts = /^-([A-Za-z]+)/.exec(word)?.[1] ?? '';
  return [...shorts].map(letter => CONFIG_NAME_OF_FLAG[letter]).filter((name): name is string => name !== undefined);
}
