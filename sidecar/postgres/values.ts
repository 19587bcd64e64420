// What binary-format values and bytea hold, read as the text detectors scan: the server's text
// output of int8, numeric and inet/cidr from their binary form, and the bytes inside a bytea's
// hex or escape output (and the way back, so a masked bytea stays a bytea).
import { ProtocolViolation } from './messages.ts';

/** Type OIDs whose values the enforcer reads by what they hold rather than as UTF-8 text. */
export const heldTypes = new Map<number, Held>([
  [17, 'bytea'],
  [20, 'int8'],
  [1700, 'numeric'],
  [869, 'inet'],
  [650, 'inet'],
]);
export type Held = 'bytea' | 'int8' | 'numeric' | 'inet';

/** The bytes of a bytea in text format: hex (`\x…`, the default) or escape output. */
export function byteaBytes(text: Buffer): { bytes: Buffer; hex: boolean } {
  if (text[0] === 0x5c && text[1] === 0x78) {
    const digits = text.toString('latin1', 2);
    if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits))
      throw new ProtocolViolation('invalid bytea hex output');
    return { bytes: Buffer.from(digits, 'hex'), hex: true };
  }
  const out = Buffer.allocUnsafe(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== 0x5c) out[n++] = ch;
    else if (text[i + 1] === 0x5c) {
      out[n++] = 0x5c;
      i++;
    } else {
      const octal = text.toString('latin1', i + 1, i + 4);
      if (!/^[0-3][0-7]{2}$/.test(octal)) throw new ProtocolViolation('invalid bytea escape output');
      out[n++] = Number.parseInt(octal, 8);
      i += 3;
    }
  }
  return { bytes: out.subarray(0, n), hex: false };
}

/** bytes in bytea's text output, hex or escape, as the server writes it. */
export function byteaText(bytes: Buffer, hex: boolean): string {
  if (hex) return `\\x${bytes.toString('hex')}`;
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b < 0x20 || b > 0x7e) out += `\\${b.toString(8).padStart(3, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

/** The text the server sends for a binary int8, numeric or inet/cidr value at raw[start, end). */
export function heldText(held: Exclude<Held, 'bytea'>, raw: Buffer, start: number, end: number): string {
  const value = raw.subarray(start, end);
  switch (held) {
    case 'int8':
      if (value.length !== 8) throw new ProtocolViolation('invalid binary int8');
      return value.readBigInt64BE(0).toString();
    case 'numeric':
      return numericText(value);
    case 'inet':
      return inetText(value);
  }
}

function numericText(value: Buffer): string {
  if (value.length < 8) throw new ProtocolViolation('invalid binary numeric');
  const ndigits = value.readInt16BE(0);
  const weight = value.readInt16BE(2);
  const sign = value.readUInt16BE(4);
  const dscale = value.readInt16BE(6);
  if (ndigits < 0 || dscale < 0 || value.length !== 8 + 2 * ndigits)
    throw new ProtocolViolation('invalid binary numeric');
  if (sign === 0xc000) return 'NaN';
  if (sign === 0xd000) return 'Infinity';
  if (sign === 0xf000) return '-Infinity';
  const digit = (i: number) => (i >= 0 && i < ndigits ? value.readInt16BE(8 + 2 * i) : 0);
  let out = sign === 0x4000 ? '-' : '';
  if (weight < 0) out += '0';
  for (let i = 0; i <= weight; i++) out += i === 0 ? String(digit(i)) : String(digit(i)).padStart(4, '0');
  if (dscale > 0) {
    let fraction = '';
    for (let i = weight + 1; fraction.length < dscale; i++) fraction += String(digit(i)).padStart(4, '0');
    out += `.${fraction.slice(0, dscale)}`;
  }
  return out;
}

function inetText(value: Buffer): string {
  const family = value[0];
  const bits = value[1]!;
  const cidr = value[2] === 1;
  const size = value[3];
  if (value.length !== 4 + (size ?? 0) || (family === 2 ? size !== 4 : family !== 3 || size !== 16))
    throw new ProtocolViolation('invalid binary inet');
  const address = value.subarray(4);
  const full = family === 2 ? 32 : 128;
  const text =
    family === 2
      ? [...address].join('.')
      : Array.from({ length: 8 }, (_, i) => address.readUInt16BE(2 * i).toString(16)).join(':');
  return cidr || bits !== full ? `${text}/${bits}` : text;
}
