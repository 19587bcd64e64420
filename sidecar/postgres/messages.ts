// Encoders and decoders for the PostgreSQL protocol messages the enforcer reads or writes.
// Everything works on raw Buffers; nothing here touches a socket.

export const protocolVersion3 = 196608; // 3.0
export const sslRequestCode = 80877103;
export const gssEncRequestCode = 80877104;
export const cancelRequestCode = 80877102;

/** One message body being built: typed messages get their header from finish(). */
class Writer {
  private parts: Buffer[] = [];
  private size = 0;
  int8(value: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(value & 0xff);
    return this.push(b);
  }
  int16(value: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(value);
    return this.push(b);
  }
  int32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value | 0);
    return this.push(b);
  }
  cstring(value: string): this {
    return this.push(Buffer.from(`${value}\0`, 'utf8'));
  }
  bytes(value: Buffer): this {
    return this.push(value);
  }
  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  /** A typed message: type byte, Int32 length, body. */
  message(type: string): Buffer {
    const header = Buffer.allocUnsafe(5);
    header.write(type, 0, 'latin1');
    header.writeInt32BE(this.size + 4, 1);
    return Buffer.concat([header, ...this.parts], this.size + 5);
  }
  /** An untyped (startup-phase) message. */
  untyped(): Buffer {
    const header = Buffer.allocUnsafe(4);
    header.writeInt32BE(this.size + 4, 0);
    return Buffer.concat([header, ...this.parts], this.size + 4);
  }
}

