// Durations as the API writes them (Go-style: 90s, 15m, 1h30m, 250ms; the `duration` schema in
// v1alpha1.ts) read once, at the edge, into milliseconds.

/** Milliseconds in a duration the `duration` schema accepted. */
export function durationMs(duration: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const [, amount, unit] of duration.matchAll(/(\d+)(ms|s|m|h)/g)) {
    total += Number(amount) * units[unit!]!;
  }
  return total;
}
