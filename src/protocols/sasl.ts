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
