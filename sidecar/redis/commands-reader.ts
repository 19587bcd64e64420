// The agent's side of RESP: commands, as multibulk arrays of bulk strings or as inline lines
// (what telnet and `redis-cli` in some modes send). A pure incremental parser over Buffers: it
// keeps a cursor, returns whole commands and knows nothing of sockets. It is stricter than
// Redis's own parser (digits without leading zeros, every CRLF checked), so every multibulk
// command it accepts is read by Redis as the same argument vector: its raw bytes can go
// upstream unchanged. Inline commands are split the way Redis splits them (sdssplitargs) and
// re-encoded as multibulk, so what runs upstream is what was decided. A command is buffered
// whole (its keys may follow any value), up to a bound; past it the session ends with an error.

/** A malformed command: the session cannot tell where the next command starts. */
export class RespError extends Error {
  override name = 'RespError';
}

export interface ClientCommand {
  argv: Buffer[];
  /** The multibulk bytes as received; undefined for an inline command (encode argv instead). */
  raw: Buffer | undefined;
  /** Bytes the command took on the wire. */
  size: number;
}

/** Redis's own limits: multibulk length, inline line length. */
const maxArgs = 1024 * 1024;
const maxInline = 64 * 1024;
const CR = 13;
const LF = 10;
const empty = Buffer.alloc(0);

export class CommandReader {
  #buf: Buffer = empty;
  #pos = 0;
  /** Bytes the buffer must hold before parsing the pending command is worth trying again. */
  #need = 0;
  readonly #maxBytes: number;

  /** maxBytes: the largest command buffered whole. */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    const rest = this.#buf.length - this.#pos;
    this.#buf = rest === 0 ? chunk : Buffer.concat([this.#buf.subarray(this.#pos), chunk]);
    this.#pos = 0;
  }

  /** Bytes received and not yet returned as a command. */
  get buffered(): number {
    return this.#buf.length - this.#pos;
  }

  /** The next whole command, or undefined until more bytes arrive. Throws RespError. */
  next(): ClientCommand | undefined {
    for (;;) {
      const available = this.#buf.length - this.#pos;
      if (available === 0 || available < this.#need) return undefined;
      const start = this.#pos;
      const parsed = this.#buf[start] === 42 /* '*' */ ? this.#multibulk(start) : this.#inline(start);
      if (parsed === undefined) return undefined;
      if (parsed === null) continue; // an empty line or an empty multibulk: Redis skips it
      return parsed;
    }
  }

  #multibulk(start: number): ClientCommand | null | undefined {
    const buf = this.#buf;
    const header = this.#line(start, 1);
    if (header === undefined) return undefined;
    const count = parseLength(buf, start + 1, header, 'multibulk length');
    if (count > maxArgs) throw new RespError('invalid multibulk length');
    let at = header + 2;
    if (count === 0) {
      this.#pos = at;
      this.#need = 0;
      return null;
    }
    const argv: Buffer[] = new Array(count);
    for (let i = 0; i < count; i++) {
      if (at >= buf.length) return this.#wait(start, at + 1);
      if (buf[at] !== 36 /* '$' */)
        throw new RespError(`expected '$', got '${String.fromCharCode(buf[at]!)}'`);
      const end = this.#line(at, 1);
      if (end === undefined) return undefined;
      const length = parseLength(buf, at + 1, end, 'bulk length');
      const data = end + 2;
      if (data + length + 2 - start > this.#maxBytes)
        throw new RespError(`command larger than ${this.#maxBytes} bytes`);
      if (buf.length < data + length + 2) return this.#wait(start, data + length + 2);
      if (buf[data + length] !== CR || buf[data + length + 1] !== LF)
        throw new RespError('bulk string not terminated by CRLF');
      argv[i] = buf.subarray(data, data + length);
      at = data + length + 2;
    }
    this.#pos = at;
    this.#need = 0;
    return { argv, raw: buf.subarray(start, at), size: at - start };
  }

  #inline(start: number): ClientCommand | null | undefined {
    const buf = this.#buf;
    const newline = buf.indexOf(LF, start);
    if (newline < 0) {
      if (buf.length - start > maxInline) throw new RespError('too big inline request');
      return this.#wait(start, buf.length + 1);
    }
    const end = newline > start && buf[newline - 1] === CR ? newline - 1 : newline;
    this.#pos = newline + 1;
    this.#need = 0;
    const line = buf.subarray(start, end);
    // Redis reads the line as a C string: a NUL would end it there, hiding what follows.
    if (line.includes(0)) throw new RespError('NUL byte in inline request');
    const argv = splitInline(line);
    if (argv === undefined) throw new RespError('unbalanced quotes in request');
    if (argv.length === 0) return null;
    return { argv, raw: undefined, size: newline + 1 - start };
  }

  /** The CR of the header line starting at `start`, or undefined while it is incomplete. */
  #line(start: number, from: number): number | undefined {
    const buf = this.#buf;
    const cr = buf.indexOf(CR, start + from);
    if (cr < 0 || cr + 1 >= buf.length) {
      if (buf.length - start > maxInline) throw new RespError('header line too long');
      this.#wait(start, buf.length + 1);
      return undefined;
    }
    if (buf[cr + 1] !== LF) throw new RespError('header line not terminated by CRLF');
    return cr;
  }

  #wait(start: number, needed: number): undefined {
    this.#need = needed - start;
    if (this.#need > this.#maxBytes) throw new RespError(`command larger than ${this.#maxBytes} bytes`);
    return undefined;
  }
}

