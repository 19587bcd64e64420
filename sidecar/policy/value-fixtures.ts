// ASCII values shaped like what the detectors find, and like it without being it (timestamps,
// numbers, invalid checksums, separators out of place), for the tests that hold the byte path of
// masking to its string path.
import fc from 'fast-check';

const digits = (n: number) => fc.stringMatching(new RegExp(`^[0-9]{${n}}$`));
const separator = fc.constantFrom('-', ' ', '.', '', '  ', '--', '/', ':');
/** One finding, near miss, look-alike or piece of filler. */
export const asciiToken = fc.oneof(
  // E-mails and near misses.
  fc
    .tuple(
      fc.stringMatching(/^[a-zA-Z0-9._%+-]{0,12}$/),
      fc.constantFrom('@', '@@', ' @ '),
      fc.stringMatching(/^[a-zA-Z0-9-]{0,10}$/),
      fc.constantFrom('.com', '.co.uk', '.', '..io', '.c', '.c0m', '-.org', '.example-', ''),
    )
    .map((parts) => parts.join('')),
  // Card numbers, Luhn-valid or not, with separators.
  fc
    .tuple(
      fc.constantFrom('4111', '5500', '3782', '6011', '1700', '4111'),
      separator,
      digits(4),
      separator,
      digits(4),
    )
    .map((p) => p.join('')),
  fc.constantFrom(
    '4111 1111 1111 1111',
    '5500-0000-0000-0004',
    '378282246310005',
    '4111111111111112',
    '41111111111111111111111',
    '4111-1111-1111-1111-1111',
    '4111  1111  1111  1111',
    '4111...1111.1111.1111',
    '6011 0009 9013 9424 4111 1111 1111 1111',
  ),
  // SSNs, valid and not, grouped in longer numbers.
  fc.tuple(digits(3), separator, digits(2), separator, digits(4)).map((p) => p.join('')),
  fc
    .tuple(
      fc.oneof(digits(3), fc.constantFrom('000', '666', '900', '123')),
      fc.constantFrom('-', ' ', '.'),
      fc.oneof(digits(2), fc.constant('00')),
      fc.oneof(digits(4), fc.constant('0000')),
    )
    .map(([area, sep, group, serial]) => area + sep + group + sep + serial),
  fc.constantFrom(
    '123-45-6789',
    '666-12-3456',
    '900-12-3456',
    '12-123-45-6789',
    '123-45-6789-12',
    '123.45.6789',
  ),
  // Phones.
  fc.constantFrom('+44 20 7946 0958', '(555) 234-5678', '555.234.5678', '+1 555 234 5678', '+15552345678'),
  fc
    .tuple(fc.constantFrom('+', '+1', '(', ''), digits(3), separator, digits(3), separator, digits(4))
    .map((p) => p.join('')),
  // Timestamps, numbers, UUIDs: shaped like findings, never one.
  fc.constantFrom(
    '2026-12-03 19:20:00.123456+00',
    '2024-02-29',
    '1700000000000',
    '-17.5',
    '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  ),
  fc.integer({ min: 0, max: 2 ** 31 }).map(String),
  // IBANs, addresses, tokens, keys.
  fc.constantFrom(
    'GB82 WEST 1234 5698 7654 32',
    'GB82WEST12345698765432',
    'DE89370400440532013000',
    'GB82 WEST 1234 5698 7654 33',
  ),
  fc.constantFrom(
    '192.168.1.20',
    '256.1.1.1',
    '10.0.0.1.5',
    '2001:db8::8a2e:370:7334',
    'fe80::1',
    '::1',
    'a:b:c',
    '2001:db8:0:0:0:0:0:1',
    '1:2:3:4:5:6:7:8:9',
  ),
  fc.constantFrom(
    'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln',
    'eyJub3QiOiJqc29uIn0.x.y',
    'AKIAIOSFODNN7EXAMPLE',
    'ASIAIOSFODNN7EXAMPLE',
    'BEARER abcdefgh12345678',
    'bEARER abcdefghijklmnopqrstu',
    'Bearer abcdefgh12345678',
    'bearer short',
    '-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----',
    'ORD-1234',
  ),
  // Disguised in an encoding (read decoded where the text may carry one).
  fc.constantFrom(
    'ada%40example.com',
    'ada&#64;example.com',
    'ada&commat;example.com',
    '4111%201111%201111%201111',
  ),
  // Control bytes, DEL and line breaks: ASCII, read by the byte path like any other byte.
  fc.constantFrom('\u0000', '\u0001', '\u001b', '\u007f', '\r\n', '\r', '\u000b', '\u000c'),
  // Filler.
  fc.stringMatching(/^[ -~]{0,12}$/),
  fc.constantFrom(' ', ', ', ': ', '\t', '\n', '@', '.', '-', '+', '(', ')'),
);
/** ASCII text of up to eight tokens. */
export const asciiValue = fc.array(asciiToken, { maxLength: 8 }).map((parts) => parts.join(''));
