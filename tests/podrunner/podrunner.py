#!/usr/bin/env python3
"""podrunner: run one Kubernetes pod template on this machine the way kubelet would.

A test stand-in for a cluster. It reads manifests (the output of `irsa-proxy
inject`, several YAML documents), takes the first pod template, and runs its
containers as local processes in a network namespace of their own, with the
start order, probes, volumes, environment, identities and capabilities that
kubelet and containerd/runc would give them. See README.md beside this file
for what is faithful, what is simplified, and the source facts behind both.

Run as root. Prints a JSON report on stdout; progress on stderr.
"""

import ctypes
import json
import os
import signal
import sys

# ---------------------------------------------------------------------------
# Linux constants and libc (used by the runner and by its helper processes)
# ---------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

PR_SET_PDEATHSIG = 1

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def sys_mount(src, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _check(libc().mount(enc(src), enc(target), enc(fstype), flags, enc(data)),
           "mount %s on %s" % (src, target))


def sys_unshare(flags):
    _check(libc().unshare(flags), "unshare(%#x)" % flags)


def sys_setns_path(path, nstype):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc().setns(fd, nstype), "setns(%s)" % path)
    finally:
        os.close(fd)


def set_pdeathsig(sig=signal.SIGKILL):
    libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def wait_status_code(status):
    """Exit code as Kubernetes reports it: the code, or 128+signal."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


# ---------------------------------------------------------------------------
# Helper processes. The runner re-executes this file with a hidden first
# argument; these paths import nothing heavy so that they start fast.
# ---------------------------------------------------------------------------

def _helper_err(msg):
    try:
        os.write(2, ("podrunner-helper: %s\n" % msg).encode())
    except OSError:
        pass


def helper_pause(hostname):
    """The pod sandbox: new net, ipc, uts and pid namespaces.

    The forked child is PID 1 of the pod's PID namespace: when it dies the
    kernel kills every process in the pod. It dies with its parent (parent
    death signal), and its parent dies with the runner.
    """
    sys_unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID)
    name = hostname.encode()[:64]
    _check(libc().sethostname(name, len(name)), "sethostname")
    pid = os.fork()
    if pid == 0:
        set_pdeathsig(signal.SIGKILL)
        # (getppid() is 0 here: the parent is outside this PID namespace)

        def reap(*_):
            while True:
                try:
                    p, _s = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if p == 0:
                    return

        signal.signal(signal.SIGCHLD, reap)
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        while True:
            signal.pause()
    os.write(1, ("%d\n" % pid).encode())
    try:
        os.close(1)
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _p, status = os.waitpid(pid, 0)
    os._exit(wait_status_code(status))


def _mount_flags_from_opts(opts):
    flags = 0
    for o in opts.split(","):
        flags |= {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV,
                  "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                  "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
                  "strictatime": MS_STRICTATIME}.get(o, 0)
    return flags


def _remount_root_readonly():
    """readOnlyRootFilesystem: the container's "image" is this host's file
    system, so every mount except /proc, /sys and /dev is made read-only in
    the container's own mount namespace (volumes are mounted after)."""
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split(" ")
        mp = fields[4].replace("\\040", " ")
        opts = fields[5]
        if any(mp == p or mp.startswith(p + "/") for p in ("/proc", "/sys", "/dev")):
            continue
        flags = (_mount_flags_from_opts(opts) & ~MS_RDONLY) | MS_REMOUNT | MS_BIND | MS_RDONLY
        try:
            sys_mount(None, mp, None, flags)
        except OSError as e:
            _helper_err("readOnlyRootFilesystem: could not remount %s read-only: %s" % (mp, e))


def _prepare_mountpoint(dst, is_file):
    if is_file:
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
            with open(dst, "a"):
                pass
    else:
        os.makedirs(dst, exist_ok=True)


def _setpriv_argv(cred, argv):
    if cred is None:
        return list(argv)
    out = ["setpriv", "--reuid=%d" % cred["uid"], "--regid=%d" % cred["gid"]]
    if cred["groups"]:
        out.append("--groups=" + ",".join(str(g) for g in cred["groups"]))
    else:
        out.append("--clear-groups")
    out += ["--inh-caps=-all", "--ambient-caps=-all"]
    if cred.get("bounding") is not None:
        out.append("--bounding-set=" + ",".join(["-all"] + ["+" + c for c in cred["bounding"]]))
    if cred.get("nnp"):
        out.append("--no-new-privs")
    return out + ["--"] + list(argv)


def _exec_final(spec):
    env = dict(spec["env"])
    argv = _setpriv_argv(spec.get("cred"), spec["argv"])
    os.umask(0o022)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        _helper_err("exec %s: %s" % (spec["argv"][0], e))
        os._exit(128)


def helper_container(spec_path):
    """One container: helper (outside) -> A (in the pod's PID namespace) ->
    B (PID 1 of the container's own PID namespace, unless the pod shares
    one), which sets up its mount namespace and execs setpriv -> the command.
    The exit code of B is passed up as the helper's exit code."""
    with open(spec_path) as f:
        spec = json.load(f)
    init = spec["sandbox_pid"]
    for ns, flag in (("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
                     ("pid", CLONE_NEWPID)):
        sys_setns_path("/proc/%d/ns/%s" % (init, ns), flag)
    a = os.fork()
    if a == 0:
        try:
            if spec.get("own_pidns"):
                sys_unshare(CLONE_NEWPID)
            b = os.fork()
            if b == 0:
                try:
                    _container_child(spec)
                except BaseException as e:  # noqa: BLE001
                    _helper_err("container setup failed: %s" % e)
                    os._exit(128)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, lambda n, _f, b=b: os.kill(b, n))
            while True:
                try:
                    _p, status = os.waitpid(b, 0)
                    break
                except InterruptedError:
                    continue
            os._exit(wait_status_code(status))
        except BaseException as e:  # noqa: BLE001
            _helper_err("container start failed: %s" % e)
            os._exit(128)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: os.kill(a, n))
    while True:
        try:
            _p, status = os.waitpid(a, 0)
            break
        except InterruptedError:
            continue
    os._exit(wait_status_code(status))


def _container_child(spec):
    if spec.get("mount_ns"):
        sys_unshare(CLONE_NEWNS)
        sys_mount(None, "/", None, MS_REC | MS_PRIVATE)
        # Always a fresh /proc: of the container's own PID namespace, or with
        # shareProcessNamespace of the pod's (never the host's processes).
        sys_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mounts = sorted(spec.get("mounts", []), key=lambda m: m["dst"].rstrip("/").count("/"))
        for m in mounts:
            _prepare_mountpoint(m["dst"], m.get("file", False))
        if spec.get("ro_rootfs"):
            _remount_root_readonly()
        for m in mounts:
            try:
                sys_mount(m["src"], m["dst"], None, MS_BIND | MS_REC)
                sys_mount(None, m["dst"], None,
                          MS_REMOUNT | MS_BIND | (MS_RDONLY if m.get("ro") else 0))
            except OSError:
                if m.get("optional"):
                    continue
                raise
        # The runner's workdir holds every volume of the pod, the containers'
        # specs and logs: a container's image would not have it, so an empty
        # read-only tmpfs covers it (a volume reaches the container only where
        # it is mounted, a subPath only as that sub-directory).
        for path in spec.get("hide", []):
            sys_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                      "size=4k,mode=0755")
    cwd = spec.get("cwd") or "/"
    try:
        os.makedirs(cwd, exist_ok=True)
    except OSError:
        pass
    os.chdir(cwd)
    _exec_final(spec)


def helper_exec(spec_path):
    """An exec probe or hook: enter the container's namespaces, run the
    command with the container's identity and environment, bounded by
    timeout (exit 124 when it runs out)."""
    with open(spec_path) as f:
        spec = json.load(f)
    target = spec["target_pid"]
    try:
        for ns, flag in (("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
                         ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS)):
            sys_setns_path("/proc/%d/ns/%s" % (target, ns), flag)
    except OSError as e:
        _helper_err("cannot enter the container: %s" % e)
        os._exit(126)
    c = os.fork()
    if c == 0:
        try:
            os.chdir(spec.get("cwd") or "/")
        except OSError:
            os.chdir("/")
        _exec_final(spec)
    import time
    deadline = time.monotonic() + float(spec.get("timeout", 1))
    while True:
        p, status = os.waitpid(c, os.WNOHANG)
        if p == c:
            os._exit(wait_status_code(status))
        if time.monotonic() >= deadline:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(c, 0)
            _helper_err("timed out after %ss" % spec.get("timeout"))
            os._exit(124)
        time.sleep(0.01)


def helper_main(argv):
    mode = argv[1]
    try:
        if mode == "--_pause":
            helper_pause(argv[2])
        elif mode == "--_container":
            helper_container(argv[2])
        elif mode == "--_exec":
            helper_exec(argv[2])
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, SystemExit):
            raise
        _helper_err("%s failed: %s" % (mode, e))
        os._exit(128)
    os._exit(0)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in ("--_pause", "--_container", "--_exec"):
    helper_main(sys.argv)

# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------

import argparse  # noqa: E402
import base64  # noqa: E402
import concurrent.futures  # noqa: E402
import copy  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import pwd  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

POD_IP = "192.0.2.10"       # TEST-NET-1: never routed anywhere
# The EKS Pod Identity agent's addresses, as the EKS webhook writes them into
# AWS_CONTAINER_CREDENTIALS_FULL_URI (pod-identity-webhook main.go defaults;
# eks-pod-identity-agent binds them on the node's link-local interface).
POD_IDENTITY_AGENT_V4 = "169.254.170.23"
POD_IDENTITY_AGENT_V6 = "fd00:ec2::23"
HOST_IP = "192.0.2.1"
NODE_NAME = "podrunner-node"
DEFAULT_ISSUER = "https://oidc.podrunner.local"
DEFAULT_TOKEN_AUDIENCE = "https://kubernetes.default.svc"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                  "ReplicationController", "PodTemplate")

# containerd's default capability set (pkg/oci/spec.go defaultUnixCaps).
DEFAULT_CAPS = ["chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                "audit_write"]
CAP_NAMES = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
             "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
             "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
             "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
             "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
             "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
             "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"]

# Kubernetes' "safe" sysctls (pkg/kubelet/sysctl/safe_sysctls.go; the Pod
# Security Standards list the same names), with the namespace each lives in.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced": "ipc",
    "net.ipv4.ip_local_port_range": "net",
    "net.ipv4.tcp_syncookies": "net",
    "net.ipv4.ping_group_range": "net",
    "net.ipv4.ip_unprivileged_port_start": "net",
    "net.ipv4.ip_local_reserved_ports": "net",
    "net.ipv4.tcp_keepalive_time": "net",
    "net.ipv4.tcp_fin_timeout": "net",
    "net.ipv4.tcp_keepalive_intvl": "net",
    "net.ipv4.tcp_keepalive_probes": "net",
    "net.ipv4.tcp_rmem": "net",
    "net.ipv4.tcp_wmem": "net",
}
# Sysctls that are namespaced (kubelet accepts them only when the node allows
# them with --allowed-unsafe-sysctls; here: --allowed-unsafe-sysctl).
NAMESPACED_SYSCTL_PREFIXES = (("net.", "net"), ("kernel.shm", "ipc"), ("kernel.msg", "ipc"),
                              ("fs.mqueue.", "ipc"))
NAMESPACED_SYSCTLS = {"kernel.sem": "ipc"}

