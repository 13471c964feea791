import { frontendSettings, lmtpSettings, submissionSettings, upstreamSettings } from '../config/settings.js';
import type { SMTPServer } from 'smtp-server';
import { sealMessage } from '../core/pgp-mime.js';
import type { Config } from '../config/load.js';
import type { Authenticator } from '../core/authenticate.js';
import type { SessionSlots, Store } from '../core/ports.js';
import type { CredentialFeed } from '../stores/credential-events.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { WorkerPool } from '../workers/worker-pool.js';
import type { FrontendContext } from './context.js';
import { listen, type Listening } from './listen.js';
import { imapSessionFactory } from './imap/imap-session.js';
import { ByteBudget, ConnectionCounter } from './limits.js';
import { LiveSessions } from './live-sessions.js';
import { pop3SessionFactory } from './pop3/pop3-session.js';
import { createLmtpServer } from './smtp/lmtp.js';
import { RelayOffer } from './smtp/relay-session.js';
import { createSubmissionServer } from './smtp/submission.js';
import { TlsManager } from './tls.js';
import { MailUpstream } from './upstream/mail-upstream.js';

export interface RunningListeners {
  tls: TlsManager;
  /** Protocol → bound ports (plain/STARTTLS first, then implicit TLS). */
  ports: Record<'imap' | 'pop3' | 'submission' | 'lmtp', number[]>;
  /** Proxied mail sessions by account. */
  live: LiveSessions;
  /** Stops accepting, tells every session to go, and closes what is left after `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/** Config port 0 means "off"; the listener helper takes -1 for that. */
const port = (p: number) => (p === 0 ? -1 : p);

function smtpListen(server: SMTPServer, p: number, host: string): Promise<Listening> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, host, () => {
      const a = server.server.address();
      resolve({
        ports: [typeof a === 'object' && a ? a.port : p],
        close: (graceMs) =>
          new Promise<void>((r) => {
            // Connections still open after the grace get smtp-server's 421 and are closed.
            server.options.closeTimeout = Math.max(1, graceMs);
            server.close(() => r());
          }),
      });
    });
  });
}

/** What the mail listeners use of the running application: no more. */
export interface ListenerDeps {
  config: Config;
  auth: Authenticator;
  log: Logger;
  slots: SessionSlots;
  /** Credential changes, to check live sessions again. */
  events: Pick<CredentialFeed, 'subscribe'>;
  metrics: Pick<Metrics, 'sessions' | 'upstreamErrors' | 'encryptions'>;
  workers: Pick<WorkerPool, 'encryptPgp'>;
  /** LMTP finds the recipient's account. */
  store: Pick<Store, 'users'>;
}

/** Starts every enabled mail listener from the configuration. */
export async function startListeners(app: ListenerDeps): Promise<RunningListeners> {
  const cfg = app.config;
  const tls = await TlsManager.create(cfg.tls, cfg.server.data_dir, cfg.server.hostname);
  const up = cfg.upstream;
  const live = new LiveSessions(app.auth, app.log, cfg.frontend.session_recheck);
  const unsubscribe = app.events.subscribe((userId) => void live.recheck(userId));
  const ctx: FrontendContext = {
    auth: app.auth,
    tls,
    log: app.log,
    preauth: new ConnectionCounter(cfg.frontend.max_preauth_per_ip),
    uploads: new ByteBudget(cfg.imap.max_append_total),
    slots: app.slots,
    live,
    preLogin: new Set(),
    onSession: (protocol, delta) => app.metrics.sessions.inc({ protocol }, delta),
    onUpstreamError: (protocol) => app.metrics.upstreamErrors.inc({ protocol }),
    seal: (key, raw) =>
      sealMessage(raw, (inner) =>
        app.workers.encryptPgp(key, inner).then(
          (armored) => (app.metrics.encryptions.inc({ result: 'ok' }), armored),
          (err: unknown) => {
            app.metrics.encryptions.inc({ result: 'error' });
            throw err;
          },
        ),
      ),
    upstream: new MailUpstream(upstreamSettings(cfg)),
    settings: frontendSettings(cfg),
  };
  const running: Listening[] = [];
  const ports: RunningListeners['ports'] = { imap: [], pop3: [], submission: [], lmtp: [] };
  try {
    if (cfg.imap.enabled) {
      const l = await listen(
        cfg.imap.host,
        { plain: port(cfg.imap.port), tls: port(cfg.imap.tls_port) },
        tls,
        imapSessionFactory(ctx, cfg.imap.max_sessions_per_user),
        ctx.settings.proxyFrom,
      );
      running.push(l);
      ports.imap = l.ports;
    }
    if (cfg.pop3.enabled) {
      const l = await listen(
        cfg.pop3.host,
        { plain: port(cfg.pop3.port), tls: port(cfg.pop3.tls_port) },
        tls,
        pop3SessionFactory(ctx, cfg.pop3.max_sessions_per_user),
        ctx.settings.proxyFrom,
      );
      running.push(l);
      ports.pop3 = l.ports;
    }
    if (cfg.submission.enabled) {
      const s = submissionSettings(cfg);
      // One look at the relay for both listeners; each session's relay connection keeps it current.
      const offer = new RelayOffer();
      offer.probe(ctx, up.smtp_port);
      for (const [p, secure] of [
        [cfg.submission.port, false],
        [cfg.submission.tls_port, true],
      ] as const) {
        if (p === 0) continue;
        const l = await smtpListen(createSubmissionServer(ctx, s, secure, offer), p, cfg.submission.host);
        running.push(l);
        ports.submission.push(...l.ports);
      }
    }
    if (cfg.lmtp.enabled) {
      const l = await smtpListen(createLmtpServer(ctx, app.store, lmtpSettings(cfg)), cfg.lmtp.port, cfg.lmtp.host);
      running.push(l);
      ports.lmtp = l.ports;
    }
  } catch (err) {
    unsubscribe();
    live.close();
    ctx.upstream.close();
    await Promise.all(running.map((l) => l.close(0)));
    throw err;
  }
  return {
    tls,
    ports,
    live,
    close: async (graceMs = 0) => {
      unsubscribe();
      live.close();
      // Stop accepting first, then tell every session to go; what is still open after the
      // grace is closed.
      ctx.upstream.close();
      const closing = running.map((l) => l.close(graceMs));
      live.endAll();
      for (const s of [...ctx.preLogin]) s.shutdown();
      await Promise.all(closing);
    },
  };
}
