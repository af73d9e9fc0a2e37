// Two projects: `unit` (pure logic, mocks allowed, fast) and `integration` (the bundled dist/
// against the real Docker engine that scripts/engine-up.sh brings up; no mocks).
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', diagnostics: true }] }
};
module.exports = {
  // Global options (Jest reads them only here, not in a project): some unit tests make real filesystems
  // and TLS handshakes, so they get time for a busy machine; none asserts on time. Integration tests
  // set their own, longer timeouts.
  testTimeout: 30_000,
  slowTestThreshold: 60,
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...base,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      // Once for all integration tests: the engine must answer and the dind test image exist (else: fail).
      globalSetup: '<rootDir>/test/support/global-setup.ts'
    }
  ]
};
