#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler on the host; containerd (runc, CNI bridge),
# kubelet and kube-proxy as the node; CoreDNS as a Deployment from an image built here; the
# pause image from the Kubernetes module's source. No registry: images are imported.
#   up.sh [IMAGE_ARCHIVE...]   imports the given OCI archives too, and prints the admin kubeconfig
# The processes outlive this script (their own session); down.sh stops them and restores what
# they changed on the host. A cluster left by a crashed run is torn down first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repository="$(cd "$here/../.." && pwd)"
# shellcheck source=cluster.env
source "$here/cluster.env"

log() { echo "cluster: $*" >&2; }
fail() { log "$*"; exit 1; }

controlplane="$(bash "$repository/test/controlplane/build.sh")"
node="$(bash "$repository/test/controlplane/build.sh" --node)"
for tool in containerd runc ctr iptables-save iptables-restore nft openssl; do
  command -v "$tool" >/dev/null || fail "$tool is required (Debian: containerd runc iptables nftables openssl)"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback && -x /usr/lib/cni/portmap ]] ||
  fail "the CNI plugins are required in /usr/lib/cni (Debian: containernetworking-plugins)"

bash "$here/down.sh"
dir="$CLUSTER_DIR"
mkdir -p "$dir"/{host,pki,logs,run,config}
chmod 700 "$dir"

# The host as it was, for down.sh.
for name in "${HOST_SYSCTLS[@]}"; do
  value="$(sysctl -n "$name" 2>/dev/null)" && printf '%s\t%s\n' "$name" "$value"
done >"$dir/host/sysctls"
for directory in "${HOST_DIRECTORIES[@]}"; do [[ -e "$directory" ]] || echo "$directory"; done >"$dir/host/absent-directories"
iptables-save >"$dir/host/iptables"
ip6tables-save >"$dir/host/ip6tables"
nft list tables >"$dir/host/nft-tables"
ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$dir/host/links"
ls /run/netns 2>/dev/null | sort >"$dir/host/netns" || true

ip link add "$NODE_INTERFACE" type bridge
ip addr add "$NODE_IP/32" dev "$NODE_INTERFACE"
ip -6 addr add "$NODE_IP6/128" dev "$NODE_INTERFACE" nodad
ip link set "$NODE_INTERFACE" up

# Certificates: one CA for serving and clients, a front-proxy CA for the aggregation layer.
pki="$dir/pki"
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=airlock-cluster-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=airlock-front-proxy-ca" \
  -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt"
# issue NAME SUBJECT USAGE [SANS] [CA]
issue() {
  local name="$1" subject="$2" usage="$3" sans="${4:-}" ca="${5:-ca}"
  local extensions="$pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n "$sans" ]] && echo "subjectAltName=$sans"
  } >"$extensions"
  openssl_quiet req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$pki/$name.key" -out "$pki/$name.csr"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
    -days 2 -extfile "$extensions" -out "$pki/$name.crt"
  rm "$pki/$name.csr" "$extensions"
}
issue apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
issue kubelet "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
openssl_quiet pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

server="https://$NODE_IP:$APISERVER_PORT"
# kubeconfig NAME SUBJECT: a client certificate and a kubeconfig using it.
kubeconfig() {
  local name="$1" subject="$2"
  issue "$name" "$subject" clientAuth
  cat >"$dir/$name.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: airlock
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: $name
  context: {cluster: airlock, user: $name, namespace: default}
current-context: $name
YAML
  chmod 600 "$dir/$name.kubeconfig"
}
# The people of the suites: an administrator, an approver and a user without approval rights.
kubeconfig admin "/O=system:masters/CN=admin"
kubeconfig approver "/O=dba-oncall/CN=alice"
kubeconfig user "/O=developers/CN=bob"
kubeconfig controller-manager "/CN=system:kube-controller-manager"
kubeconfig scheduler "/CN=system:kube-scheduler"
kubeconfig kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME"
kubeconfig kube-proxy "/CN=system:kube-proxy"

