// The target's host keys, from the Connection's ssh.knownHosts (known_hosts lines). The list
// belongs to one Connection, so host patterns are not consulted: a key is accepted when it is
// listed, whatever the line's host field says. @revoked keys are refused; @cert-authority lines
// are not supported (host certificates are refused rather than half-verified).
import { createHash } from 'node:crypto';

export interface HostKey {
  type: string;
  /** The key blob in SSH wire format, as the server presents it. */
  blob: Buffer;
}

export interface KnownHosts {
  keys: HostKey[];
  revoked: HostKey[];
  /** Host key algorithms to offer, so the server presents a key type we hold. */
  algorithms: string[];
}

const algorithmsByType: Record<string, string[]> = {
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

export function parseKnownHosts(lines: string[]): KnownHosts {
  const keys: HostKey[] = [];
  const revoked: HostKey[] = [];
  for (const raw of lines.flatMap((l) => l.split('\n'))) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith('@')) marker = fields.shift();
    const [, type, base64] = fields;
    if (!type || !base64 || !/^[A-Za-z0-9+/]+=*$/.test(base64)) continue;
    const blob = Buffer.from(base64, 'base64');
    // The blob starts with its own type name; a mismatch is a corrupt line.
    const nameLength = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
    if (nameLength < 0 || blob.subarray(4, 4 + nameLength).toString('latin1') !== type) continue;
    if (marker === '@revoked') revoked.push({ type, blob });
    else if (marker === undefined) keys.push({ type, blob });
  }
  const usable = keys.filter((k) => !revoked.some((r) => r.blob.equals(k.blob)));
  const algorithms = [...new Set(usable.flatMap((k) => algorithmsByType[k.type] ?? []))];
  return { keys: usable, revoked, algorithms };
}

export function isKnownHostKey(known: KnownHosts, presented: Buffer): boolean {
  if (known.revoked.some((r) => r.blob.equals(presented))) return false;
  return known.keys.some((k) => k.blob.equals(presented));
}

/** OpenSSH-style fingerprint, for messages: SHA256:base64 without padding. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export function keyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  return blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1');
}
