// The IMAP session after login for a user whose stored mail is encrypted: like
// splice(), but every message the client uploads with APPEND (Drafts, Sent, ...) is sealed
// as PGP/MIME before the upstream sees it. Hand-written because no npm package proxies IMAP;
// it parses only what it must: line ends and literals both ways, and the APPEND command.
import type { Socket } from 'node:net';
import type { ByteBudget } from '../limits.js';
import type { UpstreamSession } from '../upstream/mail-upstream.js';

export interface EncryptingRelaySettings {
  /** Largest message one APPEND may upload, in bytes; larger ones get NO [TOOBIG]. */
  maxMessageSize: number;
  /** Seals one message for storage (PGP/MIME, or unchanged if already encrypted). */
  seal: (raw: Buffer) => Promise<Buffer>;
  /** Bytes all sessions may hold at once while reading and sealing uploads. */
  budget: ByteBudget;
}

/**
 * Command lines are buffered whole to find APPEND and literal markers. Dovecot itself refuses
 * lines over 64 KiB, so this bound never refuses what the upstream would accept.
 */
const MAX_COMMAND_LINE = 1024 * 1024;
/** An upstream line held back while a "+" go-ahead is awaited is short; longer ones pass. */
const MAX_HELD_LINE = 64 * 1024;
const LF = 0x0a;
const RESPONSE_LITERAL = /\{(\d{1,10})\}\r?\n$/;
/** How long the upstream may take to answer a literal before the session is given up. */
const GO_AHEAD_TIMEOUT_MS = 30_000;
const COMMAND_LITERAL = /(~?)\{(\d{1,10})(\+?)\}\r?\n$/;

/**
 * Commands a sealed session passes on: every one of them reads or rearranges mail already
 * stored, none stores a message of the client's. APPEND is sealed; anything else (REPLACE,
 * COMPRESS, extensions this list does not know) is refused, so that no upload the upstream
 * might offer can store a message in clear. "UID x" is checked by its x; a bare DONE ends IDLE.
 */
const PASSED_COMMANDS = new Set([
  'CAPABILITY',
  'NOOP',
  'LOGOUT',
  'ID',
  'ENABLE',
  'NAMESPACE',
  'IDLE',
  'SELECT',
  'EXAMINE',
  'CREATE',
  'DELETE',
  'RENAME',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'LIST',
  'LSUB',
  'STATUS',
  'CHECK',
  'CLOSE',
  'UNSELECT',
  'EXPUNGE',
  'SEARCH',
  'ESEARCH',
  'SORT',
  'THREAD',
  'FETCH',
  'STORE',
  'COPY',
  'MOVE',
  'GETQUOTA',
  'GETQUOTAROOT',
  'GETACL',
  'SETACL',
  'DELETEACL',
  'LISTRIGHTS',
  'MYRIGHTS',
  'GETMETADATA',
  'SETMETADATA',
]);
const PASSED_UID_COMMANDS = new Set(['FETCH', 'SEARCH', 'STORE', 'COPY', 'MOVE', 'EXPUNGE', 'SORT', 'THREAD']);

/** Capabilities a sealed session offers: those of the commands above, and none that upload otherwise. */
const PASSED_CAPABILITIES =
  /^(IMAP4(rev1|rev2)?|ID|ENABLE|IDLE|NAMESPACE|LITERAL[+-]|UIDPLUS|UNSELECT|CHILDREN|MOVE|SPECIAL-USE|LIST-EXTENDED|LIST-STATUS|ESEARCH|SEARCHRES|SORT(=DISPLAY)?|ESORT|THREAD=\S+|CONDSTORE|QRESYNC|QUOTA|QUOTA=\S+|ACL|RIGHTS=\S+|METADATA|METADATA-SERVER|WITHIN|CONTEXT=\S+|I18NLEVEL=\d|SNIPPET=\S+|PREVIEW(=\S+)?|STATUS=SIZE|OBJECTID|SAVEDATE|MULTIAPPEND|BINARY|APPENDLIMIT(=\d+)?|SASL-IR|AUTH=\S+|LOGIN-REFERRALS|MAILBOX-REFERRALS|UIDONLY)$/i;

