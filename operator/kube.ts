// The operator's view of the API server: clients, and watched caches that restart themselves.
// client-node's informer stops for good on any error but 410 Gone; a Watched cache restarts it
// with backoff and reports whether it is healthy, so readiness can reflect it.
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type Informer,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { group, version } from '../api/v1alpha1.ts';

export function loadKubeConfig(path?: string): KubeConfig {
  const config = new KubeConfig();
  if (path) config.loadFromFile(path);
  else config.loadFromDefault();
  return config;
}

export interface Clients {
  config: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
  authentication: AuthenticationV1Api;
  authorization: AuthorizationV1Api;
}

export function clients(config: KubeConfig): Clients {
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    coordination: config.makeApiClient(CoordinationV1Api),
    authentication: config.makeApiClient(AuthenticationV1Api),
    authorization: config.makeApiClient(AuthorizationV1Api),
  };
}

export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Merge-patches the status subresource of one of Airlock's objects. With
 * `metadata.resourceVersion` in the body the patch is conditional (409 when the object changed).
 */
export function patchStatus(
  custom: CustomObjectsApi,
  plural: string,
  namespace: string,
  name: string,
  body: { metadata?: { resourceVersion?: string | undefined }; status: object },
): Promise<unknown> {
  return custom.patchNamespacedCustomObjectStatus(
    { group, version, plural, namespace, name, body },
    mergePatch,
  );
}

/** The HTTP status of a client-node error, when it has one. */
export function statusCode(error: unknown): number | undefined {
  const e = error as { code?: number; statusCode?: number; response?: { statusCode?: number } };
  return e?.code ?? e?.statusCode ?? e?.response?.statusCode;
}

export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export interface WatchedOptions<T extends KubernetesObject> {
  name: string;
  config: KubeConfig;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  onChange: (object: T, verb: 'add' | 'update' | 'delete') => void;
  onError?: (error: unknown, restartInMs: number) => void;
  maxBackoffMs?: number;
}

export class Watched<T extends KubernetesObject> {
  readonly name: string;
  readonly #informer: Informer<T> & ObjectCache<T>;
  readonly #options: WatchedOptions<T>;
  #healthy = false;
  #failures = 0;
  #stopped = false;
  #restart?: NodeJS.Timeout;

  constructor(options: WatchedOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#informer = makeInformer(options.config, options.path, options.list, options.labelSelector);
    for (const verb of ['add', 'update', 'delete'] as const) {
      this.#informer.on(verb, (object) => options.onChange(object, verb));
    }
    this.#informer.on('connect', () => {
      this.#healthy = true;
      this.#failures = 0;
    });
    this.#informer.on('error', (error) => {
      this.#healthy = false;
      if (this.#stopped) return;
      const delay = Math.min(250 * 2 ** this.#failures++, options.maxBackoffMs ?? 30_000);
      options.onError?.(error, delay);
      this.#restart = setTimeout(() => void this.#start(), delay);
    });
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  async start(): Promise<void> {
    await this.#start();
  }

  async #start(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#informer.start();
      this.#healthy = true;
      this.#failures = 0;
    } catch (error) {
      this.#healthy = false;
      const delay = Math.min(250 * 2 ** this.#failures++, this.#options.maxBackoffMs ?? 30_000);
      this.#options.onError?.(error, delay);
      this.#restart = setTimeout(() => void this.#start(), delay);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restart);
    await this.#informer.stop();
  }

  list(namespace?: string): readonly T[] {
    return this.#informer.list(namespace);
  }

  get(namespace: string, name: string): T | undefined {
    return this.#informer.get(name, namespace);
  }
}

export function customResourcePath(plural: string, namespace?: string): string {
  return namespace
    ? `/apis/${group}/${version}/namespaces/${namespace}/${plural}`
    : `/apis/${group}/${version}/${plural}`;
}

export function listCustom<T extends KubernetesObject>(api: CustomObjectsApi, plural: string) {
  return async () =>
    (await api.listClusterCustomObject({ group, version, plural })) as unknown as KubernetesListObject<T>;
}

/** One line saying what went wrong: client-node errors carry the whole response otherwise. */
export function describeError(error: unknown): string {
  const text = String((error as Error)?.message ?? error);
  const message = /\\"message\\":\\"([^\\]*)\\"/.exec(text)?.[1] ?? /"message":"([^"]*)"/.exec(text)?.[1];
  const code = statusCode(error);
  return message ? `${code ? `${code}: ` : ''}${message}` : text.split('\n')[0]!;
}
