import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ApiDeps } from '../deps.js';
import {
  accountProfile,
  sendProfile,
  autoconfigXml,
  autodiscoverErrorXml,
  autodiscoverRequest,
  autodiscoverXml,
  emailAddress,
  servesDomain,
  type ClientSetup,
} from '../client-setup.js';

const XML = 'application/xml; charset=utf-8';

/**
 * What mail clients ask before anyone types a server name: Thunderbird's autoconfig (at the
 * well-known path, and at /mail/ where a provider's autoconfig host serves it) and Outlook's
 * Autodiscover (POX, both spellings of its path, and the JSON redirect newer Outlooks try
 * first). Public, and answering only with what any client may know: names and ports.
 */
export const clientSetupRoutes: FastifyPluginAsync<{ setup: ClientSetup; deps: ApiDeps }> = async (api, { setup, deps }) => {
  // Autodiscover posts XML; only inside this plugin, and small.
  api.addContentTypeParser(['text/xml', 'application/xml'], { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => done(null, body));

  const autoconfig = async (req: { query: { emailaddress?: string } }, reply: FastifyReply) => {
    const email = req.query.emailaddress === undefined ? null : emailAddress(req.query.emailaddress);
    if (req.query.emailaddress !== undefined && !email)
      return reply.status(400).send({ code: 'invalid_input', message: 'emailaddress is not an email address' });
    if (email && !servesDomain(setup, email)) return reply.status(404).send({ code: 'not_found', message: 'This server does not serve that domain' });
    return reply.type(XML).send(autoconfigXml(setup, email));
  };
  const query = { type: 'object', properties: { emailaddress: { type: 'string', maxLength: 254 } } } as const;
  for (const path of ['/.well-known/autoconfig/mail/config-v1.1.xml', '/mail/config-v1.1.xml']) {
    api.get<{ Querystring: { emailaddress?: string } }>(path, { schema: { hide: true, querystring: query } }, autoconfig);
  }

  for (const path of ['/autodiscover/autodiscover.xml', '/Autodiscover/Autodiscover.xml']) {
    api.post<{ Body: unknown }>(path, { schema: { hide: true } }, async (req, reply) => {
      const email = typeof req.body === 'string' ? autodiscoverRequest(req.body) : null;
      if (!email) return reply.status(400).type(XML).send(autodiscoverErrorXml('The request names no email address'));
      if (!servesDomain(setup, email)) return reply.type(XML).send(autodiscoverErrorXml('This server does not serve that domain'));
      return reply.type(XML).send(autodiscoverXml(setup, email));
    });
  }

  api.get<{ Params: { email: string }; Querystring: { Protocol?: string } }>(
    '/autodiscover/autodiscover.json/v1.0/:email',
    { schema: { hide: true } },
    async (req, reply) => {
      const email = emailAddress(req.params.email);
      if (!email || !servesDomain(setup, email))
        return reply.status(404).send({ ErrorCode: 'InvalidUser', ErrorMessage: 'No mail account here for that address' });
      if ((req.query.Protocol ?? '').toLowerCase() !== 'autodiscoverv1') {
        return reply.status(400).send({ ErrorCode: 'ProtocolNotSupported', ErrorMessage: 'Only AutodiscoverV1 is offered' });
      }
      return { Protocol: 'AutodiscoverV1', Url: `https://${setup.host}/autodiscover/autodiscover.xml` };
    },
  );

  // What the page tells a user to type into a mail app that finds nothing by itself.
  api.get('/api/v1/client-setup', { schema: { tags: ['asps'], summary: 'The servers, ports and TLS modes mail clients connect to' } }, async () => ({
    host: setup.host,
    displayName: setup.displayName,
    username: setup.username,
    imap: setup.imap,
    pop3: setup.pop3,
    smtp: setup.smtp,
  }));

  // A phone opens its one-time setup link (from the page's QR code): the profile, once.
  api.get<{ Params: { token: string } }>(
    '/setup/:token',
    { schema: { hide: true, params: { type: 'object', properties: { token: { type: 'string', maxLength: 200 } } } } },
    async (req, reply) => {
      const { user, password } = await deps.accounts.redeemProfileLink(req.params.token, req.ip);
      return sendProfile(reply, setup.host, await accountProfile(setup, user, password, deps.profileSigner?.() ?? null));
    },
  );
};
