"""Replays the Dockerfile without a container engine, and builds a root file
system like the runtime image's.

No engine on CI can pull `rust:1.95-bookworm` or distroless, so this does what the
engine would do with the parts it can:

- the build context: the repository's files after `.dockerignore` (docker-py's
  port of moby's pattern matcher);
- the build stage: its WORKDIR, ARG, ENV, COPY and RUN instructions, read from the
  Dockerfile (dockerfile-parse), run in a scratch directory with this machine's
  Rust (the same Debian 12 and Rust release as the stage's base image). A COPY
  source that the context lacks fails here as it would fail `docker build`;
- the runtime stage: `COPY --from=build`, USER and ENTRYPOINT, read the same way,
  and a root file system holding what gcr.io/distroless/cc-debian12 holds (the
  files of its Debian packages, taken from this machine's dpkg) plus the binary.

The stage's WORKDIR/target is kept between replays (`IRSA_PROXY_IMAGE_CACHE`,
default ~/.cache/irsa-proxy/image-replay): the dependency layer that docker's
layer cache keeps. Everything else starts empty on every replay.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]

# What gcr.io/distroless/cc-debian12 is made of, from the distroless sources
# (GoogleContainerTools/distroless: base/config.bzl BASE_PACKAGES["debian12"],
# cc/config.bzl CC_PACKAGES["debian12"], and the static layer's base-files,
# netbase and tzdata), all Debian 12 packages. ca-certificates contributes only
# its bundle, /etc/ssl/certs/ca-certificates.crt.
DISTROLESS_CC_DEBIAN12_PACKAGES = [
    "base-files",
    "netbase",
    "tzdata",
    "libc6",
    "libssl3",
    "libgcc-s1",
    "libgomp1",
    "libstdc++6",
    "gcc-12-base",
]
NONROOT = 65532
# The image's environment (distroless sets PATH and SSL_CERT_FILE).
IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}


class ReplayError(Exception):
    """A step the engine would fail on, named with its Dockerfile line."""


# ---- the context ----------------------------------------------------------


def dockerignore_patterns(root: Path) -> list[str]:
    """The patterns of root/.dockerignore, as the docker CLI reads them."""
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(root: Path) -> set[str]:
    """Every regular file and symlink the context holds, relative to root."""
    matcher = PatternMatcher(dockerignore_patterns(root))
    return {p for p in matcher.walk(str(root)) if not (root / p).is_dir() or (root / p).is_symlink()}


# ---- the Dockerfile -------------------------------------------------------


@dataclass
class Instruction:
    name: str  # FROM, COPY, RUN, ...
    value: str  # the arguments, continuation lines joined
    line: int  # 1-based line in the Dockerfile

    def where(self) -> str:
        return f"Dockerfile:{self.line}: {self.name} {self.value}"


@dataclass
class Stage:
    name: str | None
    base: str
    platform: str | None
    instructions: list[Instruction] = field(default_factory=list)


def stages(dockerfile: Path) -> list[Stage]:
    parser = DockerfileParser(str(dockerfile))
    out: list[Stage] = []
    for item in parser.structure:
        name = item["instruction"]
        if name == "COMMENT":
            continue
        ins = Instruction(name, item["value"], item["startline"] + 1)
        if name == "FROM":
            words = ins.value.split()
            platform = next((w.split("=", 1)[1] for w in words if w.startswith("--platform=")), None)
            rest = [w for w in words if not w.startswith("--")]
            alias = rest[2] if len(rest) == 3 and rest[1].lower() == "as" else None
            out.append(Stage(alias, rest[0], platform))
        elif not out:
            if name != "ARG":
                raise ReplayError(f"{ins.where()}: before any FROM")
        else:
            out[-1].instructions.append(ins)
    return out


def stage(dockerfile: Path, name: str | None) -> Stage:
    """The stage called name; None: the last one (the image)."""
    all_stages = stages(dockerfile)
    if name is None:
        return all_stages[-1]
    for s in all_stages:
        if s.name == name:
            return s
    raise ReplayError(f"Dockerfile has no stage called {name!r}")


def flags_and_args(value: str) -> tuple[dict[str, str], list[str]]:
    """COPY/RUN's leading --flag=value words, and the rest (shell words)."""
    words = shlex.split(value)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, val = words.pop(0)[2:].partition("=")
        flags[key] = val
    return flags, words


