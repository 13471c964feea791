// The documents that set a mail client up in one step: Thunderbird's autoconfig, Microsoft's
// Autodiscover (the POX request and answer, and the JSON redirect), and Apple's .mobileconfig
// profile, signed with the server's certificate when there is one. XML by fast-xml-parser,
// plists by plist, the CMS signature by pkijs over WebCrypto (the certificate may be EC,
// which node-forge cannot sign with).
import { createHash, randomUUID, webcrypto, X509Certificate, createPrivateKey } from 'node:crypto';
import * as asn1js from 'asn1js';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import * as pkijs from 'pkijs';
import type { FastifyReply } from 'fastify';
import { build as buildPlist } from 'plist';

export type ClientTls = 'implicit' | 'starttls';

/** What clients are told to connect to: the public name and ports, not the listeners'. */
export interface ClientSetup {
  host: string;
  displayName: string;
  /** Mail domains served here; empty: any. */
  domains: string[];
  /** What users sign in with: their whole address or its local part. */
  username: 'address' | 'localpart';
  imap: { port: number; tls: ClientTls };
  pop3: { port: number; tls: ClientTls };
  smtp: { port: number; tls: ClientTls };
}

const builder = new XMLBuilder({ ignoreAttributes: false, format: true, suppressEmptyNode: true });
const xml = (doc: object) => `<?xml version="1.0" encoding="UTF-8"?>\n${builder.build(doc) as string}`;

