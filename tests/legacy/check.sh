#!/usr/bin/env bash
# Runs every legacy client on the route it exists for, against `irsa-proxy dev
# --link-local` (STS emulator + proxy, also on 169.254.170.2:80 and
# 169.254.169.254:80), inside a network namespace of its own with no route out.
#
#   sudo bash tests/legacy/check.sh [PATH/TO/irsa-proxy]   # default target/debug/irsa-proxy
#
# Needs root (unshare --net, addresses on the namespace's lo) and install.sh done.
# Each client gets a clean environment holding only IRSA_TEST_STS_ENDPOINT and the
# variables of its route, and an empty HOME. Ends with "N passed, N failed";
# exit 1 if any failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ "${1:-}" != "--inner" ] && [ "${1:-}" != "--in-netns" ]; then
  bin="$(realpath "${1:-$repo/target/debug/irsa-proxy}")"
  [ -x "$bin" ] || { echo "check: no irsa-proxy binary at $bin (cargo build first)" >&2; exit 1; }
  [ "$(id -u)" -eq 0 ] || { echo "check: needs root (unshare --net)" >&2; exit 1; }
  exec unshare --net -- bash "${BASH_SOURCE[0]}" --in-netns "$bin"
fi

if [ "$1" = "--in-netns" ]; then
  bin="$2"
  ip link set lo up
  # Nothing may leave this namespace: only lo, and no route through anything else.
  if ip -brief link | grep -v '^lo ' | grep -q . \
    || ip route | grep -v ' dev lo' | grep -q . \
    || ip -6 route | grep -v ' dev lo' | grep -q .; then
    echo "check: this network namespace has a way out; refusing" >&2
    ip -brief link >&2; ip route >&2; ip -6 route >&2
    exit 1
  fi
  log="$(mktemp)"
  status=0
  "$bin" dev --link-local --listen 127.0.0.1:9911 -- bash "${BASH_SOURCE[0]}" --inner 2>"$log" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- irsa-proxy dev log:" >&2
    tail -n 30 "$log" >&2
  fi
  rm -f "$log"
  exit "$status"
fi

# --inner: run by `irsa-proxy dev`, with its AWS_* variables set.
sts="${AWS_ENDPOINT_URL_STS:?irsa-proxy dev did not set AWS_ENDPOINT_URL_STS}"
full_uri="${AWS_CONTAINER_CREDENTIALS_FULL_URI:?irsa-proxy dev did not set AWS_CONTAINER_CREDENTIALS_FULL_URI}"
token="${AWS_CONTAINER_AUTHORIZATION_TOKEN:-}"
if [ -z "$token" ] && [ -n "${AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE:-}" ]; then
  token="$(cat "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")"
fi
# The path-secret route when the proxy has a token, else the plain one.
relative_uri="${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-/v1/credentials}"

home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
passed=0 failed=0

run() {  # run CLIENT ROUTE
  local client="$1" route="$2" vars=() out rc=0 started
  case "$route" in
    full-uri-token) vars=("AWS_CONTAINER_CREDENTIALS_FULL_URI=$full_uri" "AWS_CONTAINER_AUTHORIZATION_TOKEN=$token") ;;
    relative-uri) vars=("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=$relative_uri") ;;
    imds) vars=() ;;
  esac
  started=$SECONDS
  out="$(env -i PATH="$PATH" HOME="$home" LANG=C.UTF-8 IRSA_TEST_STS_ENDPOINT="$sts" "${vars[@]}" \
    "$here/run-client" "$client" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ] && printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["client"] == sys.argv[1], d
assert d["access_key_id"].startswith("ASIA"), d
assert d["arn"].startswith("arn:aws:sts::") and ":assumed-role/" in d["arn"], d
' "$client" 2>/dev/null; then
    passed=$((passed + 1))
    printf 'ok    %-16s %-15s %3ss  %s\n' "$client" "$route" "$((SECONDS - started))" "$out"
  else
    failed=$((failed + 1))
    printf 'FAIL  %-16s %-15s %3ss  exit %s: %s\n' "$client" "$route" "$((SECONDS - started))" "$rc" "$out"
  fi
}

# The route each client exists for (README.md), then the other routes it also takes.
run js-v2-2017      full-uri-token
run botocore-debian full-uri-token
run botocore-2019   relative-uri
run boto2           imds
run ruby-v3-debian  imds
run js-v2-2017      relative-uri
run js-v2-2017      imds
run botocore-debian relative-uri
run botocore-debian imds
run botocore-2019   imds
run ruby-v3-debian  relative-uri

echo "legacy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