/** Whether a sealed session passes this command line on (the first line of a command). */
export function passedCommand(line: string): boolean {
  if (/^DONE\r?\n$/i.test(line)) return true;
  const m = /^\S+ +(\S+)(?: +(\S+))?/.exec(line.replace(/\r?\n$/, ''));
  if (!m) return false;
  const name = m[1]!.toUpperCase();
  if (name === 'UID') return PASSED_UID_COMMANDS.has((m[2] ?? '').toUpperCase());
  return PASSED_COMMANDS.has(name);
}

/**
 * Upstream → client. Passes bytes on as they come while tracking where one response ends,
 * so postern can put lines of its own between responses (a "+" go-ahead for the client's
 * literal, a refusal) and can take the upstream's "+" for a literal postern sends.
 */
export class ResponseStream {
  private literalLeft = 0;
  private atStart = true;
  /** The last bytes of the current line, to find a literal marker at its end. */
  private tail = '';
  private held: Buffer[] | null = null;
  private heldSize = 0;
  private injections: string[] = [];
  private waiter: { tag: string; passOn: boolean; resolve: (go: boolean) => void } | null = null;

  constructor(
    private readonly write: (b: Buffer | string) => void,
    /** Called when the upstream neither accepts nor refuses a literal in time. */
    private readonly onStuck: () => void,
  ) {}

  /** Sends a line of postern's own to the client between two upstream responses. */
  inject(line: string): void {
    this.injections.push(`${line}\r\n`);
    if (this.atStart && !this.held) this.flushInjections();
  }

  /**
   * Resolves true when the upstream's "+" go-ahead arrives, false when the tagged answer for
   * `tag` arrives instead (the upstream refused the command). The go-ahead reaches the
   * client only with `passOn` (the literal is the client's own, not one postern sends).
   */
  continuation(tag: string, passOn = false): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.settle(false);
        this.onStuck();
      }, GO_AHEAD_TIMEOUT_MS);
      const done = (go: boolean) => {
        clearTimeout(timer);
        resolve(go);
      };
      this.waiter = { tag, passOn, resolve: done };
    });
  }

  /** The upstream closed: nobody waits for a go-ahead any more. */
  end(): void {
    this.settle(false);
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.literalLeft > 0) {
        const n = Math.min(this.literalLeft, chunk.length - i);
        this.write(chunk.subarray(i, i + n));
        this.literalLeft -= n;
        i += n;
        continue;
      }
      if (this.atStart) this.beginLine();
      const nl = chunk.indexOf(LF, i);
      const end = nl < 0 ? chunk.length : nl + 1;
      this.linePart(chunk.subarray(i, end));
      i = end;
      if (nl >= 0) this.lineEnded();
    }
    if (this.atStart) this.flushInjections();
  }

  private beginLine(): void {
    this.flushInjections();
    this.atStart = false;
    this.tail = '';
    if (this.waiter) this.held = [];
  }

  private linePart(part: Buffer): void {
    this.tail = (this.tail + part.toString('latin1')).slice(-24);
    if (!this.held) return this.write(part);
    this.held.push(part);
    this.heldSize += part.length;
    if (this.heldSize > MAX_HELD_LINE) this.release();
  }

  private lineEnded(): void {
    const literal = RESPONSE_LITERAL.exec(this.tail);
    if (this.held) {
      const line = Buffer.concat(this.held);
      this.held = null;
      this.heldSize = 0;
      if (!literal && line[0] === 0x2b /* "+" */) {
        if (this.waiter?.passOn) this.write(line);
        this.settle(true);
      } else {
        this.write(line);
        // An untagged BAD answers a command whose tag the upstream could not read.
        const text = line.toString('latin1');
        if (this.waiter && (text.startsWith(`${this.waiter.tag} `) || /^\* BAD /i.test(text))) this.settle(false);
      }
    }
    if (literal) {
      this.literalLeft = Number(literal[1]);
      this.tail = '';
    } else {
      this.atStart = true;
    }
  }

  private release(): void {
    for (const part of this.held ?? []) this.write(part);
    this.held = null;
    this.heldSize = 0;
  }

  private settle(go: boolean): void {
    const w = this.waiter;
    this.waiter = null;
    w?.resolve(go);
  }

  private flushInjections(): void {
    for (const line of this.injections) this.write(line);
    this.injections = [];
  }
}

interface Segment {
  /** Command text up to the literal (or to the end of the command), without the marker. */
  text: string;
  literal: { data: Buffer[]; binary: boolean; message: boolean } | null;
}

