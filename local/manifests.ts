// Reads the manifests one would `kubectl apply` (Connections, AccessPolicies, Secrets) from
// files and directories, and validates them with the same schemas the API server enforces.
// An invalid manifest fails with its file, its object and the field.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import type { BundleSources, SecretData } from '../api/bundle.ts';
import {
  type AccessPolicy,
  accessPolicySpecSchema,
  apiVersion,
  type Connection,
  connectionSpecSchema,
} from '../api/v1alpha1.ts';

export class ManifestError extends Error {
  override name = 'ManifestError';
}

async function files(path: string): Promise<string[]> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new ManifestError(`${path}: no such file or directory`);
  if (!info.isDirectory()) return [path];
  const entries = (await readdir(path)).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  return entries.map((f) => join(path, f));
}

function fieldPath(path: PropertyKey[]): string {
  return path.reduce<string>(
    (out, key) => (typeof key === 'number' ? `${out}[${key}]` : `${out}.${String(key)}`),
    'spec',
  );
}

function parseSpec<T extends z.ZodType>(schema: T, spec: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(spec);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => `${fieldPath(issue.path)}: ${issue.message}`);
  throw new ManifestError(`${where}: ${issues.join('; ')}`);
}

function decode(value: string, where: string): string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new ManifestError(`${where}: data values must be base64`);
  return Buffer.from(value, 'base64').toString('utf8');
}

/** Loads every Connection, AccessPolicy and Secret under the given paths; other kinds are ignored. */
export async function loadManifests(paths: string[]): Promise<BundleSources> {
  const sources: BundleSources = { connections: [], policies: [], secrets: [] };
  const seen = new Map<string, string>();
  for (const path of paths) {
    for (const file of await files(path)) {
      const text = await readFile(file, 'utf8');
      const documents = YAML.parseAllDocuments(text);
      for (const [index, document] of documents.entries()) {
        if (document.errors.length > 0) {
          throw new ManifestError(`${file}: document ${index + 1}: ${document.errors[0]!.message}`);
        }
        const object = document.toJS() as Record<string, unknown> | null;
        if (object === null || object === undefined) continue;
        const kind = object.kind as string | undefined;
        const metadata = (object.metadata ?? {}) as {
          name?: string;
          namespace?: string;
          creationTimestamp?: unknown;
        };
        const where = `${file}: ${kind ?? 'object'} ${metadata.namespace ?? 'default'}/${metadata.name ?? '(unnamed)'}`;
        if (!kind || !['Connection', 'AccessPolicy', 'Secret'].includes(kind)) continue;
        if (!metadata.name) throw new ManifestError(`${where}: metadata.name is required`);
        const namespace = metadata.namespace ?? 'default';
        const key = `${kind}/${namespace}/${metadata.name}`;
        if (seen.has(key)) throw new ManifestError(`${where}: also defined in ${seen.get(key)}`);
        seen.set(key, file);
        if (kind === 'Secret') {
          const data: Record<string, string> = {};
          for (const [k, v] of Object.entries((object.data ?? {}) as Record<string, string>)) {
            data[k] = decode(String(v), `${where}: data.${k}`);
          }
          for (const [k, v] of Object.entries((object.stringData ?? {}) as Record<string, string>))
            data[k] = String(v);
          sources.secrets.push({ namespace, name: metadata.name, data } satisfies SecretData);
          continue;
        }
        if (object.apiVersion !== apiVersion) {
          throw new ManifestError(
            `${where}: apiVersion must be ${apiVersion}, not ${String(object.apiVersion)}`,
          );
        }
        // Kept when the manifest is an exported object: policy lint reads how old it is.
        const created = metadata.creationTimestamp;
        const meta = {
          name: metadata.name,
          namespace,
          ...(typeof created === 'string' && { creationTimestamp: created }),
        };
        if (kind === 'Connection') {
          const spec = parseSpec(connectionSpecSchema, object.spec, where);
          sources.connections.push({ apiVersion, kind, metadata: meta, spec } satisfies Connection);
        } else {
          const spec = parseSpec(accessPolicySpecSchema, object.spec, where);
          sources.policies.push({ apiVersion, kind, metadata: meta, spec } satisfies AccessPolicy);
        }
      }
    }
  }
  return sources;
}
