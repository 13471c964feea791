import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { generate } from 'selfsigned';
import { PosternError } from '../core/errors.js';

export interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * The certificate all listeners present. Listeners ask for `context` on every handshake
 * (SNICallback), so `reload()` takes effect for new connections without a restart.
 */
export class TlsManager {
  private ctx: SecureContext;
  private current: { cert: Buffer; key: Buffer };
  private readonly listeners: Array<(pem: { cert: Buffer; key: Buffer }) => void> = [];

  private constructor(private readonly files: TlsFiles) {
    this.current = TlsManager.read(files);
    this.ctx = TlsManager.load(this.current, files);
  }

  static async create(configured: TlsFiles, dataDir: string, hostname: string): Promise<TlsManager> {
    if (configured.cert || configured.key) {
      if (!configured.cert || !configured.key) throw new PosternError('config_invalid', 'tls.cert and tls.key must be set together');
      return new TlsManager(configured);
    }
    const dir = join(dataDir, 'tls');
    const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    if (!existsSync(files.cert) || !existsSync(files.key)) {
      mkdirSync(dir, { recursive: true });
      const notAfter = new Date(Date.now() + 825 * 86_400_000);
      const pems = await generate([{ name: 'commonName', value: hostname }], {
        keyType: 'ec',
        algorithm: 'sha256',
        notAfterDate: notAfter,
        extensions: [
          {
            name: 'subjectAltName',
            altNames: [
              { type: 2, value: hostname },
              { type: 7, ip: '127.0.0.1' },
            ],
          },
        ],
      });
      writeFileSync(files.key, pems.private, { mode: 0o600 });
      writeFileSync(files.cert, pems.cert);
    }
    return new TlsManager(files);
  }

  private static read(files: TlsFiles): { cert: Buffer; key: Buffer } {
    try {
      return { cert: readFileSync(files.cert), key: readFileSync(files.key) };
    } catch (err) {
      throw new PosternError('config_invalid', `cannot read TLS certificate ${files.cert} / key ${files.key}: ${(err as Error).message}`);
    }
  }

  private static load(pem: { cert: Buffer; key: Buffer }, files: TlsFiles): SecureContext {
    try {
      return createSecureContext({ ...pem, minVersion: 'TLSv1.2' });
    } catch (err) {
      throw new PosternError('config_invalid', `cannot load TLS certificate ${files.cert} / key ${files.key}: ${(err as Error).message}`);
    }
  }

  get context(): SecureContext {
    return this.ctx;
  }

  get certFile(): string {
    return this.files.cert;
  }

  /** Re-reads the files; on error the old certificate stays in use. */
  reload(): void {
    const pem = TlsManager.read(this.files);
    this.ctx = TlsManager.load(pem, this.files);
    this.current = pem;
    for (const l of this.listeners) l(pem);
  }

  /** Servers that hold a default context (for clients without SNI) renew it here on reload. */
  onReload(fn: (pem: { cert: Buffer; key: Buffer }) => void): void {
    this.listeners.push(fn);
  }

  /** Options for tls.createServer, smtp-server and STARTTLS sockets, with the current certificate. */
  serverOptions() {
    return {
      ...this.current,
      SNICallback: (_name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => cb(null, this.ctx),
      secureContext: this.ctx,
      minVersion: 'TLSv1.2' as const,
    };
  }
}
