"""The image, without a container engine: the Dockerfile's build stage replayed
on its real context for the sidecar (FEATURES="") and the webhook
(FEATURES=tools), and each binary run the way the runtime image runs it.

Needs root (mount and PID namespaces, chroot), Debian 12 (the runtime root is
made of its packages), Rust and a C compiler. The two release builds take
minutes; see docs/inject.md, "Build the image", for the figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import replay as r

SCRIPT = r.REPO / "scripts" / "rust-target.sh"
ROLE = "arn:aws:iam::111122223333:role/demo-role"
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"


# ---- scripts/rust-target.sh: TARGETPLATFORM to Rust target and cross gcc ----


def rust_target(*args: str, env: dict[str, str] | None = None, path_first: Path | None = None):
    full = {k: v for k, v in os.environ.items() if k not in ("TARGETPLATFORM", "BUILDPLATFORM")}
    full.update(env or {})
    if path_first is not None:
        full["PATH"] = f"{path_first}:{full['PATH']}"
    return subprocess.run(["sh", str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "platform, triple",
    [
        ("linux/amd64", "x86_64-unknown-linux-gnu"),
        ("linux/arm64", "aarch64-unknown-linux-gnu"),
        ("linux/arm64/v8", "aarch64-unknown-linux-gnu"),
    ],
)
def test_each_platform_should_select_its_rust_target(platform, triple):
    for build in ("linux/amd64", "linux/arm64"):
        done = rust_target("triple", env={"TARGETPLATFORM": platform, "BUILDPLATFORM": build})
        assert (done.returncode, done.stdout, done.stderr) == (0, triple + "\n", "")
        done = rust_target("binary", env={"TARGETPLATFORM": platform, "BUILDPLATFORM": build})
        assert done.stdout == f"target/{triple}/release/irsa-proxy\n"


def test_no_platform_should_mean_this_machine():
    own = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}[os.uname().machine]
    assert rust_target("triple").stdout == own + "\n"


@pytest.mark.parametrize("platform", ["linux/s390x", "linux/arm/v7", "windows/amd64", "linux/riscv64"])
def test_an_unknown_platform_should_be_refused_in_one_line(platform):
    done = rust_target("triple", env={"TARGETPLATFORM": platform, "BUILDPLATFORM": "linux/amd64"})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f'rust-target.sh: TARGETPLATFORM "{platform}" is not supported; expected linux/amd64 or linux/arm64\n'
    )


def test_an_unknown_command_should_be_refused_in_one_line():
    done = rust_target("build")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert 'unknown command "build"' in done.stderr


def fake_tools(tmp_path: Path) -> tuple[Path, Path]:
    """cargo, apt-get, rustup and rm that record their arguments and the cross
    variables instead of acting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    for tool in ["cargo", "apt-get", "rustup", "rm"]:
        (bin_dir / tool).write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> {record}\n'
            f"env | grep -E '^(CARGO_TARGET_.*_LINKER|CC_|AR_)' | sort >> {record} || true\n"
        )
        (bin_dir / tool).chmod(0o755)
    return bin_dir, record


@pytest.mark.parametrize(
    "build, target, triple, gnu",
    [
        ("linux/amd64", "linux/arm64", "aarch64-unknown-linux-gnu", "aarch64-linux-gnu"),
        ("linux/arm64", "linux/amd64", "x86_64-unknown-linux-gnu", "x86_64-linux-gnu"),
    ],
)
def test_a_cross_build_should_use_debians_cross_gcc(tmp_path, build, target, triple, gnu):
    bin_dir, record = fake_tools(tmp_path)
    env = {"TARGETPLATFORM": target, "BUILDPLATFORM": build}
    assert rust_target("cargo", "build", "--release", env=env, path_first=bin_dir).returncode == 0
    under = triple.replace("-", "_")
    assert record.read_text().splitlines() == [
        f"cargo build --release --target {triple}",
        f"AR_{under}={gnu}-ar",
        f"CARGO_TARGET_{under.upper()}_LINKER={gnu}-gcc",
        f"CC_{under}={gnu}-gcc",
    ]
    record.unlink()
    assert rust_target("install", env=env, path_first=bin_dir).returncode == 0
    arch = {"aarch64": "arm64", "x86_64": "amd64"}[triple.split("-")[0]]
    calls = [line for line in record.read_text().splitlines() if "=" not in line]
    # The shell expands the lists' glob before the fake rm sees it.
    calls = ["rm -rf /var/lib/apt/lists/*" if c.startswith("rm -rf /var/lib/apt/lists/") else c for c in calls]
    assert calls == [
        "apt-get update -qq",
        f"apt-get install -y -qq --no-install-recommends gcc-{gnu.replace('_', '-')} libc6-dev-{arch}-cross",
        "rm -rf /var/lib/apt/lists/*",
        f"rustup target add {triple}",
    ]


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_a_native_build_should_install_nothing_and_set_no_cross_variables(tmp_path, platform):
    bin_dir, record = fake_tools(tmp_path)
    env = {"TARGETPLATFORM": platform, "BUILDPLATFORM": platform}
    assert rust_target("install", env=env, path_first=bin_dir).returncode == 0
    assert not record.exists()
    assert rust_target("cargo", "build", env=env, path_first=bin_dir).returncode == 0
    triple = rust_target("triple", env=env).stdout.strip()
    assert record.read_text().splitlines() == [f"cargo build --target {triple}"]