def own_platform() -> str:
    machine = os.uname().machine
    return {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(machine, f"linux/{machine}")


# ---- the build stage ------------------------------------------------------


@dataclass
class RunRecord:
    instruction: Instruction
    seconds: float
    compiled: list[str]  # cargo's "Compiling NAME vX" units
    fresh: list[str]  # cargo's "Fresh NAME vX" units (verbose output)
    inputs: set[str]  # the context files copied before this RUN


@dataclass
class Replay:
    workdir: Path  # the stage's WORKDIR, in the scratch root
    runs: list[RunRecord]
    log: Path

    def cargo_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if "cargo" in r.instruction.value]


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "irsa-proxy" / "image-replay"
    return Path(os.environ.get("IRSA_PROXY_IMAGE_CACHE", default))


def _copy_into(context: Path, files: set[str], ins: Instruction, root: Path, cwd: Path, inputs: set[str]) -> None:
    flags, words = flags_and_args(ins.value)
    if flags:
        raise ReplayError(f"{ins.where()}: the replay does not know the flags {sorted(flags)}")
    if len(words) < 2:
        raise ReplayError(f"{ins.where()}: expected SOURCE... DEST")
    *sources, dest = words
    dest_path = root / dest.lstrip("/") if dest.startswith("/") else cwd / dest
    as_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        source = os.path.normpath(source)
        if source in files:
            target = dest_path / Path(source).name if as_dir else dest_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / source, target, follow_symlinks=False)
            inputs.add(source)
            continue
        under = sorted(f for f in files if f.startswith(source + "/"))
        if not under:
            raise ReplayError(
                f"{ins.where()}: {source!r} is not in the build context "
                f"(missing, or left out by .dockerignore)"
            )
        for f in under:
            target = dest_path / os.path.relpath(f, source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / f, target, follow_symlinks=False)
            inputs.add(f)


UNIT = re.compile(r"^\s*(Compiling|Fresh)\s+(\S+ v\S+)", re.M)


def replay_build_stage(
    build_args: dict[str, str],
    scratch: Path,
    context: Path = REPO,
    stage_name: str = "build",
) -> Replay:
    """Runs the build stage of context/Dockerfile in scratch (keeping
    WORKDIR/target from the last replay there) and records each RUN."""
    build = stage(context / "Dockerfile", stage_name)
    files = context_files(context)
    root = scratch / "root"
    log = scratch / "replay.log"
    scratch.mkdir(parents=True, exist_ok=True)
    keep = None
    workdirs = [i.value for i in build.instructions if i.name == "WORKDIR"]
    if workdirs:
        keep = root / workdirs[0].lstrip("/") / "target"
    # A fresh root, but the dependency layer's target/ kept (the layer cache).
    if root.exists():
        saved = scratch / "target.kept"
        if keep is not None and keep.exists():
            if saved.exists():
                shutil.rmtree(saved)
            keep.rename(saved)
        shutil.rmtree(root)
        root.mkdir(parents=True)
        if keep is not None and saved.exists():
            keep.parent.mkdir(parents=True, exist_ok=True)
            saved.rename(keep)
    root.mkdir(parents=True, exist_ok=True)

    platform = own_platform()
    env = dict(os.environ)
    # The engine's automatic platform ARGs: a native build here.
    automatic = {"BUILDPLATFORM": platform, "TARGETPLATFORM": platform}
    # Verbose cargo lists the units it finds fresh, not only those it compiles.
    env["CARGO_TERM_VERBOSE"] = "true"
    env["CARGO_TERM_COLOR"] = "never"
    cwd = root
    inputs: set[str] = set()
    runs: list[RunRecord] = []
    with log.open("w") as out:
        for ins in build.instructions:
            if ins.name == "WORKDIR":
                cwd = root / ins.value.lstrip("/") if ins.value.startswith("/") else cwd / ins.value
                cwd.mkdir(parents=True, exist_ok=True)
            elif ins.name == "ARG":
                name, has_default, default = shlex.split(ins.value)[0].partition("=")
                if name in build_args:
                    env[name] = build_args[name]
                elif name in automatic:
                    env[name] = automatic[name]
                elif has_default:
                    env[name] = default
                else:
                    env.pop(name, None)
            elif ins.name == "ENV":
                for word in shlex.split(ins.value):
                    k, _, v = word.partition("=")
                    env[k] = v
            elif ins.name == "COPY":
                _copy_into(context, files, ins, root, cwd, inputs)
            elif ins.name == "RUN":
                flags, _ = flags_and_args(ins.value)
                if flags:
                    raise ReplayError(f"{ins.where()}: the replay does not know the flags {sorted(flags)}")
                argv = json.loads(ins.value) if ins.value.startswith("[") else ["/bin/sh", "-c", ins.value]
                out.write(f"\n=== {ins.where()}\n")
                out.flush()
                started = time.monotonic()
                done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
                seconds = time.monotonic() - started
                out.write(done.stdout + done.stderr)
                out.write(f"=== exit {done.returncode} after {seconds:.0f} s\n")
                if done.returncode != 0:
                    tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
                    raise ReplayError(f"{ins.where()}: exit {done.returncode} (log: {log})\n{tail}")
                units = UNIT.findall(done.stderr)
                runs.append(
                    RunRecord(
                        ins,
                        seconds,
                        compiled=[u for kind, u in units if kind == "Compiling"],
                        fresh=[u for kind, u in units if kind == "Fresh"],
                        inputs=set(inputs),
                    )
                )
            else:
                raise ReplayError(f"{ins.where()}: the replay does not know {ins.name} in the build stage")
    return Replay(cwd, runs, log)


