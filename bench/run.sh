#!/usr/bin/env bash
# The irsa-proxy benchmark (issue 5): the proxy and nginx side by side, in one run,
# on the same cores. See bench/README.md for what it measures and how to set up.
#
#   bench/run.sh            full run (~2.5 min after the build); writes BENCHMARKS.md
#                           and bench/latency.png at the repository root
#   bench/run.sh --quick    short run (< 60 s) for CI; writes into a scratch
#                           directory (or --out DIR) and never fails on a missed target
#
# Exit status: 0 when everything ran (targets missed or not), 1 when something broke
# (a server did not start, a measurement failed), 2 on usage or a missing tool.
set -euo pipefail
# The proxy is measured in its default configuration: the machine's own trust
# bundle or proxy settings (some CI images set AWS_CA_BUNDLE to the whole system
# bundle, a resident megabyte) must not change the figures.
unset AWS_CA_BUNDLE HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy NO_PROXY no_proxy

usage() {
	cat <<'EOF'
usage: bench/run.sh [--quick] [--no-build] [--bin PATH] [--sts fake|emulator] [--out DIR] [--duration S]

  --quick          short durations and fewer runs (< 60 s); results go to a scratch
                   directory unless --out is given; missed targets are only printed
  --no-build       do not run `cargo build --release` (use the binary as it is)
  --bin PATH       benchmark this irsa-proxy binary instead of target/release/irsa-proxy
  --sts KIND       `fake` (default): bench/fake_sts.py; `emulator`: `irsa-proxy
                   sts-emulator` (needs a binary that has it, and openssl)
  --out DIR        write BENCHMARKS.md and latency.png into DIR
  --duration S     seconds per load point (default 10, 2 with --quick)
EOF
}

QUICK=0
BUILD=1
BIN=""
STS_KIND=fake
OUT=""
DUR_OVERRIDE=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--no-build) BUILD=0 ;;
	--bin) BIN="${2:?--bin needs a path}"; shift ;;
	--sts) STS_KIND="${2:?--sts needs fake or emulator}"; shift ;;
	--out) OUT="${2:?--out needs a directory}"; shift ;;
	--duration) DUR_OVERRIDE="${2:?--duration needs seconds}"; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench/run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case "$STS_KIND" in fake | emulator) ;; *) echo "bench/run.sh: --sts must be fake or emulator" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench/run.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
for t in wrk nginx taskset python3 curl; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ "$STS_KIND" = emulator ] && ! command -v openssl >/dev/null 2>&1; then missing+=(openssl); fi
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import matplotlib' 2>/dev/null; then
	missing+=("python3-matplotlib")
