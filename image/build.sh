#!/usr/bin/env bash
# Builds an image of the committed tree (HEAD) into dist/, without a container daemon, and
# prints the archive's path. Usage: image/build.sh airlock|agent
# - airlock: `airlock operator|sidecar|init`. Debian packages extracted, never configured (no
#   maintainer scripts, so no shell or package manager in the image), Node 24 from the npm
#   registry, the app with its production dependencies.
# - agent: the clients the end-to-end agents run unchanged (psql, ssh, curl, python3,
#   redis-cli), on an ordinary Debian system with a shell.
# An archive that already holds HEAD (its revision label) is kept unless image/ has changed.
set -euo pipefail
# The archive's path is the only thing on stdout; every tool's output goes to stderr.
exec 3>&1 1>&2
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
umask 022
kind=${1:-}
[[ "$kind" == airlock || "$kind" == agent ]] || { echo "usage: $0 airlock|agent"; exit 2; }

case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64) node_arch=arm64 ;;
  *) echo "build.sh: unsupported architecture $(uname -m)"; exit 1 ;;
esac
registry=ghcr.io/airlock-dev
source_url=https://github.com/airlock-dev/airlock
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json)
revision=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
name=airlock$([[ "$kind" == agent ]] && echo -agent || true)
ref="$registry/$name:$version"
out="dist/$name-$version.oci.tar"
# Debian as of the build: the same package versions give the same bytes; a point release or a
# security update changes the image.
mirror=${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${AIRLOCK_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

# The revision label of the config of the archive's one image.
archived_revision() {
  local manifest config
  manifest=$(tar -xOf "$1" index.json | grep -o '"digest":"sha256:[0-9a-f]*' | cut -d: -f3)
  config=$(tar -xOf "$1" "blobs/sha256/$manifest" | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]*' | cut -d: -f2)
  tar -xOf "$1" "blobs/sha256/$config" | grep -o '"org.opencontainers.image.revision":"[0-9a-f]*' | cut -d'"' -f4
}
# One build of an image at a time: another caller waits, then finds the archive made.
mkdir -p dist
exec 9>"dist/.$name.lock"
flock 9
if [[ -f "$out" && "$(archived_revision "$out" 2>/dev/null)" == "$revision" ]] && git diff --quiet HEAD -- image/; then
  echo "build.sh: $out holds $revision already"
  echo "$out" >&3
  exit 0
fi
git diff --quiet HEAD -- . ':!dist' || echo "build.sh: uncommitted changes are not in the image: it is built from HEAD ($revision)"

work=$(mktemp -d "${TMPDIR:-/tmp}/airlock-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
started=$SECONDS

# Documentation, locales, package-manager state, the C library's iconv modules: nothing at run
# time reads them. The build host's name and resolver, and device nodes: the runtime provides
# its own.
prune=(usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/bash-completion
  usr/share/gdb usr/share/pixmaps var/cache/apt var/cache/debconf var/lib/apt var/log/apt var/log/dpkg.log
  var/log/alternatives.log var/log/bootstrap.log etc/apt etc/machine-id "usr/lib/$(uname -m)-linux-gnu/gconv"
  etc/hostname etc/resolv.conf)
debian() { # variant, packages, then mmdebstrap options
  local variant=$1 packages=$2
  shift 2
  mmdebstrap --quiet --variant="$variant" --include="$packages" --aptopt='Acquire::Retries "3"' "$@" \
    bookworm "$rootfs" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main"
  (cd "$rootfs" && rm -rf "${prune[@]}" && find dev -mindepth 1 -delete)
}

labels() {
  printf '"org.opencontainers.image.source":"%s","org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.created":"%s","org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.title":"%s"' \
    "$source_url" "$version" "$revision" "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" "$1"
}

if [[ "$kind" == airlock ]]; then
  # The C and C++ runtimes Node links against; iptables (nf_tables and legacy) and iproute2
  # for `airlock init`.
  debian extract libc6,libstdc++6,libgcc-s1,iptables,iproute2
  # What the alternatives system would link: `iptables` speaks nf_tables, as Debian's default.
  for tool in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
    ln -s "${tool/tables/tables-nft}" "$rootfs/usr/sbin/$tool"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

  # Node 24, the same release scripts/node.sh installs, from the npm registry's official binary.
  node_version=$(sed -n 's/^NODE_VERSION="${AIRLOCK_NODE_VERSION:-\(.*\)}"$/\1/p' scripts/node.sh)
  (cd "$work" && npm pack --silent "node-linux-$node_arch@$node_version" >/dev/null && tar -xzf "node-linux-$node_arch-$node_version.tgz")
  mkdir -p "$rootfs/usr/local/bin"
  # Without its 18 MB of symbols; the dynamic symbols native addons link against stay.
  strip -o "$rootfs/usr/local/bin/node" "$work/package/bin/node"

  # The app: the runtime folders of the commit, with production dependencies only.
  app="$rootfs/app"
  mkdir -p "$app"
  git archive HEAD api audit bin cli console local metrics operator policy sidecar package.json package-lock.json | tar -x -C "$app"
  find "$app" \( -name '*.test.ts' -o -name '*.bench.ts' \) -delete
  # JavaScript, not TypeScript (image/compile.sh), compiled by TypeScript at the lockfile's
  # version from the npm registry: a clean checkout has no development dependencies installed.
  typescript=$(sed -n '/"node_modules\/typescript": {/,/}/s/^ *"version": "\(.*\)",$/\1/p' package-lock.json)
  npm install --prefix "$work/typescript" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "typescript@$typescript"
  bash image/compile.sh "$app" "$work/typescript/node_modules/.bin/tsc"
  # Native addons build against the headers of the Node that runs them; the build directory's
  # name, which their assertions quote, is mapped away.
  (cd "$app" && PATH="$work/package/bin:$PATH" npm_config_nodedir="$work/package" \
    CFLAGS="-ffile-prefix-map=$work=/build" CXXFLAGS="-ffile-prefix-map=$work=/build" \
    npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  # Types, source maps, read-mes and other platforms' prebuilt addons are not run (nor is
  # TypeScript under node_modules); of a native build only the addon is loaded.
  find "$app/node_modules" -type f \( -name '*.ts' -o -name '*.cts' -o -name '*.mts' -o -name '*.map' -o -name '*.md' \) -delete
  find "$app/node_modules" -type d -regex '.*/prebuilds/[^/]*' -not -name "linux-$node_arch" \
    -prune -exec rm -rf {} +
  for build in $(find "$app/node_modules" -name binding.gyp -printf '%h/build\n'); do
    [[ -d "$build" ]] || continue
    mkdir "$work/addon" && mv "$build"/Release/*.node "$work/addon/" && rm -rf "$build"
    mkdir "$build" && mv "$work/addon" "$build/Release"
  done
  # The kubelet runs `airlock …` (the injected containers' command): the launcher on the PATH,
  # started by this Node, with no /usr/bin/env to find it.
  sed -i '1c#!/usr/local/bin/node' "$app/bin/airlock.js"
  ln -s /app/bin/airlock.js "$rootfs/usr/local/bin/airlock"

  config='{"User":"65532:65532","Entrypoint":["/usr/local/bin/airlock"],"Cmd":["--help"],"WorkingDir":"/app",'
  config+='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],'
  config+="\"Labels\":{$(labels airlock),\"org.opencontainers.image.description\":\"airlock operator, sidecar and init\"}}"
else
  debian essential postgresql-client,openssh-client,curl,ca-certificates,python3,redis-tools \
    --customize-hook='printf "agent:x:65532:65532:agent:/home/agent:/bin/sh\n" >>"$1/etc/passwd"' \
    --customize-hook='printf "agent:x:65532:\n" >>"$1/etc/group"' \
    --customize-hook='install -d -o 65532 -g 65532 "$1/home/agent"'
  config='{"User":"65532:65532","Cmd":["sleep","infinity"],"WorkingDir":"/home/agent",'
  config+='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","HOME=/home/agent"],'
  config+="\"Labels\":{$(labels airlock-agent),\"org.opencontainers.image.description\":\"airlock end-to-end agent: psql, ssh, curl, python3, redis-cli\"}}"
fi

echo "$config" >"$work/config.json"
bash image/oci.sh "$rootfs" "$work/config.json" "$ref" "$out"
echo "build.sh: $ref in $((SECONDS - started))s"
echo "$out" >&3
