// Helpers over SQL source text: byte offsets into it, and search_path strings as the server
// splits them.

/**
 * Whether a search_path value (as SET, set_config or a startup option give it) names another
 * schema before pg_catalog, so that built-in function names may resolve to other functions.
 */
export function demotesPgCatalog(searchPath: string): boolean {
  return splitSearchPath(searchPath).indexOf('pg_catalog') > 0;
}

/** A search_path string as the server splits it: quoted names as written, others lower-cased. */
function splitSearchPath(value: string): string[] {
  return value.split(',').map((part) => {
    const name = part.trim();
    return name.startsWith('"') && name.endsWith('"') && name.length >= 2
      ? name.slice(1, -1).replaceAll('""', '"')
      : name.toLowerCase();
  });
}

/**
 * Whether the server reads this SQL text the same way whatever its settings: every byte plain
 * ASCII and no backslash. Every client encoding the server offers reads ASCII as ASCII (a
 * multibyte character that could hold an ASCII byte, a quote or a backslash, starts above it),
 * and only a backslash reads otherwise with standard_conforming_strings or backslash_quote.
 * Text that is not so could be read otherwise by a server whose settings user code changed.
 */
export function readsTheSameUnderAnySettings(text: Uint8Array): boolean {
  for (let i = 0; i < text.length; i++) {
    const byte = text[i]!;
    if (byte >= 0x80 || byte === 0x5c) return false;
  }
  return true;
}

/** libpg_query reports byte offsets into the UTF-8 text. */
export class SourceText {
  readonly text: string;
  readonly bytes: Buffer | undefined;
  constructor(text: string) {
    this.text = text;
    const length = Buffer.byteLength(text);
    this.bytes = length === text.length ? undefined : Buffer.from(text);
  }
  slice(start: number, end?: number): string {
    if (!this.bytes) return this.text.slice(start, end);
    return this.bytes.subarray(start, end).toString('utf8');
  }
}
