#!/usr/bin/env bash
# Soak and chaos run: the release binary against the STS emulator (60-second
# credentials) behind a fault-injecting proxy, under load, with token rotation
# every 2 s. See bench/soak.py for what it does and asserts, and
# docs/reliability.md for how to read the report.
#
#   bash bench/soak.sh            # 5 minutes
#   bash bench/soak.sh --quick    # 60 seconds (what .ci/run runs)
#   bash bench/soak.sh --seconds 900 --report soak.json --keep
#   bash bench/soak.sh --quick --link-local   # also 169.254.170.2:80 and
#       169.254.169.254:80 (root: it runs in a network namespace of its own)
#   bash bench/soak.sh --quick --roles   # two roles in one proxy, each through
#       its own token (docs/several-roles.md); reports both roles
#
# Needs: a Rust toolchain, python3 (standard library only), openssl; wrk if
# installed (apt-get install -y wrk), else a built-in Python load.
set -euo pipefail
# The proxy is measured in its default configuration: the machine's own trust
# bundle or proxy settings (some CI images set AWS_CA_BUNDLE to the whole system
# bundle, a resident megabyte) must not change the figures.
unset AWS_CA_BUNDLE HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy NO_PROXY no_proxy
cd "$(dirname "$0")/.."

seconds=300
extra=()
link_local=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) seconds=60 ;;
    --seconds) seconds="$2"; shift ;;
    --report) extra+=(--report "$2"); shift ;;
    --keep) extra+=(--keep) ;;
    --link-local) link_local=1 ;;
    --roles) extra+=(--roles) ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

for tool in python3 openssl; do
  command -v "$tool" >/dev/null || { echo "soak.sh: $tool is required" >&2; exit 2; }
done

cargo build --release --quiet --bin irsa-proxy
binary="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/irsa-proxy"

if [ "$link_local" = 1 ]; then
  # A namespace of its own with only lo: the link-local addresses exist there
  # and nowhere else, and there is no route out (irsa-proxy link-local checks).
  [ "$(id -u)" = 0 ] || { echo "soak.sh: --link-local needs root (it makes a network namespace)" >&2; exit 2; }
  exec timeout --kill-after=30 "$((seconds + 180))" \
    unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh \
    python3 bench/soak.py --binary "$binary" --seconds "$seconds" --link-local ${extra[@]+"${extra[@]}"}
fi
exec timeout --kill-after=30 "$((seconds + 180))" \
  python3 bench/soak.py --binary "$binary" --seconds "$seconds" ${extra[@]+"${extra[@]}"}
