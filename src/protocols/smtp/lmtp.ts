import { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { isTemporary } from '../../core/errors.js';
import { isEncrypted } from '../../core/pgp-mime.js';
import type { Store } from '../../core/ports.js';
import type { User } from '../../core/types.js';
import { normalizeUsername } from '../../core/username.js';
import type { FrontendContext } from '../context.js';
import { peerIp } from '../limits.js';
import { SmtpClient, type Reply } from '../upstream/smtp-client.js';
import { MessageTooBig, bounded, readBounded, tooBigText } from './message.js';
import { replyError, smtpError, type SmtpError } from './replies.js';
import { ENHANCED_STATUS_CODES } from './enhanced-status.js';

export interface LmtpSettings {
  maxMessageSize: number;
  lmtpPort: number;
}

/** The postern user an address delivers to: the full address, else its local part. */
async function localUser(store: Pick<Store, 'users'>, address: string): Promise<User | null> {
  const full = normalizeUsername(address);
  const user = await store.users.findByName(full);
  if (user) return user;
  const local = full.split('@')[0]!;
  return local !== full ? store.users.findByName(local) : null;
}

/**
 * Inbound delivery (LMTP, RFC 2033) for local users, handed to the upstream LMTP with one
 * answer per recipient. Recipients who turned PGP on get their own copy, encrypted to their
 * key as PGP/MIME before it is stored; everyone else shares one plain transaction.
 */
export function createLmtpServer(ctx: FrontendContext, store: Pick<Store, 'users'>, s: LmtpSettings): SMTPServer {
  /**
   * Every RCPT answered 250 in the current transaction, in order, with the user it delivers
   * to. RFC 2033 wants exactly one reply after DATA per such RCPT, duplicates included, while
   * smtp-server folds repeated addresses into one envelope entry: the replies are counted
   * from here, and each user gets the message once.
   */
  const accepted = new WeakMap<SMTPServerSession, Array<{ address: string; user: string }>>();
  const server: SMTPServer = new SMTPServer({
    lmtp: true,
    name: ctx.settings.hostname,
    size: s.maxMessageSize,
    // The size is enforced here, with one refusal per accepted RCPT (smtp-server's own would
    // answer once per distinct address).
    rejectOversized: false,
    authOptional: true,
    ...ENHANCED_STATUS_CODES,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onMailFrom(_addr, session, cb) {
      accepted.set(session, []);
      cb();
    },
    onRcptTo(addr, session, cb) {
      localUser(store, addr.address).then(
        (user) => {
          if (!user) return cb(smtpError(550, `5.1.1 <${addr.address}>: no such user here`));
          accepted.get(session)?.push({ address: addr.address, user: user.username });
          cb();
        },
        (err: unknown) => cb(smtpError(451, `4.3.0 ${isTemporary(err) ? 'User store unavailable' : 'Lookup failed'}, try again later`)),
      );
    },
    onData(stream: Readable, session: SMTPServerSession, cb) {
      const rcpts = accepted.get(session) ?? [];
      const firstAddress = new Map<string, string>();
      for (const r of rcpts) if (!firstAddress.has(r.user)) firstAddress.set(r.user, r.address);
      const users = [...firstAddress.keys()];
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      // smtp-server takes one entry per recipient (text or Error) for LMTP; its types say string.
      const answer = (perUser: Map<string, string | Error>) => cb(null, rcpts.map((r) => perUser.get(r.user)!) as never);
      const mta = { ip: peerIp(session.remoteAddress), helo: session.hostNameAppearsAs || 'unknown' };
      deliver(ctx, store, s, { from, to: [...firstAddress.values()] }, stream, mta).then(
        (replies) => answer(new Map(users.map((u, i) => [u, replies[i]!.code < 300 ? replies[i]!.text : replyError(replies[i]!)]))),
        (err: SmtpError) => {
          stream.resume();
          answer(new Map(users.map((u) => [u, err])));
        },
      );
    },
  });
  server.on('error', (err) => ctx.log.warn({ err: err.message }, 'lmtp connection error'));
  return server;
}

async function deliver(
  ctx: FrontendContext,
  store: Pick<Store, 'users'>,
  s: LmtpSettings,
  env: { from: string; to: string[] },
  stream: Readable,
  mta: { ip: string; helo: string },
): Promise<Reply[]> {
  let keys: Array<string | null>;
  try {
    keys = (await Promise.all(env.to.map((a) => localUser(store, a)))).map((u) => (u?.pgp?.encrypt ? u.pgp.publicKey : null));
  } catch {
    throw smtpError(451, '4.3.0 User store unavailable, try again later');
  }
  let client: SmtpClient;
  try {
    client = await SmtpClient.open(ctx.upstream.endpoint(s.lmtpPort), { lmtp: true, heloName: ctx.settings.hostname });
    // The mailbox server's Received header then names the MTA that delivered, not postern.
    if (client.supports('XCLIENT')) await client.xclient({ ADDR: mta.ip, HELO: mta.helo }, mta.helo);
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, 'lmtp upstream unavailable');
    throw smtpError(451, '4.4.1 Mailbox server is unavailable, try again later');
  }
  try {
    const replies = keys.every((k) => k === null)
      ? (await client.send(env, bounded(stream, s.maxMessageSize))).perRecipient
      : await sendEncrypted(ctx, client, env, keys, await readBounded(stream, s.maxMessageSize));
    await client.quit();
    return replies;
  } catch (err) {
    // Closing without the final dot: the upstream stores nothing of it.
    client.close();
    if (err instanceof MessageTooBig) throw smtpError(552, tooBigText(err.limit));
    throw smtpError(451, `4.4.1 Delivery interrupted (${(err as Error).message}), try again later`);
  }
}

/** One plain transaction for recipients without PGP, one encrypted copy each for the rest. */
async function sendEncrypted(
  ctx: FrontendContext,
  client: SmtpClient,
  env: { from: string; to: string[] },
  keys: Array<string | null>,
  raw: Buffer,
): Promise<Reply[]> {
  const replies = new Map<number, Reply>();
  const alreadyEncrypted = isEncrypted(raw);
  const plain = env.to.map((rcpt, i) => ({ rcpt, i })).filter(({ i }) => alreadyEncrypted || keys[i] === null);
  if (plain.length) {
    const r = await client.send({ from: env.from, to: plain.map((p) => p.rcpt) }, Readable.from([raw]));
    plain.forEach((p, k) => replies.set(p.i, r.perRecipient[k]!));
  }
  if (!alreadyEncrypted) {
    for (const [i, key] of keys.entries()) {
      if (key === null) continue;
      const encrypted = await ctx.seal(key, raw);
      const r = await client.send({ from: env.from, to: [env.to[i]!] }, Readable.from([encrypted]));
      replies.set(i, r.perRecipient[0]!);
    }
  }
  return env.to.map((_, i) => replies.get(i)!);
}
