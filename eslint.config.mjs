// ESLint: @eslint/js and typescript-eslint's type-aware recommended rules, plus rules that catch real
// bugs: promises dropped or handed where nothing awaits them, non-null assertions, ==. src/ gets no
// exception; test/ two, below.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tmp/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['**/*.ts'],
    languageOptions: {
      // tsconfig.test.json covers src, test, bench and scripts.
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }
      ],
      // `import fs = require('node:fs')` is a typed import (a test spies on the module object itself).
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
      eqeqeq: 'error'
    }
  },
  {
    // Node runs it as it is in the unit tests: CommonJS, whose imports are require calls.
    files: ['src/cache/image/frame-worker.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' }
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Jest's asymmetric matchers (expect.any, expect.stringMatching) are typed `any`: every
      // toEqual/toMatchObject with one would be a finding.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      // Mocks of async APIs and callbacks of async interfaces stay async without an await, so that a
      // throw in them (a failed expect) is a rejection, as the real code's would be.
      '@typescript-eslint/require-await': 'off'
    }
  },
  {
    // The build scripts and jest.config.js: CommonJS run by Node, outside the TypeScript project.
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
        process: 'readonly',
        console: 'readonly'
      }
    },
    rules: { ...tseslint.configs.disableTypeChecked.rules, '@typescript-eslint/no-require-imports': 'off' }
  },
  // This file: an ES module run by Node, outside the TypeScript project.
  { files: ['**/*.mjs'], ...tseslint.configs.disableTypeChecked }
);
