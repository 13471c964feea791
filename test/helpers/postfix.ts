import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { greeting } from './dovecot.js';
import { freePort, waitFor } from './ports.js';

export interface Postfix {
  smtpPort: number;
  maillog(): string;
  stop(): void;
}

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)), 'utf8');

/** Debian's Postfix from its own config dir, relaying example.test to Dovecot's LMTP. */
export async function startPostfix(lmtpPort: number, authPort: number): Promise<Postfix> {
  const dir = mkdtempSync('/tmp/postern-postfix-');
  const smtpPort = await freePort();
  const fill = (t: string) =>
    t
      .replaceAll('{{dir}}', dir)
      .replaceAll('{{lmtpPort}}', String(lmtpPort))
      .replaceAll('{{smtpPort}}', String(smtpPort))
      .replaceAll('{{authPort}}', String(authPort));
  writeFileSync(join(dir, 'main.cf'), fill(fixture('postfix-main.cf')));
  writeFileSync(join(dir, 'master.cf'), fill(fixture('postfix-master.cf')));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'queue'));
  mkdirSync(join(dir, 'data'));
  chownSync(join(dir, 'data'), Number(execFileSync('id', ['-u', 'postfix']).toString()), 0);
  // stdio ignored: the daemon would keep inherited pipes open.
  execFileSync('postfix', ['-c', dir, 'start'], { stdio: 'ignore' });
  await waitFor('postfix smtpd', () => greeting(smtpPort, '220'));
  return {
    smtpPort,
    maillog: () => (existsSync(join(dir, 'maillog')) ? readFileSync(join(dir, 'maillog'), 'utf8') : ''),
    stop: () => {
      try {
        execFileSync('postfix', ['-c', dir, 'stop'], { stdio: 'ignore' });
      } catch {
        // already stopped
      }
    },
  };
}