# start NAME COMMAND...: a process in a session of its own, outliving this script.
start() {
  local name="$1"
  shift
  setsid "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}
# wait_until WHAT SECONDS COMMAND...
wait_until() {
  local what="$1" seconds="$2"
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail "$what not ready after ${seconds}s; logs in $dir/logs"
}
kubectl() { "$controlplane/kubectl" --kubeconfig="$dir/admin.kubeconfig" "$@"; }

start etcd "$controlplane/etcd" --data-dir="$dir/etcd" --unsafe-no-fsync --log-level=warn \
  --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT"
wait_until etcd 30 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

start kube-apiserver "$controlplane/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-uid-headers=X-Remote-Uid \
  --requestheader-group-headers=X-Remote-Group --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
  --allow-privileged=true --enable-priority-and-fairness=false --v=1
wait_until kube-apiserver 120 curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz"

start kube-controller-manager "$node/kube-controller-manager" \
  --kubeconfig="$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --controllers='*,-nodeipam' --v=1
start kube-scheduler "$node/kube-scheduler" \
  --kubeconfig="$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --v=1

# containerd of its own: root, state, socket and runc state under the cluster's directory.
cat >"$dir/config/containerd.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: an oom_score_adj below the runtime's own is refused.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$dir/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/config/cni"
TOML
mkdir -p "$dir/config/cni"
cat >"$dir/config/cni/10-airlock.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "airlock",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$dir/cni",
        "ranges": [[{"subnet": "$POD_CIDR"}], [{"subnet": "$POD_CIDR6"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
start containerd containerd --config "$dir/config/containerd.toml"
ctr() { command ctr --address "$dir/containerd.sock" --namespace k8s.io "$@"; }
wait_until containerd 30 ctr version

# The pause and CoreDNS images: static binaries, packed here (image/oci.sh) and imported.
images="$dir/images"
pack() {
  local name="$1" binary="$2" reference="$3"
  mkdir -p "$images/$name/rootfs"
  cp "$binary" "$images/$name/rootfs/$name"
  printf '{"User":"65535:65535","Entrypoint":["/%s"]}' "$name" >"$images/$name/config.json"
  SOURCE_DATE_EPOCH=0 bash "$repository/image/oci.sh" "$images/$name/rootfs" "$images/$name/config.json" \
    "$reference" "$images/$name.tar"
}
pack pause "$node/pause" "$PAUSE_IMAGE"
pack coredns "$node/coredns" "$COREDNS_IMAGE"
for archive in "$images/pause.tar" "$images/coredns.tar" "$@"; do
  ctr images import "$archive" >/dev/null || fail "cannot import $archive"
done

cat >"$dir/config/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
containerRuntimeEndpoint: unix://$dir/containerd.sock
cgroupDriver: cgroupfs
# The host is cgroup v1 (hybrid).
failCgroupV1: false
failSwapOn: false
# Root here lacks CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $dir/pod-logs
healthzBindAddress: 127.0.0.1
protectKernelDefaults: false
makeIPTablesUtilChains: false
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
start kubelet "$node/kubelet" --config="$dir/config/kubelet.yaml" \
  --kubeconfig="$dir/kubelet-client.kubeconfig" --root-dir="$dir/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1

cat >"$dir/config/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack table sizes and timeouts as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
YAML
start kube-proxy "$node/kube-proxy" --config="$dir/config/kube-proxy.yaml" --v=1

wait_until "node $NODE_NAME" 120 bash -c "'$controlplane/kubectl' --kubeconfig='$dir/admin.kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"

# Cluster DNS: CoreDNS as the kube-dns Service's Deployment.
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        forward . /etc/resolv.conf
        cache 30
        loop
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        securityContext:
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_SERVICE_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
YAML
kubectl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null ||
  fail "CoreDNS not ready; kubectl -n kube-system describe pods, logs in $dir/logs"
log "ready; export KUBECONFIG=$dir/admin.kubeconfig"
echo "$dir/admin.kubeconfig"
