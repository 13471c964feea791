import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './ports.js';

export interface Dovecot {
  dir: string;
  imapPort: number;
  pop3Port: number;
  /** IMAP and POP3 listeners that expect a PROXY protocol header first (haproxy = yes). */
  imapProxyPort: number;
  pop3ProxyPort: number;
  lmtpPort: number;
  authPort: number;
  masterUser: string;
  masterPassword: string;
  /** Adds a user with a password of their own (for direct logins). */
  addUser(name: string, password: string): void;
  stop(): Promise<void>;
  start(): Promise<void>;
  log(): string;
}

const TEMPLATE = fileURLToPath(new URL('../fixtures/dovecot.conf', import.meta.url));

/** Resolves once the port answers with a greeting starting with `expect`. */
export function greeting(port: number, expect: string): Promise<void> {
  return new Promise((res, rej) => {
    const s = connect(port, '127.0.0.1');
    s.setTimeout(2000, () => (s.destroy(), rej(new Error('timeout'))));
    s.once('error', rej);
    s.once('data', (d) => {
      s.destroy();
      if (d.toString().startsWith(expect)) res();
      else rej(new Error(`unexpected greeting ${d.toString()}`));
    });
  });
}

/** Debian's Dovecot from the shipped config, in a fresh private directory. */
export async function startDovecot(opts: { tls?: { cert: string; key: string }; highPerformanceLogin?: boolean } = {}): Promise<Dovecot> {
  // The mail directory's parents must be traversable by the dovecot user.
  const dir = mkdtempSync('/tmp/postern-dovecot-');
  chmodSync(dir, 0o755);
  const [imapPort, pop3Port, lmtpPort, authPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const [imapProxyPort, pop3ProxyPort] = [await freePort(), await freePort()];
  const masterUser = 'postern';
  const masterPassword = randomBytes(12).toString('hex');
  const conf = readFileSync(TEMPLATE, 'utf8')
    .replaceAll('{{dir}}', dir)
    .replaceAll('{{id}}', randomBytes(4).toString('hex'))
    .replaceAll('{{imapPort}}', String(imapPort))
    .replaceAll('{{pop3Port}}', String(pop3Port))
    .replaceAll('{{imapProxyPort}}', String(imapProxyPort))
    .replaceAll('{{pop3ProxyPort}}', String(pop3ProxyPort))
    .replaceAll('{{lmtpPort}}', String(lmtpPort))
    .replaceAll('{{authPort}}', String(authPort))
    // High-security login (Dovecot's default): a fresh imap-login process for every connection.
    // High-performance: a few long-lived ones, each serving many connections (what busy
    // servers run, and the baseline the benchmark compares against).
    .replaceAll('{{imapLogin}}', opts.highPerformanceLogin ? `  service_count = 0\n  process_min_avail = ${availableParallelism()}` : '  process_min_avail = 1')
    .replaceAll('{{ssl}}', opts.tls ? `ssl = yes\nssl_cert = <${opts.tls.cert}\nssl_key = <${opts.tls.key}` : 'ssl = no');
  const confFile = join(dir, 'dovecot.conf');
  writeFileSync(confFile, conf);
  writeFileSync(join(dir, 'master-users'), `${masterUser}:{PLAIN}${masterPassword}\n`);
  writeFileSync(join(dir, 'users'), '');
  mkdirSync(join(dir, 'mail'));
  const dovecotIds = execFileSync('id', ['-u', 'dovecot']).toString().trim();
  const dovecotGid = execFileSync('id', ['-g', 'dovecot']).toString().trim();
  chownSync(join(dir, 'mail'), Number(dovecotIds), Number(dovecotGid));

  const d: Dovecot = {
    dir,
    imapPort,
    pop3Port,
    imapProxyPort,
    pop3ProxyPort,
    lmtpPort,
    authPort,
    masterUser,
    masterPassword,
    addUser(name, password) {
      writeFileSync(join(dir, 'users'), `${readFileSync(join(dir, 'users'), 'utf8')}${name}:{PLAIN}${password}\n`);
    },
    async start() {
      rmSync(join(dir, 'run'), { recursive: true, force: true });
      // stdio ignored: the daemon would inherit pipes and keep a sync call waiting forever.
      execFileSync('dovecot', ['-c', confFile], { stdio: 'ignore' });
      await waitFor('dovecot imap', () => greeting(imapPort, '* OK'));
      await waitFor('dovecot pop3', () => greeting(pop3Port, '+OK'));
      await waitFor('dovecot lmtp', () => greeting(lmtpPort, '220'));
    },
    async stop() {
      const pidFile = join(dir, 'run', 'master.pid');
      if (!existsSync(pidFile)) return;
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      await waitFor('dovecot to stop', async () => {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        throw new Error('still running');
      });
    },
    log: () => (existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : ''),
  };
  await d.start();
  return d;
}