START_TIME = time.monotonic()


class ManifestError(Exception):
    """The manifests cannot be run (exit 2)."""


class ConfigError(Exception):
    """kubelet's CreateContainerConfigError: the run fails (exit 1)."""


def progress(msg):
    sys.stderr.write("[podrunner +%.2fs] %s\n" % (time.monotonic() - START_TIME, msg))
    sys.stderr.flush()


def rand_suffix(n=5):
    # kubernetes' utilrand alphabet: no vowels, no confusable characters
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


# ---------------------------------------------------------------------------
# $(VAR) expansion: third_party/forked/golang/expansion/expand.go
# ---------------------------------------------------------------------------

def expand(value, lookup):
    """$(NAME) -> lookup(NAME) if defined, else left as written; $$ -> $."""
    out = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1:]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close >= 0:
                    read, is_var, advance = rest[1:close], True, close + 1
                else:
                    read, is_var, advance = "$(", False, 1
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            if is_var:
                v = lookup(read)
                out.append(v if v is not None else "$(" + read + ")")
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(value[checkpoint:])
    return "".join(out)


# ---------------------------------------------------------------------------
# Quantities (resource.Quantity, enough for env and downward API)
# ---------------------------------------------------------------------------

_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def parse_quantity(q):
    s = str(q).strip()
    m = re.fullmatch(r"([+-]?[0-9.]+)(e[+-]?[0-9]+|E[+-]?[0-9]+)?([a-zA-Z]*)", s)
    if not m:
        raise ConfigError("cannot parse quantity %r" % q)
    num = float(m.group(1) + (m.group(2) or ""))
    suf = m.group(3)
    if suf not in _SUFFIX:
        raise ConfigError("unknown quantity suffix in %r" % q)
    return num * _SUFFIX[suf]


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------

def load_documents(paths):
    import yaml
    docs = []
    for p in paths:
        text = sys.stdin.read() if p == "-" else open(p).read()
        for d in yaml.safe_load_all(text):
            if d is None:
                continue
            if isinstance(d, dict) and d.get("kind") == "List":
                docs.extend(i for i in d.get("items") or [] if isinstance(i, dict))
            elif isinstance(d, dict):
                docs.append(d)
            else:
                raise ManifestError("%s: a document is not a mapping" % p)
    return docs


