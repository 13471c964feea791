// Lint: the structure rules the code keeps (no import cycles; the core imports no edge,
// store or wiring), and the TypeScript checks that catch mistakes. Formatting is Prettier's.
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Plain scripts and the worker run on Node: its globals exist.
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', URL: 'readonly' } },
  },
  importX.flatConfigs.typescript,
  {
    files: ['**/*.ts'],
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver()] },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    // Tests read JSON answers whose shape each assertion states.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The auth rules know nothing of sockets, databases, configuration files or threads.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../stores/*',
                '../protocols/*',
                '../api/*',
                '../workers/*',
                '../cli/*',
                '../config/*',
                '../notify/*',
                '../app.js',
                '../log.js',
                '../metrics.js',
                '../plugins.js',
              ],
              message: 'core/ imports only core/: declare a port in core/ports.ts instead',
            },
            {
              group: [
                'node:tls',
                'node:fs',
                'node:http',
                'node:https',
                'node:dgram',
                'node:child_process',
                'node:worker_threads',
                'ioredis',
                'mongodb',
                'better-sqlite3',
                'fastify',
                'smtp-server',
              ],
              message: 'core/ does no I/O: take it through a port',
            },
          ],
          // node:net for address arithmetic (isIP, BlockList) only, never a socket.
          paths: [
            {
              name: 'node:net',
              importNames: ['Socket', 'Server', 'connect', 'createConnection', 'createServer'],
              message: 'core/ does no I/O: take it through a port',
            },
          ],
        },
      ],
    },
  },
);
