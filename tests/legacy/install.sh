#!/usr/bin/env bash
# Installs the legacy AWS SDK test clients (see README.md) on Debian 12:
#   - Debian packages (apt-get; `apt-get update` only when one is missing):
#     ca-certificates, python3, python3-venv, python3-boto3 (botocore 1.29), ruby, ruby-aws-sdk-core,
#     and nodejs/npm when no `node` is on PATH;
#   - PyPI SDKs, each in its own venv under tests/legacy/.env/py-NAME, made with
#     Debian's /usr/bin/python3, from hash-pinned lists in python/ (--no-deps:
#     the list is the whole venv; nothing goes into the global Python);
#   - npm SDKs under tests/legacy/.env/node-NAME with `npm ci` from the committed
#     lock file in node/NAME/.
# Idempotent: a part whose stamp matches its pinned inputs is skipped, so a second
# run only checks that every SDK loads. Prints one line per client.
# Runs as root under `set -euo pipefail` with no stdin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_dir="$here/.env"
mkdir -p "$env_dir"
export DEBIAN_FRONTEND=noninteractive

# One install at a time (two CI steps or a developer and CI on one machine).
exec 9>"$env_dir/.install.lock"
flock 9

say() { printf 'legacy: %s\n' "$*" >&2; }
die() { printf 'legacy: error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ---------------------------------------------------------
apt_pkgs=(ca-certificates python3 python3-venv python3-boto3 python3-botocore ruby ruby-aws-sdk-core)
command -v node >/dev/null 2>&1 || apt_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)

missing=()
for p in "${apt_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install: ${missing[*]}"
  say "apt-get install ${missing[*]}"
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

py=/usr/bin/python3   # Debian's Python: the same interpreter on every Debian 12 machine

# stamp_ok DIR INPUTS...: DIR was installed from exactly these inputs.
stamp_of() { { "$py" -V; cat "$@"; } | sha256sum | cut -d' ' -f1; }
stamp_ok() { local d="$1"; shift; [ -f "$d/.irsa-stamp" ] && [ "$(cat "$d/.irsa-stamp")" = "$(stamp_of "$@")" ]; }

declare -A state=()

# --- PyPI SDKs, one venv each ------------------------------------------------
for name in botocore-2019 boto2; do
  req="$here/python/$name.txt"
  venv="$env_dir/py-$name"
  if stamp_ok "$venv" "$req" && [ -x "$venv/bin/python" ]; then
    state[$name]="already installed"
    continue
  fi
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --root-user-action=ignore --no-deps --require-hashes --only-binary=:all: -r "$req" </dev/null
  "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null \
    || die "$name: pip check failed in $venv"
  stamp_of "$req" >"$venv/.irsa-stamp"
  state[$name]="installed"
done

# --- npm SDKs, `npm ci` from the committed lock file ---------------------------
for name in js-v2-2017; do
  src="$here/node/$name"
  dir="$env_dir/node-$name"
  if stamp_ok "$dir" "$src/package.json" "$src/package-lock.json" && [ -d "$dir/node_modules" ]; then
    state[$name]="already installed"
    continue
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts </dev/null >/dev/null)
  stamp_of "$src/package.json" "$src/package-lock.json" >"$dir/.irsa-stamp"
  state[$name]="installed"
done

# Debian-packaged SDKs: present once apt has run.
state[botocore-debian]="from Debian package python3-botocore $(dpkg-query -W -f='${Version}' python3-botocore)"
state[ruby-v3-debian]="from Debian package ruby-aws-sdk-core $(dpkg-query -W -f='${Version}' ruby-aws-sdk-core)"

# --- every client must load its SDK --------------------------------------------
while read -r name; do
  if ! version="$("$here/run-client" "$name" --sdk-version </dev/null)"; then
    die "$name: the SDK does not load (see the error above)"
  fi
  printf '%-16s %s: %s\n' "$name" "${state[$name]}" "$version"
done < <("$here/run-client" --list)
