#!/usr/bin/env bash
# W8 at the controller level: our source-controller against Flux's v$FLUX_SOURCE_CONTROLLER_VERSION
# (built with github.com/fluxcd/pkg/artifact v$FLUX_PKG_ARTIFACT_PIN by hack/build-testbins.sh
# flux-controllers), one at a time, each publishing its own artifacts, on the testenv's git
# server (smart HTTP, basic auth), for the repositories of hack/bench/git-repos.sh:
#   first fetch     a new GitRepository (branch main), until it is Ready with its artifact
#   unchanged poll  reconcile.fluxcd.io/requestedAt on it, until the request is handled
#                   (nothing new to fetch)
# Both timed by a watch opened before the action (hack/bench/w8.py); RUNS times each, a new
# GitRepository per run (median). Per trial, the git server's requests and bytes for that
# repository (its access log, headers included, stamped within the trial); per controller,
# peak RSS (VmHWM) over the whole run, RSS at the end and CPU seconds.
#
#   RUNS=3 REPOS="small history files" IMPLS="driftless flux" hack/bench/git-controllers.sh
# (NO_BUILD=1 uses target/dist as it is; BUILT_FROM names its commit.) Writes hack/bench/results/<date>-git-controllers.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RUNS=${RUNS:-3}
REPOS=${REPOS:-"small history files"}
IMPLS=${IMPLS:-"driftless flux"}
B=$root/target/bench/git-controllers
rm -rf "$B" && mkdir -p "$B" hack/bench/results

# shellcheck source=hack/versions.sh
. hack/versions.sh
hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
[ "${NO_BUILD:-}" = 1 ] || cargo build -q --profile dist -p source-controller
BIN=$root/target/dist
FLUX_SC=$TESTBINS_CACHE/flux-ctrl/source-controller-v$FLUX_SOURCE_CONTROLLER_VERSION
if [[ " $IMPLS " == *" flux "* ]] && [ ! -x "$FLUX_SC" ]; then hack/build-testbins.sh flux-controllers; fi
# shellcheck source=hack/bench/source-controllers.sh
. hack/bench/source-controllers.sh
# shellcheck source=hack/bench/git-repos.sh
. hack/bench/git-repos.sh
$KUBECTL apply --server-side --force-conflicts --field-manager=bench -f manifests/crds >/dev/null
$KUBECTL wait --for=condition=Established crd --all --timeout=60s >/dev/null
hack/bench/finish-terminating.sh
$KUBECTL create namespace flux-system --dry-run=client -o yaml | $KUBECTL apply --server-side -f - >/dev/null
ns=bench-w8
ACCESS=$TESTENV_DIR/logs/git-http-access.log
touch "$ACCESS"

# Deletes the bench namespace once its controller is stopped (finalizers dropped first).
drop_namespace() {
  $KUBECTL get gitrepositories -n "$ns" -o name 2>/dev/null |
    xargs -r -I{} $KUBECTL patch {} -n "$ns" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  $KUBECTL delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
}

# now_ms: the wall clock in milliseconds, as the git server's access log stamps requests
# (`%{msec}t`, hack/testenv.sh); a trial's requests are those stamped within its window, read
# once the run is over (lighttpd writes that log lazily).
now_ms() { date +%s%3N; }

raw=$B/raw.tsv
: >"$raw"
for name in $REPOS; do gen_repo "$name"; push_repo "$name" >"$B/url-$name"; done

for impl in $IMPLS; do
  drop_namespace
  $KUBECTL create namespace "$ns" >/dev/null
  $KUBECTL create secret generic git-auth -n "$ns" --from-literal=username="$GIT_HTTP_USER" \
    --from-literal=password="$GIT_HTTP_PASSWORD" >/dev/null
  sc=$(start_source "$impl")
  for name in $REPOS; do
    url=$(cat "$B/url-$name")
    for r in $(seq 1 "$RUNS"); do
      t0=$(now_ms)
      t=$(KUBECONFIG=$TESTENV_DIR/bench-floor.kubeconfig python3 hack/bench/w8.py "$ns" "$name-$r" fetch "$url" git-auth)
      printf '%s\t%s\tfetch\t%s\t%s\t%s\n' "$impl" "$name" "$t" "$t0" "$(now_ms)" >>"$raw"
      t0=$(now_ms)
      t=$(KUBECONFIG=$TESTENV_DIR/bench-floor.kubeconfig python3 hack/bench/w8.py "$ns" "$name-$r" poll "w8-$r-$(date +%s%N)")
      printf '%s\t%s\tpoll\t%s\t%s\t%s\n' "$impl" "$name" "$t" "$t0" "$(now_ms)" >>"$raw"
    done
    echo "$impl: $name measured" >&2
  done
  printf '%s\trss\t%s\t%s\t%s\n' "$impl" "$(awk '/VmHWM/ {print $2}' "/proc/$sc/status")" \
    "$(awk '/VmRSS/ {print $2}' "/proc/$sc/status")" \
    "$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$sc/stat")" >>"$raw"
  stop "$sc"
