// A throwaway certificate authority for tests, made with the openssl CLI: a CA and leaf
// certificates for loopback names. Tests only; the data path never shells out.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Certificate {
  cert: string;
  key: string;
}

export interface TestCa extends Certificate {
  /** Issues a leaf certificate for the given DNS names and IP addresses (server and client use). */
  issue(commonName: string, names?: { dns?: string[]; ip?: string[] }): Certificate;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createTestCa(name = 'Airlock Test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-pki-'));
  try {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        'ca.key',
        '-sha256',
        '-days',
        '2',
        '-subj',
        `/CN=${name}`,
        '-out',
        'ca.crt',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    const ca = {
      cert: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      key: readFileSync(join(dir, 'ca.key'), 'utf8'),
    };
    return {
      ...ca,
      issue(commonName, names = { dns: ['localhost'], ip: ['127.0.0.1'] }) {
        const leaf = mkdtempSync(join(tmpdir(), 'airlock-leaf-'));
        try {
          writeFileSync(join(leaf, 'ca.crt'), ca.cert);
          writeFileSync(join(leaf, 'ca.key'), ca.key, { mode: 0o600 });
          const sans = [
            ...(names.dns ?? []).map((d) => `DNS:${d}`),
            ...(names.ip ?? []).map((i) => `IP:${i}`),
          ];
          writeFileSync(
            join(leaf, 'ext.cnf'),
            [
              'basicConstraints=CA:FALSE',
              'keyUsage=critical,digitalSignature,keyEncipherment',
              'extendedKeyUsage=serverAuth,clientAuth',
              ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
              '',
            ].join('\n'),
          );
          openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key'], leaf);
          openssl(
            ['req', '-new', '-key', 'leaf.key', '-subj', `/CN=${commonName}`, '-out', 'leaf.csr'],
            leaf,
          );
          openssl(
            [
              'x509',
              '-req',
              '-in',
              'leaf.csr',
              '-CA',
              'ca.crt',
              '-CAkey',
              'ca.key',
              '-CAcreateserial',
              '-sha256',
              '-days',
              '2',
              '-extfile',
              'ext.cnf',
              '-out',
              'leaf.crt',
            ],
            leaf,
          );
          return {
            cert: readFileSync(join(leaf, 'leaf.crt'), 'utf8'),
            key: readFileSync(join(leaf, 'leaf.key'), 'utf8'),
          };
        } finally {
          rmSync(leaf, { recursive: true, force: true });
        }
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