# ---- the build context ----------------------------------------------------


def test_the_context_should_hold_what_the_build_stage_copies_and_nothing_else():
    files = r.context_files(r.REPO)
    sources = set()
    for ins in r.stage(r.REPO / "Dockerfile", "build").instructions:
        if ins.name == "COPY":
            *srcs, _ = r.flags_and_args(ins.value)[1]
            sources.update(os.path.normpath(s) for s in srcs)
    for f in files:
        assert any(f == s or f.startswith(s + "/") for s in sources | {".dockerignore"}), f
    for s in sources:
        assert s in files or any(f.startswith(s + "/") for f in files), s


def copy_context(tmp_path: Path) -> Path:
    """A copy of the repository's files that the context and the Dockerfile see."""
    dest = tmp_path / "repo"
    for f in r.context_files(r.REPO) | {"Dockerfile", ".dockerignore"}:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(r.REPO / f, dest / f)
    return dest


def test_a_file_the_build_copies_but_the_context_lacks_should_fail_the_replay(tmp_path):
    repo = copy_context(tmp_path)
    ignore = repo / ".dockerignore"
    ignore.write_text(ignore.read_text().replace("!scripts/rust-target.sh\n", ""))
    with pytest.raises(r.ReplayError, match=r"Dockerfile:\d+: COPY scripts/rust-target.sh .*'scripts/rust-target.sh' is not in the build context"):
        r.replay_build_stage({"FEATURES": ""}, tmp_path / "scratch", context=repo)


def cargo_fetch(repo: Path) -> subprocess.CompletedProcess:
    # The first thing every cargo command of the build does: load the manifest.
    return subprocess.run(["cargo", "fetch", "--locked"], cwd=repo, capture_output=True, text=True, timeout=600)


def test_the_manifest_should_load_from_the_context_alone(tmp_path):
    repo = copy_context(tmp_path)
    (repo / "Dockerfile").unlink()
    done = cargo_fetch(repo)
    assert done.returncode == 0, done.stderr


def test_a_test_target_without_its_path_should_not_load_from_the_context(tmp_path):
    # The bug of issue 19: the check above can fail.
    repo = copy_context(tmp_path)
    manifest = repo / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace('path = "tests/dev.rs"\n', "", 1))
    done = cargo_fetch(repo)
    assert done.returncode != 0
    assert "can't find `dev` test at `tests/dev.rs`" in done.stderr


# ---- the build stage, replayed --------------------------------------------


@pytest.fixture(scope="session")
def core():
    return r.replay_build_stage({"FEATURES": ""}, r.replay_dir(""))


@pytest.fixture(scope="session")
def tools():
    return r.replay_build_stage({"FEATURES": "tools"}, r.replay_dir("tools"))


@pytest.mark.parametrize("build", ["core", "tools"])
def test_the_dependency_layer_should_hold_every_dependency_the_source_layer_needs(build, request):
    replay = request.getfixturevalue(build)
    deps, crate = replay.cargo_runs()
    # Docker keys a layer on the files copied before it: nothing under src/, so
    # an edit of src/ alone leaves the dependency layer cached.
    assert deps.inputs and not any(f.startswith("src/") for f in deps.inputs), deps.inputs
    assert crate.compiled == ["irsa-proxy v0.1.0"], crate.compiled
    from_deps_layer = set(deps.compiled) | set(deps.fresh)
    assert set(crate.fresh) <= from_deps_layer, set(crate.fresh) - from_deps_layer
    print(f"{build}: dependency RUN {deps.seconds:.0f} s ({len(deps.compiled)} compiled), crate RUN {crate.seconds:.0f} s")


@pytest.fixture(scope="session")
def images(core, tools, tmp_path_factory):
    config = r.runtime_config()
    out = {}
    for name, replay in [("core", core), ("tools", tools)]:
        dest, binary = r.runtime_binary(replay)
        out[name] = r.make_rootfs(tmp_path_factory.mktemp(name) / "rootfs", binary, dest)
    out["config"] = config
    return out


