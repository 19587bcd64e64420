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