def runtime_binary(replay: Replay, context: Path = REPO) -> tuple[str, Path]:
    """The runtime stage's `COPY --from=build SRC DEST`: DEST, and SRC in the replay."""
    image = stage(context / "Dockerfile", None)
    for ins in image.instructions:
        if ins.name != "COPY":
            continue
        flags, words = flags_and_args(ins.value)
        if flags.get("from") != "build":
            raise ReplayError(f"{ins.where()}: the runtime stage copies only from the build stage here")
        src, dest = words
        build = stage(context / "Dockerfile", "build")
        workdir = next(i.value for i in build.instructions if i.name == "WORKDIR")
        if not src.startswith(workdir.rstrip("/") + "/"):
            raise ReplayError(f"{ins.where()}: {src} is outside the build stage's WORKDIR {workdir}")
        return dest, replay.workdir / os.path.relpath(src, workdir)
    raise ReplayError("the runtime stage copies nothing from the build stage")


def runtime_config(context: Path = REPO) -> dict:
    """The runtime stage's base, USER and ENTRYPOINT."""
    image = stage(context / "Dockerfile", None)
    config = {"base": image.base, "user": None, "entrypoint": None}
    for ins in image.instructions:
        if ins.name == "USER":
            config["user"] = ins.value
        elif ins.name == "ENTRYPOINT":
            config["entrypoint"] = json.loads(ins.value)
    return config


# ---- the runtime image's root file system ---------------------------------


def dpkg_files(package: str) -> list[str]:
    done = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if done.returncode != 0:
        raise ReplayError(f"dpkg -L {package}: {done.stderr.strip()} (the rootfs needs Debian 12's packages)")
    return [line for line in done.stdout.splitlines() if line.startswith("/")]


