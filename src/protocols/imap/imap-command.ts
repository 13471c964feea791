// Parsing of IMAP commands before login: just enough of RFC 9051's grammar for CAPABILITY,
// LOGIN (atoms, quoted strings, literals incl. LITERAL+), AUTHENTICATE, ID, STARTTLS, LOGOUT.
// Hand-written because the pre-auth grammar is tiny and must be strictly bounded; the IMAP
// libraries on npm are clients (imapflow) or full servers.
import { LineTooLong, type LineReader } from '../line-reader.js';

export interface ImapCommand {
  tag: string;
  name: string;
  /** Arguments: strings for atoms, quoted strings and literals; nested arrays for lists. */
  args: ImapArg[];
}
export type ImapArg = string | null | ImapArg[];

export class ImapSyntaxError extends Error {
  constructor(
    message: string,
    readonly tag = '*',
  ) {
    super(message);
  }
}

type Step = { kind: 'command'; command: ImapCommand } | { kind: 'continue' } | { kind: 'need-more' };

const LITERAL_AT_END = /\{(\d{1,10})(\+?)\}$/;

/**
 * Assembles one command across lines and literals. `next()` returns `continue` when a
 * synchronizing literal needs the server's "+ " go-ahead.
 */
export class ImapCommandAssembler {
  private text = '';
  private literals: string[] = [];
  private literalBytes = 0;
  private awaiting = -1;

  constructor(
    private readonly reader: LineReader,
    private readonly maxLiteral: number,
    private readonly maxLine: number,
  ) {}

  next(): Step {
    for (;;) {
      if (this.awaiting >= 0) {
        const bytes = this.reader.bytes(this.awaiting);
        if (!bytes) return { kind: 'need-more' };
        this.text += `\u0000${this.literals.length}\u0000`;
        this.literals.push(bytes.toString('utf8'));
        this.awaiting = -1;
        continue;
      }
      const line = this.reader.line();
      if (line === null) return { kind: 'need-more' };
      this.text += line;
      if (this.text.length > this.maxLine) throw new LineTooLong();
      const lit = LITERAL_AT_END.exec(line);
      if (lit) {
        const size = Number(lit[1]);
        this.literalBytes += size;
        if (this.literalBytes > this.maxLiteral) {
          this.reset();
          throw new ImapSyntaxError(`literal too large (at most ${this.maxLiteral} bytes before login)`, tagOf(line));
        }
        this.text = this.text.slice(0, this.text.length - lit[0].length);
        this.awaiting = size;
        if (lit[2] !== '+') return { kind: 'continue' };
        continue;
      }
      const text = this.text;
      const literals = this.literals;
      this.reset();
      return { kind: 'command', command: parseCommand(text, literals) };
    }
  }

  private reset(): void {
    this.text = '';
    this.literals = [];
    this.literalBytes = 0;
    this.awaiting = -1;
  }
}

function tagOf(line: string): string {
  return /^([^\s(){%*"\\\]]+)\s/.exec(line)?.[1] ?? '*';
}

function parseCommand(text: string, literals: string[]): ImapCommand {
  const m = /^([^\s(){%*"\\\]]+) ([A-Za-z]+)(?: (.*))?$/s.exec(text);
  if (!m) throw new ImapSyntaxError('Error in IMAP command received by server.', tagOf(text));
  const tag = m[1]!;
  try {
    return { tag, name: m[2]!.toUpperCase(), args: parseArgs(m[3] ?? '', literals) };
  } catch (err) {
    throw new ImapSyntaxError((err as Error).message, tag);
  }
}

function parseArgs(s: string, literals: string[]): ImapArg[] {
  const stack: ImapArg[][] = [[]];
  let i = 0;
  const top = () => stack[stack.length - 1]!;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ') {
      i++;
    } else if (c === '(') {
      const list: ImapArg[] = [];
      top().push(list);
      stack.push(list);
      i++;
    } else if (c === ')') {
      if (stack.length === 1) throw new Error('unbalanced parenthesis');
      stack.pop();
      i++;
    } else if (c === '"') {
      let out = '';
      i++;
      for (;;) {
        if (i >= s.length) throw new Error('unterminated quoted string');
        const ch = s[i]!;
        if (ch === '\\') {
          out += s[i + 1] ?? '';
          i += 2;
        } else if (ch === '"') {
          i++;
          break;
        } else {
          out += ch;
          i++;
        }
      }
      top().push(out);
    } else if (c === '\u0000') {
      const end = s.indexOf('\u0000', i + 1);
      if (end < 0) throw new Error('NUL in command');
      top().push(literals[Number(s.slice(i + 1, end))] ?? '');
      i = end + 1;
    } else {
      let j = i;
      while (j < s.length && !' ()"\u0000'.includes(s[j]!)) j++;
      const atom = s.slice(i, j);
      top().push(atom.toUpperCase() === 'NIL' ? null : atom);
      i = j;
    }
  }
  if (stack.length !== 1) throw new Error('unbalanced parenthesis');
  return stack[0]!;
}