def test_the_runtime_stage_should_be_distroless_cc_nonroot(images):
    config = images["config"]
    assert config["base"] == "gcr.io/distroless/cc-debian12:nonroot"
    assert config["user"] == f"{r.NONROOT}:{r.NONROOT}"
    assert config["entrypoint"] == ["/irsa-proxy", "serve"]


@pytest.mark.parametrize("build", ["core", "tools"])
def test_the_binary_should_link_only_what_distroless_cc_provides(build, images):
    rootfs = images[build]
    interp, needed = r.needed_libraries(rootfs / "irsa-proxy")
    assert interp and (rootfs / interp.lstrip("/")).exists(), interp
    gnu = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}[os.uname().machine]
    for lib in needed:
        assert (rootfs / "usr/lib" / gnu / lib).exists(), f"{lib} is not in distroless cc-debian12"
    print(f"{build}: interpreter {interp}, NEEDED {needed}")
    for sh in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"]:
        assert not (rootfs / sh).exists()


def run_image(rootfs: Path, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(r.container_command(rootfs, argv, kw.pop("env", {})), capture_output=True, text=True, timeout=30, **kw)


def subcommands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1].split("Options:", 1)[0]
    return {m.group(1) for m in re.finditer(r"^  (\S+)", section, re.M)} - {"help"}


def test_the_sidecar_binary_should_be_the_core(images):
    done = run_image(images["core"], ["/irsa-proxy", "--help"])
    assert done.returncode == 0, done.stderr
    assert subcommands(done.stdout) == {"serve", "doctor", "probe", "link-local"}
    for tool in ["inject", "sts-emulator", "dev", "webhook", "mint"]:
        done = run_image(images["core"], ["/irsa-proxy", tool, "--help"])
        assert done.returncode == 2, (tool, done.stdout)
        assert f"unrecognized subcommand '{tool}'" in done.stderr


