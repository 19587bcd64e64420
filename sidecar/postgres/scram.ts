// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, with
// tls-server-end-point channel binding (RFC 5929) for SCRAM-SHA-256-PLUS.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export class ScramError extends Error {
  readonly code = 'scram-failed';
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

export interface ScramClient {
  mechanism: 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
  /** client-first-message */
  first(): Buffer;
  /** server-first-message in, client-final-message out */
  final(serverFirst: Buffer): Buffer;
  /** Verifies server-final-message; throws ScramError when the server cannot prove it knows the password. */
  verify(serverFinal: Buffer): void;
}

/**
 * @param bindingData the tls-server-end-point hash of the server certificate, for -PLUS.
 * @param serverSupportsPlus whether the server offered -PLUS (else "y" tells it we could have).
 */
export function scramClient(
  password: string,
  options: { bindingData?: Buffer; tls?: boolean; nonce?: string; user?: string } = {},
): ScramClient {
  const plus = options.bindingData !== undefined;
  const gs2Header = plus ? 'p=tls-server-end-point,,' : options.tls ? 'y,,' : 'n,,';
  const clientNonce = options.nonce ?? randomBytes(18).toString('base64');
  // PostgreSQL takes the user from the startup packet and ignores this one.
  const clientFirstBare = `n=${options.user ?? '*'},r=${clientNonce}`;
  let serverSignature: Buffer | undefined;
  return {
    mechanism: plus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256',
    first: () => Buffer.from(gs2Header + clientFirstBare, 'utf8'),
    final(serverFirstBuffer) {
      const serverFirst = serverFirstBuffer.toString('utf8');
      const attributes = parseAttributes(serverFirst);
      const nonce = attributes.get('r');
      const salt = attributes.get('s');
      const iterations = Number(attributes.get('i'));
      if (!nonce?.startsWith(clientNonce) || nonce.length === clientNonce.length) {
        throw new ScramError('server nonce does not extend the client nonce');
      }
      if (!salt) throw new ScramError('server sent no salt');
      if (!Number.isInteger(iterations) || iterations < 1 || iterations > 10_000_000) {
        throw new ScramError('server sent an invalid iteration count');
      }
      const binding = Buffer.concat([Buffer.from(gs2Header, 'utf8'), options.bindingData ?? Buffer.alloc(0)]);
      const clientFinalWithoutProof = `c=${binding.toString('base64')},r=${nonce}`;
      const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
      // SASLprep is the identity for the passwords we expect; the server, like libpq, falls
      // back to the raw bytes when a password is not valid SASLprep input.
      const saltedPassword = pbkdf2Sync(
        Buffer.from(password.normalize('NFKC'), 'utf8'),
        Buffer.from(salt, 'base64'),
        iterations,
        32,
        'sha256',
      );
      const clientKey = hmac(saltedPassword, 'Client Key');
      const storedKey = createHash('sha256').update(clientKey).digest();
      const clientSignature = hmac(storedKey, authMessage);
      const proof = Buffer.alloc(clientKey.length);
      for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ clientSignature[i]!;
      serverSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
      return Buffer.from(`${clientFinalWithoutProof},p=${proof.toString('base64')}`, 'utf8');
    },
    verify(serverFinalBuffer) {
      const attributes = parseAttributes(serverFinalBuffer.toString('utf8'));
      const error = attributes.get('e');
      if (error) throw new ScramError(`server rejected authentication: ${error}`);
      const v = attributes.get('v');
      if (!v || !serverSignature) throw new ScramError('server sent no signature');
      const received = Buffer.from(v, 'base64');
      if (received.length !== serverSignature.length || !timingSafeEqual(received, serverSignature)) {
        throw new ScramError('server signature does not match: the server does not know the password');
      }
    },
  };
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function parseAttributes(message: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) attributes.set(part[0]!, part.slice(2));
  }
  return attributes;
}

/**
 * tls-server-end-point binding data: the server certificate hashed with its signature's hash
 * algorithm, SHA-256 when that is MD5 or SHA-1 (RFC 5929 §4.1).
 */
export function tlsServerEndPoint(certificateDer: Buffer): Buffer {
  return createHash(signatureHash(certificateDer)).update(certificateDer).digest();
}

const hashByOid: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10045.4.3.1': 'sha224',
};

/** Reads Certificate.signatureAlgorithm from DER: SEQUENCE { tbs SEQUENCE, alg SEQUENCE { OID … } … }. */
export function signatureHash(der: Buffer): string {
  try {
    let at = 0;
    const header = (): { length: number; start: number } => {
      at++; // tag
      let length = der[at++]!;
      if (length & 0x80) {
        const n = length & 0x7f;
        length = 0;
        for (let i = 0; i < n; i++) length = length * 256 + der[at++]!;
      }
      return { length, start: at };
    };
    header(); // Certificate
    const tbs = header();
    at = tbs.start + tbs.length;
    header(); // AlgorithmIdentifier
    if (der[at] !== 0x06) return 'sha256';
    const oid = header();
    const bytes = der.subarray(oid.start, oid.start + oid.length);
    const parts = [Math.floor(bytes[0]! / 40), bytes[0]! % 40];
    let value = 0;
    for (let i = 1; i < bytes.length; i++) {
      value = value * 128 + (bytes[i]! & 0x7f);
      if (!(bytes[i]! & 0x80)) {
        parts.push(value);
        value = 0;
      }
    }
    return hashByOid[parts.join('.')] ?? 'sha256';
  } catch {
    return 'sha256';
  }
}