interface AppendCommand {
  tag: string;
  segments: Segment[];
  /** Bytes of the literal being read. */
  left: number;
  messageBytes: number;
  /** Bytes reserved in the shared budget, given back when the command ends. */
  reserved: number;
  /** Set when the command is refused; its remaining bytes are read and dropped. */
  refusal: string | null;
}

/**
 * Client → upstream. Passes every command on as it is, except APPEND, which is read whole,
 * its messages sealed, and sent on with new literal sizes; and COMPRESS, refused, since a
 * compressed stream could not be read for APPEND.
 */
export class CommandStream {
  private buf: Buffer = Buffer.alloc(0);
  private passLeft = 0;
  private commandStart = true;
  /** Tag of the command being read, for the upstream's answer to a literal of it. */
  private tag = '';
  private append: AppendCommand | null = null;
  /** A command being refused: its tag, the answer, and literal bytes still to drop. */
  private refusing: { tag: string; answer: string; dropLeft: number } | null = null;
  private busy = false;
  private closed = false;
  /** Set once the client has sent its last byte: run when everything it sent is passed on. */
  private ended: (() => void) | null = null;

  constructor(
    private readonly s: EncryptingRelaySettings,
    private readonly responses: ResponseStream,
    private readonly toUpstream: (b: Buffer | string) => void,
    private readonly pauseClient: (paused: boolean) => void,
    private readonly fail: (line: string) => void,
    /** The session's capabilities as offered (filtered), for CAPABILITY asked after login. */
    private readonly capabilities: string,
  ) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.pump();
  }

  close(): void {
    this.closed = true;
    if (this.append) this.release(this.append);
  }

  /**
   * The client half-closed after its last command: `done` runs once every complete command
   * it sent has gone on to the upstream (an APPEND being sealed included). A command left
   * incomplete can never finish and is dropped.
   */
  finish(done: () => void): void {
    this.ended = done;
    this.pump();
  }

  private release(a: AppendCommand): void {
    this.s.budget.give(a.reserved);
    a.reserved = 0;
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private pump(): void {
    this.pumpCommands();
    if (this.ended && !this.busy && !this.closed) {
      const done = this.ended;
      this.ended = null;
      done();
    }
  }

  private pumpCommands(): void {
    while (!this.busy && !this.closed && this.buf.length) {
      if (this.passLeft > 0) {
        const part = this.take(Math.min(this.passLeft, this.buf.length));
        this.passLeft -= part.length;
        this.toUpstream(part);
        continue;
      }
      if (this.append && this.append.left > 0) {
        this.appendBytes(this.take(Math.min(this.append.left, this.buf.length)));
        continue;
      }
      if (this.refusing && this.refusing.dropLeft > 0) {
        this.refusing.dropLeft -= this.take(Math.min(this.refusing.dropLeft, this.buf.length)).length;
        continue;
      }
      const nl = this.buf.indexOf(LF);
      if (nl < 0) {
        if (this.buf.length > MAX_COMMAND_LINE) this.fail('* BYE Command line too long.');
        return;
      }
      if (nl > MAX_COMMAND_LINE) return this.fail('* BYE Command line too long.');
      this.onLine(this.take(nl + 1));
    }
  }

  private onLine(line: Buffer): void {
    const text = line.toString('latin1');
    const literal = COMMAND_LITERAL.exec(text);
    if (this.append) return this.appendLine(text, literal);
    if (this.refusing) return this.refuseLine(literal);
    if (this.commandStart) {
      const m = /^(\S+) (APPEND)(?=[ \r\n])/i.exec(text);
      if (m) {
        this.append = { tag: m[1]!, segments: [], left: 0, messageBytes: 0, reserved: 0, refusal: null };
        return this.appendLine(text, literal);
      }
      const asked = /^(\S+) CAPABILITY\r?\n$/i.exec(text);
      if (asked) {
        // Answered here, so that the list is the filtered one and not the upstream's.
        this.responses.inject(`* CAPABILITY ${this.capabilities}`);
        return this.responses.inject(`${asked[1]} OK Capability completed.`);
      }
      if (!passedCommand(text)) {
        const [tag, name] = text.trim().split(/\s+/);
        const answer =
          tag && name && /^[A-Za-z][\w.-]{0,40}$/.test(name)
            ? `${tag} NO [CANNOT] ${name.toUpperCase()} is not available while stored mail is encrypted.`
            : `${tag || '*'} BAD Error in IMAP command.`;
        this.refusing = { tag: tag || '*', answer, dropLeft: 0 };
        return this.refuseLine(literal);
      }
    }
    if (this.commandStart) this.tag = /^\S+/.exec(text)?.[0] ?? '';
    if (!literal) {
      this.commandStart = true;
      return this.toUpstream(line);
    }
    this.commandStart = false;
    const size = Number(literal[2]);
    if (literal[3] === '+') {
      this.toUpstream(line);
      this.passLeft = size;
      return;
    }
    // The client waits for the upstream's go-ahead, and so does the relay: if the upstream
    // refuses the literal instead, the client's next bytes are a new command, not literal data.
    void this.awaitGoAhead(line, size);
  }

  /**
   * A line of a refused command: nothing reaches the upstream. A literal the client sends
   * without waiting (LITERAL+) is read and dropped; one it waits for gets the refusal instead
   * of a go-ahead, which ends the command (RFC 9051 section 7.5).
   */
  private refuseLine(literal: RegExpExecArray | null): void {
    const r = this.refusing!;
    if (literal && literal[3] === '+') {
      r.dropLeft = Number(literal[2]);
      return;
    }
    this.refusing = null;
    this.commandStart = true;
    this.responses.inject(r.answer);
  }

  private async awaitGoAhead(line: Buffer, size: number): Promise<void> {
    this.busy = true;
    this.pauseClient(true);
    const go = this.responses.continuation(this.tag, true);
    this.toUpstream(line);
    if (await go) this.passLeft = size;
    else this.commandStart = true;
    this.busy = false;
    if (!this.closed) {
      this.pauseClient(false);
      this.pump();
    }
  }

  private appendLine(text: string, literal: RegExpExecArray | null): void {
    const a = this.append!;
    if (!literal) {
      a.segments.push({ text: text.replace(/\r?\n$/, ''), literal: null });
      return void this.finishAppend(a);
    }
    const before = text.slice(0, text.length - literal[0].length);
    const size = Number(literal[2]);
    // The first literal right after "APPEND" is the mailbox name, not a message.
    const message = a.segments.length > 0 || !/^\S+ +APPEND *$/i.test(before);
    if (/ CATENATE *\(/i.test(before)) a.refusal ??= '[CANNOT] CATENATE is not available while stored mail is encrypted.';
    if (message && a.messageBytes + size > this.s.maxMessageSize) a.refusal ??= `[TOOBIG] Message larger than ${this.s.maxMessageSize} bytes.`;
    if (!message && size > MAX_COMMAND_LINE) a.refusal ??= '[TOOBIG] Mailbox name too long.';
    if (!a.refusal && this.s.budget.take(size)) a.reserved += size;
    else a.refusal ??= '[UNAVAILABLE] Too many uploads are being encrypted right now, try again shortly.';
    if (message) a.messageBytes += size;
    a.segments.push({ text: before, literal: { data: [], binary: literal[1] === '~', message } });
    const sync = literal[3] !== '+';
    if (a.refusal && sync) {
      // The client sends no literal after a refusal in place of the go-ahead: the command ends here.
      this.release(a);
      this.append = null;
      this.commandStart = true;
      return this.responses.inject(`${a.tag} NO ${a.refusal}`);
    }
    a.left = size;
    if (sync) this.responses.inject('+ Ready for literal data');
  }

  private appendBytes(bytes: Buffer): void {
    const a = this.append!;
    a.left -= bytes.length;
    if (!a.refusal) a.segments[a.segments.length - 1]!.literal!.data.push(bytes);
  }

  /** Seals the messages, then sends the command on, one synchronizing literal at a time. */
  private async finishAppend(a: AppendCommand): Promise<void> {
    this.busy = true;
    this.pauseClient(true);
    try {
      if (a.refusal) return this.responses.inject(`${a.tag} NO ${a.refusal}`);
      let payloads: Buffer[];
      try {
        payloads = await Promise.all(
          a.segments.map((seg) => (seg.literal?.message ? this.s.seal(Buffer.concat(seg.literal.data)) : Buffer.concat(seg.literal?.data ?? []))),
        );
      } catch {
        // Never store in clear what should be encrypted: the client keeps its copy and retries.
        return this.responses.inject(`${a.tag} NO [UNAVAILABLE] The message could not be encrypted, try again later.`);
      }
      await this.sendAppend(a, payloads);
    } finally {
      this.release(a);
      this.append = null;
      this.commandStart = true;
      this.busy = false;
      if (!this.closed) {
        this.pauseClient(false);
        this.pump();
      }
    }
  }

  private async sendAppend(a: AppendCommand, payloads: Buffer[]): Promise<void> {
    for (const [i, seg] of a.segments.entries()) {
      if (!seg.literal) {
        this.toUpstream(`${seg.text}\r\n`);
        continue;
      }
      const go = this.responses.continuation(a.tag);
      this.toUpstream(`${seg.text}${seg.literal.binary ? '~' : ''}{${payloads[i]!.length}}\r\n`);
      // A refusal (e.g. no such mailbox) came as the tagged answer and reached the client.
      if (!(await go) || this.closed) return;
      this.toUpstream(payloads[i]!);
    }
  }
}

/**
 * Carries an authenticated IMAP session between client and upstream, sealing uploaded
 * messages on the way; closes both sides together.
 */
export function spliceEncrypting(
  client: Socket,
  up: UpstreamSession,
  clientPending: Buffer,
  s: EncryptingRelaySettings,
  onClose: () => void,
  clientEnded = false,
): void {
  let closed = false;
  const upstream = up.socket;
  // The client is read only while the upstream takes bytes and no APPEND is being sealed.
  let upstreamFull = false;
  let sealing = false;
  const readClient = () => (upstreamFull || sealing ? client.pause() : client.resume());
  let clientFull = false;
  const responses = new ResponseStream(
    (b) => {
      if (client.write(b) || clientFull) return;
      clientFull = true;
      upstream.pause();
      client.once('drain', () => {
        clientFull = false;
        upstream.resume();
      });
    },
    () => {
      client.write('* BYE The mail server did not answer, try again.\r\n');
      close();
    },
  );
  const toUpstream = (b: Buffer | string) => {
    if (upstream.write(b) || upstreamFull) return;
    upstreamFull = true;
    readClient();
    upstream.once('drain', () => {
      upstreamFull = false;
      readClient();
    });
  };
  const pauseForAppend = (paused: boolean) => {
    sealing = paused;
    readClient();
  };
  const commands = new CommandStream(
    s,
    responses,
    toUpstream,
    pauseForAppend,
    (line) => {
      client.write(`${line}\r\n`);
      close();
    },
    inspectableCapabilities(up.capabilities),
  );
  const close = () => {
    if (closed) return;
    closed = true;
    commands.close();
    responses.end();
    client.destroy();
    upstream.destroy();
    onClose();
  };
  client.setTimeout(0);
  client.on('data', (chunk: Buffer) => commands.push(chunk));
  // Copied: the response stream may hold a chunk back, and the read buffer is reused.
  up.read((chunk) => {
    responses.push(Buffer.from(chunk));
    return true;
  });
  if (up.pending.length) responses.push(up.pending);
  if (clientPending.length) commands.push(clientPending);
  for (const sock of [client, upstream]) {
    sock.on('error', close);
    sock.on('close', close);
  }
  // A client that half-closes after its last commands (`printf … | nc -N`) still gets every
  // answer: its commands go on, the upstream is half-closed in turn, and once the upstream has
  // said all it will, that reaches the client before its side is closed.
  const clientDone = () => commands.finish(() => upstream.end());
  if (clientEnded) clientDone();
  else client.on('end', clientDone);
  upstream.on('end', () => {
    if (closed) return;
    closed = true;
    commands.close();
    responses.end();
    upstream.destroy();
    client.end();
    // A client that never reads its last answers must not hold the socket for ever.
    setTimeout(() => client.destroy(), 10_000).unref();
    onClose();
  });
}

/**
 * The capabilities a client sees after login when its session is read: only those on the
 * allowlist above. COMPRESS (the stream could not be read), CATENATE (parts of a message
 * cannot be sealed), REPLACE and whatever else uploads, or is not known, are left out.
 */
export function inspectableCapabilities(capabilities: string): string {
  return capabilities
    .split(' ')
    .filter((c) => PASSED_CAPABILITIES.test(c))
    .join(' ');
}
