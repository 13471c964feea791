import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// smtp-server, with ENHANCEDSTATUSCODES on, puts its own enhanced code (RFC 2034) before
// every reply text. postern's replies carry the precise one already ("454 4.7.0 …"), and so
// do the relay's that it passes on ("550 5.1.1 …"): a second one would garble them, and the
// library's guess from the reply code alone ("5.1.1" for every 550) would be wrong. It has no
// option for a reply that brings its own, so its one write method is wrapped once: a reply
// whose text starts with an enhanced code goes out as it is, any other gets the library's.
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}(\s|$)/;

type Send = (this: unknown, code: number, data?: string | string[] | null, context?: string | false) => void;
const proto = SMTPConnection.prototype as unknown as { send: Send; posternEnhanced?: true };
if (!proto.posternEnhanced) {
  const send = proto.send;
  proto.send = function (code, data, context) {
    const first = Array.isArray(data) ? data[0] : data;
    return send.call(this, code, data, typeof first === 'string' && ENHANCED.test(first) ? false : context);
  };
  proto.posternEnhanced = true;
}

/** smtp-server options that offer ENHANCEDSTATUSCODES, with the wrapper above in place. */
export const ENHANCED_STATUS_CODES = { hideENHANCEDSTATUSCODES: false } as const;
