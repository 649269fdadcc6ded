#!/usr/bin/env bash
# W8 (git sources): source-controller's fetch path against git itself, on the testenv's git
# server over smart HTTP with basic auth. Not a test: it measures and writes
# hack/bench/results/<date>-git-source.md.
#
# Repositories: small, history, files (hack/bench/git-repos.sh; generated once, cached in
# target/bench/repos).
# Operations, each run RUNS times (median time, max peak RSS):
#   first fetch     ours: list refs + shallow fetch + checkout + deterministic tar.gz
#                   git:  git clone --depth 1 --single-branch (fetch + checkout, no archive)
#                   git v0: the same forced to protocol v0, the only protocol libgit2 speaks
# REPOS="small history" limits the repositories; RUNS (default 3) sets the repetitions.
#   unchanged poll  ours: list refs only (what the reconciler does when nothing changed)
#                   git:  git ls-remote
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RUNS=${RUNS:-3}
B=$root/target/bench
mkdir -p "$B/repos" hack/bench/results

hack/testenv.sh up >/dev/null
# shellcheck source=/dev/null
. target/testenv/env.sh
cargo build -q --release -p source-controller --example git_fetch
BIN=$root/target/release/examples/git_fetch

# gen_repo NAME: the repositories small, history and files
# shellcheck source=hack/bench/git-repos.sh
. hack/bench/git-repos.sh

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { sort -n | tail -1; }

# measure LABEL CMD...: runs CMD $RUNS times; prints "<median seconds> <max KiB>".
measure() {
  local label=$1; shift
  local t=() m=() out
  for _ in $(seq 1 "$RUNS"); do
    rm -rf "$B/clone"
    /usr/bin/time -f "%e %M" -o "$B/time.out" "$@" >/dev/null 2>&1 || { echo "$label failed: $*" >&2; exit 1; }
    out=$(tail -1 "$B/time.out")
    t+=("${out% *}"); m+=("${out#* }")
  done
  printf '%s %s\n' "$(printf '%s\n' "${t[@]}" | median)" "$(printf '%s\n' "${m[@]}" | max)"
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b>0 else 'n/a')" "$1" "$2"; }

date=$(date -u +%F)
res=hack/bench/results/$date-git-source.md
{
  echo "# W8 git sources — $date"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(git --version); driftless $(git rev-parse --short HEAD);"
  echo "source-controller fetch path built with \`cargo build --release\` ($(rustc --version | cut -d' ' -f1-2)); git server: lighttpd + git-http-backend on loopback."
  echo "Median of $RUNS runs; peak RSS is the max over runs (\`/usr/bin/time %M\`). Ratios are driftless ÷ git (lower is better)."
  echo
  echo "| repo | operation | driftless s | git s | ratio | git v0 s | ratio to v0 | driftless MiB | git MiB | RSS ratio |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$res"

for name in ${REPOS:-small history files}; do
  gen_repo "$name"
  url=$(push_repo "$name")
  bare=$GIT_REPOS_DIR/bench-$name.git
  cred_url="${url/:\/\//://$GIT_HTTP_USER:$GIT_HTTP_PASSWORD@}"
  read -r ot om < <(measure ours "$BIN" "$url" --user "$GIT_HTTP_USER" --password "$GIT_HTTP_PASSWORD")
  read -r gt gm < <(measure git git clone -q --depth 1 --single-branch "$cred_url" "$B/clone")
  read -r vt _ < <(measure git-v0 git -c protocol.version=0 clone -q --depth 1 --single-branch "$cred_url" "$B/clone")
  read -r pt pm < <(measure ours-poll "$BIN" "$url" --poll --user "$GIT_HTTP_USER" --password "$GIT_HTTP_PASSWORD")
  read -r lt lm < <(measure git-poll git ls-remote "$cred_url")
  size=$(du -sh "$bare" | cut -f1)
  printf '| %s (%s packed) | first fetch | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$size" "$ot" "$gt" \
    "$(ratio "$ot" "$gt")" "$vt" "$(ratio "$ot" "$vt")" "$((om / 1024))" "$((gm / 1024))" "$(ratio "$om" "$gm")" >>"$res"
  printf '| %s | unchanged poll | %s | %s | %s | | | %s | %s | %s |\n' "$name" "$pt" "$lt" "$(ratio "$pt" "$lt")" \
    "$((pm / 1024))" "$((lm / 1024))" "$(ratio "$pm" "$lm")" >>"$res"
  echo "measured $name" >&2
done
{
  echo
  echo "An unchanged poll transfers no pack data: it only reads the ref advertisement (\`info/refs\`),"
  echo "exactly like \`git ls-remote\`; the reconciler then compares the revision with the stored artifact."
} >>"$res"
cat "$res"