/** A non-negative decimal without sign or leading zeros, as Redis reads lengths. */
function parseLength(buf: Buffer, from: number, to: number, what: string): number {
  if (to === from || to - from > 10) throw new RespError(`invalid ${what}`);
  if (buf[from] === 48 /* '0' */ && to - from > 1) throw new RespError(`invalid ${what}`);
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i]! - 48;
    if (c < 0 || c > 9) throw new RespError(`invalid ${what}`);
    n = n * 10 + c;
  }
  return n;
}

/**
 * An inline command line split the way Redis's sdssplitargs does: blanks separate arguments;
 * "double quotes" take \n \r \t \b \a \\ \" and \xHH escapes; 'single quotes' take \'; a
 * closing quote must be followed by a blank. undefined for unbalanced quotes.
 */
export function splitInline(line: Buffer): Buffer[] | undefined {
  const args: Buffer[] = [];
  const n = line.length;
  let i = 0;
  const blank = (c: number | undefined) =>
    c === 32 || c === 10 || c === 13 || c === 9 || c === 11 || c === 12;
  for (;;) {
    while (i < n && blank(line[i])) i++;
    if (i >= n) return args;
    const bytes: number[] = [];
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      const c = line[i];
      if (inDouble) {
        if (c === undefined) return undefined;
        if (c === 92 /* \ */ && line[i + 1] === 120 /* x */ && isHex(line[i + 2]) && isHex(line[i + 3])) {
          bytes.push(Number.parseInt(String.fromCharCode(line[i + 2]!, line[i + 3]!), 16));
          i += 3;
        } else if (c === 92 && i + 1 < n) {
          i++;
          const e = line[i]!;
          const escapes: Record<number, number> = { 110: 10, 114: 13, 116: 9, 98: 8, 97: 7 };
          bytes.push(escapes[e] ?? e);
        } else if (c === 34 /* " */) {
          if (i + 1 < n && !blank(line[i + 1])) return undefined;
          inDouble = false;
          i++;
          break;
        } else bytes.push(c);
      } else if (inSingle) {
        if (c === undefined) return undefined;
        if (c === 92 && line[i + 1] === 39 /* ' */) {
          i++;
          bytes.push(39);
        } else if (c === 39) {
          if (i + 1 < n && !blank(line[i + 1])) return undefined;
          inSingle = false;
          i++;
          break;
        } else bytes.push(c);
      } else {
        if (c === undefined || blank(c)) break;
        if (c === 34) inDouble = true;
        else if (c === 39) inSingle = true;
        else bytes.push(c);
      }
      i++;
    }
    args.push(Buffer.from(bytes));
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70));
}

/** A command as a multibulk array of bulk strings. */
export function encodeCommand(argv: readonly (Buffer | string)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${argv.length}\r\n`)];
  for (const arg of argv) {
    const data = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}
