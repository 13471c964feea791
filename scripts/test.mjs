#!/usr/bin/env node
// The whole test suite on a fresh machine: installs what it needs (npm packages, Debian's
// servers the suite starts), builds, lints, runs vitest, and ends with a plain "N passed, N failed".
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

// Debian packages the suite runs for real: command → package.
const DEBIAN = {
  'redis-server': 'redis-server',
  gpg: 'gnupg',
  dovecot: 'dovecot-imapd dovecot-pop3d dovecot-lmtpd',
  postfix: 'postfix',
  nginx: 'nginx libnginx-mod-mail',
  haproxy: 'haproxy',
  chromium: 'chromium',
  python3: 'python3',
  curl: 'curl',
};

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

const missing = Object.entries(DEBIAN)
  .filter(([cmd]) => !have(cmd))
  .flatMap(([, pkgs]) => pkgs.split(' '));
if (missing.length) {
  if (process.getuid?.() !== 0) {
    console.error(`missing Debian packages: ${missing.join(' ')} (install them, or run as root to have them installed)`);
    process.exit(2);
  }
  run('apt-get', ['update', '-qq']);
  run('apt-get', ['install', '-y', '-qq', ...missing]);
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) run('npm', ['ci', '--no-audit', '--no-fund']);
run('npm', ['run', 'build', '--silent']);
// Types, lint (import cycles, the core's boundary) and format: a failure counts as one failed test.
console.log('$ npm run lint');
const lint = spawnSync('npm', ['run', 'lint', '--silent'], { stdio: 'inherit' });
const lintFailed = lint.status === 0 ? 0 : 1;
if (lintFailed) console.log('lint failed: see above (npm run format fixes the formatting)');

const results = join(root, '.vitest-results.json');
rmSync(results, { force: true });
const vitest = spawnSync(
  join(root, 'node_modules', '.bin', 'vitest'),
  ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${results}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
);

// No results file: vitest itself failed, which counts as one failure.
const r = existsSync(results) ? JSON.parse(readFileSync(results, 'utf8')) : { numPassedTests: 0, numFailedTests: 1, numPendingTests: 0 };
const passed = r.numPassedTests;
// A file that failed without a failed test (it did not load, a hook threw) counts as one.
const brokenFiles = (r.testResults ?? []).filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')).length;
const failed = r.numFailedTests + brokenFiles + lintFailed;
const skipped = r.numPendingTests + (r.numTodoTests ?? 0);
if (skipped) console.log(`${skipped} skipped (MongoDB contract runs only when MONGODB_URL is set)`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || vitest.status !== 0 ? 1 : 0);
