import { PassThrough, type Readable } from 'node:stream';

/** A message past the size limit: it is refused whole, never relayed cut or stored. */
export class MessageTooBig extends Error {
  constructor(readonly limit: number) {
    super(`message larger than ${limit} bytes`);
  }
}

/** The SMTP refusal for it (RFC 3463 5.3.4). */
export const tooBigText = (limit: number) => `5.3.4 Message too big: at most ${limit} bytes`;

/**
 * Reads a whole message. Past `limit` bytes it keeps reading (so that the client's DATA ends
 * and it gets an answer) but keeps nothing, and fails with MessageTooBig.
 */
export async function readBounded(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  if (size > limit) throw new MessageTooBig(limit);
  return Buffer.concat(chunks);
}

/**
 * The message as it arrives, for relaying without holding it: the stream fails with
 * MessageTooBig as soon as it passes `limit`, so that the relay stops before its final dot
 * and the upstream discards what it got. The rest of the client's data is read and dropped.
 */
export function bounded(stream: Readable, limit: number): Readable {
  const out = new PassThrough();
  // The relay may not be reading yet when the limit is passed; it meets the error when it does.
  out.on('error', () => undefined);
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (out.destroyed) return;
    if (size > limit) return void out.destroy(new MessageTooBig(limit));
    if (!out.write(chunk)) {
      stream.pause();
      out.once('drain', () => stream.resume());
    }
  });
  // Whatever happens to the relay, the client's data is read to its end.
  out.once('close', () => stream.resume());
  stream.once('end', () => out.end());
  stream.once('error', (err) => out.destroy(err));
  return out;
}