fi
if [ ${#missing[@]} -gt 0 ]; then
	cat >&2 <<EOF
bench/run.sh: missing tools: ${missing[*]}
Install them (Debian/Ubuntu, as root):
  apt-get update && apt-get install -y wrk nginx-light util-linux python3 curl binutils openssl
  python3 -m pip install matplotlib        # or: apt-get install -y python3-matplotlib
EOF
	exit 2
fi

if [ "$QUICK" = 1 ]; then
	DUR=2 WARM=0 REFRESH_DUR=3 STARTUP_RUNS=5
	OUT="${OUT:-${TMPDIR:-/tmp}/irsa-proxy-bench-quick}"
else
	DUR=10 WARM=2 REFRESH_DUR=10 STARTUP_RUNS=20
	OUT="${OUT:-$ROOT}"
fi
if [ -n "$DUR_OVERRIDE" ]; then DUR=$DUR_OVERRIDE REFRESH_DUR=$DUR_OVERRIDE; fi
CONNS=(1 64 1024)
HERD=1000
mkdir -p "$OUT"

# Pinning: the server under test (proxy or nginx) on core 0, wrk on core 1.
NCPU=$(nproc)
SERVER_CPU=0
if [ "$NCPU" -ge 2 ]; then CLIENT_CPU=1; else
	CLIENT_CPU=0
	echo "bench/run.sh: only one core: wrk shares it with the server; figures are not comparable to a 2-core run" >&2
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# wrk and the proxy need a descriptor per connection, and a few more.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 2200 ] ||
	echo "bench/run.sh: warning: ulimit -n is $(ulimit -n); 1024 connections may fail" >&2

# ---------------------------------------------------------------- build
if [ -z "$BIN" ]; then
	# Where cargo puts it: target/, or CARGO_TARGET_DIR when that is set.
	target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') ||
		target_dir="$ROOT/target"
	BIN="$target_dir/release/irsa-proxy"
	if [ "$BUILD" = 1 ]; then
		say "building the release binary (cargo build --release)"
		(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
	fi
fi
[ -x "$BIN" ] || die "no binary at $BIN (build it, or pass --bin)"
T_START=$(date +%s)

# ---------------------------------------------------------------- scratch space
WORK="$(mktemp -d "${TMPDIR:-/tmp}/irsa-bench.XXXXXX")"
chmod 755 "$WORK" # nginx's worker may run as another user
RES="$WORK/results"
mkdir -p "$RES" "$WORK/www/v1" "$WORK/nginx"
PIDS=()
NGINX_WORKER=""
NGINX_MASTER=""
cleanup() {
	local p
	# nginx's worker is not our child: a KILL to the master would orphan it, and
	# killing the worker first lets the master start another. Ask the master to
	# stop (it stops its workers), then KILL whatever is left.
	if [ -n "$NGINX_MASTER" ]; then
		kill -TERM "$NGINX_MASTER" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$NGINX_MASTER" 2>/dev/null || break; sleep 0.05; done
		for p in $(pgrep -P "$NGINX_MASTER" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
	fi
	if [ -n "$NGINX_WORKER" ]; then kill -KILL "$NGINX_WORKER" 2>/dev/null || true; fi
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { python3 "$BENCH/probe.py" wait --port "$1" --path "$2" --timeout "${3:-15}"; }

ROLE_ARN="arn:aws:iam::123456789012:role/bench"
ROLE_NAME="bench"
AUTH_FILE="$WORK/auth-token"
TOKEN_FILE="$WORK/token"

# ---------------------------------------------------------------- STS
# start_fake_sts NAME TTL_SECONDS DELAY_SECONDS -> sets STS_URL, STS_PORT
start_fake_sts() {
	local name=$1 ttl=$2 delay=$3 pf="$WORK/$1.port"
	python3 "$BENCH/fake_sts.py" --port 0 --port-file "$pf" --ttl "$ttl" --delay "$delay" \
		>"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	local i
	for i in $(seq 1 200); do [ -s "$pf" ] && break; sleep 0.02; done
	[ -s "$pf" ] || die "the fake STS ($name) did not start; see $WORK/$name.log"
	STS_PORT=$(cat "$pf")
	STS_URL="http://127.0.0.1:$STS_PORT"
}

make_jwt() { # a token signed with a fresh RSA key, for the emulator
	openssl genrsa -out "$WORK/issuer.key" 2048 2>/dev/null
	openssl rsa -in "$WORK/issuer.key" -pubout -out "$WORK/issuer.pub" 2>/dev/null
	local now h p s
	now=$(date +%s)
	b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
	h=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
	p=$(printf '{"iss":"https://oidc.bench.local","sub":"system:serviceaccount:default:bench","aud":"sts.amazonaws.com","iat":%d,"nbf":%d,"exp":%d}' \
		"$now" "$now" $((now + 86400)) | b64url)
	s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$WORK/issuer.key" -binary | b64url)
	printf '%s.%s.%s' "$h" "$p" "$s" >"$TOKEN_FILE"
}

# start_emulator NAME TTL -> sets STS_URL, STS_PORT
start_emulator() {
	local name=$1 ttl=$2
	STS_PORT=$(free_port)
	taskset -c "$CLIENT_CPU" "$BIN" sts-emulator --listen "127.0.0.1:$STS_PORT" \
		--issuer-key "$WORK/issuer.pub" --credential-ttl "$ttl" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	local i
	for i in $(seq 1 250); do
		(exec 3<>"/dev/tcp/127.0.0.1/$STS_PORT") 2>/dev/null && break
		sleep 0.02
	done
	(exec 3<>"/dev/tcp/127.0.0.1/$STS_PORT") 2>/dev/null ||
		die "irsa-proxy sts-emulator did not start; see $WORK/$name.log: $(tail -3 "$WORK/$name.log")"
	STS_URL="http://127.0.0.1:$STS_PORT"
}

if [ "$STS_KIND" = emulator ]; then
	"$BIN" sts-emulator --help >/dev/null 2>&1 || { echo "bench/run.sh: this binary has no sts-emulator; use --sts fake" >&2; exit 2; }
	make_jwt
else
	# The fake STS does not verify the token.
	printf 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2ln' >"$TOKEN_FILE"
fi

# ---------------------------------------------------------------- proxy
proxy_args() { # PORT STS_URL
	echo serve --role-arn "$ROLE_ARN" --token-file "$TOKEN_FILE" --sts-endpoint "$2" \
		--region us-east-1 --listen "127.0.0.1:$1" --auth-token-file "$AUTH_FILE"
}
# start_proxy NAME PORT STS_URL -> sets PROXY_PID
start_proxy() {
	local name=$1 port=$2 url=$3
	# shellcheck disable=SC2046
	taskset -c "$SERVER_CPU" "$BIN" $(proxy_args "$port" "$url") >"$WORK/$name.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_for "$port" /readyz 15 || die "the proxy ($name) did not become ready; log:
$(tail -20 "$WORK/$name.log")"
}

stop_pid() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
rss_kib() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- wrk
# run_wrk NAME CONNS DURATION URL [HEADER...] -> $RES/NAME.json
run_wrk() {
	local name=$1 conns=$2 dur=$3 url=$4
	shift 4
	local env=() i=1 h
	for h in "$@"; do env+=("BENCH_HEADER_$i=$h"); i=$((i + 1)); done
	local out
	out=$(env "${env[@]}" taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s \
		-s "$BENCH/wrk.lua" "$url" 2>&1) || die "wrk failed on $name: $out"
	echo "$out" >"$RES/$name.wrk.txt"
	local line
	line=$(printf '%s\n' "$out" | sed -n 's/^BENCHJSON //p')
	[ -n "$line" ] || die "wrk printed no result for $name: $out"
	echo "$line" >"$RES/$name.json"
	python3 - "$RES/$name.json" "$name" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1])); p = r["percentiles_us"]; e = r["errors"]
bad = sum(e.values())
print("  %-18s %9.0f req/s  p50 %6d us  p99 %6d us  p99.9 %6d us%s" % (
    sys.argv[2], r["rps"], p["50"], p["99"], p["99.9"],
    ("  ERRORS %s" % e) if bad else ""))
EOF
}

# ================================================================ the run
say "STS: $STS_KIND; durations ${DUR}s per point; cores: server $SERVER_CPU, wrk $CLIENT_CPU; load $LOAD_START"

if [ "$STS_KIND" = emulator ]; then start_emulator sts 1h; else start_fake_sts sts 3600 0; fi
MAIN_STS_URL=$STS_URL

PROXY_PORT=$(free_port)
start_proxy proxy "$PROXY_PORT" "$MAIN_STS_URL"
MAIN_PID=$PROXY_PID
AUTH="$(cat "$AUTH_FILE")"
BASE="http://127.0.0.1:$PROXY_PORT"

# The body nginx serves: the very bytes the proxy answers.
curl -fsS -H "Authorization: $AUTH" "$BASE/v1/credentials" -o "$WORK/www/v1/credentials" ||
	die "GET /v1/credentials failed"
IMDS_TOKEN=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "$BASE/latest/api/token") ||
	die "PUT /latest/api/token failed"
curl -fsS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" \
	"$BASE/latest/meta-data/iam/security-credentials/$ROLE_NAME" -o /dev/null ||
	die "the IMDSv2 credentials GET failed"
sleep 0.5
IDLE_RSS=$(rss_kib "$MAIN_PID" VmRSS)
echo "  proxy idle RSS after first credentials: ${IDLE_RSS} KiB" >&2

NGINX_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nodelay on;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
        location = /v1/credentials { default_type application/json; }
    }
}
EOF
taskset -c "$SERVER_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_MASTER=$!
NGINX_URL="http://127.0.0.1:$NGINX_PORT/v1/credentials"
wait_for "$NGINX_PORT" /v1/credentials 10 || die "nginx did not start: $(cat "$WORK/nginx.log" "$WORK/nginx/error.log" 2>/dev/null)"
for _ in $(seq 1 100); do
	NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1 || true)
	[ -n "$NGINX_WORKER" ] && break
	sleep 0.02
