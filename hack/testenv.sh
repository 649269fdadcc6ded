#!/usr/bin/env bash
# A real Kubernetes control plane and real source servers on loopback, for tests and the
# quickstart. Recipe and pitfalls: ../shared/docs/testenv-recipe.md.
#
#   hack/testenv.sh up       start what is not running (idempotent; builds missing binaries)
#   hack/testenv.sh down     stop exactly the processes this script started
#   hack/testenv.sh status   say what runs
#   hack/testenv.sh reset    down, then delete all state (cluster data, repos, registry)
#
# `up` writes target/testenv/env.sh; source it to get KUBECONFIG, GIT_*, OCI_REGISTRY, HELM_*.
# Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (+ fake nodes),
# git over smart HTTP with basic auth (lighttpd + git-http-backend), git over SSH (sshd), an OCI
# registry (Debian's docker-registry) and a static HTTP server for Helm repositories (lighttpd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=hack/versions.sh
. "$here/versions.sh"

T=${TESTENV_DIR:-$root/target/testenv}
ETCD_PORT=${TESTENV_ETCD_PORT:-12379}
ETCD_PEER_PORT=${TESTENV_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${TESTENV_APISERVER_PORT:-16443}
GIT_HTTP_PORT=${TESTENV_GIT_HTTP_PORT:-18080}
GIT_SSH_PORT=${TESTENV_GIT_SSH_PORT:-12222}
REGISTRY_PORT=${TESTENV_REGISTRY_PORT:-15000}
HELM_HTTP_PORT=${TESTENV_HELM_HTTP_PORT:-18081}
HELM_HTTPS_PORT=${TESTENV_HELM_HTTPS_PORT:-18445}
GIT_HTTPS_PORT=${TESTENV_GIT_HTTPS_PORT:-18443}
GIT_MTLS_PORT=${TESTENV_GIT_MTLS_PORT:-18444}
REGISTRY_TLS_PORT=${TESTENV_REGISTRY_TLS_PORT:-15443}
REGISTRY_MTLS_PORT=${TESTENV_REGISTRY_MTLS_PORT:-15444}
REGISTRY_TOKEN_PORT=${TESTENV_REGISTRY_TOKEN_PORT:-15001}
PROXY_PORT=${TESTENV_PROXY_PORT:-13128}
S3_PORT=${TESTENV_S3_PORT:-17070}
S3_TLS_PORT=${TESTENV_S3_TLS_PORT:-17443}
GCS_PORT=${TESTENV_GCS_PORT:-17080}
AZURE_PORT=${TESTENV_AZURE_PORT:-17100}
NATS_PORT=${TESTENV_NATS_PORT:-17200}
# Azurite's well-known development account (public, documented by Microsoft).
AZURE_ACCOUNT=devstoreaccount1
AZURE_ACCOUNT_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
KWOK_NODES=${TESTENV_KWOK_NODES:-3}
# Pods each fake node takes: far above a kubelet's default 110, so that benchmarks of 500
# HelmReleases (a pod each) or 1000 Kustomizations are not held Pending by the scheduler.
KWOK_NODE_PODS=${TESTENV_KWOK_NODE_PODS:-1000}
TOKEN=driftless-admin-token

K8S_BIN=$TESTBINS_CACHE/k8s-v$K8S_VERSION
ETCD_BIN=$TESTBINS_CACHE/etcd-v$ETCD_VERSION/etcd
KWOK_DIR=$TESTBINS_CACHE/kwok-v$KWOK_VERSION
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok git-http git-ssh registry registry-tls registry-mtls registry-token helm-http proxy s3 s3-tls gcs azure nats"

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] error: %s\n' "$*" >&2; exit 1; }

pid_of() { cat "$T/run/$1.pid" 2>/dev/null || true; }
# A pid file may outlive its process (a reboot, a crash); its number may then be taken by another
# process or a thread (`kill -0` accepts thread ids), so ask ps, which lists processes only.
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && ps -p "$p" -o pid= >/dev/null 2>&1; }

