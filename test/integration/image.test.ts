// The OCI images as `make image` and `make image-agent` build them: what the archive names and
// labels, that its digests hold, and what runs inside, started by runc from the unpacked image
// (umoci) as a kubelet would start it: the image's own user, the injected containers' users,
// airlock-init with NET_ADMIN in a network namespace a second container then reads.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { parse } from 'yaml';
import { runCommand } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const execFileAsync = promisify(execFile);
const repository = new URL('../../', import.meta.url).pathname;
const version: string = JSON.parse(readFileSync(join(repository, 'package.json'), 'utf8')).version;
const tools = requires('mmdebstrap', 'umoci', 'runc', 'skopeo', 'git', 'ip');

/** Builds one image of HEAD (or finds it built) and returns its archive's path. */
async function build(kind: 'airlock' | 'agent', repo = repository): Promise<string> {
  const { stdout } = await execFileAsync('bash', [join(repo, 'image/build.sh'), kind], {
    cwd: repo,
    maxBuffer: 16 << 20,
  });
  return join(repo, stdout.trim());
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

/** An image archive unpacked: its layout, the documents in it, and a runc bundle of it. */
class Image {
  readonly index: { manifests: Descriptor[] };
  readonly manifest: { config: Descriptor; layers: Descriptor[] };
  readonly config: {
    created: string;
    config: { User: string; Entrypoint?: string[]; Cmd?: string[]; Labels: Record<string, string> };
    rootfs: { diff_ids: string[] };
  };
  readonly archive: string;
  readonly dir: string;
  private containers = 0;

  private constructor(archive: string, dir: string) {
    this.archive = archive;
    this.dir = dir;
    this.index = this.json('index.json');
    this.manifest = this.json(this.blobPath(this.index.manifests[0]!.digest));
    this.config = this.json(this.blobPath(this.manifest.config.digest));
  }

  static async open(archive: string): Promise<Image> {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-image-test-'));
    await mkdir(join(dir, 'layout'));
    await execFileAsync('tar', ['-xf', archive, '-C', join(dir, 'layout')]);
    const image = new Image(archive, dir);
    await execFileAsync('umoci', [
      'unpack',
      '--image',
      `${join(dir, 'layout')}:${version}`,
      join(dir, 'bundle'),
    ]);
    // The runtime configuration umoci derived from the image's: each run starts from it.
    await cp(join(dir, 'bundle/config.json'), join(dir, 'umoci-config.json'));
    return image;
  }

  blobPath(digest: string): string {
    return join('blobs/sha256', digest.replace(/^sha256:/, ''));
  }

  blob(digest: string): Buffer {
    return readFileSync(join(this.dir, 'layout', this.blobPath(digest)));
  }

  private json<T>(path: string): T {
    return JSON.parse(readFileSync(join(this.dir, 'layout', path), 'utf8')) as T;
  }

  get rootfs(): string {
    return join(this.dir, 'bundle/rootfs');
  }

  /**
   * Runs a process of the image with runc: the image's user and command unless given, with
   * extra capabilities and in a named network namespace if asked.
   */
  async run(
    options: {
      args?: string[];
      user?: number;
      capabilities?: string[];
      netns?: string;
      /** A read-only root file system with an empty writable directory here, as the chart and the injector run it. */
      volume?: string;
    } = {},
  ): Promise<{ code: number | null; output: string }> {
    const bundle = join(this.dir, 'bundle');
    const spec = JSON.parse(readFileSync(join(this.dir, 'umoci-config.json'), 'utf8'));
    const own = this.config.config;
    spec.process.terminal = false;
    spec.process.args = options.args ?? [...(own.Entrypoint ?? []), ...(own.Cmd ?? [])];
    if (options.user !== undefined) spec.process.user = { uid: options.user, gid: options.user };
    for (const set of ['bounding', 'effective', 'permitted'])
      spec.process.capabilities[set] = [...spec.process.capabilities[set], ...(options.capabilities ?? [])];
    if (options.netns) {
      const network = spec.linux.namespaces.find((n: { type: string }) => n.type === 'network');
      network.path = `/var/run/netns/${options.netns}`;
    }
    if (options.volume) {
      // runc gives a tmpfs the mode of the directory it covers: one every user may write to,
      // as a pod's emptyDir is.
      await mkdir(join(this.rootfs, options.volume), { recursive: true });
      await chmod(join(this.rootfs, options.volume), 0o1777);
      spec.root.readonly = true;
      spec.mounts.push({
        destination: options.volume,
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['mode=1777'],
      });
    }
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    this.containers++;
    const id = `airlock-image-test-${process.pid}-${this.containers}`;
    const result = await runCommand(
      'runc',
      ['--root', join(this.dir, 'runc'), 'run', '--bundle', bundle, id],
      undefined,
      120_000,
    );
    return { code: result.code, output: result.stdout + result.stderr };
  }

  /** Every path of the image's layer, freshly extracted, with its owner, mode, time and content digest. */
  async files(): Promise<Map<string, string>> {
    const root = await mkdtemp(join(this.dir, 'layer-'));
    await execFileAsync('tar', [
      '-xzf',
      join(this.dir, 'layout', this.blobPath(this.manifest.layers[0]!.digest)),
      '-C',
      root,
    ]);
    const files = new Map<string, string>();
    for (const path of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
      const full = join(root, path);
      const stat = lstatSync(full);
      const content = stat.isSymbolicLink()
        ? `-> ${readlinkSync(full)}`
        : stat.isFile()
          ? createHash('sha256').update(readFileSync(full)).digest('hex')
          : '';
      files.set(path, `${stat.mode.toString(8)} ${stat.uid}:${stat.gid} ${stat.mtimeMs} ${content}`);
    }
    await rm(root, { recursive: true, force: true });
    return files;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function git(...args: string[]): Promise<string> {
  return (await execFileAsync('git', ['-C', repository, ...args], { maxBuffer: 16 << 20 })).stdout;
}

describe('the airlock image', tools, () => {
  let image: Image;
  before(async () => {
    image = await Image.open(await build('airlock'));
  });
  after(async () => image?.remove());

  test('is named as the chart installs it, for containerd and for OCI tools', async () => {
    const chart = parse(readFileSync(join(repository, 'charts/airlock/Chart.yaml'), 'utf8'));
    const values = parse(readFileSync(join(repository, 'charts/airlock/values.yaml'), 'utf8'));
    assert.equal(chart.appVersion, version);
    assert.equal(values.image.tag, '');
    assert.equal(image.archive, join(repository, `dist/airlock-${version}.oci.tar`));
    const [manifest, ...others] = image.index.manifests;
    assert.equal(others.length, 0);
    assert.deepEqual(manifest!.annotations, {
      'io.containerd.image.name': `${values.image.repository}:${chart.appVersion}`,
      'org.opencontainers.image.ref.name': version,
    });
    assert.deepEqual(manifest!.platform, { architecture: 'amd64', os: 'linux' });
    const inspected = JSON.parse(
      (await execFileAsync('skopeo', ['inspect', `oci-archive:${image.archive}`])).stdout,
    );
    assert.equal(inspected.Digest, manifest!.digest);
  });

  test('its labels name the source, version and commit, and the commit is what it holds', async () => {
    const labels = image.config.config.Labels;
    const revision = labels['org.opencontainers.image.revision']!;
    assert.match(revision, /^[0-9a-f]{40}$/);
    assert.equal(labels['org.opencontainers.image.source'], 'https://github.com/airlock-dev/airlock');
    assert.equal(labels['org.opencontainers.image.version'], version);
    const committed = new Date(Number(await git('log', '-1', '--format=%ct', revision)) * 1000);
    const created = committed.toISOString().replace('.000Z', 'Z');
    assert.equal(labels['org.opencontainers.image.created'], created);
    assert.equal(image.config.created, created);
    for (const file of ['package.json', 'package-lock.json'])
      assert.equal(
        readFileSync(join(image.rootfs, 'app', file), 'utf8'),
        await git('show', `${revision}:${file}`),
      );
    // The sources run as the JavaScript image/build.sh compiles from them: no TypeScript left.
    for (const file of ['cli/main', 'sidecar/sidecar', 'operator/command', 'audit/worker']) {
      assert.equal(existsSync(join(image.rootfs, 'app', `${file}.js`)), true, `${file}.js`);
      assert.equal(existsSync(join(image.rootfs, 'app', `${file}.ts`)), false, `${file}.ts`);
    }
  });

  test('its blobs hold what the manifest says, under 200 MiB unpacked', async () => {
    const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const [layer, ...more] = image.manifest.layers;
    assert.equal(more.length, 0);
    const compressed = image.blob(layer!.digest);
    assert.equal(sha256(compressed), layer!.digest);
    assert.equal(compressed.length, layer!.size);
    const tar = gunzipSync(compressed);
    assert.deepEqual(image.config.rootfs.diff_ids, [sha256(tar)]);
    assert.ok(tar.length < 200 * 2 ** 20, `${tar.length >> 20} MiB unpacked`);
  });

  test('runs as a non-root user, with no shell, no package manager, nothing of the build machine', async () => {
    assert.equal(image.config.config.User, '65532:65532');
    for (const path of ['bin/sh', 'usr/bin/sh', 'bin/bash', 'usr/bin/bash', 'usr/bin/dpkg', 'usr/bin/apt'])
      assert.equal(existsSync(join(image.rootfs, path)), false, path);
    // Nor anything of the machine that built it.
    for (const path of ['etc/hostname', 'etc/resolv.conf', 'etc/machine-id'])
      assert.equal(existsSync(join(image.rootfs, path)), false, path);
    const result = await image.run({ args: ['node', '-p', 'process.getuid()'] });
    assert.deepEqual(result, { code: 0, output: '65532\n' });
  });

  test('holds the production dependencies only, and no tests', async () => {
    const app = (file: string) => JSON.parse(readFileSync(join(image.rootfs, 'app', file), 'utf8'));
    const lock = app('package-lock.json') as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'));
    const development = installed.filter(([, entry]) => entry.dev).map(([path]) => path);
    assert.ok(development.includes('node_modules/typescript'));
    for (const path of development)
      assert.equal(existsSync(join(image.rootfs, 'app', path)), false, `${path} is a development dependency`);
    for (const name of Object.keys(app('package.json').dependencies))
      assert.ok(
        existsSync(join(image.rootfs, 'app/node_modules', name, 'package.json')),
        `${name} is missing`,
      );
    const tests = readdirSync(join(image.rootfs, 'app'), { recursive: true, encoding: 'utf8' }).filter(
      (path) => /\.(test|bench)\.ts$/.test(path) || path.startsWith('test/'),
    );
    assert.deepEqual(tests, []);
  });

  test('runs airlock, the operator, the sidecar and init with their help, as their users', async () => {
    const own = await image.run();
    assert.equal(own.code, 0, own.output);
    assert.match(own.output, /^Usage: airlock COMMAND/m);
    const commands = [
      { command: 'operator', user: 1000 }, // the chart's runAsUser
      { command: 'sidecar', user: 1337 }, // the injected sidecar's
      { command: 'init', user: 0 },
    ];
    for (const { command, user } of commands) {
      const result = await image.run({ args: ['airlock', command, '--help'], user });
      assert.equal(result.code, 0, result.output);
      assert.match(result.output, new RegExp(`^Usage: airlock ${command} `, 'm'));
    }
  });

  test("the image's Node loads the SQL parser, the SSH crypto addon and the audit store, from a read-only root", async () => {
    const parser = await image.run({
      user: 1337,
      volume: '/var/lib/airlock/spool',
      args: [
        'node',
        '--liftoff-only',
        '--input-type=module',
        '-e',
        "const m = await import('libpg-query'); await m.loadModule(); console.log(Object.keys(m.parseSync('DROP TABLE users').stmts[0].stmt)[0])",
      ],
    });
    assert.deepEqual(parser, { code: 0, output: 'DropStmt\n' });
    const addon = await image.run({
      user: 1337,
      volume: '/var/lib/airlock/spool',
      args: [
        'node',
        '-p',
        "const addon = 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node'; " +
          "typeof require(addon).ChaChaPolyCipher + ' ' + require('fs').readFileSync(require.resolve(addon)).includes('EnvironmentCleanupHook')",
      ],
    });
    // Built as package.json's postinstall builds it: no environment cleanup hook to abort on.
    assert.deepEqual(addon, { code: 0, output: 'function false\n' });
    const store = await image.run({
      user: 1000,
      volume: '/var/lib/airlock',
      args: ['airlock', 'audit', 'verify', '--store', '/var/lib/airlock/audit'],
    });
    assert.equal(store.code, 0, store.output);
    assert.match(store.output, /^ok: 0 events verified/m);
  });

  test("airlock init installs the capture with the image's iptables and ip, in a pod's network namespace", async (t) => {
    const netns = `airlock-image-test-${process.pid}`;
    await execFileAsync('ip', ['netns', 'add', netns]);
    t.after(() => execFileAsync('ip', ['netns', 'delete', netns]));
    const init = await image.run({
      user: 0,
      capabilities: ['CAP_NET_ADMIN', 'CAP_NET_RAW'],
      netns,
      args: ['airlock', 'init', '--sidecar-uid', '1337', '--virtual-cidr', '240.240.0.0/16'].concat([
        '--virtual',
        'orders-db=240.240.0.1:5432',
        '--dns',
        '10.96.0.10',
      ]),
    });
    assert.equal(init.code, 0, init.output);
    assert.match(init.output, /installed iptables backend: nft/);
    // A second container of the same namespace, as the pod's next container sees it.
    const rules = await image.run({
      user: 0,
      capabilities: ['CAP_NET_ADMIN'],
      netns,
      args: ['iptables-save'],
    });
    assert.equal(rules.code, 0, rules.output);
    assert.match(rules.output, /^-A OUTPUT -j AIRLOCK_OUTPUT$/m);
    assert.match(rules.output, /-m owner --uid-owner 1337 -j RETURN/);
    const routes = await image.run({ user: 0, netns, args: ['ip', 'route', 'show', 'table', 'local'] });
    assert.match(routes.output, /^local 240\.240\.0\.0\/16 dev lo/m);
  });

  test('two clean builds of its commit, in another directory, give the same digest', async () => {
    const revision = image.config.config.Labels['org.opencontainers.image.revision']!;
    const clone = await mkdtemp(join(tmpdir(), 'airlock-image-clone-'));
    try {
      await execFileAsync('git', ['clone', '--quiet', '--no-checkout', repository, clone]);
      await execFileAsync('git', ['-C', clone, 'checkout', '--quiet', revision]);
      // The build scripts of the work tree, which built the archive under test.
      await cp(join(repository, 'image'), join(clone, 'image'), { recursive: true });
      const rebuilt = await Image.open(await build('airlock', clone));
      try {
        // The paths that differ, if any, say why the digests do.
        const [built, again] = [await image.files(), await rebuilt.files()];
        const differing = [...new Set([...built.keys(), ...again.keys()])].filter(
          (path) => built.get(path) !== again.get(path),
        );
        assert.deepEqual(
          differing.map((path) => `${path}: ${built.get(path)} / ${again.get(path)}`),
          [],
        );
        assert.deepEqual(rebuilt.config, image.config);
        assert.equal(rebuilt.index.manifests[0]!.digest, image.index.manifests[0]!.digest);
      } finally {
        await rebuilt.remove();
      }
    } finally {
      await rm(clone, { recursive: true, force: true });
    }
  });
});

describe('the agent image', tools, () => {
  let image: Image;
  before(async () => {
    image = await Image.open(await build('agent'));
  });
  after(async () => image?.remove());

  test('is named for containerd and labelled like the airlock image', () => {
    assert.equal(image.archive, join(repository, `dist/airlock-agent-${version}.oci.tar`));
    assert.equal(
      image.index.manifests[0]!.annotations!['io.containerd.image.name'],
      `ghcr.io/airlock-dev/airlock-agent:${version}`,
    );
    assert.equal(image.config.config.Labels['org.opencontainers.image.version'], version);
    assert.match(image.config.config.Labels['org.opencontainers.image.revision']!, /^[0-9a-f]{40}$/);
  });

  test('runs psql, ssh, curl and python3 as its non-root user, with a home for their files', async () => {
    const result = await image.run({
      args: [
        'sh',
        '-c',
        'id -u; psql --version; ssh -V 2>&1; curl --version; python3 --version; touch ~/.psql_history',
      ],
    });
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /^65532$/m);
    assert.match(result.output, /^psql \(PostgreSQL\) 15\./m);
    assert.match(result.output, /^OpenSSH_9/m);
    assert.match(result.output, /^curl 7\./m);
    assert.match(result.output, /^Python 3\./m);
  });
});
