#!/usr/bin/env bash
# Packs a directory as a one-layer OCI image archive, without a container daemon:
#   pack.sh ROOTFS NAME:TAG ARCHIVE [ENTRYPOINT...]
# The archive names the image NAME:TAG (annotation io.containerd.image.name), which is how
# `ctr images import` names it.
set -euo pipefail
rootfs="$1" reference="$2" archive="$3"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout"
umoci new --image "$work/layout:image"
umoci unpack --image "$work/layout:image" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --no-history --refresh-bundle --image "$work/layout:image" "$work/bundle"
config=(--no-history --image "$work/layout:image" --os linux --architecture amd64)
for argument in "$@"; do config+=(--config.entrypoint "$argument"); done
umoci config "${config[@]}"
umoci gc --layout "$work/layout"
# The full reference, as containerd's importer reads it, beside OCI's own ref name.
python3 - "$work/layout/index.json" "$reference" <<'PY'
import json, sys
path, reference = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for manifest in index["manifests"]:
    manifest["annotations"] = {
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
    }
json.dump(index, open(path, "w"))
PY
tar -C "$work/layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$archive" .