def make_rootfs(rootfs: Path, binary: Path, binary_dest: str) -> Path:
    """A root file system with what distroless cc-debian12 holds and the binary."""
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    # Debian 12 is merged-/usr, and so is distroless.
    for link, to in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")]:
        (rootfs / to).mkdir(parents=True, exist_ok=True)
        (rootfs / link).symlink_to(to)
    for package in DISTROLESS_CC_DEBIAN12_PACKAGES:
        for path in dpkg_files(package):
            host = Path(path)
            if path.startswith("/usr/share/doc") or path.startswith("/usr/share/man"):
                continue
            # Directories come with their files; /lib and friends are the
            # merged-/usr links made above.
            if host.is_dir() or not (host.exists() or host.is_symlink()):
                continue
            dest = rootfs / path.lstrip("/")
            if os.path.lexists(dest):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, dest, follow_symlinks=False)
    certs = rootfs / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy2("/etc/ssl/certs/ca-certificates.crt", certs / "ca-certificates.crt")
    (rootfs / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    (rootfs / "etc/group").write_text(f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n")
    (rootfs / "etc/nsswitch.conf").write_text("hosts: files dns\n")
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    home = rootfs / "home/nonroot"
    home.mkdir(parents=True)
    os.chown(home, NONROOT, NONROOT)
    # Mount points the runtime fills.
    for d in ["proc", "dev", "sys"]:
        (rootfs / d).mkdir(exist_ok=True)
    dest = rootfs / binary_dest.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, dest)
    return rootfs


def needed_libraries(binary: Path) -> tuple[str | None, list[str]]:
    """The ELF interpreter and DT_NEEDED entries (readelf)."""
    out = subprocess.run(["readelf", "-d", "-l", "-W", str(binary)], capture_output=True, text=True, check=True).stdout
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", out)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    return (interp.group(1) if interp else None), needed


@dataclass
class Volume:
    host: Path
    path: str  # in the container
    read_only: bool = True


def container_command(
    rootfs: Path,
    argv: list[str],
    env: dict[str, str],
    volumes: list[Volume] = (),
    user: str = f"{NONROOT}:{NONROOT}",
) -> list[str]:
    """The command that runs argv the way a container runtime would run the
    image: new mount and PID namespaces, the root read-only, /proc and a minimal
    /dev, the volumes mounted, as user (uid:gid, no other groups), with only env.
    The host's network namespace: the tests talk to it on 127.0.0.1."""
    uid, gid = user.split(":")
    q = shlex.quote
    root = q(str(rootfs))
    lines = [
        "set -e",
        "mount --make-rprivate /",
        f"mount --bind {root} {root}",
        f"mount -o remount,bind,ro {root}",
        f"mount -t proc proc {root}/proc",
        f"mount -t tmpfs -o mode=0755,size=64k,nosuid tmpfs {root}/dev",
    ]
    for dev in ["null", "zero", "random", "urandom", "full"]:
        lines.append(f"touch {root}/dev/{dev} && mount --bind /dev/{dev} {root}/dev/{dev}")
    lines.append(f"mount -o remount,ro {root}/dev")
    for v in volumes:
        target = f"{root}/{q(v.path.lstrip('/'))}"
        lines.append(f"mount --bind {q(str(v.host))} {target}")
        if v.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    env_words = " ".join(q(f"{k}={v}") for k, v in {**IMAGE_ENV, "HOME": "/home/nonroot", **env}.items())
    lines.append(
        f"exec env -i {env_words} chroot --userspec={uid}:{gid} --groups={gid} {root} "
        + " ".join(q(a) for a in argv)
    )
    return ["unshare", "--mount", "--pid", "--fork", "sh", "-c", "\n".join(lines)]


def mount_points(rootfs: Path, volumes: list[Volume]) -> None:
    """Creates the volumes' mount points in the image root (the runtime does
    this before it makes the root read-only)."""
    for v in volumes:
        (rootfs / v.path.lstrip("/")).mkdir(parents=True, exist_ok=True)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def process_in_container(unshare_pid: int, exe_name: str, timeout: float = 10) -> int:
    """The pid (host view) of the image's process under `unshare --fork`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children(unshare_pid):
            try:
                if os.readlink(f"/proc/{child}/exe").endswith(exe_name):
                    return child
            except OSError:
                pass
        time.sleep(0.05)
    raise ReplayError(f"no {exe_name} process under {unshare_pid} within {timeout} s")


def status_ids(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm"):
            fields[key] = value.split()
    return fields


def root_mount_options(pid: int) -> list[str]:
    """The mount options of / as the process sees it."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        parts = line.split()
        if parts[4] == "/":
            return parts[5].split(",")
    raise ReplayError(f"no / in /proc/{pid}/mountinfo")


def exec_in(pid: int, argv: list[str], user: str = f"{NONROOT}:{NONROOT}", timeout: float = 20):
    """What `kubectl exec` (and an exec probe) does: run argv in the process's
    mount and PID namespaces and root, as user, with the image's environment."""
    uid, gid = user.split(":")
    env_words = [f"{k}={v}" for k, v in IMAGE_ENV.items()]
    cmd = ["env", "-i", *env_words, "nsenter", "-t", str(pid), "-m", "-p", "-r", "-w", "-S", uid, "-G", gid, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def replay_dir(features: str) -> Path:
    return cache_root() / (f"build-{features}" if features else "build-core")


def main() -> int:
    """`python3 tests/image/replay.py [FEATURES]`: replay the build stage and
    print what each RUN took and compiled."""
    import sys

    features = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        replay = replay_build_stage({"FEATURES": features}, replay_dir(features))
    except ReplayError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 1
    for r in replay.runs:
        print(f"{r.instruction.where()[:90]}\n  {r.seconds:.0f} s, compiled {len(r.compiled)}, fresh {len(r.fresh)}")
    print(f"log: {replay.log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
