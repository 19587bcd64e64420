# Airlock. `make demo` shows the data path on one machine; `make test` runs every suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Every target runs on Node 24: scripts/node.sh provides it when the system Node is older.
NODE_BIN := $(shell scripts/node.sh)
export PATH := $(NODE_BIN):$(CURDIR)/node_modules/.bin:$(PATH)

UNIT_TESTS := 'api/**/*.test.ts' 'audit/**/*.test.ts' 'local/**/*.test.ts' 'metrics/**/*.test.ts' 'charts/**/*.test.ts' 'cli/**/*.test.ts' 'operator/**/*.test.ts' 'policy/**/*.test.ts' 'sidecar/**/*.test.ts'
INTEGRATION_TESTS := 'test/integration/**/*.test.ts'
E2E_TESTS := 'test/e2e/**/*.test.ts'
# A test that hangs fails after 5 minutes (the slowest suite takes about one); a test file that
# stays alive after its tests ended is ended and failed by test/support/exit-guard.ts, so one
# failure cannot hold the whole run until CI's deadline.
NODE_TEST := node --test --test-reporter=spec --test-timeout=300000 --import=./test/support/exit-guard.ts

# The control plane is built once from the Go module proxy and cached outside the work tree.
# Without CI=true a failed build leaves the suites that need it reported as not run.
CONTROLPLANE = $$(bash test/controlplane/build.sh || { [[ "$${CI:-}" != true ]] || exit 1; })
# The end-to-end suites run on a real single-node cluster (test/cluster): the node's parts are
# built and cached like the control plane, the images into dist/.
E2E_PARTS = { bash test/controlplane/build.sh --node >/dev/null && bash image/build.sh airlock >/dev/null && bash image/build.sh agent >/dev/null; } || [[ "$${CI:-}" != true ]]

.PHONY: help
help:
	@echo 'make demo              the data path on one machine: masked SELECT, blocked DROP, approved UPDATE'
	@echo 'make test              every suite: unit, integration (real kube-apiserver, PostgreSQL, OpenSSH), e2e'
	@echo 'make image             the OCI image (operator, sidecar, init) in dist/; make image-agent: the test agents'
	@echo 'make cluster           a real single-node cluster on this machine (root), the images imported; make cluster-down'
	@echo 'make test-unit | test-integration | test-e2e | lint | crds | bench'

# Native addons (ssh2's crypto binding) build against the headers of the Node that runs them,
# whatever nodedir a machine's npmrc names: an addon built for another Node fails to load and
# ssh2 quietly falls back to per-packet ciphers (about half the SSH throughput).
node_modules/.package-lock.json: package.json package-lock.json
	npm_config_nodedir=$(abspath $(NODE_BIN)/..) npm ci --no-audit --no-fund
node_modules: node_modules/.package-lock.json

.PHONY: test
test: node_modules typecheck lint
	bin="$(CONTROLPLANE)"; $(E2E_PARTS); AIRLOCK_CONTROLPLANE_BIN="$$bin" $(NODE_TEST) $(UNIT_TESTS) $(INTEGRATION_TESTS) $(wildcard test/e2e/*.test.ts)

.PHONY: test-unit
test-unit: node_modules typecheck lint
	$(NODE_TEST) $(UNIT_TESTS)

.PHONY: test-integration
test-integration: node_modules
	bin="$(CONTROLPLANE)"; AIRLOCK_CONTROLPLANE_BIN="$$bin" $(NODE_TEST) $(INTEGRATION_TESTS)

.PHONY: test-e2e
test-e2e: node_modules
	bin="$(CONTROLPLANE)"; $(E2E_PARTS); AIRLOCK_CONTROLPLANE_BIN="$$bin" $(NODE_TEST) $(E2E_TESTS)

.PHONY: typecheck
typecheck: node_modules
	tsc -p .

.PHONY: lint
lint: node_modules
	biome check .

.PHONY: format
format: node_modules
	biome check --write .

.PHONY: crds
crds: node_modules
	node api/crds.ts
	node charts/generate.ts

.PHONY: controlplane
controlplane:
	bash test/controlplane/build.sh

# The OCI images of HEAD, built without a container daemon (image/README.md): an archive in
# dist/ that holds HEAD already is kept.
.PHONY: image
image:
	bash image/build.sh airlock

.PHONY: image-agent
image-agent:
	bash image/build.sh agent

# A real single-node cluster on this machine (as root), for trying Airlock as the README's
# "In a cluster" section says: builds what is missing, imports the images, starts the example's
# database, and stays up until `make cluster-down`, which restores the host.
.PHONY: cluster
cluster:
	airlock="$$(bash image/build.sh airlock)"; agent="$$(bash image/build.sh agent)"; \
	  kubeconfig="$$(bash test/cluster/up.sh "$$airlock" "$$agent")"; \
	  bash test/cluster/orders-db.sh; \
	  echo "cluster: up; export KUBECONFIG=$$kubeconfig PATH=$$(bash test/controlplane/build.sh --check):\$$PATH"

.PHONY: cluster-down
cluster-down:
	bash test/cluster/down.sh

.PHONY: demo
demo: node_modules
	node demo/run.ts

.PHONY: bench
bench: node_modules
	node bench/run.ts
