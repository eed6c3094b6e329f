#!/bin/sh
# The Rust target and the C cross compiler for the platform an image is built for.
#
# The Dockerfile's build stage runs on the builder's own platform ($BUILDPLATFORM)
# and cross-compiles for the image's ($TARGETPLATFORM), both set by `docker buildx`
# (e.g. linux/amd64, linux/arm64). aws-lc-sys and ring compile C, so a cross build
# needs Debian's cross gcc as well as the Rust target.
#
#   rust-target.sh triple          print the Rust target triple
#   rust-target.sh install         cross-compiling only: apt-get the cross gcc and
#                                  libc, rustup the Rust target (a native build
#                                  needs nothing more than the rust image has)
#   rust-target.sh cargo ARGS...   run `cargo ARGS... --target TRIPLE`, with the cross
#                                  gcc as linker and C compiler when cross-compiling
#   rust-target.sh binary          print where `cargo build --release` leaves the binary
#
# Unset TARGETPLATFORM or BUILDPLATFORM mean this machine's own platform. An
# unknown platform is refused with one line and exit 2. Tested by tests/image.
set -eu

die() {
	printf 'rust-target.sh: %s\n' "$*" >&2
	exit 2
}

# The machine's own platform, in Docker's spelling.
own_platform() {
	case "$(uname -m)" in
	x86_64) echo linux/amd64 ;;
	aarch64 | arm64) echo linux/arm64 ;;
	*) die "this machine's architecture \"$(uname -m)\" is not supported; expected x86_64 or aarch64" ;;
	esac
}

# platform_facts PLATFORM: sets triple, gnu (the cross tools' prefix) and the
# Debian packages of the cross gcc and libc. linux/arm64/v8 is how some builders
# spell linux/arm64.
platform_facts() {
	case "$1" in
	linux/amd64 | linux/amd64/v1 | linux/amd64/v2 | linux/amd64/v3)
		triple=x86_64-unknown-linux-gnu
		gnu=x86_64-linux-gnu
		packages="gcc-x86-64-linux-gnu libc6-dev-amd64-cross"
		;;
	linux/arm64 | linux/arm64/v8)
		triple=aarch64-unknown-linux-gnu
		gnu=aarch64-linux-gnu
		packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
		;;
	*) die "TARGETPLATFORM \"$1\" is not supported; expected linux/amd64 or linux/arm64" ;;
	esac
}

build_platform="${BUILDPLATFORM:-$(own_platform)}"
target_platform="${TARGETPLATFORM:-$build_platform}"
platform_facts "$build_platform"
build_triple="$triple"
platform_facts "$target_platform"
cross=no
[ "$triple" = "$build_triple" ] || cross=yes

[ $# -ge 1 ] || die "no command given; expected triple, install, cargo ARGS... or binary"
command="$1"
shift
case "$command" in
triple)
	echo "$triple"
	;;
binary)
	echo "target/$triple/release/irsa-proxy"
	;;
install)
	if [ "$cross" = yes ]; then
		# shellcheck disable=SC2086 # the package list is meant to split
		DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
		rm -rf /var/lib/apt/lists/*
		rustup target add "$triple"
	fi
	;;
cargo)
	if [ "$cross" = yes ]; then
		# cargo's and the cc crate's variables for this target, e.g.
		# CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER and CC_aarch64_unknown_linux_gnu.
		under="$(echo "$triple" | tr - _)"
		upper="$(echo "$under" | tr '[:lower:]' '[:upper:]')"
		export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
		export "CC_${under}=$gnu-gcc"
		export "AR_${under}=$gnu-ar"
	fi
	exec cargo "$@" --target "$triple"
	;;
*)
	die "unknown command \"$command\"; expected triple, install, cargo ARGS... or binary"
	;;
esac