done
drop_namespace
sleep 5 # (the git server's last log lines)

res=hack/bench/results/$(date -u +%F)-git-controllers.md
python3 - "$raw" "$RUNS" "$ACCESS" >"$res" <<PY
import re, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
runs = sys.argv[2]
# (ms, path, bytes in, bytes out) of every request the git server logged with a msec stamp
requests = []
for line in open(sys.argv[3]):
    m = re.match(r'(\d{13}) "\S+ (\S+) [^"]*" \d+ (\d+) (\d+)$', line.strip())
    if m:
        requests.append((int(m[1]), m[2], int(m[3]), int(m[4])))
trials, rss = {}, {}
for r in rows:
    if r[1] == "rss":
        rss[r[0]] = (int(r[2]) / 1024, int(r[3]) / 1024, float(r[4]))
        continue
    start, end = int(r[4]), int(r[5])
    mine = [q for q in requests if start <= q[0] <= end and f"/bench-{r[1]}.git/" in q[1]]
    trials.setdefault((r[1], r[2], r[0]), []).append(
        (float(r[3]), len(mine), sum(q[2] for q in mine), sum(q[3] for q in mine)))
def med(key, i):
    v = [t[i] for t in trials.get(key, [])]
    return statistics.median(v) if v else None
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"
def fmt(v, f):
    return "n/a" if v is None else f.format(v)
print("# W8 git sources, controller against controller: driftless against Flux's source-controller")
print()
print("- date: $(date -u +%FT%H:%MZ); machine: $(nproc) CPUs; Kubernetes $($KUBECTL version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"].lstrip("v"))') (testenv)")
print("- driftless ${BUILT_FROM:-$(git rev-parse --short HEAD)} (source-controller, cargo profile \`dist\`); Flux source-controller v$FLUX_SOURCE_CONTROLLER_VERSION built from Go modules with github.com/fluxcd/pkg/artifact v$FLUX_PKG_ARTIFACT_PIN instead of the v0.18.2 it asks for (the module proxy refuses that one), GOMEMLIMIT=1GiB")
print("- git server: lighttpd + git-http-backend (git $(git --version | cut -d' ' -f3)) on loopback, basic auth; bytes and requests from its access log, headers included")
print(f"- median of {runs} runs, each a new GitRepository (first fetch) and then a requested reconcile of it with nothing new (unchanged poll), timed by a watch opened before the action; script: \`hack/bench/git-controllers.sh\`")
print()
print("| repo | operation | driftless s | Flux s | ratio | driftless requests / KiB received | Flux requests / KiB received | bytes ratio |")
print("|---|---|---|---|---|---|---|---|")
for repo in dict.fromkeys(k[0] for k in trials):
    for op, label in (("fetch", "first fetch"), ("poll", "unchanged poll")):
        d, f = (repo, op, "driftless"), (repo, op, "flux")
        cols = [fmt(med(d, 0), "{:.2f}"), fmt(med(f, 0), "{:.2f}"), ratio(med(d, 0), med(f, 0))]
        for k in (d, f):
            cols.append("n/a" if med(k, 1) is None else f"{med(k, 1):.0f} / {med(k, 3) / 1024:.1f}")
        cols.append(ratio(med(d, 3), med(f, 3)))
        print(f"| {repo} | {label} | " + " | ".join(cols) + " |")
print()
print("| controller | peak RSS MiB | RSS at the end MiB | CPU s |")
print("|---|---|---|---|")
for impl, (hwm, now, cpu) in rss.items():
    print(f"| {impl} | {hwm:.1f} | {now:.1f} | {cpu} |")
PY
cat "$res"
