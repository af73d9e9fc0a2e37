// Packages the bundles leave out: a dependency loads them at start-up, but only code the action never
// runs uses them, and compiling them is most of what Node does before main or post starts. In dist/
// each is this module instead (tsconfig.json's `paths`, which ncc resolves every import by).
// scripts/build.ts fails when a bundle still holds one.

/** Each package left out, and why the action never runs its code. */
export const LEFT_OUT: Readonly<Record<string, string>> = {
  ssh2: "docker-modem's ssh:// transport: the action talks to engines over unix sockets and TCP only (engine.ts refuses others)",
  '@grpc/grpc-js': 'dockerode\'s BuildKit session, for buildImage with version "2", which the action never calls',
  '@grpc/proto-loader': "dockerode's BuildKit session, as @grpc/grpc-js",
  undici: "@actions/http-client's getAgentDispatcher (for fetch through a proxy), which nothing the action uses calls"
};

/** What stands in for a left-out export: loading it is fine, using it fails and says why. */
function leftOut(pkg: string, name: string) {
  return function unavailable(): never {
    throw new Error(`${pkg}'s ${name} is not in setup-dind's bundle: ${LEFT_OUT[pkg]}.`);
  };
}

// The exports the bundled modules take from them (the rest of each package is never reached).
export const Client = leftOut('ssh2', 'Client');
export const Server = leftOut('@grpc/grpc-js', 'Server');
export const ServerCredentials = { createInsecure: leftOut('@grpc/grpc-js', 'ServerCredentials') };
export const loadPackageDefinition = leftOut('@grpc/grpc-js', 'loadPackageDefinition');
export const loadSync = leftOut('@grpc/proto-loader', 'loadSync');
export const ProxyAgent = leftOut('undici', 'ProxyAgent');
