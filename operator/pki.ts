// A small certificate authority: the operator's webhook and control-API certificates, and
// the test control plane's serving and client certificates. ECDSA P-256, PEM in and out.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface KeyPairPem {
  certificate: string;
  privateKey: string;
}

export interface CertificateAuthority extends KeyPairPem {
  issue(options: IssueOptions): Promise<KeyPairPem>;
}

export interface IssueOptions {
  commonName: string;
  /** Subject organizations: Kubernetes reads them as the user's groups. */
  organizations?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: 'server' | 'client' | 'both';
  validFor?: number;
}

const day = 24 * 60 * 60 * 1000;

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`.replace(
    /\n\n/g,
    '\n',
  );
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, algorithm, true, ['sign']);
}

function distinguishedName(commonName: string, organizations: string[] = []): string {
  const escapeValue = (value: string) => value.replace(/([,+"\\<>;=])/g, '\\$1');
  return [`CN=${escapeValue(commonName)}`, ...organizations.map((o) => `O=${escapeValue(o)}`)].join(', ');
}

export async function createCertificateAuthority(
  commonName: string,
  validFor = 3650 * day,
): Promise<CertificateAuthority> {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    // A distinct organization keeps a leaf with the same common name from looking self-signed.
    name: distinguishedName(commonName, ['Airlock certificate authority']),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + validFor),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return loadCertificateAuthority({
    certificate: certificate.toString('pem'),
    privateKey: await exportKey(keys.privateKey),
  });
}

export async function loadCertificateAuthority(pair: KeyPairPem): Promise<CertificateAuthority> {
  const caCertificate = new x509.X509Certificate(pair.certificate);
  const caKey = await importKey(pair.privateKey);
  return {
    ...pair,
    async issue(options: IssueOptions): Promise<KeyPairPem> {
      const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
      const now = Date.now();
      const usages = {
        server: [x509.ExtendedKeyUsage.serverAuth],
        client: [x509.ExtendedKeyUsage.clientAuth],
        both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      }[options.usage];
      const altNames = [
        ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
        ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
      ];
      const certificate = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: distinguishedName(options.commonName, options.organizations),
        issuer: caCertificate.subject,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + (options.validFor ?? 365 * day)),
        signingAlgorithm: algorithm,
        publicKey: keys.publicKey,
        signingKey: caKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
            true,
          ),
          new x509.ExtendedKeyUsageExtension(usages),
          await x509.AuthorityKeyIdentifierExtension.create(caCertificate),
          ...(altNames.length > 0 ? [new x509.SubjectAlternativeNameExtension(altNames)] : []),
        ],
      });
      return { certificate: certificate.toString('pem'), privateKey: await exportKey(keys.privateKey) };
    },
  };
}

/** When a PEM certificate stops being valid. */
export function notAfter(certificatePem: string): Date {
  return new x509.X509Certificate(certificatePem).notAfter;
}
