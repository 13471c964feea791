#!/usr/bin/env node
// `npm run bench`: installs what is missing (like the tests), builds, then runs the benchmark.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
// Debian packages the benchmark runs: command → packages.
const DEBIAN = { dovecot: ['dovecot-imapd', 'dovecot-pop3d', 'dovecot-lmtpd'], socat: ['socat'], nginx: ['nginx', 'libnginx-mod-mail'] };
const missing = Object.entries(DEBIAN)
  .filter(([cmd]) => !have(cmd))
  .flatMap(([, pkgs]) => pkgs);
if (missing.length) {
  if (process.getuid?.() !== 0) {
    console.error(`missing Debian packages: ${missing.join(' ')} (install them, or run as root)`);
    process.exit(2);
  }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}
if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
// The memory figures speak to node's inspector over the global WebSocket, behind a flag in node 20.
const env = { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, '--experimental-websocket'].filter(Boolean).join(' ') };
const r = spawnSync(join(root, 'node_modules', '.bin', 'tsx'), ['test/bench/bench.ts', ...process.argv.slice(2)], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
