import { execFile } from 'node:child_process';

/** Runs a python3 snippet (a real non-JS mail client: imaplib, poplib, smtplib) and parses its JSON output. */
export function python<T = unknown>(script: string, env: Record<string, string> = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python failed: ${stderr || err.message}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as T);
      } catch {
        reject(new Error(`python printed no JSON: ${stdout} ${stderr}`));
      }
    });
  });
}
