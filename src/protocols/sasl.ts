/** Decodes a SASL PLAIN response (RFC 4616): [authzid] NUL authcid NUL passwd. */
export function decodePlain(b64: string): { username: string; password: string } | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64.trim())) return null;
  const parts = Buffer.from(b64.trim(), 'base64').toString('utf8').split('\0');
  if (parts.length !== 3) return null;
  const [authzid, authcid, password] = parts as [string, string, string];
  // Acting for another user is not offered: an authzid must name the same account.
  if (authzid && authzid !== authcid) return null;
  return authcid && password ? { username: authcid, password } : null;
}

export function decodeBase64Line(line: string): string | null {
  const t = line.trim();
  return /^[A-Za-z0-9+/]*={0,2}$/.test(t) ? Buffer.from(t, 'base64').toString('utf8') : null;
}

export const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

export type SaslStep =
  { kind: 'challenge'; text: string } | { kind: 'done'; username: string; password: string } | { kind: 'invalid'; message: string } | { kind: 'canceled' };

/** One SASL PLAIN or LOGIN exchange (RFC 4616, draft-murchison-sasl-login), protocol-neutral. */
export class SaslExchange {
  private username: string | undefined;

  constructor(readonly mech: 'PLAIN' | 'LOGIN') {}

  /** The first server challenge when the client sent no initial response. */
  first(): string {
    return this.mech === 'PLAIN' ? '' : b64('Username:');
  }

  /** Feeds one client line (base64, or `*` to cancel). */
  step(line: string): SaslStep {
    if (line.trim() === '*') return { kind: 'canceled' };
    if (this.mech === 'PLAIN') {
      const creds = decodePlain(line);
      return creds ? { kind: 'done', ...creds } : { kind: 'invalid', message: 'Invalid SASL PLAIN response' };
    }
    const value = decodeBase64Line(line);
    if (value === null) return { kind: 'invalid', message: 'Invalid base64 data' };
    if (this.username === undefined) {
      this.username = value;
      return { kind: 'challenge', text: b64('Password:') };
    }
    return { kind: 'done', username: this.username, password: value };
  }
}

export function saslMechanism(name: string): 'PLAIN' | 'LOGIN' | null {
  const m = name.toUpperCase();
  return m === 'PLAIN' || m === 'LOGIN' ? m : null;
}