done
[ -n "$NGINX_WORKER" ] || die "no nginx worker process"
NGINX_IDLE_RSS=$(($(rss_kib "$NGINX_MASTER" VmRSS) + $(rss_kib "$NGINX_WORKER" VmRSS)))
cmp -s <(curl -fsS "$NGINX_URL") <(curl -fsS -H "Authorization: $AUTH" "$BASE/v1/credentials") ||
	die "nginx does not serve the proxy's body"

ECS_URL="$BASE/v1/credentials"
IMDS_URL="$BASE/latest/meta-data/iam/security-credentials/$ROLE_NAME"
if [ "$WARM" -gt 0 ]; then
	say "warm-up (${WARM}s each)"
	run_wrk warm-ecs 64 "$WARM" "$ECS_URL" "Authorization: $AUTH"
	run_wrk warm-nginx 64 "$WARM" "$NGINX_URL"
fi

# Interleaved so that noise on the shared machine hits all three alike.
for c in "${CONNS[@]}"; do
	say "$c connection(s), keep-alive, ${DUR}s each"
	run_wrk "ecs-$c" "$c" "$DUR" "$ECS_URL" "Authorization: $AUTH"
	run_wrk "imds-$c" "$c" "$DUR" "$IMDS_URL" "X-aws-ec2-metadata-token: $IMDS_TOKEN"
	run_wrk "nginx-$c" "$c" "$DUR" "$NGINX_URL"