/** A cursor over one message body; throws ProtocolViolation on overrun. */
export class BodyReader {
  offset = 0;
  readonly body: Buffer;
  constructor(body: Buffer) {
    this.body = body;
  }
  get remaining(): number {
    return this.body.length - this.offset;
  }
  int8(): number {
    this.need(1);
    return this.body[this.offset++]!;
  }
  int16(): number {
    this.need(2);
    const v = this.body.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    this.need(4);
    const v = this.body.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint32(): number {
    this.need(4);
    const v = this.body.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  cstring(): string {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolViolation('unterminated string in message');
    const value = this.body.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return value;
  }
  bytes(n: number): Buffer {
    if (n < 0) throw new ProtocolViolation('negative length in message');
    this.need(n);
    const v = this.body.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  rest(): Buffer {
    const v = this.body.subarray(this.offset);
    this.offset = this.body.length;
    return v;
  }
  private need(n: number): void {
    if (this.offset + n > this.body.length) throw new ProtocolViolation('message shorter than its contents');
  }
}

export class ProtocolViolation extends Error {
  readonly code = 'protocol-violation';
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

// ---------------------------------------------------------------------------------------
// Startup phase

export interface StartupMessage {
  major: number;
  minor: number;
  parameters: Map<string, string>;
}

/** Reads name/value pairs as the server does (ProcessStartupPacket): the packet must end right after them. */
export function decodeStartup(body: Buffer): StartupMessage {
  const code = body.readInt32BE(0);
  const parameters = new Map<string, string>();
  const end = (from: number) => {
    const nul = body.indexOf(0, from);
    return nul < 0 ? body.length : nul;
  };
  let offset = 4;
  while (offset < body.length && body[offset] !== 0) {
    const nameEnd = end(offset);
    if (nameEnd + 1 >= body.length) break;
    const valueEnd = end(nameEnd + 1);
    parameters.set(body.toString('utf8', offset, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd));
    offset = valueEnd + 1;
  }
  if (offset !== body.length - 1)
    throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
  return { major: code >>> 16, minor: code & 0xffff, parameters };
}

/** An error in the protocol-2 format, which the server still uses to refuse a protocol-1 or -2 client. */
export function legacyErrorResponse(message: string): Buffer {
  return Buffer.from(`EFATAL:  ${message}\n\0`, 'utf8');
}

export function encodeStartup(parameters: Iterable<[string, string]>): Buffer {
  const w = new Writer().int32(protocolVersion3);
  for (const [name, value] of parameters) w.cstring(name).cstring(value);
  return w.int8(0).untyped();
}

export const sslRequest = (): Buffer => new Writer().int32(sslRequestCode).untyped();

export function encodeCancelRequest(pid: number, secret: number): Buffer {
  return new Writer().int32(cancelRequestCode).int32(pid).int32(secret).untyped();
}

// ---------------------------------------------------------------------------------------
// Server → client messages the enforcer writes

/** Error and notice fields by their one-letter codes (S, V, C, M, D, H, P, …). */
export type Fields = Map<string, string>;

export function encodeFields(type: 'E' | 'N', fields: Fields): Buffer {
  const w = new Writer();
  for (const [code, value] of fields) w.bytes(Buffer.from(code, 'latin1')).cstring(value);
  return w.int8(0).message(type);
}

export function decodeFields(body: Buffer): Fields {
  const reader = new BodyReader(body);
  const fields: Fields = new Map();
  for (;;) {
    const code = reader.int8();
    if (code === 0) break;
    fields.set(String.fromCharCode(code), reader.cstring());
  }
  return fields;
}

export function errorResponse(
  code: string,
  message: string,
  options: { severity?: 'ERROR' | 'FATAL'; detail?: string; hint?: string; position?: number } = {},
): Buffer {
  const severity = options.severity ?? 'ERROR';
  const fields: Fields = new Map([
    ['S', severity],
    ['V', severity],
    ['C', code],
    ['M', message],
  ]);
  if (options.detail) fields.set('D', options.detail);
  if (options.hint) fields.set('H', options.hint);
  if (options.position !== undefined) fields.set('P', String(options.position));
  return encodeFields('E', fields);
}

export const authenticationOk = (): Buffer => new Writer().int32(0).message('R');
/** AuthenticationCleartextPassword: the enforcer asks for the end user's token as the password. */
export const authenticationCleartextPassword = (): Buffer => new Writer().int32(3).message('R');

/** The password of a PasswordMessage: one string and nothing after it. */
export function decodePassword(body: Buffer): string {
  const reader = new BodyReader(body);
  const password = reader.cstring();
  if (reader.rest().length > 0)
    throw new ProtocolViolation('invalid password message: data after the password');
  return password;
}

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().cstring(name).cstring(value).message('S');
}

export function notificationResponse(pid: number, channel: string, payload: string): Buffer {
  return new Writer().int32(pid).cstring(channel).cstring(payload).message('A');
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new Writer().int32(pid).int32(secret).message('K');
}

export function readyForQuery(status: TransactionStatus): Buffer {
  return new Writer().int8(status.charCodeAt(0)).message('Z');
}

export function negotiateProtocolVersion(minor: number, unrecognized: string[]): Buffer {
  const w = new Writer().int32((3 << 16) | minor).int32(unrecognized.length);
  for (const name of unrecognized) w.cstring(name);
  return w.message('v');
}

export type TransactionStatus = 'I' | 'T' | 'E';

// ---------------------------------------------------------------------------------------
// Client → server messages the enforcer writes

export const passwordMessage = (password: string): Buffer => new Writer().cstring(password).message('p');

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return new Writer().cstring(mechanism).int32(data.length).bytes(data).message('p');
}

export const saslResponse = (data: Buffer): Buffer => new Writer().bytes(data).message('p');
export const query = (text: string): Buffer => new Writer().cstring(text).message('Q');
export const sync = (): Buffer => new Writer().message('S');
export const flush = (): Buffer => new Writer().message('H');
export const terminate = (): Buffer => new Writer().message('X');

export function parse(name: string, text: string, types: number[] = []): Buffer {
  const w = new Writer().cstring(name).cstring(text).int16(types.length);
  for (const t of types) w.int32(t);
  return w.message('P');
}

export function describe(kind: 'S' | 'P', name: string): Buffer {
  return new Writer().int8(kind.charCodeAt(0)).cstring(name).message('D');
}

// ---------------------------------------------------------------------------------------
// Client message decoders (extended protocol)

export interface ParseMessage {
  name: string;
  text: string;
}

export function decodeParameterStatus(body: Buffer): [name: string, value: string] {
  const reader = new BodyReader(body);
  return [reader.cstring(), reader.cstring()];
}

export function decodeNotification(body: Buffer): { pid: number; channel: string; payload: string } {
  const reader = new BodyReader(body);
  const pid = reader.int32();
  const channel = reader.cstring();
  return { pid, channel, payload: reader.cstring() };
}

export function decodeParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body);
  return { name: r.cstring(), text: r.cstring() };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Result column format codes as sent: [] all text, [f] all f, or one per column. */
  resultFormats: number[];
  parameterCount: number;
}

