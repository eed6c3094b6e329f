#!/usr/bin/env bash
# Builds both images with a container engine and smoke-tests them (docs/inject.md, "Build
# the image"):
#   1. the sidecar image (`docker build .`) and the webhook image
#      (`--build-arg FEATURES=tools`); extra arguments go to both builds, e.g.
#      `--platform linux/arm64` under buildx;
#   2. `serve --help` in the sidecar image (its ENTRYPOINT), `webhook --help` in
#      the webhook image, and the sidecar image refusing the tools;
#   3. a pod on one machine, as `dev` does it: the webhook image's `mint` signs a
#      token and its `sts-emulator` stands in for STS; the sidecar image serves
#      credentials from it as 65532:65532 on a read-only root, in the emulator's
#      network namespace (a pod's shared one), and its exec probe
#      (`/irsa-proxy probe URL`) sees it ready and gets credentials by the
#      authorization token in the path.
# Needs: docker (or DOCKER=podman) with an engine that answers, and openssl.
# Exit 0 when everything passed; 1 with one line saying what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

docker="${DOCKER:-docker}"
say() { printf 'image-smoke: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

command -v "$docker" >/dev/null 2>&1 || die "no '$docker' command: install Docker or Podman (DOCKER=podman), then rerun"
"$docker" info >/dev/null 2>&1 || die "no container engine answers '$docker info': start one (or point DOCKER_HOST at it), then rerun"
command -v openssl >/dev/null 2>&1 || die "no openssl command: apt-get install openssl"

tag="irsa-proxy-smoke-$$"
work="$(mktemp -d)"
cleanup() {
	"$docker" rm -f "$tag-sts" "$tag-sidecar" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

say "building the sidecar image ($tag:sidecar)"
"$docker" build -q -t "$tag:sidecar" "$@" . >/dev/null || die "docker build of the sidecar image failed"
say "building the webhook image ($tag:webhook, FEATURES=tools)"
"$docker" build -q --build-arg FEATURES=tools -t "$tag:webhook" "$@" . >/dev/null ||
	die "docker build of the webhook image failed"

user="$("$docker" image inspect -f '{{.Config.User}}' "$tag:sidecar")"
[ "$user" = "65532:65532" ] || die "the sidecar image's user is '$user', expected 65532:65532"
"$docker" run --rm "$tag:sidecar" --help | grep -q -- '--role-arn' || die "'serve --help' in the sidecar image printed no --role-arn"
"$docker" run --rm --entrypoint /irsa-proxy "$tag:webhook" webhook --help | grep -q -- '--tls-cert-file' ||
	die "'webhook --help' in the webhook image printed no --tls-cert-file"
for tool in inject sts-emulator dev webhook; do
	if "$docker" run --rm --entrypoint /irsa-proxy "$tag:sidecar" "$tool" --help >/dev/null 2>&1; then
		die "the sidecar image has '$tool': it should be the core build"
	fi
done
say "serve --help and webhook --help answer; the sidecar image is the core"

# The pod: a token signed by a key the emulator trusts.
openssl genrsa -out "$work/issuer-key.pem" 2048 2>/dev/null
openssl rsa -in "$work/issuer-key.pem" -pubout -out "$work/issuer.pub.pem" 2>/dev/null
chmod 0644 "$work/issuer-key.pem" "$work/issuer.pub.pem"
chmod 0755 "$work"
"$docker" run --rm --read-only -v "$work:/work:ro" --entrypoint /irsa-proxy "$tag:webhook" \
	mint --issuer-key /work/issuer-key.pem --sub system:serviceaccount:demo:app >"$work/token"
chmod 0644 "$work/token"
auth="$(openssl rand -hex 32)"

"$docker" run -d --name "$tag-sts" --read-only -v "$work:/work:ro" --entrypoint /irsa-proxy "$tag:webhook" \
	sts-emulator --listen 127.0.0.1:9912 --issuer-key /work/issuer.pub.pem >/dev/null
"$docker" run -d --name "$tag-sidecar" --network "container:$tag-sts" --read-only \
	--tmpfs /var/run/irsa-proxy:uid=65532,gid=65532,mode=0750 \
	-v "$work:/var/run/secrets/eks.amazonaws.com/serviceaccount:ro" \
	-e AWS_ROLE_ARN=arn:aws:iam::111122223333:role/demo-role \
	-e AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token \
	-e AWS_ENDPOINT_URL_STS=http://127.0.0.1:9912 -e AWS_REGION=us-east-1 \
	-e IRSA_PROXY_AUTH_TOKEN="$auth" "$tag:sidecar" \
	--auth-token-file /var/run/irsa-proxy/auth-token >/dev/null

ready=no
for _ in $(seq 1 60); do
	if "$docker" exec "$tag-sidecar" /irsa-proxy probe http://127.0.0.1:9911/readyz >/dev/null 2>&1; then
		ready=yes
		break
	fi
	sleep 0.5
done
if [ "$ready" != yes ]; then
	"$docker" logs "$tag-sidecar" >&2 || true
	die "the sidecar image did not become ready within 30 s"
fi
"$docker" exec "$tag-sidecar" /irsa-proxy probe "http://127.0.0.1:9911/v2/credentials/$auth" >/dev/null ||
	die "the sidecar image served no credentials for its authorization token"
if "$docker" exec "$tag-sidecar" /irsa-proxy probe "http://127.0.0.1:9911/v2/credentials/x$auth" >/dev/null 2>&1; then
	die "the sidecar image served credentials for a wrong token"
fi
say "passed: the sidecar image got credentials from the emulator as 65532 on a read-only root; its exec probe works"
