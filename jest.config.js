// Two projects: `unit` (pure logic, mocks allowed, fast) and `integration` (the bundled dist/
// against the real Docker engine from ../shared/docker-host/up; no mocks).
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', diagnostics: true }] }
};
module.exports = {
  projects: [
    // Some unit tests make real filesystems and TLS handshakes: time for a busy machine (none asserts on time).
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'], testTimeout: 30_000 },
    {
      ...base,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      // Once for all integration tests: the engine must answer and the dind test image exist (else: fail).
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      slowTestThreshold: 60
    }
  ]
};
