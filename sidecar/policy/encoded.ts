// Values written in an encoding the detectors do not read: percent-encoding (ada%40example.com in
// a Location header or a form), JavaScript and JSON escapes (ada\u0040example.com, \u{40}, \x40)
// and HTML character references (&#64;, &#x40;, &#00064, &commat;). The text is masked as it is, then once more as
// decoded; where the decoded reading finds a value, the source is replaced from the first such
// value's first escape to the last one's end, so the text outside stays byte for byte.
// Pure: no I/O.
import type { MaskResult } from './masking.ts';

type MaskText = (text: string) => MaskResult;

/**
 * Character references as HTML parsers read them: any number of leading zeros, the semicolon
 * optional, and the named ones for the characters values are written with (ada&commat;x.com).
 */
const references =
  '&#[xX]0*[0-9A-Fa-f]{1,6};?|&#0*[0-9]{1,7};?|&(?:commat|period|lowbar|hyphen|dash|plus|colon|sol|num);';
const named: Record<string, string> = {
  commat: '@',
  period: '.',
  lowbar: '_',
  hyphen: '-',
  dash: '-',
  plus: '+',
  colon: ':',
  sol: '/',
  num: '#',
};
const allEscapes = new RegExp(
  `%[0-9A-Fa-f]{2}|\\\\u[0-9A-Fa-f]{4}|\\\\u\\{[0-9A-Fa-f]{1,6}\\}|\\\\x[0-9A-Fa-f]{2}|${references}`,
  'g',
);
const marker = /%|\\[ux]|&#|&[a-z]+;/;
/** In JSON strings, which the JSON reader already unescaped: percent-encoding and references only. */
const jsonEscapes = new RegExp(`%[0-9A-Fa-f]{2}|${references}`, 'g');
const jsonMarker = /%|&#|&[a-z]+;/;

/** The decoded reading of `text` and, per decoded code unit, where its source starts. */
export function decodeEscapes(text: string, json = false): { decoded: string; starts: number[] } | undefined {
  if (!(json ? jsonMarker : marker).test(text)) return undefined;
  const escapes = json ? jsonEscapes : allEscapes;
  let decoded = '';
  const starts: number[] = [];
  let at = 0;
  let bytes: number[] = [];
  let bytesFrom = 0;
  const emit = (value: string, from: number) => {
    for (let i = 0; i < value.length; i++) starts.push(from);
    decoded += value;
  };
  const flushBytes = () => {
    if (bytes.length === 0) return;
    // Percent-encoded UTF-8 sequences decode as one; invalid bytes stay as they were written.
    const value = Buffer.from(bytes).toString('utf8');
    if (value.includes('\ufffd'))
      for (let i = 0; i < bytes.length; i++)
        emit(text.slice(bytesFrom + i * 3, bytesFrom + i * 3 + 3), bytesFrom + i * 3);
    else emit(value, bytesFrom);
    bytes = [];
  };
  escapes.lastIndex = 0;
  for (let m = escapes.exec(text); m !== null; m = escapes.exec(text)) {
    const token = m[0];
    const contiguous = bytes.length > 0 && bytesFrom + bytes.length * 3 === m.index;
    if (!(token[0] === '%' && contiguous)) flushBytes();
    for (let i = at; i < m.index; i++) emit(text[i]!, i);
    if (token[0] === '%') {
      if (bytes.length === 0) bytesFrom = m.index;
      bytes.push(Number.parseInt(token.slice(1), 16));
    } else if (token[0] === '&' && token[1] !== '#') {
      emit(named[token.slice(1, -1)] ?? token, m.index);
    } else {
      const reference = token.startsWith('&#');
      const hex = token.startsWith('&#x') || token.startsWith('&#X');
      const digits = reference
        ? token.slice(hex ? 3 : 2).replace(/;$/, '')
        : token.slice(2).replace(/^\{|\}$/g, '');
      const value = Number.parseInt(digits, reference && !hex ? 10 : 16);
      emit(value <= 0x10ffff ? String.fromCodePoint(value) : token, m.index);
    }
    at = m.index + token.length;
  }
  flushBytes();
  for (let i = at; i < text.length; i++) emit(text[i]!, i);
  return decoded === text ? undefined : { decoded, starts };
}

/** `mask`, then `mask` over the decoded reading, mapped back onto the source (JSON strings: see jsonEscapes). */
export function maskEncoded(mask: MaskText, json = false): MaskText {
  return (text) => {
    const plain = mask(text);
    const view = decodeEscapes(plain.value, json);
    if (!view) return plain;
    const decoded = mask(view.decoded);
    if (decoded.value === view.decoded) return merge(plain, decoded, plain.value);
    const d = view.decoded;
    const v = decoded.value;
    let prefix = 0;
    while (prefix < d.length && prefix < v.length && d[prefix] === v[prefix]) prefix++;
    let suffix = 0;
    while (
      suffix < d.length - prefix &&
      suffix < v.length - prefix &&
      d[d.length - 1 - suffix] === v[v.length - 1 - suffix]
    )
      suffix++;
    const source = plain.value;
    const from = view.starts[prefix] ?? source.length;
    const to = d.length - suffix < d.length ? view.starts[d.length - suffix]! : source.length;
    return merge(
      plain,
      decoded,
      source.slice(0, from) + v.slice(prefix, v.length - suffix) + source.slice(to),
    );
  };
}

function merge(a: MaskResult, b: MaskResult, value: string): MaskResult {
  const counts = { ...a.counts };
  for (const [k, n] of Object.entries(b.counts)) counts[k] = (counts[k] ?? 0) + n;
  const wouldMask = { ...a.wouldMask };
  for (const [k, n] of Object.entries(b.wouldMask)) wouldMask[k] = (wouldMask[k] ?? 0) + n;
  return { value, counts, wouldMask };
}