done
PEAK_RSS=$(rss_kib "$MAIN_PID" VmHWM)
NGINX_PEAK_RSS=$(($(rss_kib "$NGINX_MASTER" VmHWM) + $(rss_kib "$NGINX_WORKER" VmHWM)))
echo "  proxy peak RSS: ${PEAK_RSS} KiB; nginx (master + worker) peak RSS: ${NGINX_PEAK_RSS} KiB" >&2

# ---------------------------------------------------------------- refresh
say "p99 while credentials are refreshed about every second (${REFRESH_DUR}s each)"
start_fake_sts sts-short 2.0 0
REFRESH_PORT=$(free_port)
start_proxy proxy-refresh "$REFRESH_PORT" "$STS_URL"
REFRESH_PID=$PROXY_PID
REFRESH_STS_PORT=$STS_PORT
sts_calls() { curl -fsS "http://127.0.0.1:$1/calls"; }
run_wrk norefresh-64 64 "$REFRESH_DUR" "$ECS_URL" "Authorization: $AUTH"
before=$(sts_calls "$REFRESH_STS_PORT")
run_wrk refresh-64 64 "$REFRESH_DUR" "http://127.0.0.1:$REFRESH_PORT/v1/credentials" "Authorization: $AUTH"
after=$(sts_calls "$REFRESH_STS_PORT")
REFRESHES=$((after - before))
echo "  refreshes during the run: $REFRESHES in ${REFRESH_DUR}s" >&2
stop_pid "$REFRESH_PID"

