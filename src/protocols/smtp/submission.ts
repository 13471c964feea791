import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { readProxyHeader } from '../proxy-protocol.js';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import type { FrontendContext } from '../context.js';
import { peerIp } from '../limits.js';
import type { Reply } from '../upstream/smtp-client.js';
import { RelaySession, type RelayOffer } from './relay-session.js';
import { MessageTooBig, bounded, readBounded, tooBigText } from './message.js';
import { replyError, smtpError, smtpRefusal, type SmtpError } from './replies.js';
import { SubmissionPreauth } from './submission-preauth.js';
import { ENHANCED_STATUS_CODES } from './enhanced-status.js';

export interface SubmissionSettings {
  maxMessageSize: number;
  maxRecipients: number;
  smtpPort: number;
  identity: 'xclient' | 'none';
  /** Mailbox that keeps a copy of each submitted message (sealed for PGP users); '' for none. */
  saveSent: string;
}

/** Who logged in on a submission session (smtp-server keeps it as session.user). */
type SubmitUser = { username: string; encryptTo: string | null };
const userOf = (session: SMTPServerSession) => session.user as unknown as SubmitUser;

/** Submission (RFC 6409) on smtp-server: AUTH through the core, then relay to the upstream. */
export function createSubmissionServer(ctx: FrontendContext, s: SubmissionSettings, secure: boolean, offer: RelayOffer): SMTPServer {
  const preauth = new SubmissionPreauth(ctx, () => server);
  /** Logged-in connections, each with the function that takes it off the live sessions. */
  const live = new Map<string, () => void>();
  /** Each logged-in connection's own connection to the relay. */
  const relays = new Map<string, RelaySession>();
  const relayOf = (session: SMTPServerSession): RelaySession => {
    let r = relays.get(session.id);
    if (!r) {
      r = new RelaySession(
        ctx,
        s.smtpPort,
        s.identity,
        () => ({ username: userOf(session).username, ip: peerIp(session.remoteAddress), helo: session.hostNameAppearsAs }),
        (supports) => offer.seen(supports),
      );
      relays.set(session.id, r);
    }
    return r;
  };
  /** A command to the relay; a relay that cannot be reached is a temporary failure, never a refusal. */
  const toRelay = (session: SMTPServerSession, step: (r: RelaySession) => Promise<Reply>, cb: (err?: Error | null) => void) => {
    const relay = relayOf(session);
    step(relay).then(
      (reply) => cb(reply.code < 300 ? null : replyError(reply)),
      (err: Error) => {
        relay.close();
        ctx.onUpstreamError?.('smtp');
        ctx.log.error({ err: err.message, session: session.id }, 'submission upstream unavailable');
        cb(smtpError(451, '4.4.1 Mail server is unavailable, try again later'));
      },
    );
  };
  const server: SMTPServer = new SMTPServer({
    secure,
    name: ctx.settings.hostname,
    banner: 'postern submission',
    size: s.maxMessageSize,
    rejectOversized: true,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: false,
    // smtp-server refuses AUTH before STARTTLS unless allowed; postern allows it only on
    // the networks configured for plaintext (checked again in onAuth).
    allowInsecureAuth: true,
    ...ENHANCED_STATUS_CODES,
    disabledCommands: [],
    maxClients: 10_000,
    socketTimeout: ctx.settings.preauthTimeoutMs,
    ...ctx.tls.serverOptions(),
    logger: false,
    onConnect(session, cb) {
      offer.applyTo(server);
      cb(preauth.connected(session));
    },
    onSecure(_socket, session, cb) {
      preauth.secured(session);
      cb();
    },
    onClose(session) {
      preauth.closed(session);
      live.get(session.id)?.();
      live.delete(session.id);
      void relays.get(session.id)?.quit();
      relays.delete(session.id);
    },
    onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb) {
      const ip = peerIp(session.remoteAddress);
      if (!preauth.authAllowed(session)) {
        return cb(smtpError(538, '5.7.11 Encryption required for requested authentication mechanism'));
      }
      // As on IMAP and POP3: acting for another user (a PLAIN authzid naming someone else) is
      // not offered, rather than relaying quietly as the one who logged in.
      if (auth.method === 'PLAIN' && auth.authzid && auth.authzid !== auth.username) {
        preauth.failed(session);
        return cb(smtpError(535, '5.7.8 Logging in for another user is not allowed: leave the authorization identity empty'));
      }
      ctx.auth.authenticate({ username: auth.username ?? '', secret: auth.password ?? '', scope: 'smtp', ip, protocol: 'smtp', sessionId: session.id }).then(
        (r) => {
          if (r.ok) {
            preauth.loggedIn(session);
            live.set(
              session.id,
              ctx.live.add(r.grant, r.username, session.id, (why) =>
                preauth.close(session, why === 'shutdown' ? 'Server shutting down, try again in a moment' : 'Your credentials changed: log in again'),
              ),
            );
            return cb(null, { user: { username: r.username, encryptTo: r.encryptTo } satisfies SubmitUser });
          }
          cb(smtpRefusal(r));
          if (r.reason !== 'temporary_failure') preauth.failed(session);
        },
        (err: Error) => cb(smtpError(454, `4.7.0 ${err.message}`)),
      );
    },
    onMailFrom(addr, session, cb) {
      const refused = preauth.requireLogin(session);
      if (refused) return cb(refused);
      toRelay(session, (r) => r.mail(addr), cb);
    },
    onRcptTo(addr, session, cb) {
      const refused = preauth.requireLogin(session);
      if (refused) return cb(refused);
      if (session.envelope.rcptTo.length >= s.maxRecipients) return cb(smtpError(452, `4.5.3 Too many recipients (at most ${s.maxRecipients})`));
      toRelay(session, (r) => r.rcpt(addr), cb);
    },
    onData(stream: Readable, session: SMTPServerSession, cb) {
      const refused = preauth.requireLogin(session);
      if (refused) {
        stream.resume();
        return cb(refused);
      }
      sendData(ctx, s, session, relayOf(session), stream).then(
        () => cb(null, 'Message accepted'),
        (err: SmtpError) => {
          stream.resume();
          cb(err);
        },
      );
    },
  });
  if (ctx.settings.proxyFrom) acceptProxyHeaders(server, ctx.settings.proxyFrom);
  server.on('error', (err) => ctx.log.warn({ err: err.message }, 'submission connection error'));
  ctx.tls.onReload((pem) => server.updateSecureContext(pem));
  return server;
}