# start NAME CMD...: runs CMD in its own session with output in $T/logs/NAME.log.
start() {
  local name=$1; shift
  mkdir -p "$T/run" "$T/logs"
  setsid nohup "$@" >>"$T/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$T/run/$name.pid"
}

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds; on timeout names the component
# and its log.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      tail -n 30 "$T/logs/$name.log" >&2 || true
      die "$name exited during start-up; see $T/logs/$name.log"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$T/logs/$name.log" >&2 || true
      die "$name not ready after ${secs}s; see $T/logs/$name.log"
    fi
    sleep 0.5
  done
}

ensure_packages() {
  local missing=()
  command -v lighttpd >/dev/null || missing+=(lighttpd)
  [ -f /usr/lib/lighttpd/mod_openssl.so ] || missing+=(lighttpd-mod-openssl)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v tinyproxy >/dev/null || missing+=(tinyproxy)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v ps >/dev/null || missing+=(procps)
  # Azurite (the Azure Blob emulator) is a Node.js package.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v ssh-keyscan >/dev/null || missing+=(openssh-client)
  [ -x /usr/lib/git-core/git-http-backend ] || missing+=(git)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Their postinst scripts would start services on default ports; policy-rc.d forbids that.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  local ok=true
  $sudo apt-get update -qq >"$T/logs/apt.log" 2>&1 || ok=false
  if $ok; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >>"$T/logs/apt.log" 2>&1 || ok=false
  fi
  $sudo rm -f /usr/sbin/policy-rc.d
  $ok || die "installing ${missing[*]} failed; see $T/logs/apt.log"
}

ensure_binaries() {
  if [ ! -x "$K8S_BIN/kube-apiserver" ] || [ ! -x "$ETCD_BIN" ] || [ ! -x "$KWOK_DIR/kwok" ] \
    || [ ! -x "$TESTBINS_CACHE/sops-v$SOPS_VERSION/sops" ] \
    || [ ! -x "$TESTBINS_CACHE/cosign-v$COSIGN_VERSION/cosign" ] \
    || [ ! -x "$TESTBINS_CACHE/helm-v$HELM_VERSION/helm" ] \
    || [ ! -x "$TESTBINS_CACHE/versitygw-v$VERSITYGW_VERSION/versitygw" ] \
    || [ ! -x "$TESTBINS_CACHE/fake-gcs-server-v$FAKE_GCS_VERSION/fake-gcs-server" ] \
    || [ ! -x "$TESTBINS_CACHE/azurite-v$AZURITE_VERSION/node_modules/.bin/azurite-blob" ] \
    || [ ! -x "$TESTBINS_CACHE/nats-server-v$NATS_SERVER_VERSION/nats-server" ]; then
    log "building control-plane binaries from Go modules into $TESTBINS_CACHE (cold: ~15-25 min)"
    "$here/build-testbins.sh" all
  fi
}

ensure_pki() {
  local p=$T/pki
  [ -f "$p/apiserver.crt" ] && [ -f "$p/sa.key" ] && return 0
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=driftless-test-ca" -keyout ca.key -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out apiserver.crt \
      -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  write_kubeconfig admin "$TOKEN" >"$T/kubeconfig"
}

# The identities hack/bench runs controllers (and its bare client) as: cluster-admins like
# `admin`, but the only users the audit log records (audit-policy.yaml), so a benchmark can count
# each client's requests by verb and resource. Rewritten at every `up`; the apiserver reads them
# when it starts.
BENCH_USERS="source-controller kustomize-controller helm-controller notification-controller floor"
ensure_bench_identities() {
  local u
  {
    echo "$TOKEN,admin,admin-uid,system:masters"
    for u in $BENCH_USERS; do echo "bench-$u-token,bench-$u,bench-$u-uid,system:masters"; done
  } >"$T/pki/tokens.csv"
  for u in $BENCH_USERS; do write_kubeconfig "bench-$u" "bench-$u-token" >"$T/bench-$u.kubeconfig"; done
  # Request level: the request bodies are logged, so the bytes sent can be counted too. Only the
  # last stage, so each request is one line.
  cat >"$T/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Request
  users: [$(for u in $BENCH_USERS; do printf 'bench-%s, ' "$u"; done | sed 's/, $//')]
- level: None
EOF
}

