/** Every way of cutting `input` in two, and the one-byte-at-a-time feed: how TCP may deliver it. */
export function feeds(input: Buffer): Buffer[][] {
  const out: Buffer[][] = [];
  for (let at = 0; at <= input.length; at++) out.push([input.subarray(0, at), input.subarray(at)]);
  out.push([...input].map((b) => Buffer.from([b])));
  return out;
}
