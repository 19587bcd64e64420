#!/usr/bin/env bash
# The database examples/orders-db.yaml names, for trying Airlock on this machine: a real
# PostgreSQL on the node's address (TLS, the example's user and password, a customers table
# with personal data), behind the Service orders-db.data.svc.cluster.local (no selector; its
# EndpointSlice points at the node). down.sh stops it with the cluster.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repository="$(cd "$here/../.." && pwd)"
# shellcheck source=cluster.env
source "$here/cluster.env"
dir="$CLUSTER_DIR"
[[ -f "$dir/admin.kubeconfig" ]] || { echo "orders-db: no cluster; run make cluster" >&2; exit 1; }
bin=/usr/lib/postgresql/15/bin
data="$dir/orders-db"
[[ -d "$data" ]] && exit 0
mkdir -p "$data"
chmod 711 "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=orders-db.data.svc.cluster.local" \
  -keyout "$data/server.key" -out "$data/server.crt" 2>/dev/null
chown -R postgres: "$data"
chmod 600 "$data/server.key"
as_postgres() { runuser -u postgres -- "$@"; }
as_postgres "$bin/initdb" -D "$data/data" -U postgres --auth-local=trust --auth-host=reject >/dev/null
echo "hostssl orders support_agent $POD_CIDR scram-sha-256" >>"$data/data/pg_hba.conf"
setsid runuser -u postgres -- "$bin/postgres" -D "$data/data" -c listen_addresses="$NODE_IP" -c port=5432 \
  -c unix_socket_directories="$data" -c ssl=on -c ssl_cert_file="$data/server.crt" -c ssl_key_file="$data/server.key" \
  </dev/null >>"$dir/logs/orders-db.log" 2>&1 &
echo $! >"$dir/run/orders-db.pid"
for ((i = 0; i < 60; i++)); do "$bin/pg_isready" -q -h "$data" && break; sleep 0.5; done
"$bin/psql" -q -h "$data" -U postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE ROLE support_agent LOGIN PASSWORD 'change-me-in-production';
CREATE DATABASE orders OWNER support_agent;
\connect orders
SET ROLE support_agent;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, date_of_birth date);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '078-05-1120', '1815-12-10'),
  (2, 'Grace Hopper', 'grace@example.com', '219-09-9999', '1906-12-09');
CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric);
INSERT INTO orders VALUES (10, 1, 42.00), (11, 2, 17.50);
SQL
"$(bash "$repository/test/controlplane/build.sh" --check)/kubectl" --kubeconfig="$dir/admin.kubeconfig" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: data}
---
apiVersion: v1
kind: Service
metadata: {name: orders-db, namespace: data}
spec:
  ports: [{name: postgres, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orders-db, namespace: data, labels: {kubernetes.io/service-name: orders-db}}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"]}]
ports: [{name: postgres, port: 5432, protocol: TCP}]
YAML
echo "orders-db: PostgreSQL at orders-db.data.svc.cluster.local:5432 (node $NODE_IP)" >&2