def test_the_webhook_binary_should_have_the_tools(images):
    done = run_image(images["tools"], ["/irsa-proxy", "--help"])
    assert {"serve", "webhook", "inject", "sts-emulator", "dev"} <= subcommands(done.stdout)
    done = run_image(images["tools"], ["/irsa-proxy", "webhook", "--help"])
    assert done.returncode == 0, done.stderr
    assert "--tls-cert-file" in done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None, context=None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_for(url: str, context=None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if get(url, context=context)[0] == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {seconds} s")


@pytest.fixture
def sts(images, tools, tmp_path):
    """The webhook build's sts-emulator on 127.0.0.1 (outside the image: it
    stands for AWS) and a token it accepts."""
    binary = r.runtime_binary(tools)[1]
    key = tmp_path / "issuer-key.pem"
    public = tmp_path / "issuer.pub.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(public)], check=True, capture_output=True)
    token = subprocess.run(
        [str(binary), "mint", "--issuer-key", str(key), "--sub", "system:serviceaccount:demo:app"],
        check=True, capture_output=True, text=True,
    ).stdout
    proc = subprocess.Popen(
        [str(binary), "sts-emulator", "--listen", "127.0.0.1:0", "--issuer-key", str(public), "--credential-ttl", "1h"],
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert port, line
    yield f"http://127.0.0.1:{port.group(1)}", token
    proc.terminate()
    proc.wait(timeout=10)


class Container:
    """argv run in the image as the runtime would; its stderr goes to a file so
    that a failure can show it."""

    def __init__(self, rootfs: Path, argv: list[str], env: dict[str, str], volumes: list[r.Volume], log: Path):
        r.mount_points(rootfs, volumes)
        self.log = log
        with log.open("w") as out:
            self.unshare = subprocess.Popen(r.container_command(rootfs, argv, env, volumes), stderr=out)
        self.pid = r.process_in_container(self.unshare.pid, "irsa-proxy")

    def stop(self) -> int:
        """SIGTERM, as the kubelet sends it; the exit code."""
        os.kill(self.pid, signal.SIGTERM)
        return self.unshare.wait(timeout=20)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if self.unshare.poll() is None:
            self.unshare.kill()
            self.unshare.wait()
        if value is not None and isinstance(value, AssertionError):
            value.args = (f"{value.args[0] if value.args else ''}\nits log:\n{self.log.read_text()[-3000:]}",)
        return False


def assert_runs_as_nonroot_on_a_read_only_root(pid: int) -> None:
    ids = r.status_ids(pid)
    assert ids["Uid"] == [str(r.NONROOT)] * 4, ids
    assert ids["Gid"] == [str(r.NONROOT)] * 4, ids
    assert ids["Groups"] == [str(r.NONROOT)], ids
    assert int(ids["CapEff"][0], 16) == 0, ids
    assert "ro" in r.root_mount_options(pid)
    assert os.readlink(f"/proc/{pid}/root") != "/"


def test_the_sidecar_image_should_serve_credentials_as_nonroot_on_a_read_only_root(images, sts, tmp_path):
    endpoint, token = sts
    rootfs = images["core"]
    tokens = tmp_path / "token"
    tokens.mkdir()
    (tokens / "token").write_text(token)
    os.chmod(tokens, 0o755)
    empty_dir = tmp_path / "emptydir"  # the pod's shared emptyDir, writable by the pod's group
    empty_dir.mkdir()
    os.chown(empty_dir, 0, r.NONROOT)
    os.chmod(empty_dir, 0o2775)
    volumes = [
        r.Volume(tokens, TOKEN_DIR),
        r.Volume(empty_dir, "/var/run/irsa-proxy", read_only=False),
    ]
    port = free_port()
    argv = images["config"]["entrypoint"] + [
        f"--listen=127.0.0.1:{port}",
        "--auth-token-file=/var/run/irsa-proxy/auth-token",
        "--shutdown-delay=0s",
    ]
    env = {
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": f"{TOKEN_DIR}/token",
        "AWS_ENDPOINT_URL_STS": endpoint,
        "AWS_REGION": "us-east-1",
    }
    with Container(rootfs, argv, env, volumes, tmp_path / "sidecar.log") as sidecar:
        pid = sidecar.pid
        wait_for(f"http://127.0.0.1:{port}/readyz")
        assert_runs_as_nonroot_on_a_read_only_root(pid)
        auth = (empty_dir / "auth-token").read_text()
        status, body = get(f"http://127.0.0.1:{port}/v1/credentials", {"Authorization": auth})
        assert status == 200, body
        credentials = json.loads(body)
        assert credentials["AccessKeyId"].startswith("ASIA") and credentials["RoleArn"] == ROLE
        # The exec probes of inject's manifests, run inside the image.
        probe = r.exec_in(pid, ["/irsa-proxy", "probe", f"http://127.0.0.1:{port}/readyz"])
        assert probe.returncode == 0, probe.stderr
        probe = r.exec_in(pid, ["/irsa-proxy", "probe", f"http://127.0.0.1:{port}/no-such-path"])
        assert probe.returncode != 0
        # Nothing in the image's root can be written, not even by root.
        with pytest.raises(OSError, match="Read-only file system"):
            Path(f"/proc/{pid}/root/tmp/written").write_text("x")
        assert sidecar.stop() == 0
    log = sidecar.log.read_text()
    assert "listening" in log or "serving" in log, log
    assert token not in log and auth not in log and credentials["SecretAccessKey"] not in log


def test_the_webhook_image_should_serve_as_nonroot_on_a_read_only_root(images, tmp_path):
    rootfs = images["tools"]
    certs = tmp_path / "tls"
    certs.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")],
        check=True, capture_output=True,
    )
    # A Secret volume as kubelet writes it with fsGroup: group-readable.
    os.chown(certs / "tls.key", 0, r.NONROOT)
    os.chmod(certs / "tls.key", 0o640)
    os.chmod(certs, 0o755)
    volumes = [r.Volume(certs, "/etc/irsa-proxy-webhook/tls")]
    port = free_port()
    argv = [
        "/irsa-proxy", "webhook", f"--listen=127.0.0.1:{port}",
        "--tls-cert-file=/etc/irsa-proxy-webhook/tls/tls.crt",
        "--tls-key-file=/etc/irsa-proxy-webhook/tls/tls.key",
        "--image=registry.example/irsa-proxy:test",
    ]
    with Container(rootfs, argv, {}, volumes, tmp_path / "webhook.log") as webhook:
        tls = ssl.create_default_context(cafile=str(certs / "tls.crt"))
        wait_for(f"https://127.0.0.1:{port}/readyz", context=tls)
        assert get(f"https://127.0.0.1:{port}/healthz", context=tls)[0] == 200
        assert_runs_as_nonroot_on_a_read_only_root(webhook.pid)
        assert webhook.stop() == 0


# ---- scripts/image-smoke.sh -------------------------------------------------


def test_the_smoke_script_should_stop_in_one_line_without_an_engine(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    done = subprocess.run(["bash", str(r.REPO / "scripts" / "image-smoke.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert re.fullmatch(r"image-smoke: error: no (container engine answers|'docker' command)[^\n]*\n", done.stderr), done.stderr