export function decodeBind(body: Buffer): BindMessage {
  const r = new BodyReader(body);
  const portal = r.cstring();
  const statement = r.cstring();
  const formatCount = r.int16();
  r.bytes(formatCount * 2);
  const paramCount = r.int16();
  for (let i = 0; i < paramCount; i++) {
    const length = r.int32();
    if (length > 0) r.bytes(length);
  }
  const resultCount = r.int16();
  const resultFormats: number[] = [];
  for (let i = 0; i < resultCount; i++) resultFormats.push(r.int16());
  return { portal, statement, resultFormats, parameterCount: paramCount };
}

export function decodeTarget(body: Buffer): { kind: 'S' | 'P'; name: string } {
  const r = new BodyReader(body);
  const kind = String.fromCharCode(r.int8());
  if (kind !== 'S' && kind !== 'P') throw new ProtocolViolation(`invalid Describe/Close target ${kind}`);
  return { kind, name: r.cstring() };
}

export function decodeExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new BodyReader(body);
  return { portal: r.cstring(), maxRows: r.int32() };
}

export function decodeQuery(body: Buffer): string {
  return new BodyReader(body).cstring();
}

// ---------------------------------------------------------------------------------------
// Server message decoders

export interface ColumnDescription {
  name: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
  format: number;
}

export function decodeRowDescription(body: Buffer): ColumnDescription[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const columns: ColumnDescription[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.cstring();
    const tableOid = r.uint32();
    const attnum = r.int16();
    const typeOid = r.uint32();
    r.int16(); // typlen
    r.int32(); // typmod
    const format = r.int16();
    columns.push({ name, tableOid, attnum, typeOid, format });
  }
  return columns;
}

export function decodeCommandComplete(body: Buffer): string {
  return new BodyReader(body).cstring();
}

/** Rows affected or returned, from a CommandComplete tag such as "INSERT 0 5" or "SELECT 3". */
export function rowsFromTag(tag: string): number | undefined {
  const match = /(\d+)$/.exec(tag);
  return match && /^(SELECT|INSERT|UPDATE|DELETE|MERGE|COPY|FETCH|MOVE)\b/.test(tag)
    ? Number(match[1])
    : undefined;
}

export function decodeCopyResponse(body: Buffer): { format: number; columnFormats: number[] } {
  const r = new BodyReader(body);
  const format = r.int8();
  const count = r.int16();
  const columnFormats: number[] = [];
  for (let i = 0; i < count; i++) columnFormats.push(r.int16());
  return { format, columnFormats };
}

/** Builds a DataRow from field values (null for SQL NULL). */
export function encodeDataRow(values: (Buffer | null)[]): Buffer {
  let size = 4 + 2;
  for (const v of values) size += 4 + (v ? v.length : 0);
  const out = Buffer.allocUnsafe(size + 1);
  out.write('D', 0, 'latin1');
  out.writeInt32BE(size, 1);
  out.writeInt16BE(values.length, 5);
  let at = 7;
  for (const v of values) {
    if (v === null) {
      out.writeInt32BE(-1, at);
      at += 4;
    } else {
      out.writeInt32BE(v.length, at);
      v.copy(out, at + 4);
      at += 4 + v.length;
    }
  }
  return out;
}

export function encodeCopyData(data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(data.length + 5);
  out.write('d', 0, 'latin1');
  out.writeInt32BE(data.length + 4, 1);
  data.copy(out, 5);
  return out;
}

export function bind(
  portal: string,
  statement: string,
  values: (string | null)[] = [],
  resultFormats: number[] = [],
): Buffer {
  const w = new Writer().cstring(portal).cstring(statement).int16(0).int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else {
      const b = Buffer.from(v, 'utf8');
      w.int32(b.length).bytes(b);
    }
  }
  w.int16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  return w.message('B');
}

export function execute(portal: string, maxRows = 0): Buffer {
  return new Writer().cstring(portal).int32(maxRows).message('E');
}

export function close(kind: 'S' | 'P', name: string): Buffer {
  return new Writer().int8(kind.charCodeAt(0)).cstring(name).message('C');
}