type ProxyHandler = (socket: Socket, done: (err: Error | null, socketOptions?: Record<string, unknown>) => void) => void;

/**
 * PROXY protocol for submission, from the same networks and with the same reader as IMAP and
 * POP3. smtp-server reads only version 1, and only from exact addresses, so its accept step
 * (`_handleProxy`, which every new socket goes through) is given postern's reader for
 * connections from the load balancers and left as it is for everyone else.
 */
function acceptProxyHeaders(server: SMTPServer, proxyFrom: (ip: string) => boolean): void {
  const s = server as unknown as { _handleProxy?: ProxyHandler };
  const own = s._handleProxy?.bind(server);
  if (!own) throw new Error('this smtp-server version has no _handleProxy: PROXY protocol for submission cannot be set up');
  s._handleProxy = (socket, done) => {
    if (!proxyFrom(peerIp(socket.remoteAddress))) return own(socket, done);
    readProxyHeader(socket, 10_000).then(
      (peer) =>
        done(null, {
          id: randomBytes(10).toString('hex'),
          remoteAddress: peer.ip ?? socket.remoteAddress,
          remotePort: peer.ip ? peer.port : socket.remotePort,
        }),
      (err: Error) => {
        socket.destroy();
        done(err);
      },
    );
  };
}

/** The message through the session's relay connection, after its recipients were taken one by one. */
async function sendData(ctx: FrontendContext, s: SubmissionSettings, session: SMTPServerSession, relay: RelaySession, input: Readable): Promise<void> {
  // A copy is stored only after the message went out, so the whole message is kept for it.
  // Either way nothing past the size limit goes out, whole or cut.
  let raw: Buffer | null;
  try {
    raw = s.saveSent ? await readBounded(input, s.maxMessageSize) : null;
  } catch (err) {
    if (err instanceof MessageTooBig) {
      relay.close();
      throw smtpError(552, tooBigText(err.limit));
    }
    throw err;
  }
  let r;
  try {
    r = await relay.data(raw ? Readable.from([raw]) : bounded(input, s.maxMessageSize));
  } catch (err) {
    // Closing without the final dot: the relay sends nothing of it.
    relay.close();
    if (err instanceof MessageTooBig) throw smtpError(552, tooBigText(err.limit));
    throw smtpError(451, '4.4.1 Mail server connection lost, try again later');
  }
  if (r.code >= 300) throw replyError(r);
  if (raw) await saveCopy(ctx, s.saveSent, session, raw);
}

/**
 * Keeps the sent message in the user's Sent mailbox, encrypted for users with PGP on.
 * The message has gone out already: a failure here is logged, never a reason to send again.
 */
async function saveCopy(ctx: FrontendContext, mailbox: string, session: SMTPServerSession, raw: Buffer): Promise<void> {
  const { username: user, encryptTo } = userOf(session);
  try {
    const copy = encryptTo ? await ctx.seal(encryptTo, raw) : raw;
    const client = {
      ip: peerIp(session.remoteAddress),
      port: session.remotePort ?? 0,
      localIp: peerIp(session.localAddress),
      localPort: session.localPort ?? 0,
      sessionId: session.id,
    };
    await ctx.upstream.imapAppend(user, client, mailbox, copy);
  } catch (err) {
    ctx.log.warn({ err: (err as Error).message, session: session.id, user, mailbox }, 'copy of submitted mail not saved');
  }
}
