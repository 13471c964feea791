import { lookup } from 'node:dns/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import type { AuthResult } from '../../core/types.js';
import type { ApiDeps } from '../deps.js';

export interface NginxSettings {
  /** Whether an address may ask (nginx hosts only: this endpoint checks passwords). */
  allowed(ip: string): boolean;
  /** Where nginx carries IMAP and POP3 (Dovecot), and SMTP (the relay). */
  upstreamHost: string;
  smtpHost: string;
  ports: { imap: number; pop3: number; smtp: number };
  /** What nginx should log in to the upstream with: `user*master` and the master password. */
  upstreamLogin(username: string): { user: string; pass: string };
}

const SCOPES = { imap: 'imap', pop3: 'pop3', smtp: 'smtp' } as const;

function refusal(reply: FastifyReply, r: Extract<AuthResult, { ok: false }>, protocol: string) {
  const temporary = r.reason === 'temporary_failure' || r.reason === 'locked';
  const text =
    r.reason === 'locked'
      ? `[LIMIT] Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`
      : r.reason === 'temporary_failure'
        ? '[UNAVAILABLE] Temporary authentication failure, try again later'
        : `[AUTHENTICATIONFAILED] ${r.message}`;
  void reply.header('Auth-Status', protocol === 'imap' ? text : text.replace(/^\[[A-Z]+\] /, ''));
  // With Auth-Wait nginx keeps the client connected and lets it retry after the wait.
  void reply.header('Auth-Wait', String(r.reason === 'locked' ? Math.min(r.retryAfter ?? 3, 60) : 3));
  if (protocol === 'smtp') void reply.header('Auth-Error-Code', temporary ? '454 4.7.0' : '535 5.7.8');
  return reply.send('');
}

/** nginx mail proxy `auth_http`: postern decides, nginx carries the session. */
export async function nginxRoutes(api: FastifyInstance, d: ApiDeps, s: NginxSettings) {
  // nginx wants an address, not a name: each name is looked up once.
  const addresses = new Map<string, string>();
  const address = async (host: string) => {
    let a = addresses.get(host) ?? (isIP(host) ? host : undefined);
    if (!a) addresses.set(host, (a = (await lookup(host)).address));
    return a;
  };
  api.get('/auth/nginx', { schema: { hide: true } }, async (req: FastifyRequest, reply) => {
    if (!s.allowed(req.ip)) return reply.status(403).send({ code: 'forbidden', message: 'Not an nginx host of this gateway' });
    const h = (name: string) => {
      const v = req.headers[name];
      return typeof v === 'string' ? v : '';
    };
    // nginx URL-escapes the login and password it forwards.
    const unescape = (v: string) => {
      try {
        return decodeURIComponent(v);
      } catch {
        return v;
      }
    };
    const protocol = h('auth-protocol') as keyof typeof SCOPES;
    if (!(protocol in SCOPES) || h('auth-method') !== 'plain') {
      void reply.header('Auth-Status', 'Unsupported authentication method');
      return reply.send('');
    }
    // Without a client address the attempt counts against the nginx host's own: a request
    // that leaves it out must not escape the per-address window.
    const clientIp = h('client-ip');
    const result = await d.auth.authenticate({
      username: unescape(h('auth-user')),
      secret: unescape(h('auth-pass')),
      scope: SCOPES[protocol],
      ip: isIP(clientIp) ? clientIp : req.ip,
      protocol,
      userAgent: 'nginx',
    });
    if (!result.ok) return refusal(reply, result, protocol);
    const server = await address(protocol === 'smtp' ? s.smtpHost : s.upstreamHost);
    const login = s.upstreamLogin(result.username);
    void reply.header('Auth-Status', 'OK');
    void reply.header('Auth-Server', server);
    void reply.header('Auth-Port', String(s.ports[protocol]));
    // SMTP goes on with XCLIENT (nginx `xclient on`); IMAP and POP3 log in as the user through
    // the master login. nginx takes these two values as they are (no unescaping).
    if (protocol !== 'smtp') {
      void reply.header('Auth-User', login.user);
      void reply.header('Auth-Pass', login.pass);
    }
    return reply.send('');
  });
}