def pod_template(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return doc.get("metadata") or {}, spec
    if kind == "PodTemplate":
        t = doc.get("template") or {}
    elif kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    else:
        t = spec.get("template") or {}
    return t.get("metadata") or {}, t.get("spec") or {}


def pod_name_for(doc, meta):
    kind = doc.get("kind")
    wname = (doc.get("metadata") or {}).get("name") or "pod"
    if kind == "Pod":
        if meta.get("name"):
            return meta["name"]
        return (meta.get("generateName") or "pod-") + rand_suffix()
    if kind == "Deployment":
        h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        pth = "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in h[:10])
        return "%s-%s-%s" % (wname, pth, rand_suffix())
    if kind == "StatefulSet":
        return wname + "-0"
    if kind == "CronJob":
        return "%s-%d-%s" % (wname, int(time.time() // 60), rand_suffix())
    return "%s-%s" % (wname, rand_suffix())


# ---------------------------------------------------------------------------
# The EKS pod-identity webhook (aws/amazon-eks-pod-identity-webhook,
# pkg/handler/handler.go and pkg/cache/cache.go): web-identity mode, and
# container-credentials mode (EKS Pod Identity) below it.
# ---------------------------------------------------------------------------

def _go_parse_bool(s):
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _go_parse_int(s):
    try:
        return int(str(s), 10)
    except ValueError:
        return None


def _skip_containers(pod_ann, domain):
    """The containers the webhook leaves alone: the pod annotation
    <domain>/skip-containers as CSV, names not trimmed (getContainersToSkip);
    unparsable means none, in either mode."""
    if domain + "/skip-containers" not in pod_ann:
        return set()
    try:
        return set(next(csv.reader(io.StringIO(pod_ann[domain + "/skip-containers"]))))
    except (StopIteration, csv.Error):
        return set()


def _mutate_containers(spec, skip, credential_keys, credential_env, regional, region,
                       vol_name, mount_path):
    """addEnvToContainer over init and app containers not in skip, in either
    mode: credential_env is added only when the container has none of
    credential_keys; a container that has one of them, a region and the
    regional-STS variable is left untouched (no mount either). Returns the names
    of the containers changed."""
    changed = []
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if c.get("name") in skip:
                continue
            env = c.setdefault("env", [])
            names = {e.get("name") for e in env}
            has_credentials = bool(names & credential_keys)
            reg = bool(names & {"AWS_REGION", "AWS_DEFAULT_REGION"})
            sts = "AWS_STS_REGIONAL_ENDPOINTS" in names
            if has_credentials and reg and sts:
                if not env:
                    c.pop("env", None)
                continue
            if not sts and regional:
                env.append({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"})
            if not reg and region:
                env.append({"name": "AWS_DEFAULT_REGION", "value": region})
                env.append({"name": "AWS_REGION", "value": region})
            if not has_credentials:
                env.extend(dict(e) for e in credential_env)
            if not env:
                c.pop("env", None)
            mounts = c.setdefault("volumeMounts", [])
            if not any(m.get("name") == vol_name for m in mounts):
                mounts.append({"name": vol_name, "readOnly": True, "mountPath": mount_path})
            changed.append(c.get("name"))
    return changed


def _insert_volume(spec, volume):
    """The token volume goes first in volumes, unless one of its name exists
    (which is then left as it is, not patched)."""
    vols = spec.get("volumes")
    if any(v.get("name") == volume["name"] for v in vols or []):
        return
    if vols is None:
        spec["volumes"] = [volume]
    else:
        vols.insert(0, volume)


def eks_webhook_mutate(pod_meta, spec, namespace, service_accounts, region, regional_sts_default,
                       events):
    """Mutates spec in place. Returns a description of what was done."""
    domain = "eks.amazonaws.com"
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    sa = service_accounts.get(sa_name)
    if sa is None:
        events.append(("webhook", "", "service account %r not in the manifests: pod not mutated" % sa_name))
        return {"mutated": False, "reason": "no service account %s" % sa_name}
    ann = (sa.get("metadata") or {}).get("annotations") or {}
    role = ann.get(domain + "/role-arn")
    if not role:
        events.append(("webhook", "", "service account %r has no %s/role-arn: pod not mutated" % (sa_name, domain)))
        return {"mutated": False, "reason": "no role-arn annotation"}
    audience = ann.get(domain + "/audience", "sts.amazonaws.com")
    regional = regional_sts_default
    if domain + "/sts-regional-endpoints" in ann:
        b = _go_parse_bool(ann[domain + "/sts-regional-endpoints"])
        if b is not None:
            regional = b
    expiration = 86400
    if domain + "/token-expiration" in ann:
        v = _go_parse_int(ann[domain + "/token-expiration"])
        if v is not None:
            expiration = max(v, 600)
    pod_ann = pod_meta.get("annotations") or {}
    if domain + "/token-expiration" in pod_ann:
        v = _go_parse_int(pod_ann[domain + "/token-expiration"])
        if v is not None:
            expiration = max(v, 600)
    skip = _skip_containers(pod_ann, domain)
    mount_path = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    vol_name = "aws-iam-token"
    token_file = mount_path + "/token"
    changed = _mutate_containers(
        spec, skip, {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"},
        [{"name": "AWS_ROLE_ARN", "value": role},
         {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": token_file}],
        regional, region, vol_name, mount_path)
    _insert_volume(spec, {"name": vol_name, "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": expiration, "path": "token"}}]}})
    events.append(("webhook", "", "mutated containers %s (role %s, audience %s, expiration %ds)"
                   % (", ".join(changed) or "(none)", role, audience, expiration)))
    return {"mutated": True, "containers": changed, "role_arn": role, "audience": audience,
            "expiration_seconds": expiration, "skipped": sorted(skip)}


def eks_pod_identity_mutate(pod_meta, spec, full_uri, region, regional_sts_default, events):
    """The same webhook in container-credentials mode (EKS Pod Identity), which
    it uses when the pod's service account has an association and which takes
    precedence over web identity (pkg/handler/handler.go, buildPodPatchConfig).
    Mutates spec and pod_meta in place. The facts, from that file:

    - getPodSpecPatch: init and app containers alike, except those in the
      eks.amazonaws.com/skip-containers annotation (parsePodAnnotations ->
      getContainersToSkip, the same annotation as in web-identity mode);
    - addEnvToContainer: AWS_CONTAINER_CREDENTIALS_FULL_URI and
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE are added only if the container
      has neither yet; AWS_STS_REGIONAL_ENDPOINTS and the region as in
      web-identity mode; the token volume is mounted read-only whatever the env;
    - the volume eks-pod-identity-token: a projected token for
      pods.eks.amazonaws.com at path eks-pod-identity-token, mounted at
      /var/run/secrets/pods.eks.amazonaws.com/serviceaccount (main.go flag
      defaults container-credentials-*); its expiration is the default 86400 s
      (the real webhook jitters it between 79200 and 86400 s);
    - the pod label eks.amazonaws.com/pod-identity: enabled.

    FULL_URI is http://169.254.170.23/v1/credentials on EKS; here it is
    whatever the caller gives: with --pod-identity-agent that real address
    answers inside the pod's network namespace (Pod.start_agent_relay)."""
    domain = "eks.amazonaws.com"
    pod_ann = pod_meta.get("annotations") or {}
    skip = _skip_containers(pod_ann, domain)
    mount_path = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    vol_name = "eks-pod-identity-token"
    token_file = mount_path + "/eks-pod-identity-token"
    changed = _mutate_containers(
        spec, skip, {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"},
        [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": full_uri},
         {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": token_file}],
        regional_sts_default, region, vol_name, mount_path)
    pod_meta.setdefault("labels", {})[domain + "/pod-identity"] = "enabled"
    _insert_volume(spec, {"name": vol_name, "projected": {"sources": [{"serviceAccountToken": {
        "audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400,
        "path": "eks-pod-identity-token"}}]}})
    events.append(("webhook", "", "Pod Identity: mutated containers %s (agent %s)"
                   % (", ".join(changed) or "(none)", full_uri)))
    return {"mutated": True, "mode": "pod-identity", "containers": changed,
            "full_uri": full_uri, "skipped": sorted(skip)}


# ---------------------------------------------------------------------------
# Service-account tokens
# ---------------------------------------------------------------------------

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, workdir, issuer):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self.key.public_key()
        der = pub.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        # kubernetes pkg/serviceaccount/jwt.go keyIDFromPublicKey
        self.kid = b64url(hashlib.sha256(der).digest())
        self.public_pem_path = os.path.join(workdir, "issuer-public.pem")
        with open(self.public_pem_path, "wb") as f:
            f.write(pub.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))
        nums = pub.public_numbers()

        def be(i):
            return b64url(i.to_bytes((i.bit_length() + 7) // 8, "big"))
        self.jwks_path = os.path.join(workdir, "issuer-jwks.json")
        with open(self.jwks_path, "w") as f:
            json.dump({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                                 "n": be(nums.n), "e": be(nums.e)}]}, f)

    def sign(self, claims):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        header = {"alg": "RS256", "kid": self.kid}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)


# ---------------------------------------------------------------------------
# kubelet's atomic writer (pkg/volume/util/atomic_writer.go)
# ---------------------------------------------------------------------------

def atomic_write(target_dir, payload, fs_group=None, read_only_volume=True):
    """payload: {relative path: (bytes, mode, fs_user or None)}."""
    os.makedirs(target_dir, exist_ok=True)
    data_link = os.path.join(target_dir, "..data")
    old_ts = os.readlink(data_link) if os.path.islink(data_link) else None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts_dir = tempfile.mkdtemp(prefix=stamp, dir=target_dir)
    os.chmod(ts_dir, 0o755)
    for rel, (data, mode, fs_user) in payload.items():
        full = os.path.join(ts_dir, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, mode)
        if fs_user is not None:
            os.chown(full, fs_user, -1)
    if fs_group is not None:
        # projected.go setPerms: the whole volume, not only the new directory
        set_volume_ownership(target_dir, fs_group, read_only_volume)
    tmp_link = os.path.join(target_dir, "..data_tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(os.path.basename(ts_dir), tmp_link)
    os.rename(tmp_link, data_link)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in sorted(tops):
        link = os.path.join(target_dir, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    for name in os.listdir(target_dir):
        if name.startswith("..") or name in tops:
            continue
        p = os.path.join(target_dir, name)
        if os.path.islink(p):
            os.unlink(p)
    if old_ts and old_ts != os.path.basename(ts_dir):
        shutil.rmtree(os.path.join(target_dir, old_ts), ignore_errors=True)
    return os.path.basename(ts_dir)


def set_volume_ownership(path, fs_group, read_only):
    """pkg/volume/volume_linux.go changeFilePermission: group = fsGroup,
    mode |= 0440 (read-only volume) or 0660, dirs also setgid and 0110."""
    mask = 0o440 if read_only else 0o660
    for root, dirs, files in os.walk(path):
        for p, is_dir in [(root, True)] + [(os.path.join(root, f), False) for f in files] + \
                [(os.path.join(root, d), True) for d in dirs if os.path.islink(os.path.join(root, d))]:
            try:
                os.lchown(p, -1, fs_group)
            except OSError:
                pass
            if os.path.islink(p):
                continue
            st = os.lstat(p)
            m = st.st_mode & 0o7777
            if is_dir:
                m |= mask | 0o2000 | 0o110
            else:
                m |= mask
            os.chmod(p, m)


# ---------------------------------------------------------------------------
# The pod
# ---------------------------------------------------------------------------

class Probe:
    def __init__(self, kind, spec, period_cap):
        self.kind = kind
        self.spec = spec
        self.period = float(spec.get("periodSeconds", 10))
        if period_cap and period_cap > 0:
            self.period = min(self.period, period_cap)
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.initial_delay = float(spec.get("initialDelaySeconds", 0))
        self.reset()

    def reset(self):
        self.next_due = 0.0
        self.inflight = None       # (kind, handle, deadline, started)
        self.failures = 0
        self.successes = 0
        self.total = 0
        self.total_failures = 0
        self.result = None         # True/False/None
        self.last_output = ""


class Container:
    def __init__(self, name, kind, spec, index):
        self.name = name
        self.kind = kind           # init | sidecar | regular
        self.spec = spec
        self.index = index
        self.state = "pending"     # pending | running | backoff | exited
        self.proc = None
        self.pid = None
        self.exit_code = None
        self.restarts = 0
        self.attempts = 0
        self.started_at = None
        self.started_mono = None
        self.finished_mono = None
        self.started = False       # kubelet's "started" (startup probe passed)
        self.ready = False
        self.next_start = 0.0
        self.poststart = None      # (proc/future, deadline) while the hook runs
        self.poststart_done = True
        self.probes = {}
        self.kill_reason = None    # liveness | startup | poststart | terminate
        self.stop = None           # dict while stopping
        self.stopped_by_runner = False
        self.killed = False
        self.exit_history = []
        self.log_path = None
        self.startup_passed_after = None
        self.ready_after = None
        self.config_error = None


class Runner:
    def __init__(self, args):
        self.args = args
        self.events = []
        self.containers = []
        self.services = []
        self.sandbox = None
        self.sandbox_init = None
        self.netpool = None
        self.failure = None
        self.timed_out = False
        self.interrupted = 0
        self.workdir = None
        self.owns_workdir = False
        self.t0 = time.monotonic()
        self.term = None
        self.exit_code = None
        self.webhook = None
        self.agent_addresses = []
        self.volume_dirs = {}
        self.projected = []        # volumes with tokens to rotate
        self.seq = 0
        self.shutting_down = False
        self.waiting = None
        self.init_idx = 0
        self.apps_started_at = None
        self.inits, self.regulars, self.apps = [], [], []

    # ----- bookkeeping -----
    def event(self, kind, container, message):
        self.events.append({"t": round(time.monotonic() - self.t0, 3), "type": kind,
                            "container": container, "message": message})
        progress(("%s: %s" % (container, message)) if container else message)

    def fail(self, message):
        if self.failure is None:
            self.failure = message
            self.event("Failed", "", message)

    # ----- setup -----
    def load(self):
        a = self.args
        docs = load_documents(a.manifest)
        workload = None
        for d in docs:
            if d.get("kind") in WORKLOAD_KINDS:
                workload = d
                break
        if workload is None:
            raise ManifestError("no Pod or workload with a pod template in the manifests")
        meta, spec = pod_template(workload)
        meta = copy.deepcopy(meta)
        spec = copy.deepcopy(spec)
        if not spec.get("containers"):
            raise ManifestError("the pod template has no containers")
        wmeta = workload.get("metadata") or {}
        self.namespace = a.namespace or wmeta.get("namespace") or meta.get("namespace") or "default"
        self.workload = workload
        self.secrets, self.configmaps, self.service_accounts = {}, {}, {}
        for d in docs:
            m = d.get("metadata") or {}
            ns = m.get("namespace")
            if ns and ns != self.namespace:
                continue
            kind = d.get("kind")
            if kind == "Secret":
                data = {}
                for k, v in (d.get("data") or {}).items():
                    data[k] = base64.b64decode(v or "")
                for k, v in (d.get("stringData") or {}).items():
                    data[k] = str(v).encode()
                self.secrets[m.get("name")] = data
            elif kind == "ConfigMap":
                data = {k: str(v).encode() for k, v in (d.get("data") or {}).items()}
                for k, v in (d.get("binaryData") or {}).items():
                    data[k] = base64.b64decode(v or "")
                self.configmaps[m.get("name")] = data
            elif kind == "ServiceAccount":
                self.service_accounts[m.get("name")] = d
        if spec.get("hostNetwork"):
            raise ManifestError("hostNetwork: true: the pod would share the node's network "
                                "namespace; podrunner does not run such pods")
        if a.eks_pod_identity:
            self.webhook = eks_pod_identity_mutate(meta, spec, a.eks_pod_identity,
                                                   a.eks_webhook_region,
                                                   a.eks_webhook_regional_sts,
                                                   _EventSink(self))
        elif a.eks_webhook:
            self.webhook = eks_webhook_mutate(meta, spec, self.namespace, self.service_accounts,
                                              a.eks_webhook_region, a.eks_webhook_regional_sts,
                                              _EventSink(self))
        self.meta = meta
        self.spec = spec
        self.pod_name = pod_name_for(workload, meta)
        self.pod_uid = str(uuid.uuid4())
        self.sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        sa = self.service_accounts.get(self.sa_name) or {}
        self.sa_uid = (sa.get("metadata") or {}).get("uid") or str(uuid.uuid5(
            uuid.NAMESPACE_URL, "sa:%s/%s" % (self.namespace, self.sa_name)))
        self.node_name = spec.get("nodeName") or NODE_NAME
        self.node_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, "node:" + self.node_name))
        self.restart_policy = spec.get("restartPolicy") or "Always"
        self.psc = spec.get("securityContext") or {}
        grace = spec.get("terminationGracePeriodSeconds")
        self.grace = min(float(30 if grace is None else grace), a.grace_cap)
        self.check_sysctls()
        names = set()
        for key in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(key) or []):
                name = c.get("name")
                if not name or name in names:
                    raise ManifestError("%s[%d] has no name or a duplicate name" % (key, i))
                names.add(name)
                if key == "initContainers":
                    kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
                else:
                    kind = "regular"
                ct = Container(name, kind, c, i)
                for pk, field in (("startup", "startupProbe"), ("readiness", "readinessProbe"),
                                  ("liveness", "livenessProbe")):
                    if c.get(field) is not None:
                        if kind == "init":
                            raise ManifestError("init container %s: %s is only allowed on native sidecars" % (name, field))
                        p = c[field]
                        if "grpc" in p:
                            raise ManifestError("container %s: grpc probes are not supported by podrunner" % name)
                        ct.probes[pk] = Probe(pk, p, a.probe_period_cap)
                self.containers.append(ct)
        for opt in (a.replace_command, a.env):
            for cname in opt:
                if cname not in names:
                    raise ManifestError("no container named %r in the pod (it has: %s)" % (cname, ", ".join(sorted(names))))
        self.inits = [c for c in self.containers if c.kind in ("init", "sidecar")]
        self.regulars = [c for c in self.containers if c.kind == "regular"]
        if a.replace_command:
            self.apps = [c for c in self.regulars if c.name in a.replace_command]
        else:
            self.apps = list(self.regulars)
        vnames = [v.get("name") for v in spec.get("volumes") or []]
        for c in self.containers:
            for m in c.spec.get("volumeMounts") or []:
                if m.get("name") not in vnames:
                    raise ManifestError("container %s mounts volume %r, which the pod does not define" % (c.name, m.get("name")))
                mp = m.get("mountPath") or ""
                if not mp.startswith("/") or os.path.normpath(mp) in ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/lib"):
                    raise ManifestError("container %s: mountPath %r is not one podrunner will mount over" % (c.name, mp))

    def check_sysctls(self):
        self.sysctls = []
        for s in self.psc.get("sysctls") or []:
            name, value = s.get("name"), str(s.get("value", ""))
            name = name.replace("/", ".") if name else name
            if name in SAFE_SYSCTLS:
                self.sysctls.append((name, value, SAFE_SYSCTLS[name]))
                continue
            ns = NAMESPACED_SYSCTLS.get(name)
            if ns is None:
                for prefix, nst in NAMESPACED_SYSCTL_PREFIXES:
                    if name.startswith(prefix):
                        ns = nst
            if ns is None:
                raise ManifestError("sysctl %s is not namespaced: kubelet refuses it (SysctlForbidden) "
                                    "and podrunner will not change it on this machine" % name)
            if not any(re.fullmatch(p.replace(".", r"\.").replace("*", ".*"), name)
                       for p in self.args.allowed_unsafe_sysctl):
                raise ManifestError("sysctl %s is namespaced but not in Kubernetes' safe set: kubelet "
                                    "refuses it unless the node allows it (--allowed-unsafe-sysctls); "
                                    "pass --allowed-unsafe-sysctl %s to allow it here" % (name, name))
            self.sysctls.append((name, value, ns))

    def setup_workdir(self):
        a = self.args
        if a.workdir:
            self.workdir = os.path.abspath(a.workdir)
            os.makedirs(self.workdir, exist_ok=True)
        else:
            self.workdir = tempfile.mkdtemp(prefix="podrunner-")
            self.owns_workdir = True
        os.chmod(self.workdir, 0o755)
        for d in ("logs", "volumes", "run"):
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        os.chmod(os.path.join(self.workdir, "run"), 0o700)
        self.issuer = TokenIssuer(self.workdir, a.issuer)

    # ----- identity -----
    def fs_user(self):
        """pkg/volume/util FsUserFrom: the one runAsUser all containers share."""
        uid = None
        for c in self.containers:
            sc = c.spec.get("securityContext") or {}
            u = sc.get("runAsUser", self.psc.get("runAsUser"))
            if u is None:
                return None
            if uid is not None and uid != u:
                return None
            uid = u
        return uid

    def credentials(self, c):
        sc = c.spec.get("securityContext") or {}
        uid = sc.get("runAsUser", self.psc.get("runAsUser"))
        uid = 0 if uid is None else int(uid)
        gid = sc.get("runAsGroup", self.psc.get("runAsGroup"))
        if gid is None:
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = 0
        non_root = sc.get("runAsNonRoot", self.psc.get("runAsNonRoot"))
        if non_root and uid == 0:
            raise ConfigError("container has runAsNonRoot and image will run as root")
        groups = []
        for g in list(self.psc.get("supplementalGroups") or []) + (
                [self.psc["fsGroup"]] if self.psc.get("fsGroup") is not None else []):
            if int(g) not in groups:
                groups.append(int(g))
        privileged = bool(sc.get("privileged"))
        if privileged:
            bounding = None
        else:
            caps = list(DEFAULT_CAPS)
            capsc = sc.get("capabilities") or {}
            add = [str(x).lower().removeprefix("cap_") for x in capsc.get("add") or []]
            drop = [str(x).lower().removeprefix("cap_") for x in capsc.get("drop") or []]
            if "all" in add:
                caps = list(CAP_NAMES)
            if "all" in drop:
                caps = []
            for x in add:
                if x != "all" and x not in caps:
                    caps.append(x)
            caps = [x for x in caps if x not in drop]
            have = host_bounding_set()
            bounding = [x for x in caps if x in have]
        ape = sc.get("allowPrivilegeEscalation")
        nnp = (ape is False) and not privileged
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            home = "/"
        return {"uid": uid, "gid": int(gid), "groups": groups, "bounding": bounding, "nnp": nnp,
                "home": home, "ro_rootfs": bool(sc.get("readOnlyRootFilesystem"))}

    # ----- environment -----
    def field_value(self, path):
        labels = self.meta.get("labels") or {}
        annotations = self.meta.get("annotations") or {}
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            src = labels if m.group(1) == "labels" else annotations
            return str(src.get(m.group(2), ""))
        table = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.pod_uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": self.sa_name,
            "status.podIP": POD_IP,
            "status.podIPs": POD_IP,
            "status.hostIP": HOST_IP,
            "status.hostIPs": HOST_IP,
        }
        if path == "metadata.labels":
            return "\n".join('%s="%s"' % (k, labels[k]) for k in sorted(labels))
        if path == "metadata.annotations":
            return "\n".join('%s="%s"' % (k, annotations[k]) for k in sorted(annotations))
        if path not in table:
            raise ConfigError("unsupported fieldRef %r" % path)
        return table[path]

    def resource_value(self, ref, default_container):
        cname = ref.get("containerName") or default_container
        c = next((x for x in self.containers if x.name == cname), None)
        if c is None:
            raise ConfigError("resourceFieldRef: no container %r" % cname)
        res = ref.get("resource", "")
        kind, _, rname = res.partition(".")
        resources = c.spec.get("resources") or {}
        q = (resources.get(kind) or {}).get(rname)
        if q is None and kind == "requests":
            q = (resources.get("limits") or {}).get(rname)
        if q is None:
            if kind == "limits":  # node allocatable
                if rname == "cpu":
                    q = os.cpu_count()
                elif rname == "memory":
                    q = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                else:
                    q = 0
            else:
                q = 0
        val = parse_quantity(q)
        div = parse_quantity(ref.get("divisor") or 1)
        if div == 0:
            div = 1
        return str(int(math.ceil(val / div - 1e-9)))

    def _key_ref(self, ref, store, what):
        name, key = ref.get("name"), ref.get("key")
        optional = bool(ref.get("optional"))
        obj = store.get(name)
        if obj is None:
            if optional:
                return None
            raise ConfigError('%s "%s" not found' % (what, name))
        if key not in obj:
            if optional:
                return None
            raise ConfigError("couldn't find key %s in %s %s/%s" % (key, what, self.namespace, name))
        return obj[key].decode(errors="replace")

    def container_env(self, c):
        """kubelet's makeEnvironmentVariables, in its order."""
        env = {}
        order = []

        def put(k, v):
            if k not in env:
                order.append(k)
            env[k] = v
        # Service environment of the "kubernetes" service in "default".
        svc = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
               "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
               "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
               "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}
        for src in c.spec.get("envFrom") or []:
            prefix = src.get("prefix") or ""
            if "configMapRef" in src:
                ref, store, what = src["configMapRef"], self.configmaps, "configmap"
            elif "secretRef" in src:
                ref, store, what = src["secretRef"], self.secrets, "secret"
            else:
                continue
            obj = store.get(ref.get("name"))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError('%s "%s" not found' % (what, ref.get("name")))
            for k in sorted(obj):
                name = prefix + k
                if not name or "=" in name:
                    continue
                put(name, obj[k].decode(errors="replace"))
        extra = [{"name": k, "value": v} for (k, v) in self.args.env.get(c.name, [])]
        for e in list(c.spec.get("env") or []) + extra:
            name = e.get("name")
            if "value" in e and "valueFrom" not in e:
                v = e.get("value")
                v = "" if v is None else str(v)
                if v:
                    v = expand(v, lambda n: env.get(n, svc.get(n)))
                put(name, v)
                continue
            vf = e.get("valueFrom")
            if not vf:
                put(name, "")
                continue
            if "fieldRef" in vf:
                put(name, self.field_value(vf["fieldRef"].get("fieldPath", "")))
            elif "resourceFieldRef" in vf:
                put(name, self.resource_value(vf["resourceFieldRef"], c.name))
            elif "secretKeyRef" in vf:
                v = self._key_ref(vf["secretKeyRef"], self.secrets, "secret")
                if v is not None:
                    put(name, v)
            elif "configMapKeyRef" in vf:
                v = self._key_ref(vf["configMapKeyRef"], self.configmaps, "configmap")
                if v is not None:
                    put(name, v)
            else:
                raise ConfigError("env %s: unsupported valueFrom %s" % (name, list(vf)))
        full = {}
        for k, v in svc.items():
            full[k] = v
        for k in order:
            full[k] = env[k]
        return full

    # ----- volumes -----
    def setup_volumes(self):
        fs_group = self.psc.get("fsGroup")
        fs_user = self.fs_user()
        self.fsg, self.fsu = fs_group, fs_user
        for v in self.spec.get("volumes") or []:
            name = v["name"]
            d = os.path.join(self.workdir, "volumes", name)
            self.volume_dirs[name] = d
            if "emptyDir" in v:
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o777)
                if fs_group is not None:
                    set_volume_ownership(d, int(fs_group), False)
            elif "hostPath" in v:
                hp = v["hostPath"]
                path = hp.get("path")
                t = hp.get("type") or ""
                if t == "DirectoryOrCreate":
                    os.makedirs(path, exist_ok=True)
                elif t == "FileOrCreate" and not os.path.exists(path):
                    open(path, "a").close()
                elif t and not os.path.exists(path):
                    raise ConfigError("hostPath %s of volume %s does not exist" % (path, name))
                self.volume_dirs[name] = path
            elif any(k in v for k in ("secret", "configMap", "projected", "downwardAPI")):
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o1777)
                self.write_api_volume(v)
                if "projected" in v and any("serviceAccountToken" in s for s in v["projected"].get("sources") or []):
                    self.projected.append({"volume": v, "next": time.monotonic() + self.rotate_every(v)})
            else:
                raise ConfigError("volume %s: unsupported volume type %s" % (name, [k for k in v if k != "name"]))

    def rotate_every(self, v):
        if self.args.token_rotate_every:
            return float(self.args.token_rotate_every)
        exps = [int((s["serviceAccountToken"] or {}).get("expirationSeconds", 3600))
                for s in v["projected"].get("sources") or [] if "serviceAccountToken" in s]
        # pkg/kubelet/token/token_manager.go requiresRefresh: older than 80% of
        # its TTL, or than 24h (less a jitter of up to 10s, not modelled)
        return min(0.8 * min(exps), 86400.0)

    def _items_payload(self, items, obj, default_mode, what, name, optional):
        out = {}
        if items:
            for it in items:
                key = it.get("key")
                if key not in obj:
                    if optional:
                        continue
                    raise ConfigError("%s %s/%s: no key %s" % (what, self.namespace, name, key))
                out[it.get("path") or key] = (obj[key], int(it.get("mode", default_mode)), None)
        else:
            for key, val in obj.items():
                out[key] = (val, default_mode, None)
        return out

    def api_payload(self, v):
        if "secret" in v:
            s = v["secret"]
            obj = self.secrets.get(s.get("secretName"))
            if obj is None:
                if s.get("optional"):
                    obj = {}
                else:
                    raise ConfigError('MountVolume.SetUp failed for volume "%s": secret "%s" not found' % (v["name"], s.get("secretName")))
            return self._items_payload(s.get("items"), obj, int(s.get("defaultMode", 0o644)), "secret", s.get("secretName"), s.get("optional")), True
        if "configMap" in v:
            s = v["configMap"]
            obj = self.configmaps.get(s.get("name"))
            if obj is None:
                if s.get("optional"):
                    obj = {}
                else:
                    raise ConfigError('MountVolume.SetUp failed for volume "%s": configmap "%s" not found' % (v["name"], s.get("name")))
            return self._items_payload(s.get("items"), obj, int(s.get("defaultMode", 0o644)), "configmap", s.get("name"), s.get("optional")), True
        if "downwardAPI" in v:
            s = v["downwardAPI"]
            return self._downward_payload(s.get("items") or [], int(s.get("defaultMode", 0o644))), True
        p = v["projected"]
        default_mode = int(p.get("defaultMode", 0o644))
        payload = {}
        for src in p.get("sources") or []:
            if "secret" in src:
                s = src["secret"]
                obj = self.secrets.get(s.get("name"))
                if obj is None:
                    if s.get("optional"):
                        continue
                    raise ConfigError('projected volume %s: secret "%s" not found' % (v["name"], s.get("name")))
                payload.update(self._items_payload(s.get("items"), obj, default_mode, "secret", s.get("name"), s.get("optional")))
            elif "configMap" in src:
                s = src["configMap"]
                obj = self.configmaps.get(s.get("name"))
                if obj is None:
                    if s.get("optional"):
                        continue
                    raise ConfigError('projected volume %s: configmap "%s" not found' % (v["name"], s.get("name")))
                payload.update(self._items_payload(s.get("items"), obj, default_mode, "configmap", s.get("name"), s.get("optional")))
            elif "downwardAPI" in src:
                payload.update(self._downward_payload(src["downwardAPI"].get("items") or [], default_mode))
            elif "serviceAccountToken" in src:
                t = src["serviceAccountToken"] or {}
                # pkg/volume/projected/projected.go: 0600 when FsUser or
                # FsGroup is set (fsGroup then adds group read), else defaultMode.
                mode = 0o600 if (self.fsu is not None or self.fsg is not None) else default_mode
                payload[t.get("path") or "token"] = (self.make_token(t).encode(), mode, self.fsu)
            else:
                raise ConfigError("projected volume %s: unsupported source %s" % (v["name"], list(src)))
        return payload, True

    def _downward_payload(self, items, default_mode):
        out = {}
        for it in items:
            if "fieldRef" in it:
                val = self.field_value(it["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in it:
                val = self.resource_value(it["resourceFieldRef"], it["resourceFieldRef"].get("containerName"))
            else:
                continue
            out[it["path"]] = (val.encode(), int(it.get("mode", default_mode)), None)
        return out

    def write_api_volume(self, v):
        payload, ro = self.api_payload(v)
        atomic_write(self.volume_dirs[v["name"]], payload,
                     None if self.fsg is None else int(self.fsg), ro)

    def make_token(self, t):
        now = int(time.time())
        exp = int(t.get("expirationSeconds", 3600))
        aud = t.get("audience") or DEFAULT_TOKEN_AUDIENCE
        claims = {
            "aud": [aud],
            "exp": now + exp,
            "iat": now,
            "iss": self.args.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": self.namespace,
                "node": {"name": self.node_name, "uid": self.node_uid},
                "pod": {"name": self.pod_name, "uid": self.pod_uid},
                "serviceaccount": {"name": self.sa_name, "uid": self.sa_uid},
            },
            "nbf": now,
            "sub": "system:serviceaccount:%s:%s" % (self.namespace, self.sa_name),
        }
        return self.issuer.sign(claims)

    def rotate_tokens(self):
        now = time.monotonic()
        for p in self.projected:
            if now >= p["next"]:
                v = p["volume"]
                try:
                    self.write_api_volume(v)
                    self.event("TokenRotated", "", "volume %s: new service-account token" % v["name"])
                except (ConfigError, OSError) as e:
                    self.event("TokenRotationFailed", "", "volume %s: %s" % (v["name"], e))
                p["next"] = now + self.rotate_every(v)

    def mounts_for(self, c, env):
        out = []
        for m in c.spec.get("volumeMounts") or []:
            vname = m["name"]
            vol = next(v for v in self.spec.get("volumes") or [] if v.get("name") == vname)
            src = self.volume_dirs[vname]
            sub = m.get("subPath")
            if m.get("subPathExpr"):
                sub = expand(m["subPathExpr"], lambda n: env.get(n))
            is_file = False
            if sub:
                src = subpath_source(src, sub, vname)
                is_file = os.path.isfile(src)
            ro = bool(m.get("readOnly")) or any(k in vol for k in ("secret", "configMap", "projected", "downwardAPI"))
            out.append({"src": src, "dst": os.path.normpath(m["mountPath"]), "ro": ro, "file": is_file})
        mounted = {m["dst"] for m in out}
        etc = os.path.join(self.workdir, "etc")
        for name in ("hosts", "hostname", "resolv.conf"):
            dst = "/etc/" + name
            if dst in mounted or not os.path.exists(dst):
                continue
            if name == "resolv.conf" and (self.spec.get("dnsPolicy") or "ClusterFirst") not in ("ClusterFirst",):
                continue
            out.append({"src": os.path.join(etc, name), "dst": dst, "ro": False, "file": True,
                        "optional": True})
        return out

    def hidden_paths(self, mounts):
        """What a container must not see of this host: the workdir (unless a
        mount goes inside it, which then could not be reached)."""
        w = os.path.realpath(self.workdir)
        if any(os.path.commonpath([w, os.path.realpath(m["dst"])]) == w for m in mounts
               if os.path.isabs(m["dst"])):
            return []
        return [w]

    def write_etc_files(self):
        etc = os.path.join(self.workdir, "etc")
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                    "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
                    "%s\t%s\n" % (POD_IP, self.pod_name))
        with open(os.path.join(etc, "hostname"), "w") as f:
            f.write(self.pod_name + "\n")
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
                    % self.namespace)
        for name in ("hosts", "hostname", "resolv.conf"):
            os.chmod(os.path.join(etc, name), 0o644)

    # ----- argv -----
    def map_binary(self, path):
        return self.args.binary.get(path, path)

    def container_argv(self, c, env):
        if c.name in self.args.replace_command:
            return list(self.args.replace_command[c.name])
        image = c.spec.get("image")
        entry = self.args.image.get(image)
        if "command" in c.spec and c.spec["command"]:
            argv = list(c.spec["command"]) + list(c.spec.get("args") or [])
        elif entry is not None:
            argv = list(entry) + list(c.spec.get("args") or [])
        else:
            raise ConfigError("image %r: its ENTRYPOINT is unknown to podrunner (pass --image %s='[...]' "
                              "or --replace-command %s='[...]')" % (image, image, c.name))
        if not argv:
            raise ConfigError("no command to run")
        argv = [expand(str(x), lambda n: env.get(n)) for x in argv]
        argv[0] = self.map_binary(argv[0])
        return argv

    # ----- sandbox -----
    def start_sandbox(self):
        self.sandbox = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--_pause", self.pod_name[:63]],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.workdir, "logs", "_sandbox.log"), "ab"),
            preexec_fn=lambda: (set_pdeathsig(signal.SIGKILL), os.setsid()), close_fds=True)
        line = b""
        deadline = time.monotonic() + 10
        import select as _select
        while not line.endswith(b"\n"):
            r, _, _ = _select.select([self.sandbox.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError("the sandbox did not start within 10s")
            chunk = os.read(self.sandbox.stdout.fileno(), 64)
            if not chunk:
                raise RuntimeError("the sandbox exited at start: see %s" % os.path.join(self.workdir, "logs", "_sandbox.log"))
            line += chunk
        self.sandbox_init = int(line.strip())
        self.netns = "/proc/%d/ns/net" % self.sandbox_init
        nsenter = ["nsenter", "--net=" + self.netns, "--"]
        subprocess.run(nsenter + ["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        # The pod IP lives on lo (there is no eth0): a listener on 0.0.0.0
        # answers it, one on 127.0.0.1 does not, as in a real pod.
        subprocess.run(nsenter + ["ip", "addr", "add", POD_IP + "/32", "dev", "lo"], check=True, timeout=10)
        self.verify_no_route_out(nsenter)
        for name, value, ns in self.sysctls:
            path = "/proc/sys/" + name.replace(".", "/")
            flag = "--net=" + self.netns if ns == "net" else "--ipc=/proc/%d/ns/ipc" % self.sandbox_init
            r = subprocess.run(["nsenter", flag, "--", "sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, path],
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                raise RuntimeError("sysctl %s=%s: %s" % (name, value, r.stderr.strip()))
            self.event("Sysctl", "", "%s=%s in the pod's %s namespace" % (name, value, ns))
        self.netpool = concurrent.futures.ThreadPoolExecutor(max_workers=4, initializer=self._enter_netns)
        self.event("SandboxReady", "", "network namespace of pid %d: lo only, %s on lo, no route out"
                   % (self.sandbox_init, POD_IP))

    def verify_no_route_out(self, nsenter):
        links = subprocess.run(nsenter + ["ip", "-o", "link", "show"], capture_output=True, text=True,
                               check=True, timeout=10).stdout.splitlines()
        names = [ln.split(":")[1].strip().split("@")[0] for ln in links if ln.strip()]
        if names != ["lo"]:
            raise RuntimeError("the pod's network namespace has interfaces %s besides lo; refusing to run" % names)
        for fam in ("-4", "-6"):
            for table in ("main", "all"):
                out = subprocess.run(nsenter + ["ip", fam, "route", "show", "table", table],
                                     capture_output=True, text=True, check=True, timeout=10).stdout
                for ln in out.splitlines():
                    if ln.strip() and " dev lo" not in " " + ln and not ln.startswith("dev lo"):
                        raise RuntimeError("route %r in the pod's namespace leaves lo; refusing to run" % ln)
                    if table == "main" and ln.strip() and fam == "-4":
                        raise RuntimeError("unexpected route %r in the pod's main table" % ln)

    def _enter_netns(self):
        fd = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(libc().setns(fd, CLONE_NEWNET), "setns(net) in probe thread")
        finally:
            os.close(fd)

    # ----- the EKS Pod Identity agent's addresses -----
    def start_agent_relay(self):
        """--pod-identity-agent UPSTREAM: the node agent's addresses
        (169.254.170.23 and fd00:ec2::23, port 80) on the pod's lo, each
        connection relayed to UPSTREAM inside the pod (the emulator playing the
        agent). Only inside the namespace made above, checked again to have no
        route out once the addresses are there. fd00:ec2::23 is skipped, with
        an event, when the namespace has no IPv6; the IPv4 address is required
        (the runner refuses to run without it, as without its namespace)."""
        upstream = self.args.pod_identity_agent
        if not upstream:
            return
        host, _, port = upstream.rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port)
        except ValueError:
            raise ConfigError("--pod-identity-agent %r: expected HOST:PORT" % upstream)
        nsenter = ["nsenter", "--net=" + self.netns, "--"]
        bound = []
        for family, addr, prefix in ((socket.AF_INET, POD_IDENTITY_AGENT_V4, 32),
                                     (socket.AF_INET6, POD_IDENTITY_AGENT_V6, 128)):
            fam = "-4" if family == socket.AF_INET else "-6"
            r = subprocess.run(nsenter + ["ip", fam, "addr", "add", "%s/%d" % (addr, prefix), "dev", "lo"]
                               + (["nodad"] if family == socket.AF_INET6 else []),
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                if family == socket.AF_INET6:
                    self.event("PodIdentityAgent", "", "%s not added to the pod's lo (%s): IPv4 only"
                               % (addr, r.stderr.strip()))
                    continue
                raise RuntimeError("cannot add %s to the pod's lo: %s" % (addr, r.stderr.strip()))

            def listen(family=family, addr=addr):
                ls = socket.socket(family, socket.SOCK_STREAM)
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((addr, 80))
                ls.listen(64)
                return ls
            try:
                ls = self.netpool.submit(listen).result(timeout=10)
            except OSError as e:
                if family == socket.AF_INET6:
                    self.event("PodIdentityAgent", "", "[%s]:80 cannot be bound (%s): IPv4 only" % (addr, e))
                    continue
                raise
            bound.append("[%s]:80" % addr if family == socket.AF_INET6 else "%s:80" % addr)
            threading.Thread(target=self._agent_accept, args=(ls, host, port), daemon=True).start()
        self.verify_no_route_out(nsenter)
        self.event("PodIdentityAgent", "", "the EKS Pod Identity agent at %s in the pod's network namespace "
                   "(no route out), relayed to %s there" % (" and ".join(bound), upstream))
        self.agent_addresses = bound

    def _agent_accept(self, ls, host, port):
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=self._agent_relay, args=(conn, host, port), daemon=True).start()

    def _agent_relay(self, conn, host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            # Created in the pod's namespace, so it connects there.
            up = self.netpool.submit(socket.socket, family, socket.SOCK_STREAM).result(timeout=10)
            up.settimeout(10)
            up.connect((host, port))
            up.settimeout(None)
        except (OSError, concurrent.futures.TimeoutError):
            conn.close()
            return

        def pipe(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
        t.start()
        pipe(conn, up)
        t.join()
        conn.close()
        up.close()

    # ----- services -----
    def start_services(self):
        for i, cmd in enumerate(self.args.service):
            argv = [x.replace("{issuer_public_key}", self.issuer.public_pem_path)
                     .replace("{issuer_jwks}", self.issuer.jwks_path)
                     .replace("{workdir}", self.workdir) for x in cmd]
            log = os.path.join(self.workdir, "logs", "service-%d.log" % i)
            spec = {"sandbox_pid": self.sandbox_init, "own_pidns": False, "mount_ns": False,
                    "argv": argv, "env": list(os.environ.items()), "cred": None, "cwd": os.getcwd()}
            path = self.write_spec("service-%d" % i, spec)
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_container", path],
                                    stdin=subprocess.DEVNULL, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                    close_fds=True, start_new_session=True)
            self.services.append({"argv": argv, "proc": proc, "log": log})
            self.event("ServiceStarted", "", "service %d: %s" % (i, " ".join(argv)))
        for port in self.args.service_wait_port:
            deadline = min(self.hard_deadline, time.monotonic() + 60)
            fut = self.netpool.submit(wait_port, "127.0.0.1", port, deadline)
            ok = fut.result(timeout=max(1.0, deadline - time.monotonic() + 5))
            if not ok:
                for s in self.services:
                    if s["proc"].poll() is not None:
                        raise RuntimeError("service %s exited with %s before port %d answered; log:\n%s"
                                           % (s["argv"][0], s["proc"].returncode, port, tail(s["log"], 30)))
                raise RuntimeError("nothing accepted on 127.0.0.1:%d in the pod within the time allowed" % port)
            self.event("ServiceReady", "", "127.0.0.1:%d accepts in the pod" % port)

    def write_spec(self, name, spec):
        self.seq += 1
        path = os.path.join(self.workdir, "run", "%s.%d.json" % (name, self.seq))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        return path

    # ----- containers -----
    def start_container(self, c):
        c.attempts += 1
        try:
            env = self.container_env(c)
            cred = self.credentials(c)
            argv = self.container_argv(c, env)
            mounts = self.mounts_for(c, env)
        except ConfigError as e:
            c.config_error = str(e)
            c.state = "exited"
            c.exit_code = None
            self.event("CreateContainerConfigError", c.name, str(e))
            self.fail("container %s: CreateContainerConfigError: %s" % (c.name, e))
            return
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOSTNAME", self.pod_name)
        env.setdefault("HOME", cred["home"])
        ro_rootfs = cred.pop("ro_rootfs")
        cred.pop("home")
        c.env, c.cred = env, cred
        c.cwd = c.spec.get("workingDir") or "/"
        spec = {"sandbox_pid": self.sandbox_init, "own_pidns": not self.spec.get("shareProcessNamespace"),
                "mount_ns": True, "mounts": mounts, "hide": self.hidden_paths(mounts),
                "ro_rootfs": ro_rootfs, "cwd": c.cwd,
                "argv": argv, "env": list(env.items()), "cred": cred}
        path = self.write_spec(c.name, spec)
        c.log_path = os.path.join(self.workdir, "logs", c.name + ".log")
        logf = open(c.log_path, "ab")
        c.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_container", path],
                                  stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                  close_fds=True, start_new_session=True)
        logf.close()
        c.pid = None
        c.state = "running"
        c.exit_code = None
        c.kill_reason = None
        c.stop = None
        c.killed = False
        c.started = False
        c.ready = False
        c.started_at = time.time()
        c.started_mono = time.monotonic()
        for p in c.probes.values():
            p.reset()
        lc = (c.spec.get("lifecycle") or {}).get("postStart")
        c.poststart_done = lc is None
        c.poststart = None
        c.argv = argv
        self.event("Started", c.name, "started (%s, uid %d%s): %s" % (
            c.kind, cred["uid"], ", restart %d" % c.restarts if c.restarts else "", " ".join(argv)))

    def resolve_pid(self, c):
        if c.pid is not None or c.proc is None or c.proc.poll() is not None:
            return c.pid
        pid = c.proc.pid
        for _ in range(2):
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    kids = f.read().split()
            except OSError:
                return None
            if not kids:
                return None
            pid = int(kids[0])
        c.pid = pid
        return pid

    def signal_container(self, c, sig):
        pid = self.resolve_pid(c)
        try:
            if pid is not None:
                os.kill(pid, sig)
            elif c.proc is not None and c.proc.poll() is None and sig == signal.SIGKILL:
                os.kill(c.proc.pid, sig)
        except ProcessLookupError:
            pass

    # ----- handlers (exec, httpGet, tcpSocket, sleep) -----
    def launch_handler(self, c, handler, timeout, label):
        """Returns a handle: ('proc', Popen, outpath) or ('future', Future) or
        ('sleep', until); None when the container's process is not there yet."""
        if "exec" in handler:
            pid = self.resolve_pid(c)
            if pid is None:
                return None
            argv = list((handler["exec"] or {}).get("command") or [])
            if not argv:
                return ("done", False, "exec handler without command")
            argv[0] = self.map_binary(argv[0])
            spec = {"target_pid": pid, "argv": argv, "env": list(c.env.items()), "cred": c.cred,
                    "cwd": c.cwd, "timeout": timeout}
            path = self.write_spec("%s-%s" % (c.name, label), spec)
            out = path[:-5] + ".out"
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_exec", path],
                                    stdin=subprocess.DEVNULL, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                                    close_fds=True, start_new_session=True)
            return ("proc", proc, out, path)
        if "httpGet" in handler:
            h = handler["httpGet"]
            port = self.resolve_port(c, h.get("port"))
            fut = self.netpool.submit(http_probe, h.get("host") or POD_IP, port, h.get("path") or "/",
                                      (h.get("scheme") or "HTTP").upper(), h.get("httpHeaders") or [], timeout)
            return ("future", fut)
        if "tcpSocket" in handler:
            h = handler["tcpSocket"]
            port = self.resolve_port(c, h.get("port"))
            fut = self.netpool.submit(tcp_probe, h.get("host") or POD_IP, port, timeout)
            return ("future", fut)
        if "sleep" in handler:
            return ("sleep", time.monotonic() + float(handler["sleep"].get("seconds", 0)))
        return ("done", False, "unsupported handler %s" % list(handler))

    def resolve_port(self, c, port):
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        return 0

    def poll_handler(self, handle):
        """None while running, else (ok, output)."""
        kind = handle[0]
        if kind == "done":
            return handle[1], handle[2]
        if kind == "proc":
            rc = handle[1].poll()
            if rc is None:
                return None
            try:
                with open(handle[2], "rb") as f:
                    out = f.read(2048).decode(errors="replace")
                os.unlink(handle[2])
                os.unlink(handle[3])
            except OSError:
                out = ""
            if rc == 124 and "timed out" in out:
                return False, "timeout: " + out.strip()
            return rc == 0, ("exit %d: %s" % (rc, out.strip())) if rc else out.strip()
        if kind == "future":
            if not handle[1].done():
                return None
            try:
                return handle[1].result()
            except Exception as e:  # noqa: BLE001
                return False, str(e)
        if kind == "sleep":
            return (True, "") if time.monotonic() >= handle[1] else None
        return False, "?"

    def abort_handler(self, handle):
        if handle and handle[0] == "proc" and handle[1].poll() is None:
            try:
                os.killpg(handle[1].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ----- the loop -----
    def step_probes(self, c, now):
        if c.state != "running" or c.stop is not None or not c.poststart_done:
            return
        for kind in ("startup", "liveness", "readiness"):
            p = c.probes.get(kind)
            if p is None:
                continue
            if kind != "startup" and "startup" in c.probes and not c.started:
                continue
            if kind == "startup" and c.started:
                continue
            if p.inflight is not None:
                res = self.poll_handler(p.inflight[1])
                if res is None:
                    if now > p.inflight[2]:
                        self.abort_handler(p.inflight[1])
                        res = (False, "probe timed out (runner backstop)")
                    else:
                        continue
                p.inflight = None
                ok, out = res
                p.total += 1
                p.last_output = out
                if ok:
                    p.successes += 1
                    p.failures = 0
                else:
                    p.failures += 1
                    p.successes = 0
                    p.total_failures += 1
                self.probe_result(c, kind, p, ok, out)
                if c.state != "running" or c.stop is not None:
                    return
                continue
            if now - c.started_mono < p.initial_delay or now < p.next_due:
                continue
            h = self.launch_handler(c, p.spec, p.timeout, kind + "Probe")
            if h is None:
                continue
            p.inflight = (kind, h, now + p.timeout + 5)
            p.next_due = now + p.period

    def probe_result(self, c, kind, p, ok, out):
        if kind == "startup":
            if ok and p.successes >= 1:
                c.started = True
                c.startup_passed_after = time.monotonic() - c.started_mono
                self.event("StartupProbePassed", c.name, "startupProbe of %s passed after %.2fs (%d tries)"
                           % (c.name, c.startup_passed_after, p.total))
            elif not ok and p.failures >= p.failure_threshold:
                self.event("Unhealthy", c.name, "startupProbe failed %d times (%s): killing" % (p.failures, out))
                self.begin_stop(c, "startup", self.probe_grace(c, p))
        elif kind == "liveness":
            if not ok and p.failures >= p.failure_threshold:
                self.event("Unhealthy", c.name, "livenessProbe failed %d times (%s): killing" % (p.failures, out))
                self.begin_stop(c, "liveness", self.probe_grace(c, p))
        elif kind == "readiness":
            was = c.ready
            if ok and p.successes >= p.success_threshold:
                c.ready = True
            elif not ok and p.failures >= p.failure_threshold:
                c.ready = False
            if c.ready and c.ready_after is None:
                c.ready_after = time.monotonic() - c.started_mono
            if c.ready != was:
                self.event("Ready" if c.ready else "NotReady", c.name,
                           "readinessProbe: %s" % ("ready" if c.ready else "not ready (%s)" % out))

    def probe_grace(self, c, p):
        g = p.spec.get("terminationGracePeriodSeconds")
        return min(float(g), self.args.grace_cap) if g is not None else self.grace

    def step_poststart(self, c, now):
        if c.poststart_done or c.state != "running":
            return
        hook = (c.spec.get("lifecycle") or {}).get("postStart")
        if c.poststart is None:
            h = self.launch_handler(c, hook, self.hook_timeout(), "postStart")
            if h is not None:
                c.poststart = (h, now + self.hook_timeout() + 5)
            return
        res = self.poll_handler(c.poststart[0])
        if res is None:
            if now <= c.poststart[1]:
                return
            self.abort_handler(c.poststart[0])
            res = (False, "postStart hook timed out")
        c.poststart = None
        ok, out = res
        if ok:
            c.poststart_done = True
            self.event("PostStartDone", c.name, "postStart hook finished")
        else:
            self.event("FailedPostStartHook", c.name, "postStart hook failed: %s" % out)
            c.poststart_done = True
            self.begin_stop(c, "poststart", self.grace)

    def hook_timeout(self):
        return max(self.grace, 2.0)

    def begin_stop(self, c, reason, grace, ordered=False):
        if c.state != "running" or c.stop is not None:
            return
        now = time.monotonic()
        c.kill_reason = reason
        c.stop = {"deadline": now + grace, "prestop": None, "prestop_done": False, "term_sent": None,
                  "ordered": ordered, "kill_sent": False}
        hook = (c.spec.get("lifecycle") or {}).get("preStop")
        if hook is None or grace <= 0:
            c.stop["prestop_done"] = True
        for p in c.probes.values():
            if p.inflight is not None:
                self.abort_handler(p.inflight[1])
                p.inflight = None

    def step_stop(self, c, now):
        st = c.stop
        if st is None or c.state != "running":
            return
        if not st["prestop_done"]:
            if st["prestop"] is None:
                h = self.launch_handler(c, (c.spec.get("lifecycle") or {}).get("preStop"),
                                        max(0.1, st["deadline"] - now), "preStop")
                if h is None and now < st["deadline"]:
                    return
                st["prestop"] = h
                if h is None:
                    st["prestop_done"] = True
                return
            res = self.poll_handler(st["prestop"])
            if res is None and now < st["deadline"]:
                return
            if res is None:
                self.abort_handler(st["prestop"])
            else:
                self.event("PreStop", c.name, "preStop hook %s" % ("finished" if res[0] else "failed: " + res[1]))
            st["prestop_done"] = True
        if st["term_sent"] is None:
            if st["ordered"] and not self.sidecar_turn(c) and now < st["deadline"]:
                return
            self.signal_container(c, signal.SIGTERM)
            st["term_sent"] = now
            # kubelet gives at least 2s (minimumGracePeriodInSeconds) after SIGTERM
            st["kill_at"] = max(st["deadline"], now + 2.0)
            self.event("Killing", c.name, "SIGTERM (%s)" % c.kill_reason)
            return
        if not st["kill_sent"] and now >= st["kill_at"]:
            self.signal_container(c, signal.SIGKILL)
            st["kill_sent"] = True
            c.killed = True
            self.event("Killing", c.name, "SIGKILL: still running %.1fs after SIGTERM" % (now - st["term_sent"]))

    def sidecar_turn(self, c):
        """KEP-753 termination order: a native sidecar stops after every
        regular container and every sidecar that started after it."""
        if any(r.state == "running" for r in self.regulars):
            return False
        later = [s for s in self.inits if s.kind == "sidecar" and s.index > c.index]
        return not any(s.state == "running" for s in later)

    def handle_exit(self, c, now):
        rc = c.proc.returncode
        code = rc if rc >= 0 else 128 - rc
        c.exit_code = code
        c.finished_mono = now
        c.exit_history.append(code)
        c.state = "exited"
        c.ready = False
        if c.poststart is not None:
            self.abort_handler(c.poststart[0])
            c.poststart = None
        for p in c.probes.values():
            if p.inflight is not None:
                self.abort_handler(p.inflight[1])
                p.inflight = None
        reason = c.kill_reason
        stopping = self.term is not None or self.shutting_down
        if c.stop is not None and reason == "terminate":
            c.stopped_by_runner = True
        c.stop = None
        self.event("Exited", c.name, "exited with code %d%s" % (code, " (%s)" % reason if reason else ""))
        if stopping:
            return
        if c.kind == "sidecar":
            self.schedule_restart(c, now)
        elif c.kind == "init":
            if code == 0:
                return
            if self.restart_policy == "Never" or c.attempts > self.args.init_retries:
                self.fail("init container %s failed with exit code %d after %d attempt(s); last log lines:\n%s"
                          % (c.name, code, c.attempts, tail(c.log_path, 30)))
            else:
                self.schedule_restart(c, now)
        else:
            if reason in ("liveness", "startup", "poststart"):
                if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0):
                    self.schedule_restart(c, now)

    def schedule_restart(self, c, now):
        delay = min(self.args.restart_backoff * (2 ** c.restarts), self.args.restart_backoff_max)
        c.restarts += 1
        c.state = "backoff"
        c.next_start = now + delay
        self.event("BackOff", c.name, "restarting in %.1fs (restart %d)" % (delay, c.restarts))

    def is_started(self, c):
        if c.state != "running" or not c.poststart_done:
            return False
        if "startup" in c.probes:
            return c.started
        c.started = True
        return True

    def step_start(self, now):
        if self.failure is not None or self.term is not None:
            return
        # init containers and native sidecars, one after another
        while self.init_idx < len(self.inits):
            c = self.inits[self.init_idx]
            if c.state == "pending":
                self.start_container(c)
                return
            if c.kind == "sidecar":
                if self.is_started(c):
                    self.init_idx += 1
                    continue
                return
            if c.state == "exited" and c.exit_code == 0:
                self.event("InitDone", c.name, "init container completed")
                self.init_idx += 1
                continue
            return
        if self.apps_started_at is None:
            self.apps_started_at = now
        for c in self.regulars:
            if c.state == "pending":
                self.start_container(c)
                if not c.poststart_done:
                    return
                continue
            if c.state == "running" and not c.poststart_done:
                return

    def run(self):
        a = self.args
        self.hard_deadline = time.monotonic() + a.timeout
        self.init_idx = 0
        self.apps_started_at = None
        self.write_etc_files()
        self.setup_volumes()
        self.start_sandbox()
        self.start_agent_relay()
        self.start_services()
        while True:
            now = time.monotonic()
            if now >= self.hard_deadline:
                self.timed_out = True
                self.waiting = self.waiting_for()
                self.event("Timeout", "", "--timeout %ss reached while waiting for %s: killing everything"
                           % (a.timeout, self.waiting))
                break
            if self.interrupted >= 2:
                break
            for c in self.containers:
                if c.state == "running" and c.proc.poll() is not None:
                    self.handle_exit(c, now)
                if c.state == "running" and self.is_started(c) and "readiness" not in c.probes:
                    c.ready = True
                    if c.ready_after is None:
                        c.ready_after = now - c.started_mono
            for s in self.services:
                if s["proc"].poll() is not None and not s.get("reported"):
                    s["reported"] = True
                    self.event("ServiceExited", "", "service %s exited with %s" % (s["argv"][0], s["proc"].returncode))
            for c in self.containers:
                if c.state == "backoff" and now >= c.next_start and self.term is None:
                    self.start_container(c)
            self.step_start(now)
            for c in self.containers:
                self.step_poststart(c, now)
                self.step_probes(c, now)
                self.step_stop(c, now)
            self.rotate_tokens()
            if self.term is None:
                reason = None
                if self.failure is not None:
                    reason = "failure"
                elif self.interrupted:
                    reason = "signal"
                elif self.apps_started_at is not None and self.apps and all(
                        c.state == "exited" for c in self.apps):
                    reason = "apps exited"
                elif not self.apps and self.apps_started_at is not None and a.run_for is None:
                    reason = "no app containers"
                elif a.run_for is not None and self.apps_started_at is not None and \
                        now - self.apps_started_at >= a.run_for:
                    reason = "--run-for %ss passed" % a.run_for
                if reason:
                    self.begin_termination(reason, now)
            elif all(c.state != "running" for c in self.containers):
                break
            time.sleep(0.02)

    def waiting_for(self):
        def detail(c):
            bits = []
            p = c.probes.get("startup")
            if p is not None and p.total_failures:
                bits.append("startupProbe failed %d times: %s" % (p.total_failures, p.last_output[:200]))
            if c.restarts:
                bits.append("%d restarts" % c.restarts)
            if c.exit_history:
                bits.append("last exit code %d" % c.exit_history[-1])
            return " (%s)" % "; ".join(bits) if bits else ""
        if self.term is not None:
            running = [c.name for c in self.containers if c.state == "running"]
            return "the pod to stop (still running: %s)" % ", ".join(running)
        if self.init_idx < len(self.inits):
            c = self.inits[self.init_idx]
            what = "native sidecar %s to start" % c.name if c.kind == "sidecar" else "init container %s to complete" % c.name
            return what + detail(c)
        left = [c.name + detail(c) for c in self.apps if c.state != "exited"]
        return "app containers to exit: %s" % ", ".join(left) if left else "the run to end"

    def begin_termination(self, reason, now):
        grace = self.grace if reason != "signal" else min(self.grace, 2.0)
        self.term = {"reason": reason, "start": now}
        self.event("Terminating", "", "%s: stopping the pod (grace %.0fs)" % (reason, grace))
        for c in self.containers:
            if c.state == "backoff":
                c.state = "exited" if c.exit_code is not None else "pending"
            if c.state == "running":
                if c.stop is not None:
                    continue
                self.begin_stop(c, "terminate", grace, ordered=(c.kind == "sidecar"))

    def kill_everything(self):
        self.shutting_down = True
        for c in self.containers:
            if c.state == "running":
                self.signal_container(c, signal.SIGKILL)
        for s in self.services:
            if s["proc"].poll() is None:
                try:
                    os.killpg(s["proc"].pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        t = time.monotonic() + 2
        while time.monotonic() < t and any(s["proc"].poll() is None for s in self.services):
            time.sleep(0.02)
        if self.sandbox is not None and self.sandbox.poll() is None:
            self.sandbox.kill()
            try:
                self.sandbox.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for c in self.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if c.state == "running":
                    self.handle_exit(c, time.monotonic())
        for s in self.services:
            if s["proc"].poll() is None:
                try:
                    os.killpg(s["proc"].pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                s["proc"].wait(timeout=5)
        if self.netpool is not None:
            self.netpool.shutdown(wait=False, cancel_futures=True)

    # ----- report -----
    def report(self):
        failed = []
        for c in self.regulars:
            if c.config_error:
                failed.append("%s: CreateContainerConfigError: %s" % (c.name, c.config_error))
            elif c.state == "pending":
                if self.failure is None and not self.timed_out:
                    failed.append("%s: never started" % c.name)
            elif c.exit_code is None:
                failed.append("%s: did not exit" % c.name)
            elif c.exit_code != 0:
                stopped_ok = c.stopped_by_runner and c.exit_code == 128 + signal.SIGTERM
                if c.stopped_by_runner and c.killed:
                    failed.append("%s: exit code %d: did not stop within the grace period after SIGTERM "
                                  "(killed; a PID 1 without a SIGTERM handler ignores SIGTERM)" % (c.name, c.exit_code))
                elif not stopped_ok:
                    failed.append("%s: exit code %d%s" % (c.name, c.exit_code,
                                                          " (after SIGTERM from the runner)" if c.stopped_by_runner else ""))
        if self.timed_out:
            code = 124
        elif self.failure is not None or failed or self.interrupted:
            code = 1
        else:
            code = 0
        containers = {}
        for c in self.containers:
            containers[c.name] = {
                "type": c.kind,
                "exit_code": c.exit_code,
                "exit_codes": c.exit_history,
                "restarts": c.restarts,
                "attempts": c.attempts,
                "started_at": c.started_at,
                "started_after": None if c.started_mono is None else round(c.started_mono - self.t0, 3),
                "finished_after": None if c.finished_mono is None else round(c.finished_mono - self.t0, 3),
                "startup_passed_after": None if c.startup_passed_after is None else round(c.startup_passed_after, 3),
                "started": bool(c.started),
                "ready": bool(c.ready),
                "ready_after": None if c.ready_after is None else round(c.ready_after, 3),
                "stopped_by_runner": c.stopped_by_runner,
                "config_error": c.config_error,
                "probes": {k: {"runs": p.total, "failures": p.total_failures, "last_output": p.last_output[:500]}
                           for k, p in c.probes.items()},
                "log": c.log_path,
                "log_tail": tail(c.log_path, 30).splitlines() if c.log_path else [],
            }
        rep = {
            "pod": self.pod_name,
            "namespace": self.namespace,
            "uid": self.pod_uid,
            "service_account": self.sa_name,
            "exit_code": code,
            "result": "timeout" if self.timed_out else ("failed" if code else "succeeded"),
            "failure": self.failure,
            "failed_containers": failed,
            "termination_reason": self.term["reason"] if self.term else None,
            "waiting_for": self.waiting,
            "containers": containers,
            "init": [{"name": c.name, "type": c.kind, "exit_code": c.exit_code, "attempts": c.attempts,
                      "restarts": c.restarts} for c in self.inits],
            "services": [{"argv": s["argv"], "exit_code": s["proc"].returncode, "log": s["log"],
                          "log_tail": tail(s["log"], 30).splitlines()} for s in self.services],
            "webhook": self.webhook,
            "pod_identity_agent": self.agent_addresses,
            "issuer": {"iss": self.args.issuer, "public_key": os.path.join(self.workdir, "issuer-public.pem"),
                       "jwks": os.path.join(self.workdir, "issuer-jwks.json")} if self.workdir else None,
            "workdir": self.workdir,
            "kept": bool(self.args.keep or not self.owns_workdir),
            "duration": round(time.monotonic() - self.t0, 3),
            "events": self.events,
        }
        return rep, failed, code


def subpath_source(volume_dir, sub, vname):
    """What a mount with subPath binds, as kubelet's makeMounts gives it
    (pkg/kubelet/kubelet_pods.go): `sub` must be relative without '..'; a
    missing path is made a directory, every missing component created with the
    mode of the volume's root (hu.GetMode + subpather.SafeMakeDir,
    which fchmods after mkdirat, so no umask); symlinks are followed but must stay inside the
    volume (a Secret's `key -> ..data/key` resolves to the file in the current
    `..<timestamp>` directory, which is why a subPath of a Secret never sees an
    update). Returns the resolved path."""
    if os.path.isabs(sub) or ".." in sub.split("/"):
        raise ConfigError("subPath %r must be a relative path without '..'" % sub)
    root = os.path.realpath(volume_dir)

    def inside(path):
        return os.path.commonpath([root, path]) == root

    path = os.path.join(volume_dir, sub)
    if not os.path.lexists(path):
        perm = stat_mode(root)
        cur = root
        for part in [p for p in sub.split("/") if p not in ("", ".")]:
            cur = os.path.join(cur, part)
            if os.path.lexists(cur):
                cur = os.path.realpath(cur)
                if not inside(cur):
                    raise ConfigError("subPath %r escapes volume %s" % (sub, vname))
                continue
            os.mkdir(cur)  # a setgid parent (fsGroup) passes its group on, as in kubelet
            os.chmod(cur, perm)
    real = os.path.realpath(path)
    if not inside(real):
        raise ConfigError("subPath %r escapes volume %s" % (sub, vname))
    return real


def stat_mode(path):
    """The mode SafeMakeDir gives a new directory: the volume root's
    permission, setgid, setuid and sticky bits (doSafeMakeDir fchmods them)."""
    return os.stat(path).st_mode & 0o7777


def tail(path, n):
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        try:
            f.seek(-65536, os.SEEK_END)
        except OSError:
            f.seek(0)
        lines = f.read().decode(errors="replace").splitlines()
    return "\n".join(lines[-n:])


def wait_port(host, port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def http_probe(host, port, path, scheme, headers, timeout):
    import http.client
    import ssl
    if scheme == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
        for h in headers:
            hdrs[h.get("name")] = h.get("value")
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read(1024).decode(errors="replace")
        ok = 200 <= resp.status < 400
        return ok, "HTTP %d %s" % (resp.status, body.strip()[:200])
    except OSError as e:
        return False, "%s:%d: %s" % (host, port, e)
    finally:
        conn.close()


def tcp_probe(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, "%s:%d: %s" % (host, port, e)


def host_bounding_set():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bits = int(line.split()[1], 16)
                return {n for i, n in enumerate(CAP_NAMES) if bits & (1 << i)}
    return set(CAP_NAMES)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="podrunner.py",
        description="Run the pod template of Kubernetes manifests on this machine as kubelet would.")
    p.add_argument("--manifest", action="append", required=True, metavar="FILE",
                   help="manifest file ('-' for stdin); repeatable")
    p.add_argument("--binary", action="append", default=[], metavar="PATH=LOCAL",
                   help="map an absolute path used in containers to a local executable")
    p.add_argument("--image", action="append", default=[], metavar="IMAGE=ENTRYPOINT_JSON",
                   help="an image's ENTRYPOINT as a JSON list (paths mapped through --binary)")
    p.add_argument("--replace-command", action="append", default=[], metavar="CONTAINER=JSON_ARGV",
                   help="replace a container's command and args (argv used as is)")
    p.add_argument("--env", action="append", default=[], metavar="CONTAINER=NAME=VALUE",
                   help="append an env entry to a container")
    p.add_argument("--service", action="append", default=[], metavar="CMD_JSON",
                   help="a process started in the pod's network namespace before any container")
    p.add_argument("--service-wait-port", action="append", type=int, default=[], metavar="PORT",
                   help="wait until 127.0.0.1:PORT accepts inside the pod before starting containers")
    p.add_argument("--eks-webhook", action="store_true",
                   help="mutate the pod as the EKS pod-identity webhook would")
    p.add_argument("--eks-pod-identity", default=None, metavar="FULL_URI",
                   help="simulate the EKS webhook's Pod Identity mutation, with this agent URL "
                        "(takes precedence over --eks-webhook, as the webhook does)")
    p.add_argument("--pod-identity-agent", default=None, metavar="HOST:PORT",
                   help="serve the EKS Pod Identity agent's addresses (%s and [%s], port 80) on the "
                        "pod's lo, relayed to HOST:PORT in the pod (the emulator playing the agent)"
                        % (POD_IDENTITY_AGENT_V4, POD_IDENTITY_AGENT_V6))
    p.add_argument("--eks-webhook-region", default="", metavar="REGION",
                   help="the webhook's --aws-default-region (AWS_REGION/AWS_DEFAULT_REGION)")
    p.add_argument("--eks-webhook-regional-sts", action=argparse.BooleanOptionalAction, default=True,
                   help="the webhook's --sts-regional-endpoint (default: on, as EKS runs it)")
    p.add_argument("--namespace", default=None)
    p.add_argument("--issuer", default=DEFAULT_ISSUER, help="iss of service-account tokens")
    p.add_argument("--token-rotate-every", type=float, default=None, metavar="SECONDS",
                   help="rotate projected tokens this often (default: 80%% of expirationSeconds)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--workdir", default=None, metavar="DIR")
    p.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    p.add_argument("--run-for", type=float, default=None, metavar="SECONDS",
                   help="stop the pod this long after the app containers started")
    p.add_argument("--probe-period-cap", type=float, default=1.0, metavar="SECONDS",
                   help="cap probes' periodSeconds (0: no cap); default 1")
    p.add_argument("--grace-cap", type=float, default=10.0, metavar="SECONDS",
                   help="cap terminationGracePeriodSeconds; default 10")
    p.add_argument("--restart-backoff", type=float, default=1.0, metavar="SECONDS",
                   help="first restart back-off (kubelet: 10s); doubles each restart")
    p.add_argument("--restart-backoff-max", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--init-retries", type=int, default=3, metavar="N",
                   help="retries of a failing init container before the run fails (default 3)")
    p.add_argument("--allowed-unsafe-sysctl", action="append", default=[], metavar="NAME",
                   help="allow a namespaced sysctl outside the safe set (kubelet --allowed-unsafe-sysctls)")
    a = p.parse_args(argv)

    def kv(items, flag):
        out = {}
        for it in items:
            k, sep, v = it.partition("=")
            if not sep or not k:
                p.error("%s %r: expected KEY=VALUE" % (flag, it))
            out[k] = v
        return out

    def json_list(s, flag):
        try:
            v = json.loads(s)
        except json.JSONDecodeError as e:
            p.error("%s: %r is not JSON: %s" % (flag, s, e))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            p.error("%s: %r is not a JSON list of strings" % (flag, s))
        return v

    a.binary = kv(a.binary, "--binary")
    for k, v in a.binary.items():
        if not os.path.isabs(k):
            p.error("--binary %s: the container path must be absolute" % k)
        if not os.access(v, os.X_OK):
            p.error("--binary %s=%s: not an executable file" % (k, v))
    images = {}
    for it in a.image:
        k, sep, v = it.partition("=")
        if not sep:
            p.error("--image %r: expected IMAGE=ENTRYPOINT_JSON" % it)
        images[k] = json_list(v, "--image " + k)
    a.image = images
    a.replace_command = {k: json_list(v, "--replace-command " + k)
                         for k, v in kv(a.replace_command, "--replace-command").items()}
    env = {}
    for it in a.env:
        cname, sep, rest = it.partition("=")
        name, sep2, value = rest.partition("=")
        if not sep or not sep2 or not name:
            p.error("--env %r: expected CONTAINER=NAME=VALUE" % it)
        env.setdefault(cname, []).append((name, value))
    a.env = env
    a.service = [json_list(s, "--service") for s in a.service]
    if any(not s for s in a.service):
        p.error("--service: empty command")
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.stderr.write("podrunner: must run as root (namespaces, mounts, setpriv)\n")
        return 2
    for tool in ("ip", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            sys.stderr.write("podrunner: %s is not installed (util-linux / iproute2)\n" % tool)
            return 2
    runner = Runner(args)
    try:
        runner.load()
    except (ManifestError, ConfigError) as e:
        sys.stderr.write("podrunner: %s\n" % e)
        return 2
    except OSError as e:
        sys.stderr.write("podrunner: %s\n" % e)
        return 2
    except Exception as e:  # noqa: BLE001  (yaml.YAMLError and malformed documents)
        sys.stderr.write("podrunner: cannot read the manifests: %s\n" % e)
        return 2

    def on_signal(signum, _frame):
        runner.interrupted += 1
        progress("received signal %d%s" % (signum, "" if runner.interrupted == 1 else ": killing everything"))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        runner.setup_workdir()
        runner.run()
    except ConfigError as e:
        runner.fail("CreateContainerConfigError: %s" % e)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        runner.fail("runner error: %s" % e)
    finally:
        runner.kill_everything()
    rep, failed, code = runner.report()
    failed_names = {line.split(":", 1)[0] for line in failed}
    for c in runner.containers:
        crashed = runner.timed_out and (c.restarts or c.exit_code not in (None, 0))
        if c.name in failed_names or crashed or (c.kind == "init" and c.exit_code not in (None, 0)):
            if c.log_path:
                sys.stderr.write("---- last log lines of %s (exit %s) ----\n%s\n" % (c.name, c.exit_code, tail(c.log_path, 30)))
    for line in failed:
        sys.stderr.write("podrunner: FAILED %s\n" % line)
    if runner.failure:
        sys.stderr.write("podrunner: %s\n" % runner.failure.splitlines()[0])
    if runner.timed_out:
        sys.stderr.write("podrunner: TIMEOUT after %ss while waiting for %s\n" % (args.timeout, runner.waiting))
    sys.stdout.write(json.dumps(rep, indent=2) + "\n")
    sys.stdout.flush()
    if runner.owns_workdir and not args.keep:
        shutil.rmtree(runner.workdir, ignore_errors=True)
    if runner.timed_out:
        return 124
    return code


class _EventSink(list):
    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def append(self, item):
        kind, container, message = item
        self.runner.event(kind, container, message)


if __name__ == "__main__":
    sys.exit(main())
