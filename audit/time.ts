// Event times as the store compares them: microseconds since the epoch, the resolution in which
// PostgreSQL stores a timestamptz and SQLite an integer.

/** An ISO 8601 time as microseconds since the epoch (as PostgreSQL stores a timestamptz), or undefined. */
export function microseconds(time: unknown): string | undefined {
  if (typeof time !== 'string') return undefined;
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) return undefined;
  // Date keeps milliseconds; the fraction's 4th to 6th digits are the rest (PostgreSQL rounds beyond).
  const fraction = /^[^.]*T[^.]*\.(\d+)/.exec(time)?.[1] ?? '';
  const digits = `${fraction}0000000`.slice(0, 7);
  let micro = BigInt(Math.floor(ms / 1000)) * 1_000_000n + BigInt(digits.slice(0, 6));
  if (Number(digits[6]) >= 5) micro += 1n;
  return micro.toString();
}
