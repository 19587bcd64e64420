#!/usr/bin/env bash
# Packs a root file system into an OCI image archive (an image layout in a tar), one layer, no
# daemon. Reproducible: entries sorted, owners numeric, file times clamped to SOURCE_DATE_EPOCH,
# gzip without a name or time; the same inputs give the same bytes, so the same digests.
# Usage: SOURCE_DATE_EPOCH=… image/oci.sh ROOTFS_DIR CONFIG_JSON NAME:TAG OUT.oci.tar
# CONFIG_JSON holds the image configuration's `config` object (User, Entrypoint, Env, Labels…).
set -euo pipefail
(($# == 4)) || { echo "usage: SOURCE_DATE_EPOCH=… $0 ROOTFS_DIR CONFIG_JSON NAME:TAG OUT.oci.tar" >&2; exit 2; }
rootfs=$1 config=$2 name=$3 out=$4
: "${SOURCE_DATE_EPOCH:?oci.sh: set SOURCE_DATE_EPOCH (e.g. git log -1 --format=%ct)}"
[[ -d "$rootfs" ]] || { echo "oci.sh: $rootfs is not a directory" >&2; exit 2; }
[[ -f "$config" ]] || { echo "oci.sh: $config is not a file" >&2; exit 2; }
[[ "${name##*/}" == *:?* ]] || { echo "oci.sh: $name is not a NAME:TAG image reference" >&2; exit 2; }

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "oci.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
layout=$(mktemp -d)
partial=
trap 'rm -rf "$layout" "$partial"' EXIT
blobs="$layout/blobs/sha256"
mkdir -p "$blobs"

# Writes stdin as a blob; prints "sha256:<hex> <size>".
blob() {
  local tmp="$layout/blob.tmp" digest
  cat >"$tmp"
  digest=$(sha256sum "$tmp" | cut -d' ' -f1)
  mv "$tmp" "$blobs/$digest"
  echo "sha256:$digest $(stat -c %s "$blobs/$digest")"
}

# The layer: the uncompressed tar's digest is the diff_id, the gzipped one the layer's digest.
tar_stable=(--sort=name --format=posix --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
tar "${tar_stable[@]}" -C "$rootfs" -cf "$layout/layer.tar" .
diff_id=sha256:$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
layer_bytes=$(stat -c %s "$layout/layer.tar")
read -r layer layer_size < <(gzip -n <"$layout/layer.tar" | blob)
rm "$layout/layer.tar"

read -r config_digest config_size < <(
  printf '{"created":"%s","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"%s","created_by":"image/oci.sh"}]}' \
    "$created" "$arch" "$(tr -d '\n' <"$config")" "$diff_id" "$created" | blob
)
read -r manifest manifest_size < <(
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer" "$layer_size" | blob
)
# containerd names an imported image by io.containerd.image.name; the OCI annotation holds the
# tag alone, as the image-layout specification and containerd's own exports do.
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$arch" "$name" "${name##*:}" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# Written beside its name, then renamed: a reader never sees half an archive.
mkdir -p "$(dirname "$out")"
partial=$(mktemp "$out.XXXXXX")
tar "${tar_stable[@]}" --owner=0 --group=0 -C "$layout" -cf "$partial" oci-layout index.json blobs
chmod 644 "$partial"
mv "$partial" "$out"
echo "oci.sh: $out: $name, manifest $manifest, layer $((layer_bytes >> 20)) MiB ($((layer_size >> 20)) MiB gzipped)" >&2
