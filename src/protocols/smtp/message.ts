import type { Readable } from 'node:stream';

/** Reads a whole message, keeping at most `limit` bytes (smtp-server refuses larger mail anyway). */
export async function readBounded(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
