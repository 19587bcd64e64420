// The credential an enforcer holds for its target, kept from the agent on the way back: a target
// that echoes its request (TRACE, an echo or debug endpoint, an error quoting the Authorization
// header) would otherwise hand the agent the token the enforcer put there. Each occurrence is
// overwritten with '*' of the same length, whatever the policies mask. Pure: no I/O.

/** Shorter values would also match ordinary data: a held credential is not that short. */
const shortest = 8;

/** The held values to keep from the agent: the token, or the credential header's value. */
export function heldValues(credentials: Record<string, string | undefined>): string[] {
  return [credentials.token, credentials.value].filter(
    (v): v is string => typeof v === 'string' && v.length >= shortest,
  );
}

/** `text` with every held value overwritten. */
export function hideHeld(held: string[], text: string): string {
  let out = text;
  for (const value of held) if (out.includes(value)) out = out.split(value).join('*'.repeat(value.length));
  return out;
}