# ---------------------------------------------------------------- herd
say "cold-start herd: $HERD concurrent requests before the first credentials"
# A slow STS (1 s) so that every request of the herd arrives before the cache is
# filled; the fake STS counts the calls, the proxy's metrics must agree.
start_fake_sts sts-slow 3600 1.0
HERD_PORT=$(free_port)
taskset -c "$SERVER_CPU" "$BIN" $(proxy_args "$HERD_PORT" "$STS_URL") >"$WORK/proxy-herd.log" 2>&1 &
HERD_PID=$!
PIDS+=("$HERD_PID")
wait_for "$HERD_PORT" /healthz 10 || die "the herd proxy did not start: $(tail -5 "$WORK/proxy-herd.log")"
HERD_OUT=$(taskset -c "$CLIENT_CPU" python3 "$BENCH/probe.py" herd --port "$HERD_PORT" --count "$HERD" \
	--header "Authorization: $AUTH") || die "the herd failed: $HERD_OUT"
HERD_STS_CALLS=$(sts_calls "$STS_PORT")
HERD_METRIC=$(curl -fsS "http://127.0.0.1:$HERD_PORT/metrics" |
	awk '/^irsa_proxy_sts_requests_total/ {s += $NF} END {print s + 0}')
echo "$HERD_OUT" >"$RES/herd.json"
echo "  $HERD_OUT; STS calls: $HERD_STS_CALLS (proxy metrics: $HERD_METRIC)" >&2
stop_pid "$HERD_PID"

# ---------------------------------------------------------------- start-up
say "start to ready, median of $STARTUP_RUNS"
STARTUP_OUT=$(taskset -c "$CLIENT_CPU" python3 "$BENCH/probe.py" startup --runs "$STARTUP_RUNS" --cpu "$SERVER_CPU" -- \
	"$BIN" $(proxy_args '{port}' "$MAIN_STS_URL")) || die "start-up measurement failed: $STARTUP_OUT"
echo "$STARTUP_OUT" >"$RES/startup.json"
echo "  $STARTUP_OUT" >&2

# ---------------------------------------------------------------- binary
STRIPPED="$WORK/irsa-proxy.stripped"
if command -v strip >/dev/null 2>&1; then strip -o "$STRIPPED" "$BIN"; else cp "$BIN" "$STRIPPED"; fi
BIN_BYTES=$(stat -c %s "$STRIPPED")

# ---------------------------------------------------------------- report
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then COMMIT="$COMMIT+dirty"; fi
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NGINX_VERSION=$( (nginx -v 2>&1 || true) | sed 's/^nginx version: //')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR==1 {print $2}')
python3 - "$RES/meta.json" <<EOF
import json, sys
json.dump({
  "quick": $QUICK, "duration_s": $DUR, "refresh_duration_s": $REFRESH_DUR,
  "cores": $NCPU, "cpu_model": """$CPU_MODEL""", "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$COMMIT", "load_start": "$LOAD_START", "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
  "sts": "$STS_KIND", "nginx": "$NGINX_VERSION", "wrk": "$WRK_VERSION",
  "kernel": "$(uname -r)", "rustc": "$(rustc --version 2>/dev/null || echo unknown)",
  "idle_rss_kib": $IDLE_RSS, "peak_rss_kib": $PEAK_RSS,
  "nginx_idle_rss_kib": $NGINX_IDLE_RSS, "nginx_peak_rss_kib": $NGINX_PEAK_RSS,
  "herd_sts_calls": $HERD_STS_CALLS, "herd_metric_calls": $HERD_METRIC,
  "refreshes": $REFRESHES, "binary_bytes": $BIN_BYTES,
  "elapsed_s": $(($(date +%s) - T_START)),
}, open(sys.argv[1], "w"), indent=1)
EOF
say "report"
python3 "$BENCH/report.py" --results "$RES" --out "$OUT" ||
	die "report.py failed"
