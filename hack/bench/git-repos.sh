# Sourced by the git benchmarks (hack/bench/git-source.sh, hack/bench/git-controllers.sh):
# gen_repo NAME generates a working repository once into target/bench/repos/NAME:
#   small    ~1 MB: 300 files of 3 KB
#   history  ~100 MB of history: 200 commits each rewriting a 512 KB random file
#   files    50,000 files of 64 bytes in 500 directories
# push_repo NAME pushes it to the testenv's git server as bench-NAME.git (main), prints its URL.
# Needs root, GIT_REPOS_DIR and GIT_HTTP_BASE (target/testenv/env.sh).
gen_repo() {
  local name=$1 dir=$root/target/bench/repos/$1
  [ -f "$dir/.done" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  git init -q -b main .
  g() { git -c user.name=bench -c user.email=bench@example.com "$@"; }
  case $name in
    small)
      for i in $(seq 1 300); do head -c 2200 /dev/urandom | base64 -w 0 >"f$i.txt"; done
      g add -A && g commit -q -m small ;;
    history)
      echo "# history" >README.md
      for i in $(seq 1 200); do head -c 524288 /dev/urandom >data.bin; g add -A; g commit -q -m "rev $i"; done ;;
    files)
      python3 - <<'PY'
import os
for d in range(500):
    os.makedirs(f"d{d}", exist_ok=True)
    for f in range(100):
        with open(f"d{d}/f{f}.yaml", "w") as fh:
            fh.write(f"kind: ConfigMap # {d}-{f} " + "x" * 30 + "\n")
PY
      g add -A && g commit -q -m files ;;
  esac
  touch .done
  cd "$root"
}

push_repo() {
  local bare=$GIT_REPOS_DIR/bench-$1.git
  rm -rf "$bare" && git init -q --bare -b main "$bare"
  git -C "$root/target/bench/repos/$1" push -q --force "$bare" HEAD:main
  echo "$GIT_HTTP_BASE/bench-$1.git"
}