/** An email address as a client may send it: one @, no spaces or markup; null otherwise. */
export function emailAddress(raw: unknown): string | null {
  if (typeof raw !== 'string' || raw.length > 254) return null;
  const v = raw.trim();
  return /^[^\s@<>&"']+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/.test(v) ? v : null;
}

/** Whether this server serves the address's domain (any, when no domains are configured). */
export function servesDomain(s: ClientSetup, email: string): boolean {
  const domain = email.slice(email.lastIndexOf('@') + 1).toLowerCase();
  return s.domains.length === 0 || s.domains.some((d) => d.toLowerCase() === domain);
}

const loginFor = (s: ClientSetup, email: string) => (s.username === 'address' ? email : email.slice(0, email.lastIndexOf('@')));

/**
 * Thunderbird's clientConfig (version 1.1), as its autoconfig lookup expects it: IMAP, then
 * POP3, then SMTP; the user name from the address the client was given, or the placeholder
 * Thunderbird fills in itself.
 */
export function autoconfigXml(s: ClientSetup, email: string | null): string {
  const username = email ? loginFor(s, email) : s.username === 'address' ? '%EMAILADDRESS%' : '%EMAILLOCALPART%';
  const socket = (tls: ClientTls) => (tls === 'implicit' ? 'SSL' : 'STARTTLS');
  const server = (type: string, p: { port: number; tls: ClientTls }) => ({
    '@_type': type,
    hostname: s.host,
    port: p.port,
    socketType: socket(p.tls),
    authentication: 'password-cleartext',
    username,
  });
  const domains = s.domains.length ? s.domains : email ? [email.slice(email.lastIndexOf('@') + 1)] : [s.host];
  return xml({
    clientConfig: {
      '@_version': '1.1',
      emailProvider: {
        '@_id': domains[0],
        domain: domains,
        displayName: s.displayName,
        displayShortName: s.displayName,
        incomingServer: [server('imap', s.imap), server('pop3', s.pop3)],
        outgoingServer: server('smtp', s.smtp),
      },
    },
  });
}

const parser = new XMLParser({ removeNSPrefix: true, processEntities: false, ignoreDeclaration: true, parseTagValue: false });

/** The address an Outlook POX Autodiscover request asks about; null when it is not one. */
export function autodiscoverRequest(body: string): string | null {
  try {
    const doc = parser.parse(body) as { Autodiscover?: { Request?: { EMailAddress?: unknown } } };
    return emailAddress(doc.Autodiscover?.Request?.EMailAddress);
  } catch {
    return null;
  }
}

/** The POX Autodiscover answer (outlook/responseschema/2006a) with IMAP, POP3 and SMTP. */
export function autodiscoverXml(s: ClientSetup, email: string): string {
  const login = loginFor(s, email);
  const protocol = (type: string, p: { port: number; tls: ClientTls }) => ({
    Type: type,
    Server: s.host,
    Port: p.port,
    DomainRequired: 'off',
    LoginName: login,
    SPA: 'off',
    SSL: 'on',
    // Outlook reads "SSL" as TLS from the start and "TLS" as STARTTLS.
    Encryption: p.tls === 'implicit' ? 'SSL' : 'TLS',
    AuthRequired: 'on',
  });
  return xml({
    Autodiscover: {
      '@_xmlns': 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006',
      Response: {
        '@_xmlns': 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a',
        User: { DisplayName: email },
        Account: {
          AccountType: 'email',
          Action: 'settings',
          Protocol: [protocol('IMAP', s.imap), protocol('POP3', s.pop3), protocol('SMTP', s.smtp)],
        },
      },
    },
  });
}

/** Autodiscover's error answer for an address this server does not serve. */
export function autodiscoverErrorXml(message: string): string {
  return xml({
    Autodiscover: {
      '@_xmlns': 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006',
      Response: {
        Error: { '@_Time': new Date().toISOString().slice(11, 19), '@_Id': '1', ErrorCode: '600', Message: message, DebugData: '' },
      },
    },
  });
}

export interface ProfileAccount {
  /** The address the account is known by, and what the client signs in with. */
  email: string;
  username: string;
  /** The app password the profile carries (made for it, shown nowhere else). */
  password: string;
  /** The person's name, for the From header. */
  name: string;
}

/** Reverse-DNS identifiers, as profiles name their payloads. */
const reverse = (host: string) => host.split('.').reverse().join('.');

/** The .mobileconfig property list that adds the account to Apple Mail (IMAP and SMTP). */
export function mobileconfigPlist(s: ClientSetup, a: ProfileAccount): string {
  const id = reverse(s.host);
  const mail = randomUUID().toUpperCase();
  const profile = randomUUID().toUpperCase();
  return buildPlist({
    PayloadContent: [
      {
        PayloadType: 'com.apple.mail.managed',
        PayloadVersion: 1,
        PayloadIdentifier: `${id}.mail.${mail}`,
        PayloadUUID: mail,
        PayloadDisplayName: `${s.displayName} mail`,
        EmailAccountType: 'EmailTypeIMAP',
        EmailAccountDescription: `${s.displayName} (${a.email})`,
        EmailAccountName: a.name,
        EmailAddress: a.email,
        IncomingMailServerHostName: s.host,
        IncomingMailServerPortNumber: s.imap.port,
        IncomingMailServerUseSSL: true,
        IncomingMailServerAuthentication: 'EmailAuthPassword',
        IncomingMailServerUsername: a.username,
        IncomingPassword: a.password,
        OutgoingMailServerHostName: s.host,
        OutgoingMailServerPortNumber: s.smtp.port,
        OutgoingMailServerUseSSL: true,
        OutgoingMailServerAuthentication: 'EmailAuthPassword',
        OutgoingMailServerUsername: a.username,
        OutgoingPassword: a.password,
        OutgoingPasswordSameAsIncomingPassword: true,
        SMIMEEnabled: false,
        allowMailDrop: true,
      },
    ],
    PayloadDisplayName: `${s.displayName}: ${a.email}`,
    PayloadDescription: `Adds the mail account ${a.email} with an app password made for this device.`,
    PayloadIdentifier: `${id}.profile.${profile}`,
    PayloadOrganization: s.displayName,
    PayloadType: 'Configuration',
    PayloadUUID: profile,
    PayloadVersion: 1,
    PayloadRemovalDisallowed: false,
  });
}

/**
 * The profile for an account and its new app password, signed when a signer is given. The
 * address is the user name when it is one, else the account's email, else user@first domain.
 */
export async function accountProfile(
  s: ClientSetup,
  user: { username: string; email: string | null; displayName: string },
  password: string,
  signer: { cert: string; key: string } | null,
): Promise<Buffer> {
  const email = user.username.includes('@') ? user.username : (user.email ?? `${user.username}@${s.domains[0] ?? s.host}`);
  const profile = Buffer.from(mobileconfigPlist(s, { email, username: user.username, password, name: user.displayName || user.username }));
  return signer ? signProfile(profile, signer.cert, signer.key) : profile;
}

/** Sends a profile as the download Apple devices install. */
export function sendProfile(reply: FastifyReply, host: string, profile: Buffer): FastifyReply {
  return reply
    .header('content-disposition', `attachment; filename="${host}.mobileconfig"`)
    .header('cache-control', 'no-store')
    .type('application/x-apple-aspen-config')
    .send(profile);
}

/** PEM blocks of one kind, in order (a chain file holds the certificate, then its issuers). */
function pemBlocks(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

const ab = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/**
 * The profile as CMS SignedData (the content inside), signed with the certificate's key and
 * carrying its chain, as Apple devices verify it. RSA and EC (P-256, P-384) keys.
 */
export async function signProfile(profile: Buffer, certPem: string, keyPem: string): Promise<Buffer> {
  const crypto = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as Crypto });
  const chain = pemBlocks(certPem, 'CERTIFICATE').map((der) => pkijs.Certificate.fromBER(ab(der)));
  const leaf = chain[0];
  if (!leaf) throw new Error('no certificate in the PEM');
  const key = createPrivateKey(keyPem);
  const details = key.asymmetricKeyDetails ?? {};
  const algorithm =
    key.asymmetricKeyType === 'ec'
      ? { name: 'ECDSA', namedCurve: details.namedCurve === 'secp384r1' ? 'P-384' : 'P-256', hash: 'SHA-256' }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign']);
  const digest = createHash('sha256').update(profile).digest();
  const signed = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: '1.2.840.113549.1.7.1',
      eContent: new asn1js.OctetString({ valueHex: ab(profile) }),
    }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: leaf.issuer, serialNumber: leaf.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({
          type: 0,
          attributes: [
            new pkijs.Attribute({ type: '1.2.840.113549.1.9.3', values: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.1' })] }),
            new pkijs.Attribute({ type: '1.2.840.113549.1.9.5', values: [new asn1js.UTCTime({ valueDate: new Date() })] }),
            new pkijs.Attribute({ type: '1.2.840.113549.1.9.4', values: [new asn1js.OctetString({ valueHex: ab(digest) })] }),
          ],
        }),
      }),
    ],
    certificates: chain,
  });
  await signed.sign(signingKey, 0, 'SHA-256', undefined, crypto);
  const content = new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.SIGNED_DATA, content: signed.toSchema(true) });
  return Buffer.from(content.toSchema().toBER(false));
}

/** Whether `certPem` holds a certificate (a quick check before signing with it). */
export function isCertificate(certPem: string): boolean {
  try {
    new X509Certificate(certPem);
    return true;
  } catch {
    return false;
  }
}