write_kubeconfig() { # write_kubeconfig USER TOKEN
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: driftless-test
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$T/pki/ca.crt"}
users:
- name: $1
  user: {token: $2}
contexts:
- name: driftless-test
  context: {cluster: driftless-test, user: $1}
current-context: driftless-test
EOF
}

# A serving certificate for the HTTPS git server and the TLS registry, and a client
# certificate for the git server that requires one, from the testenv CA.
ensure_sources_tls() {
  local p=$T/pki
  if [ ! -f "$p/client.crt" ]; then
    (
      cd "$p"
      openssl req -newkey rsa:2048 -nodes -subj "/CN=driftless-client" -keyout client.key -out client.csr 2>/dev/null
      printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
      openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out client.crt \
        -extfile client.ext 2>/dev/null
    )
  fi
  [ -f "$p/sources.crt" ] && return 0
  (
    cd "$p"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=driftless-sources" -keyout sources.key -out sources.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >sources.ext
    openssl x509 -req -in sources.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out sources.crt \
      -extfile sources.ext 2>/dev/null
  )
}

apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$T/pki/ca.crt" -H "Authorization: Bearer $TOKEN" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null | grep -q ok
}

up_control_plane() {
  if ! running etcd; then
    mkdir -p "$T/etcd"
    start etcd "$ETCD_BIN" --name=driftless --data-dir="$T/etcd" \
      --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster="driftless=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true --log-level=warn \
      --quota-backend-bytes=8589934592
  fi
  wait_for etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  # An apiserver started by an older version of this script has no audit log: it is restarted,
  # and the components that watch it with it (kube-controller-manager's informers were seen
  # stuck behind their own writes after an apiserver restart).
  if running kube-apiserver && ! tr '\0' ' ' <"/proc/$(pid_of kube-apiserver)/cmdline" | grep -q -- --audit-policy-file; then
    log "restarting kube-apiserver and its clients (for the audit log)"
    local c
    for c in kwok kube-scheduler kube-controller-manager kube-apiserver; do
      running "$c" && kill -TERM "$(pid_of "$c")"
      while running "$c"; do sleep 0.25; done
    done
  fi
  if ! running kube-apiserver; then
    start kube-apiserver "$K8S_BIN/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
      --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address=127.0.0.1 \
      --endpoint-reconciler-type=none \
      --tls-cert-file="$T/pki/apiserver.crt" --tls-private-key-file="$T/pki/apiserver.key" \
      --client-ca-file="$T/pki/ca.crt" --token-auth-file="$T/pki/tokens.csv" \
      --authorization-mode=RBAC \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$T/pki/sa.pub" --service-account-signing-key-file="$T/pki/sa.key" \
      --service-cluster-ip-range=10.0.0.0/16 --allow-privileged=true --profiling=false --v=1 \
      --audit-policy-file="$T/audit-policy.yaml" --audit-log-path="$T/logs/audit.log" \
      --audit-log-format=json --audit-log-maxsize=100000
    # (a /16 of Service IPs: hack/bench creates thousands of Services; the audit log records
    # only the bench identities and is never rotated, so a benchmark reads it by offset)
  fi
  wait_for kube-apiserver 120 apiserver_ready

  if ! running kube-controller-manager; then
    start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig="$T/kubeconfig" \
      --leader-elect=false --secure-port=0 --service-account-private-key-file="$T/pki/sa.key" \
      --root-ca-file="$T/pki/ca.crt" --use-service-account-credentials=false \
      --node-monitor-grace-period=40s --v=1
  fi
  if ! running kube-scheduler; then
    start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$T/kubeconfig" --leader-elect=false \
      --secure-port=0 --v=1
  fi
  if ! running kwok; then
    local s=$KWOK_DIR/stages
    start kwok "$KWOK_DIR/kwok" --kubeconfig="$T/kubeconfig" --manage-all-nodes=true \
      --config="$s/node-initialize.yaml" --config="$s/node-heartbeat-with-lease.yaml" \
      --config="$s/pod-ready.yaml" --config="$s/pod-complete.yaml" --config="$s/pod-delete.yaml" \
      --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 --node-ip=127.0.0.1
  fi
  sleep 1
  for c in kube-controller-manager kube-scheduler kwok; do
    running "$c" || { tail -n 30 "$T/logs/$c.log" >&2; die "$c exited during start-up; see $T/logs/$c.log"; }
  done

  local kubectl="$K8S_BIN/kubectl --kubeconfig=$T/kubeconfig"
  local i nodes=""
  for i in $(seq 0 $((KWOK_NODES - 1))); do
    nodes="$nodes
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {node.alpha.kubernetes.io/ttl: \"0\", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: \"32\", memory: 256Gi, pods: \"$KWOK_NODE_PODS\"}
  capacity: {cpu: \"32\", memory: 256Gi, pods: \"$KWOK_NODE_PODS\"}"
  done
  echo "$nodes" | $kubectl apply --server-side --field-manager=testenv -f - >/dev/null \
    || die "creating kwok nodes failed"
  # (A node's status is only set on creation that way: nodes of an older testenv get the
  # capacity through their status.)
  local capacity="{\"status\":{\"allocatable\":{\"pods\":\"$KWOK_NODE_PODS\"},\"capacity\":{\"pods\":\"$KWOK_NODE_PODS\"}}}"
  for i in $(seq 0 $((KWOK_NODES - 1))); do
    $kubectl patch node "kwok-node-$i" --subresource=status --type=merge -p "$capacity" >/dev/null \
      || die "setting the capacity of kwok-node-$i failed"
  done
}

up_git_http() {
  mkdir -p "$T/git/repos" "$T/git/www"
  if [ ! -f "$T/git/password" ]; then
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/git/password"
  fi
  [ -f "$T/git/registry-password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/git/registry-password"
  # x-access-token: the user GitHub App installation tokens authenticate as (GitRepository
  # provider github); tests mint its password as an installation token.
  [ -f "$T/git/app-token" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/git/app-token"
  printf 'git:%s\nx-access-token:%s\nregistry:%s\n' "$(cat "$T/git/password")" "$(cat "$T/git/app-token")" \
    "$(cat "$T/git/registry-password")" >"$T/git/users"
  # The token service of the token-auth registry: a static token, for the registry user only.
  printf '{"token":"%s"}\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/git/www/registry-token"
  [ -f "$T/git/token" ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/git/token"
  cat >"$T/git/lighttpd.conf.new" <<EOF
server.modules = ("mod_access", "mod_alias", "mod_cgi", "mod_setenv", "mod_auth", "mod_authn_file", "mod_openssl", "mod_accesslog")
server.document-root = "$T/git/www"
server.bind = "127.0.0.1"
server.port = $GIT_HTTP_PORT
server.errorlog = "$T/logs/git-http-error.log"
# Bytes in and out per request, headers included (W8 counts what each git client transfers).
accesslog.filename = "$T/logs/git-http-access.log"
accesslog.format = "%{msec}t \\"%r\\" %>s %I %O"
server.max-request-size = 0
\$SERVER["socket"] == "127.0.0.1:$GIT_HTTPS_PORT" {
  ssl.engine = "enable"
  ssl.pemfile = "$T/pki/sources.crt"
  ssl.privkey = "$T/pki/sources.key"
}
# The same repositories, only for clients with a certificate from the testenv CA (mTLS).
\$SERVER["socket"] == "127.0.0.1:$GIT_MTLS_PORT" {
  ssl.engine = "enable"
  ssl.pemfile = "$T/pki/sources.crt"
  ssl.privkey = "$T/pki/sources.key"
  ssl.verifyclient.activate = "enable"
  ssl.verifyclient.enforce = "enable"
  ssl.verifyclient.ca-file = "$T/pki/ca.crt"
}
# /git takes basic auth (below); /token-git serves the same repositories to bearer-token
# clients only: anything but the token is refused.
alias.url += ( "/git" => "/usr/lib/git-core/git-http-backend" )
alias.url += ( "/token-git" => "/usr/lib/git-core/git-http-backend" )
\$HTTP["url"] =~ "^/(token-)?git" {
  cgi.assign = ( "" => "" )
  setenv.add-environment = (
    "GIT_PROJECT_ROOT" => "$T/git/repos",
    "GIT_HTTP_EXPORT_ALL" => "",
    "GIT_CONFIG_COUNT" => "2", "GIT_CONFIG_KEY_0" => "safe.directory", "GIT_CONFIG_VALUE_0" => "*",
    # Pushes (image automation) also by bearer-token clients, which carry no REMOTE_USER.
    "GIT_CONFIG_KEY_1" => "http.receivepack", "GIT_CONFIG_VALUE_1" => "true"
  )
}
\$HTTP["url"] =~ "^/token-git" {
  \$REQUEST_HEADER["Authorization"] != "Bearer $(cat "$T/git/token")" {
    url.access-deny = ( "" )
  }
}
auth.backend = "plain"
auth.backend.plain.userfile = "$T/git/users"
auth.require = (
  "/git" => ( "method" => "basic", "realm" => "git", "require" => "user=git|user=x-access-token" ),
  "/registry-token" => ( "method" => "basic", "realm" => "registry", "require" => "user=registry" )
)
EOF
  # A server started from an older configuration is restarted with this one.
  if ! cmp -s "$T/git/lighttpd.conf.new" "$T/git/lighttpd.conf"; then
    mv "$T/git/lighttpd.conf.new" "$T/git/lighttpd.conf"
    if running git-http; then
      kill -TERM "$(pid_of git-http)"
      for _ in $(seq 1 40); do running git-http || break; sleep 0.25; done
      running git-http && die "git-http did not stop for its new configuration"
    fi
  else
    rm -f "$T/git/lighttpd.conf.new"
  fi
  if ! running git-http; then
    start git-http lighttpd -D -f "$T/git/lighttpd.conf"
  fi
  # lighttpd answers 404 for a repo that does not exist; any HTTP answer means it serves.
  wait_for git-http 20 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$GIT_HTTP_PORT/git/ | grep -q '^[1-5]'"
}

up_git_ssh() {
  local s=$T/ssh
  mkdir -p "$s"
  [ -f "$s/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$s/hostkey"
  [ -f "$s/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$s/client"
  cp "$s/client.pub" "$s/authorized_keys"
  chmod 600 "$s/hostkey" "$s/client" "$s/authorized_keys"
  cat >"$s/sshd_config" <<EOF
Port $GIT_SSH_PORT
ListenAddress 127.0.0.1
HostKey $s/hostkey
PidFile $s/sshd.pid
AuthorizedKeysFile $s/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowUsers $(id -un)
EOF
  [ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd
  if ! running git-ssh; then
    start git-ssh /usr/sbin/sshd -D -e -f "$s/sshd_config"
  fi
  wait_for git-ssh 20 bash -c "ssh-keyscan -p $GIT_SSH_PORT 127.0.0.1 2>/dev/null | grep -q ssh-ed25519"
  ssh-keyscan -p "$GIT_SSH_PORT" 127.0.0.1 2>/dev/null | grep ssh-ed25519 >"$s/known_hosts"
}

# docker-registry instances over one storage, so an artifact pushed to one is served by all:
# plain HTTP; TLS; TLS requiring a client certificate from the testenv CA; plain HTTP with token
# authentication (distribution's "silly" controller: it challenges with Bearer and lets any
# Authorization through, so the credentials are checked by the token service on git-http,
# which hands its token to the `registry` user only).
write_registry_config() { # name port [http-extra] [top-level-extra]
  cat >"$T/registry/$1.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $T/registry/data}
  delete: {enabled: true}
${4:-}
http:
  addr: 127.0.0.1:$2
${3:-}
EOF
}

up_registries() {
  mkdir -p "$T/registry/data"
  local tls="  tls:
    certificate: $T/pki/sources.crt
    key: $T/pki/sources.key"
  write_registry_config registry "$REGISTRY_PORT"
  write_registry_config registry-tls "$REGISTRY_TLS_PORT" "$tls"
  write_registry_config registry-mtls "$REGISTRY_MTLS_PORT" "$tls
    clientcas: [$T/pki/ca.crt]"
  write_registry_config registry-token "$REGISTRY_TOKEN_PORT" "" "auth:
  silly: {realm: \"http://127.0.0.1:$GIT_HTTP_PORT/registry-token\", service: driftless-testenv}"
  local c
  for c in registry registry-tls registry-mtls registry-token; do
    running "$c" || start "$c" docker-registry serve "$T/registry/$c.yml"
  done
  wait_for registry 20 curl -fsS --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/"
  wait_for registry-tls 20 curl -fsS --max-time 2 --cacert "$T/pki/ca.crt" "https://127.0.0.1:$REGISTRY_TLS_PORT/v2/"
  wait_for registry-mtls 20 curl -fsS --max-time 2 --cacert "$T/pki/ca.crt" \
    --cert "$T/pki/client.crt" --key "$T/pki/client.key" "https://127.0.0.1:$REGISTRY_MTLS_PORT/v2/"
  wait_for registry-token 20 bash -c \
    "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$REGISTRY_TOKEN_PORT/v2/ | grep -q 401"
}

up_helm_http() {
  mkdir -p "$T/helm/repo"
  [ -f "$T/helm/password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/helm/password"
  printf 'helm:%s\n' "$(cat "$T/helm/password")" >"$T/helm/users"
  # The repository at / for anyone; /private serves the same files to user helm only (basic
  # auth, HelmRepository secretRef); the same over HTTPS on its own port (certSecretRef ca.crt).
  cat >"$T/helm/lighttpd.conf" <<EOF
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_openssl")
server.document-root = "$T/helm/repo"
server.bind = "127.0.0.1"
server.port = $HELM_HTTP_PORT
server.errorlog = "$T/logs/helm-http-error.log"
# Tests rewrite index.yaml and fetch it within the same second: lighttpd's stat cache would
# then serve the new file with the old size (a truncated or padded index).
server.stat-cache-engine = "disable"
mimetype.assign = (".yaml" => "application/x-yaml", ".tgz" => "application/gzip")
\$SERVER["socket"] == "127.0.0.1:$HELM_HTTPS_PORT" {
  ssl.engine = "enable"
  ssl.pemfile = "$T/pki/sources.crt"
  ssl.privkey = "$T/pki/sources.key"
}
alias.url += ( "/private/" => "$T/helm/repo/" )
auth.backend = "plain"
auth.backend.plain.userfile = "$T/helm/users"
auth.require = ( "/private/" => ( "method" => "basic", "realm" => "helm", "require" => "user=helm" ) )
EOF
  if ! running helm-http; then
    start helm-http lighttpd -D -f "$T/helm/lighttpd.conf"
  fi
  wait_for helm-http 20 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HELM_HTTP_PORT/ | grep -q '^[1-5]'"
}

# An HTTP proxy with basic auth (tinyproxy), to test proxySecretRef for real.
up_proxy() {
  mkdir -p "$T/proxy"
  [ -f "$T/proxy/password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/proxy/password"
  cat >"$T/proxy/tinyproxy.conf" <<EOF
Port $PROXY_PORT
Listen 127.0.0.1
Timeout 120
MaxClients 64
LogLevel Info
Allow 127.0.0.1
BasicAuth proxyuser $(cat "$T/proxy/password")
EOF
  [ "$(id -u)" -eq 0 ] && printf 'User root\nGroup root\n' >>"$T/proxy/tinyproxy.conf"
  if ! running proxy; then
    start proxy tinyproxy -d -c "$T/proxy/tinyproxy.conf"
  fi
  wait_for proxy 20 bash -c "curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:$PROXY_PORT http://127.0.0.1:$HELM_HTTP_PORT/ | grep -q 407"
}

# An S3 server (versitygw, posix backend) for Bucket sources: one gateway over HTTP, one over
# TLS (the sources certificate), the same directory behind both; requests logged, so tests can
# count the GETs an unchanged bucket costs.
up_s3() {
  local bin="$TESTBINS_CACHE/versitygw-v$VERSITYGW_VERSION/versitygw"
  mkdir -p "$T/s3/data" "$T/s3/meta"
  [ -f "$T/s3/secret" ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/s3/secret"
  local common=(--access driftless --secret "$(cat "$T/s3/secret")" --quiet)
  if ! running s3; then
    start s3 "$bin" "${common[@]}" --port "127.0.0.1:$S3_PORT" --access-log "$T/logs/s3-access.log" \
      posix --sidecar "$T/s3/meta" "$T/s3/data"
  fi
  if ! running s3-tls; then
    start s3-tls "$bin" "${common[@]}" --port "127.0.0.1:$S3_TLS_PORT" \
      --cert "$T/pki/sources.crt" --key "$T/pki/sources.key" posix --sidecar "$T/s3/meta" "$T/s3/data"
  fi
  wait_for s3 20 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$S3_PORT/ | grep -q 403"
  wait_for s3-tls 20 bash -c \
    "curl -s -o /dev/null -w '%{http_code}' --cacert '$T/pki/ca.crt' https://127.0.0.1:$S3_TLS_PORT/ | grep -q 403"
}

# A Google Cloud Storage emulator (fake-gcs-server, in memory) for Buckets with provider gcp:
# the JSON API over HTTP, without authentication.
up_gcs() {
  local bin="$TESTBINS_CACHE/fake-gcs-server-v$FAKE_GCS_VERSION/fake-gcs-server"
  if ! running gcs; then
    start gcs "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
      -public-host "127.0.0.1:$GCS_PORT" -log-level error
  fi
  wait_for gcs 20 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$GCS_PORT/storage/v1/b | grep -q 200"
}

# An Azure Blob Storage emulator (Azurite, in memory) for Buckets with provider azure: the
# development account over HTTP, path-style (`http://127.0.0.1:PORT/devstoreaccount1`).
up_azure() {
  local bin="$TESTBINS_CACHE/azurite-v$AZURITE_VERSION/node_modules/.bin/azurite-blob"
  if ! running azure; then
    start azure "$bin" --blobHost 127.0.0.1 --blobPort "$AZURE_PORT" --inMemoryPersistence \
      --disableTelemetry --skipApiVersionCheck --disableProductStyleUrl --silent
  fi
  wait_for azure 30 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$AZURE_PORT/$AZURE_ACCOUNT?comp=list | grep -q 403"
}

# A NATS server for the nats provider, with one user (`flux`, a generated password).
up_nats() {
  local bin="$TESTBINS_CACHE/nats-server-v$NATS_SERVER_VERSION/nats-server"
  mkdir -p "$T/nats"
  [ -f "$T/nats/password" ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/nats/password"
  printf 'authorization {\n  user: flux\n  password: "%s"\n}\n' "$(cat "$T/nats/password")" >"$T/nats/server.conf"
  if ! running nats; then
    start nats "$bin" -a 127.0.0.1 -p "$NATS_PORT" -c "$T/nats/server.conf"
  fi
  wait_for nats 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT"
}

write_env() {
  cat >"$T/env.sh" <<EOF
# Written by hack/testenv.sh up. Source it: . target/testenv/env.sh
export TESTENV_DIR="$T"
export KUBECONFIG="$T/kubeconfig"
export KUBE_BIN_DIR="$K8S_BIN"
export KUBECTL="$K8S_BIN/kubectl"
export GIT_REPOS_DIR="$T/git/repos"
export GIT_HTTP_BASE="http://127.0.0.1:$GIT_HTTP_PORT/git"
export GIT_HTTPS_BASE="https://127.0.0.1:$GIT_HTTPS_PORT/git"
export SOURCES_CA_FILE="$T/pki/ca.crt"
export GIT_MTLS_BASE="https://127.0.0.1:$GIT_MTLS_PORT/git"
export GIT_TOKEN_BASE="http://127.0.0.1:$GIT_HTTP_PORT/token-git"
export GIT_BEARER_TOKEN="$(cat "$T/git/token")"
export GIT_CLIENT_CERT="$T/pki/client.crt"
export GIT_CLIENT_KEY="$T/pki/client.key"
export GIT_HTTP_USER="git"
export GIT_HTTP_PASSWORD="$(cat "$T/git/password")"
export GIT_APP_TOKEN="$(cat "$T/git/app-token")"
export GIT_SSH_BASE="ssh://$(id -un)@127.0.0.1:$GIT_SSH_PORT$T/git/repos"
export GIT_SSH_KEY="$T/ssh/client"
export GIT_SSH_KNOWN_HOSTS="$T/ssh/known_hosts"
export OCI_REGISTRY="127.0.0.1:$REGISTRY_PORT"
export OCI_REGISTRY_TLS="127.0.0.1:$REGISTRY_TLS_PORT"
export OCI_REGISTRY_MTLS="127.0.0.1:$REGISTRY_MTLS_PORT"
export OCI_REGISTRY_TOKEN="127.0.0.1:$REGISTRY_TOKEN_PORT"
export OCI_REGISTRY_USER="registry"
export OCI_REGISTRY_PASSWORD="$(cat "$T/git/registry-password")"
export HELM_REPO_DIR="$T/helm/repo"
export HELM_REPO_URL="http://127.0.0.1:$HELM_HTTP_PORT"
export HELM_REPO_PRIVATE_URL="http://127.0.0.1:$HELM_HTTP_PORT/private"
export HELM_REPO_HTTPS_URL="https://127.0.0.1:$HELM_HTTPS_PORT"
export HELM_REPO_USER="helm"
export HELM_REPO_PASSWORD="$(cat "$T/helm/password")"
export PROXY_ADDRESS="http://127.0.0.1:$PROXY_PORT"
export PROXY_USER="proxyuser"
export PROXY_PASSWORD="$(cat "$T/proxy/password")"
export PROXY_LOG="$T/logs/proxy.log"
export S3_ENDPOINT="127.0.0.1:$S3_PORT"
export S3_TLS_ENDPOINT="127.0.0.1:$S3_TLS_PORT"
export GCS_ENDPOINT="127.0.0.1:$GCS_PORT"
export AZURE_BLOB_ENDPOINT="http://127.0.0.1:$AZURE_PORT/$AZURE_ACCOUNT"
export AZURE_ACCOUNT_KEY="$AZURE_ACCOUNT_KEY"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export NATS_USER="flux"
export NATS_PASSWORD="$(cat "$T/nats/password")"
export S3_ACCESS_KEY="driftless"
export S3_SECRET_KEY="$(cat "$T/s3/secret")"
export S3_ACCESS_LOG="$T/logs/s3-access.log"
export SOPS_BIN="$TESTBINS_CACHE/sops-v$SOPS_VERSION/sops"
export COSIGN_BIN="$TESTBINS_CACHE/cosign-v$COSIGN_VERSION/cosign"
export HELM_BIN="$TESTBINS_CACHE/helm-v$HELM_VERSION/helm"
EOF
}

cmd_up() {
  local started=$SECONDS
  mkdir -p "$T/logs" "$T/run"
  ensure_packages
  ensure_binaries
  ensure_pki
  ensure_bench_identities
  ensure_sources_tls
  up_control_plane
  up_git_http
  up_git_ssh
  up_registries
  up_helm_http
  up_proxy
  up_s3
  up_gcs
  up_azure
  up_nats
  write_env
  log "up in $((SECONDS - started))s; environment: . $T/env.sh"
}

cmd_down() {
  local c p
  for c in $COMPONENTS; do
    p=$(pid_of "$c")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      # Each component runs in its own session: stop the whole group it leads.
      kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    fi
  done
  for c in $COMPONENTS; do
    p=$(pid_of "$c")
    [ -n "$p" ] || continue
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$p" 2>/dev/null && kill -KILL -- "-$p" 2>/dev/null || true
    rm -f "$T/run/$c.pid"
  done
  log "stopped"
}

cmd_status() {
  local c rc=0
  for c in $COMPONENTS; do
    if running "$c"; then
      printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
    else
      printf '%-24s stopped\n' "$c"; rc=1
    fi
  done
  [ -f "$T/env.sh" ] && printf 'environment: . %s\n' "$T/env.sh"
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_down; rm -rf "$T"; log "state removed" ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
