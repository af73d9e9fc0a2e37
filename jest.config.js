// Two projects: `unit` (pure logic, mocks allowed, fast) and `integration` (the bundled dist/
// against the real Docker engine from ../shared/docker-host/up; no mocks).
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: { warnOnly: false } }] }
};
module.exports = {
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...base,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      slowTestThreshold: 60
    }
  ]
};
