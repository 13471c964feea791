// The compose example (deploy/compose) cannot be run here (no Docker engine), so what can be
// checked is: postern's settings in it load (with the image's own environment), every
// service it names exists, its ports are the image's, and Dovecot and Postfix accept their
// configuration files (their own parsers, from Debian's packages).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/load.js';

const ROOT = resolve(__dirname, '..');
const DIR = join(ROOT, 'deploy/compose');

interface Service {
  build?: string;
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  command?: string[];
}
const compose = parse(readFileSync(join(DIR, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> };
const dotenv = Object.fromEntries(
  readFileSync(join(DIR, '.env.example'), 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
);
const vars: Record<string, string> = { ...dotenv, MASTER_PASSWORD: 'example-master-password' };
// compose's own interpolation: ${NAME} from .env, $$ for a dollar sign.
const interpolate = (v: string) => v.replace(/\$\{(\w+)\}/g, (_, n: string) => vars[n] ?? '').replace(/\$\$/g, '$');

/** The ENV lines and EXPOSE ports of the image postern's service builds. */
function image(): { env: Record<string, string>; exposed: number[] } {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const last = text.slice(text.lastIndexOf('\nFROM '));
  const env = Object.fromEntries([...last.matchAll(/(POSTERN_\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  const exposed = /^EXPOSE (.+)$/m.exec(last)![1]!.split(/\s+/).map(Number);
  return { env, exposed };
}

describe('the compose example', () => {
  const postern = compose.services.postern!;
  const env = Object.fromEntries(Object.entries(postern.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));
  const cfg = loadConfig({ env: { ...image().env, ...env } });

  it('gives postern a configuration that loads, on the services the file defines', () => {
    expect(postern.build).toBe('../..');
    expect(existsSync(resolve(DIR, postern.build!, 'Dockerfile'))).toBe(true);
    const services = Object.keys(compose.services);
    expect(services).toContain(cfg.upstream.host);
    expect(services).toContain(cfg.upstream.smtp_host);
    expect(services).toContain(new URL(cfg.redis.url).hostname);
    expect(cfg.upstream.master_password).toBe('example-master-password');
    expect(cfg.webauthn.origins).toEqual(['https://mail.example.org']);
  });

  it('publishes the mail ports the image exposes, and the page on loopback only', () => {
    const { exposed } = image();
    const published = postern.ports!.map((p) => p.split(':'));
    for (const p of published) expect(exposed).toContain(Number(p.at(-1)));
    const inside = Object.fromEntries(published.map((p) => [Number(p.at(-1)), p.slice(0, -1).join(':')]));
    expect(inside[cfg.imap.port]).toBe('143');
    expect(inside[cfg.imap.tls_port]).toBe('993');
    expect(inside[cfg.pop3.port]).toBe('110');
    expect(inside[cfg.pop3.tls_port]).toBe('995');
    expect(inside[cfg.submission.port]).toBe('587');
    expect(inside[cfg.submission.tls_port]).toBe('465');
    expect(inside[cfg.api.port]).toBe('127.0.0.1:8025');
  });

  it('runs Redis so that counted failures survive a restart and memory pressure', () => {
    const cmd = compose.services.redis!.command!.join(' ');
    expect(cmd).toContain('--appendonly yes');
    expect(cmd).toContain('--maxmemory-policy noeviction');
  });

  it('has a Dovecot configuration Dovecot accepts, with PROXY listeners where postern connects', () => {
    const mounted = compose.services.dovecot!.volumes!.find((v) => v.includes('dovecot.conf'))!.split(':')[0]!;
    const out = execFileSync('doveconf', ['-n', '-c', resolve(DIR, mounted)], { encoding: 'utf8' });
    for (const port of [cfg.upstream.imap_port, cfg.upstream.pop3_port]) {
      expect(out).toMatch(new RegExp(`inet_listener \\w+ \\{\\n\\s+haproxy = yes\\n\\s+port = ${port}\\n`));
    }
    expect(cfg.upstream.proxy_protocol).not.toBe('off');
    expect(out).toMatch(new RegExp(`inet_listener lmtp \\{\\n\\s+port = ${cfg.upstream.lmtp_port}\\n`));
  });

  it('has a Postfix configuration Postfix accepts, relaying for postern and delivering through it', () => {
    const dir = join(DIR, 'postfix');
    const main = spawnSync('postconf', ['-c', dir, '-n'], { encoding: 'utf8' });
    expect(main.status).toBe(0);
    expect(main.stderr).not.toMatch(/warning/i);
    expect(main.stdout).toContain(`virtual_transport = lmtp:inet:postern:${cfg.lmtp.port}`);
    const services = spawnSync('postconf', ['-c', dir, '-M'], { encoding: 'utf8' });
    expect(services.status).toBe(0);
    expect(services.stderr).not.toMatch(/warning/i);
    expect(services.stdout).toMatch(new RegExp(`^${cfg.upstream.smtp_port}\\s+inet\\b.*smtpd[\\s\\S]*smtpd_authorized_xclient_hosts`, 'm'));
  });
});

describe('the deployment walkthrough (docs/deployment.md)', () => {
  const doc = readFileSync(join(ROOT, 'docs/deployment.md'), 'utf8');
  const block = (lang: string) => [...doc.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);

  it('gives a postern.toml that loads as written, on the standard ports', () => {
    const [toml] = block('toml');
    const file = join(mkdtempSync(join(tmpdir(), 'postern-doc-')), 'postern.toml');
    writeFileSync(file, toml!);
    const cfg = loadConfig({ file, env: { POSTERN_UPSTREAM__MASTER_PASSWORD: 'from-the-environment-file' } });
    expect([cfg.imap.port, cfg.imap.tls_port, cfg.pop3.port, cfg.pop3.tls_port, cfg.submission.port, cfg.submission.tls_port]).toEqual([
      143, 993, 110, 995, 587, 465,
    ]);
    expect(cfg.redis.url).toMatch(/^redis:/);
    expect(cfg.api.trusted_proxies).toEqual(['127.0.0.1/32']);
  });

  it('names in its systemd unit only commands and paths that exist in the package', () => {
    const [unit] = block('ini').filter((b) => b.includes('[Service]'));
    expect(unit).toMatch(/ExecStart=\/opt\/postern\/bin\/postern serve/);
    expect(existsSync(join(ROOT, 'bin/postern'))).toBe(true);
    // The unit's stop timeout leaves room for the drain.
    const stop = Number(/TimeoutStopSec=(\d+)/.exec(unit!)![1]);
    expect(stop * 1000).toBeGreaterThan(loadConfig({ env: {} }).server.shutdown_grace);
  });
});
