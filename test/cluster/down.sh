#!/usr/bin/env bash
# Stops the cluster that up.sh started and restores the host as up.sh found it: sysctls,
# iptables rules, network interfaces and namespaces, mounts, cgroups and directories the
# kubelet, containerd, kube-proxy and CNI created. Does nothing when no cluster is there.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=cluster.env
source "$here/cluster.env"
dir="$CLUSTER_DIR"
[[ -d "$dir" ]] || exit 0
log() { echo "cluster: $*" >&2; }

# The node first, so nothing restarts what is stopped next.
for name in kubelet kube-proxy kube-scheduler kube-controller-manager; do
  [[ -f "$dir/run/$name.pid" ]] && kill -TERM -- "-$(cat "$dir/run/$name.pid")" 2>/dev/null
done
sleep 1
# Every container's processes, whatever state containerd is in: they are in the pods' cgroups.
for round in 1 2 3; do
  pids="$(cat /sys/fs/cgroup/*/kubepods*/cgroup.procs /sys/fs/cgroup/*/kubepods*/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods*/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods*/*/*/*/cgroup.procs 2>/dev/null | sort -u)"
  [[ -z "$pids" ]] && break
  kill -KILL $pids 2>/dev/null
  sleep 0.5
done
# containerd's shims belong to no pod cgroup; they run with this cluster's socket address.
for pid in $(pgrep -f "containerd-shim.*-address $dir/containerd.sock"); do kill -KILL "$pid" 2>/dev/null; done
for name in containerd kube-apiserver etcd orders-db; do
  [[ -f "$dir/run/$name.pid" ]] && kill -TERM -- "-$(cat "$dir/run/$name.pid")" 2>/dev/null
done
for name in kubelet kube-proxy kube-scheduler kube-controller-manager containerd kube-apiserver etcd orders-db; do
  [[ -f "$dir/run/$name.pid" ]] || continue
  pid="$(cat "$dir/run/$name.pid")"
  for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null
done

# Mounts: the kubelet's volumes, containerd's snapshots and sandbox namespaces.
findmnt -rn -o TARGET | grep -E "^($dir|/run/netns/cni-|/var/run/netns/cni-|/run/containerd)" | sort -r |
  while read -r target; do umount -l "$target" 2>/dev/null; done
# Pod cgroups, deepest first.
find /sys/fs/cgroup/*/ -maxdepth 0 >/dev/null 2>&1 &&
  find /sys/fs/cgroup/*/kubepods* -depth -type d 2>/dev/null | while read -r cgroup; do rmdir "$cgroup" 2>/dev/null; done

host="$dir/host"
if [[ -d "$host" ]]; then
  # Network namespaces and interfaces that were not there before.
  for netns in $(ls /run/netns 2>/dev/null); do
    grep -qx "$netns" "$host/netns" 2>/dev/null || ip netns delete "$netns" 2>/dev/null || rm -f "/run/netns/$netns"
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    grep -qx "$link" "$host/links" 2>/dev/null || ip link delete "$link" 2>/dev/null
  done
  # iptables: the rules as they were; a table that did not exist then is deleted.
  [[ -f "$host/iptables" ]] && iptables-restore <"$host/iptables"
  [[ -f "$host/ip6tables" ]] && ip6tables-restore <"$host/ip6tables"
  if [[ -f "$host/nft-tables" ]]; then
    nft list tables | while read -r _ family name; do
      grep -qx "table $family $name" "$host/nft-tables" || nft delete table "$family" "$name"
    done
  fi
  if [[ -f "$host/sysctls" ]]; then
    while IFS=$'\t' read -r name value; do
      [[ "$(sysctl -n "$name" 2>/dev/null)" == "$value" ]] || sysctl -qw "$name=$value" >/dev/null
    done <"$host/sysctls"
  fi
  if [[ -f "$host/absent-directories" ]]; then
    while read -r directory; do
      [[ -n "$directory" && -e "$directory" ]] && { findmnt -rn -o TARGET | grep "^$directory" | sort -r | xargs -r umount -l; rm -rf "$directory"; }
    done <"$host/absent-directories"
  fi
else
  ip link delete "$BRIDGE" 2>/dev/null
  ip link delete "$NODE_INTERFACE" 2>/dev/null
fi
rm -rf "$dir"
log "stopped; the host is restored"
