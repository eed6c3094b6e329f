"""Tests of podrunner.py itself: small handmade pods whose "images" are
/bin/sh and /usr/bin/python3. Run as root: python3 -m pytest -q tests/podrunner
(or python3 tests/podrunner/test_podrunner.py without pytest)."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "podrunner.py")
sys.path.insert(0, HERE)

import podrunner  # noqa: E402

# Non-root containers cannot reach /root (mode 0700), so the "py" image is the
# system interpreter.
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
IMAGES = ["--image", 'sh=["/bin/sh","-c"]', "--image", 'py=["%s","-c"]' % PY]


def run_pod(manifest, *flags, timeout=60, stdin=None):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(textwrap.dedent(manifest))
        path = f.name
    try:
        argv = [sys.executable, RUNNER, "--manifest", path, *IMAGES, *flags]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(path)
    report = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, report, p.stderr


def log_of(report, name):
    return "\n".join(report["containers"][name]["log_tail"])


def json_line(report, name, marker="RESULT "):
    for line in report["containers"][name]["log_tail"]:
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    raise AssertionError("no %s line in %s's log:\n%s" % (marker.strip(), name, log_of(report, name)))


def indent(code, n=10):
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * n)


# ---------------------------------------------------------------------------


def test_init_order_and_emptydir_sharing():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: order}
        spec:
          terminationGracePeriodSeconds: 1
          initContainers:
          - {name: first, image: sh, args: ["echo first >> /run/prt/shared/order"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          - {name: second, image: sh, args: ["echo second >> /run/prt/shared/order"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          containers:
          - {name: app, image: sh, args: ["echo app >> /run/prt/shared/order; cat /run/prt/shared/order"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          volumes:
          - {name: shared, emptyDir: {}}
        """)
    assert rc == 0, err
    assert rep["containers"]["app"]["log_tail"] == ["first", "second", "app"]
    assert [i["name"] for i in rep["init"]] == ["first", "second"]
    assert rep["containers"]["first"]["finished_after"] <= rep["containers"]["second"]["started_after"]


def test_init_failure_is_retried_then_fails_the_run():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: initfail}
        spec:
          initContainers:
          - {name: broken, image: sh, args: ["echo trying; exit 3"]}
          containers:
          - {name: app, image: sh, args: ["echo never"]}
        """, "--init-retries", "2", "--restart-backoff", "0.1")
    assert rc == 1
    assert rep["containers"]["broken"]["attempts"] == 3
    assert rep["containers"]["broken"]["exit_codes"] == [3, 3, 3]
    assert rep["containers"]["app"]["started_at"] is None
    assert "init container broken failed with exit code 3" in rep["failure"]
    assert "trying" in err  # last log lines echoed


def test_init_failure_with_restart_policy_never_is_not_retried():
    rc, rep, _ = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: initnever}
        spec:
          restartPolicy: Never
          initContainers:
          - {name: broken, image: sh, args: ["exit 5"]}
          containers:
          - {name: app, image: sh, args: ["true"]}
        """)
    assert rc == 1
    assert rep["containers"]["broken"]["attempts"] == 1


def test_native_sidecar_gates_the_app_until_its_startup_probe_passes():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: gate}
        spec:
          terminationGracePeriodSeconds: 2
          initContainers:
          - name: side
            image: py
            restartPolicy: Always
            args:
            - |
              import os, signal, sys, time
              signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
              time.sleep(1.5)
              open("/run/prt/shared/ready", "w").close()
              while True: time.sleep(1)
            startupProbe:
              exec: {command: ["/bin/test", "-f", "/run/prt/shared/ready"]}
              periodSeconds: 1
              failureThreshold: 30
            volumeMounts: [{name: shared, mountPath: /run/prt/shared}]
          - {name: after-side, image: sh, args: ["test -f /run/prt/shared/ready && echo saw-ready"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          containers:
          - {name: app, image: sh, args: ["test -f /run/prt/shared/ready && echo app-saw-ready"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          volumes:
          - {name: shared, emptyDir: {}}
        """)
    assert rc == 0, err
    side = rep["containers"]["side"]
    assert side["startup_passed_after"] >= 1.4
    assert rep["containers"]["after-side"]["log_tail"] == ["saw-ready"]
    assert rep["containers"]["app"]["log_tail"] == ["app-saw-ready"]
    assert rep["containers"]["app"]["started_after"] >= side["started_after"] + side["startup_passed_after"]
    # stopped after the app, by SIGTERM, which its handler turned into exit 0
    assert side["stopped_by_runner"] and side["exit_code"] == 0


def test_sidecar_without_startup_probe_only_needs_to_be_running():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: nogate}
        spec:
          terminationGracePeriodSeconds: 1
          shareProcessNamespace: true
          initContainers:
          - {name: side, image: sh, restartPolicy: Always, args: ["sleep 3; touch /run/prt/shared/late; sleep 100"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          containers:
          - {name: app, image: sh, args: ["test -f /run/prt/shared/late && echo late || echo early"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          volumes:
          - {name: shared, emptyDir: {}}
        """)
    assert rc == 0, err
    assert rep["containers"]["app"]["log_tail"] == ["early"]


def test_post_start_hook_holds_back_the_next_container():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: poststart}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: first
            image: sh
            args: ["trap 'exit 0' TERM; while :; do sleep 0.1; done"]
            lifecycle:
              postStart:
                exec: {command: ["/bin/sh", "-c", "sleep 1; echo hooked > /run/prt/shared/hook"]}
            volumeMounts: [{name: shared, mountPath: /run/prt/shared}]
          - {name: second, image: sh, args: ["cat /run/prt/shared/hook"], volumeMounts: [{name: shared, mountPath: /run/prt/shared}]}
          volumes:
          - {name: shared, emptyDir: {}}
        """, "--replace-command", 'second=["/bin/sh","-c","cat /run/prt/shared/hook"]')
    assert rc == 0, err
    assert rep["containers"]["second"]["log_tail"] == ["hooked"]
    assert rep["containers"]["first"]["stopped_by_runner"]


ENV_POD = """
    apiVersion: v1
    kind: Secret
    metadata: {name: creds}
    data: {password: %s}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {MODE: from-configmap, LEVEL: debug, SHARED: from-envfrom}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: envdemo, namespace: team-a}
    spec:
      template:
        metadata: {labels: {app: envdemo}}
        spec:
          serviceAccountName: envsa
          containers:
          - name: app
            image: py
            envFrom:
            - configMapRef: {name: settings}
            - configMapRef: {name: settings}
              prefix: CM_
            env:
            - {name: SHARED, value: from-env}
            - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
            - {name: MAYBE, valueFrom: {secretKeyRef: {name: absent, key: k, optional: true}}}
            - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
            - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
            - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
            - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
            - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
            - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
            - {name: LABEL, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
            - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
            - {name: EARLY, value: "$(LATE)"}
            - {name: LATE, value: late}
            - {name: COMBINED, value: "$(POD_NAME)/$(MODE)/$(LATE)"}
            - {name: ESCAPED, value: "$$(LATE) $$ $(UNDEFINED) $x"}
            resources: {limits: {memory: 64Mi}}
            args:
            - |
              import json, os, sys
              print("RESULT " + json.dumps({"env": dict(os.environ), "argv": sys.argv[1:]}))
            - "$(LATE)"
            - "$$(LATE)"
            - "$(NOPE)"
"""


def test_environment_sources_order_and_expansion():
    rc, rep, err = run_pod(ENV_POD % base64.b64encode(b"hunter2").decode(), "--env", "app=EXTRA=$(LATE)-x")
    assert rc == 0, err
    r = json_line(rep, "app")
    env = r["env"]
    assert rep["pod"].startswith("envdemo-") and rep["namespace"] == "team-a"
    assert env["MODE"] == "from-configmap" and env["CM_LEVEL"] == "debug"
    assert env["SHARED"] == "from-env"  # env wins over envFrom
    assert env["PASSWORD"] == "hunter2"
    assert "MAYBE" not in env
    assert env["POD_NAME"] == rep["pod"] and env["POD_NS"] == "team-a" and env["POD_UID"] == rep["uid"]
    assert env["POD_IP"] == "192.0.2.10" and env["HOST_IP"] == "192.0.2.1"
    assert env["NODE"] == "podrunner-node" and env["SA"] == "envsa" and env["LABEL"] == "envdemo"
    assert env["MEM"] == "64"
    assert env["EARLY"] == "$(LATE)"  # only earlier names expand
    assert env["COMBINED"] == "%s/from-configmap/late" % rep["pod"]
    assert env["ESCAPED"] == "$(LATE) $ $(UNDEFINED) $x"
    assert env["EXTRA"] == "late-x"
    assert env["HOSTNAME"] == rep["pod"] and env["KUBERNETES_SERVICE_HOST"]
    assert r["argv"] == ["late", "$(LATE)", "$(NOPE)"]


def test_missing_secret_is_a_container_config_error():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: nosecret}
        spec:
          containers:
          - name: app
            image: sh
            args: ["echo should-not-run"]
            env:
            - {name: X, valueFrom: {secretKeyRef: {name: missing, key: k}}}
        """)
    assert rc == 1
    assert rep["containers"]["app"]["config_error"] == 'secret "missing" not found'
    assert "CreateContainerConfigError" in err
    assert rep["containers"]["app"]["started_at"] is None


SECRET_VOLUME_CHECK = """
    import json, os, stat
    d = "/run/prt/creds"
    out = {"listing": sorted(os.listdir(d)), "data_link": os.readlink(d + "/..data"),
           "user_link": os.readlink(d + "/user"), "nested_link": os.readlink(d + "/sub"),
           "user": open(d + "/user").read(), "nested": open(d + "/sub/pw").read(),
           "user_mode": oct(stat.S_IMODE(os.stat(d + "/user").st_mode)),
           "pw_mode": oct(stat.S_IMODE(os.stat(d + "/sub/pw").st_mode))}
    try:
        open(d + "/new", "w")
        out["write"] = "ok"
    except OSError as e:
        out["write"] = e.strerror
    print("RESULT " + json.dumps(out))
"""


def test_secret_volume_has_the_atomic_writer_layout():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Secret
        metadata: {name: creds}
        stringData: {user: alice, password: s3cret, unused: x}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: secvol}
        spec:
          containers:
          - name: app
            image: py
            args:
            - |
%s
            volumeMounts: [{name: creds, mountPath: /run/prt/creds}]
          volumes:
          - name: creds
            secret:
              secretName: creds
              defaultMode: 0440
              items:
              - {key: user, path: user}
              - {key: password, path: sub/pw, mode: 0400}
        """ % indent(SECRET_VOLUME_CHECK, 14))
    assert rc == 0, err
    r = json_line(rep, "app")
    ts = r["data_link"]
    assert ts.startswith("..") and len(ts) > 20
    assert r["listing"] == sorted(["..data", ts, "user", "sub"])
    assert r["user_link"] == "..data/user" and r["nested_link"] == "..data/sub"
    assert r["user"] == "alice" and r["nested"] == "s3cret"
    assert r["user_mode"] == "0o440" and r["pw_mode"] == "0o400"
    assert r["write"] == "Read-only file system"


TOKEN_CHECK = """
    import json, os, stat, time
    d = "/var/run/secrets/tokens"
    first = open(d + "/token").read()
    link1 = os.readlink(d + "/..data")
    st = os.stat(d + "/token")
    time.sleep(2.6)
    second = open(d + "/token").read()
    link2 = os.readlink(d + "/..data")
    print("RESULT " + json.dumps({"first": first, "second": second, "link1": link1, "link2": link2,
          "listing": sorted(os.listdir(d)), "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
          "gid": st.st_gid}))
"""


def verify_jwt(token, pem_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    head, payload, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    key = serialization.load_pem_public_key(open(pem_path, "rb").read())
    key.verify(base64.urlsafe_b64decode(pad(sig)), (head + "." + payload).encode(),
               padding.PKCS1v15(), hashes.SHA256())
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def test_projected_token_is_signed_and_rotated_with_a_data_swap():
    with tempfile.TemporaryDirectory() as wd:
        rc, rep, err = run_pod("""
            apiVersion: v1
            kind: Pod
            metadata: {name: tokens, namespace: ns1}
            spec:
              serviceAccountName: robot
              containers:
              - name: app
                image: py
                args:
                - |
%s
                volumeMounts: [{name: tok, mountPath: /var/run/secrets/tokens, readOnly: true}]
              volumes:
              - name: tok
                projected:
                  sources:
                  - serviceAccountToken: {audience: sts.amazonaws.com, expirationSeconds: 3600, path: token}
            """ % indent(TOKEN_CHECK, 18), "--token-rotate-every", "1", "--workdir", wd)
        assert rc == 0, err
        r = json_line(rep, "app")
        assert r["first"] != r["second"]
        assert r["link1"] != r["link2"]
        assert r["listing"] == sorted(["..data", r["link2"], "token"])  # old directory removed
        assert r["mode"] == "0o644" and r["uid"] == 0  # no runAsUser/fsGroup: defaultMode, root
        header, claims = verify_jwt(r["second"], os.path.join(wd, "issuer-public.pem"))
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == "https://oidc.podrunner.local"
    assert claims["sub"] == "system:serviceaccount:ns1:robot"
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    k8s = claims["kubernetes.io"]
    assert k8s["namespace"] == "ns1" and k8s["pod"] == {"name": "tokens", "uid": rep["uid"]}
    assert k8s["serviceaccount"]["name"] == "robot"
    assert any(e["type"] == "TokenRotated" for e in rep["events"])


def test_token_mode_and_owner_follow_run_as_user_and_fs_group():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: tokmode}
        spec:
          securityContext: {runAsUser: 4242, runAsGroup: 4242, fsGroup: 3000}
          containers:
          - name: app
            image: sh
            args: ["stat -L -c '%a %u %g' /run/prt/tok/token; id -G"]
            volumeMounts: [{name: tok, mountPath: /run/prt/tok}]
          volumes:
          - name: tok
            projected:
              sources:
              - serviceAccountToken: {path: token, expirationSeconds: 600}
        """)
    assert rc == 0, err
    # projected.go: 0600 owned by the pod's one runAsUser; fsGroup adds group read
    assert rep["containers"]["app"]["log_tail"][0] == "640 4242 3000"
    assert "3000" in rep["containers"]["app"]["log_tail"][1].split()


def test_run_as_user_cannot_read_a_root_0600_file_and_caps_are_not_ambient():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: users}
        spec:
          initContainers:
          - name: setup
            image: sh
            args: ["echo secret > /run/prt/shared/private; chmod 600 /run/prt/shared/private; echo open > /run/prt/shared/public; grep CapEff /proc/self/status"]
            securityContext: {capabilities: {drop: [ALL], add: [CHOWN, NET_ADMIN]}}
            volumeMounts: [{name: shared, mountPath: /run/prt/shared}]
          containers:
          - name: app
            image: sh
            args: ["id -u; cat /run/prt/shared/public; cat /run/prt/shared/private || echo denied; grep -E 'Cap(Eff|Bnd)|NoNewPrivs' /proc/self/status"]
            securityContext:
              runAsUser: 65532
              runAsGroup: 65532
              allowPrivilegeEscalation: false
              capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
            volumeMounts: [{name: shared, mountPath: /run/prt/shared}]
          volumes:
          - {name: shared, emptyDir: {}}
        """)
    assert rc == 0, err
    setup = log_of(rep, "setup")
    # root keeps exactly its bounding set: CHOWN (bit 0) and NET_ADMIN (bit 12)
    assert "CapEff:\t0000000000001001" in setup
    lines = rep["containers"]["app"]["log_tail"]
    assert lines[0] == "65532" and lines[1] == "open"
    assert "Permission denied" in log_of(rep, "app") and "denied" in lines
    status = log_of(rep, "app")
    assert "CapEff:\t0000000000000000" in status  # no ambient caps: NET_BIND_SERVICE not effective
    assert "CapBnd:\t0000000000000400" in status  # but in the bounding set
    assert "NoNewPrivs:\t1" in status


def test_net_admin_works_for_root_only_and_addresses_are_shared_by_the_pod():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: netadmin}
        spec:
          initContainers:
          - name: add-address
            image: sh
            args: ["ip addr add 169.254.170.2/32 dev lo && echo added"]
            securityContext: {runAsUser: 0, capabilities: {drop: [ALL], add: [NET_ADMIN]}}
          containers:
          - name: app
            image: sh
            args: ["ip addr add 169.254.170.3/32 dev lo 2>&1 || true; ip -o -4 addr show dev lo | awk '{print $4}'"]
            securityContext: {runAsUser: 65532, capabilities: {drop: [ALL], add: [NET_ADMIN]}}
        """)
    assert rc == 0, err
    assert rep["containers"]["add-address"]["log_tail"] == ["added"]
    lines = rep["containers"]["app"]["log_tail"]
    assert "Operation not permitted" in lines[0]  # non-root: NET_ADMIN only in the bounding set
    assert lines[1:] == ["127.0.0.1/8", "192.0.2.10/32", "169.254.170.2/32"]
    assert "169.254.170.2" not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


def test_run_as_non_root_with_root_is_a_config_error():
    rc, rep, _ = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: nonroot}
        spec:
          containers:
          - {name: app, image: sh, args: ["true"], securityContext: {runAsNonRoot: true}}
        """)
    assert rc == 1
    assert "runAsNonRoot" in rep["containers"]["app"]["config_error"]


BIND80 = """
    import json, os, socket
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", 80))
        r = "bound"
    except OSError as e:
        r = e.strerror
    print("RESULT " + json.dumps({"uid": os.getuid(), "bind": r,
          "start": open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip()}))
"""


def _port_pod(sysctls):
    return """
        apiVersion: v1
        kind: Pod
        metadata: {name: port80}
        spec:
          securityContext:
            runAsUser: 65532
            sysctls: %s
          containers:
          - name: app
            image: py
            args:
            - |
%s
            securityContext: {capabilities: {drop: [ALL]}, allowPrivilegeEscalation: false}
        """ % (sysctls, indent(BIND80, 14))


def test_unprivileged_port_sysctl_applies_to_the_pod_only():
    host_before = open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read()
    rc, rep, err = run_pod(_port_pod('[{name: net.ipv4.ip_unprivileged_port_start, value: "80"}]'))
    assert rc == 0, err
    assert json_line(rep, "app") == {"uid": 65532, "bind": "bound", "start": "80"}
    rc, rep, err = run_pod(_port_pod("[]"))
    assert rc == 0, err
    assert json_line(rep, "app")["bind"] == "Permission denied"
    assert open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read() == host_before


def test_unsafe_and_node_level_sysctls_are_refused():
    rc, _, err = run_pod(_port_pod('[{name: vm.swappiness, value: "10"}]'))
    assert rc == 2 and "vm.swappiness is not namespaced" in err
    rc, _, err = run_pod(_port_pod('[{name: net.core.somaxconn, value: "1024"}]'))
    assert rc == 2 and "--allowed-unsafe-sysctl" in err


NET_CHECK = """
    import json, socket, subprocess
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("198.51.100.7", 80))
        r = "connected"
    except OSError as e:
        r = e.strerror
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    print("RESULT " + json.dumps({"connect": r, "links": [l.split(":")[1].strip() for l in links.splitlines()],
          "routes": routes}))
"""


def test_the_pod_has_no_route_out():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: isolated}
        spec:
          containers:
          - name: app
            image: py
            args:
            - |
%s
        """ % indent(NET_CHECK, 14))
    assert rc == 0, err
    r = json_line(rep, "app")
    assert r["connect"] == "Network is unreachable"
    assert r["links"] == ["lo"] and r["routes"] == ""


SERVE = ("import http.server, signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
         "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()")


def test_http_and_tcp_probes_reach_the_pod_ip_not_loopback():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: probes}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: all
            image: py
            args: ["%(serve)s", "0.0.0.0", "8080"]
            ports: [{name: web, containerPort: 8080}]
            readinessProbe: {httpGet: {path: /, port: web}, periodSeconds: 1}
            livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
          - name: loopback
            image: py
            args: ["%(serve)s", "127.0.0.1", "8081"]
            readinessProbe: {httpGet: {path: /, port: 8081}, periodSeconds: 1}
        """ % {"serve": SERVE}, "--run-for", "2.5")
    assert rc == 0, err
    # (the first tries may come before the server listens, as on a node)
    assert rep["containers"]["all"]["ready_after"] is not None
    assert rep["containers"]["all"]["restarts"] == 0
    lo = rep["containers"]["loopback"]
    assert lo["ready_after"] is None and lo["probes"]["readiness"]["runs"] >= 2
    assert "192.0.2.10:8081" in lo["probes"]["readiness"]["last_output"]


AGENT = ("import http.server, sys\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        body = ('agent saw Host %s' % self.headers.get('Host')).encode()\n"
         "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
         "        self.end_headers(); self.wfile.write(body)\n"
         "http.server.HTTPServer(('127.0.0.1', 18099), H).serve_forever()\n")

AGENT_CHECK = """
import json, urllib.request
out = {}
for url in ("http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials"):
    try:
        out[url] = urllib.request.urlopen(url, timeout=5).read().decode()
    except Exception as e:
        out[url] = "error: %s" % e
print("RESULT " + json.dumps(out), flush=True)
"""


def test_the_pod_identity_agent_answers_at_its_real_addresses_inside_the_pod():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: agent}
        spec:
          restartPolicy: Never
          containers:
          - name: app
            image: py
            args:
            - |
%s
        """ % indent(AGENT_CHECK, 14),
        "--service", json.dumps([PY, "-c", AGENT]), "--service-wait-port", "18099",
        "--pod-identity-agent", "127.0.0.1:18099")
    assert rc == 0, err
    r = json_line(rep, "app")
    assert r["http://169.254.170.23/v1/credentials"] == "agent saw Host 169.254.170.23", r
    v6 = r["http://[fd00:ec2::23]/v1/credentials"]
    if "[fd00:ec2::23]:80" in rep["pod_identity_agent"]:
        assert v6 == "agent saw Host [fd00:ec2::23]", r
    assert "169.254.170.23:80" in rep["pod_identity_agent"]
    assert any(e["type"] == "PodIdentityAgent" and "no route out" in e["message"] for e in rep["events"])


def test_host_network_pods_are_refused():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: hostnet}
        spec:
          hostNetwork: true
          containers: [{name: app, image: sh, args: ["true"]}]
        """)
    assert rc == 2 and rep is None
    assert "hostNetwork" in err


EKS_POD = """
    apiVersion: v1
    kind: ServiceAccount
    metadata:
      name: s3-reader
      annotations:
        eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/s3-reader
        eks.amazonaws.com/token-expiration: "3600"
    ---
    apiVersion: v1
    kind: Pod
    metadata:
      name: webhooked
      annotations:
        eks.amazonaws.com/skip-containers: "skipped,skipped-init"
    spec:
      serviceAccountName: s3-reader
      initContainers:
      - {name: init, image: py, args: ["%(code)s"]}
      - {name: skipped-init, image: py, args: ["%(code)s"]}
      containers:
      - {name: plain, image: py, args: ["%(code)s"]}
      - name: preset
        image: py
        args: ["%(code)s"]
        env: [{name: AWS_ROLE_ARN, value: arn:aws:iam::111122223333:role/other}]
      - {name: skipped, image: py, args: ["%(code)s"]}
"""
EKS_CODE = ("import json,os; p='/var/run/secrets/eks.amazonaws.com/serviceaccount/token'; "
            "print('RESULT '+json.dumps({'env': {k: v for k, v in os.environ.items() if k.startswith('AWS_')}, "
            "'token': open(p).read() if os.path.exists(p) else None}))")


def test_eks_webhook_mutation_and_skip_containers():
    with tempfile.TemporaryDirectory() as wd:
        rc, rep, err = run_pod(EKS_POD % {"code": EKS_CODE}, "--eks-webhook", "--eks-webhook-region", "eu-west-1",
                               "--workdir", wd)
        assert rc == 0, err
        pem = os.path.join(wd, "issuer-public.pem")
        plain = json_line(rep, "plain")
        assert plain["env"] == {
            "AWS_STS_REGIONAL_ENDPOINTS": "regional", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
            "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/s3-reader",
            "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
        _, claims = verify_jwt(plain["token"], pem)
    assert claims["aud"] == ["sts.amazonaws.com"] and claims["exp"] - claims["iat"] == 3600
    assert claims["sub"] == "system:serviceaccount:default:s3-reader"
    assert json_line(rep, "init")["env"] == plain["env"]  # init containers are mutated too
    preset = json_line(rep, "preset")
    # a container with either web-identity variable keeps its own and gets neither,
    # but still gets the region variables and the token mount
    assert preset["env"]["AWS_ROLE_ARN"] == "arn:aws:iam::111122223333:role/other"
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" not in preset["env"]
    assert preset["env"]["AWS_REGION"] == "eu-west-1" and preset["token"]
    for name in ("skipped", "skipped-init"):  # skip-containers applies to init containers too
        assert json_line(rep, name) == {"env": {}, "token": None}
    assert rep["webhook"]["mutated"] and rep["webhook"]["expiration_seconds"] == 3600


def test_eks_webhook_unit_rules():
    events = []
    sa = {"s": {"metadata": {"name": "s", "annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/r",
        "eks.amazonaws.com/audience": "custom-aud",
        "eks.amazonaws.com/sts-regional-endpoints": "false",
        "eks.amazonaws.com/token-expiration": "100"}}}}
    spec = {"serviceAccountName": "s",
            "containers": [{"name": "a", "env": [{"name": "AWS_REGION", "value": "x"},
                                                  {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "legacy"},
                                                  {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"}]},
                           {"name": "b", "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/elsewhere"}]}],
            "volumes": [{"name": "other", "emptyDir": {}}]}
    podrunner.eks_webhook_mutate({}, spec, "default", sa, "", True, events)
    a, b = spec["containers"]
    # everything already set: container left exactly as it was (no mount added)
    assert "volumeMounts" not in a and len(a["env"]) == 3
    # SA annotation turns regional STS off; existing mount by name is kept
    assert [e["name"] for e in b["env"]] == ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    assert b["volumeMounts"] == [{"name": "aws-iam-token", "mountPath": "/elsewhere"}]
    # the volume goes first; expiration below 600 is raised to 600
    assert spec["volumes"][0] == {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "custom-aud", "expirationSeconds": 600, "path": "token"}}]}}
    # an existing aws-iam-token volume is not patched; SA without role: no mutation
    spec2 = {"containers": [{"name": "c"}], "volumes": [{"name": "aws-iam-token", "emptyDir": {}}]}
    podrunner.eks_webhook_mutate({}, spec2, "default", {"default": {"metadata": {"name": "default"}}}, "", True, events)
    assert spec2 == {"containers": [{"name": "c"}], "volumes": [{"name": "aws-iam-token", "emptyDir": {}}]}


def test_eks_pod_identity_unit_rules():
    events = []
    meta = {"annotations": {"eks.amazonaws.com/skip-containers": "app"}}
    spec = {"initContainers": [{"name": "irsa-proxy", "env": [{"name": "X", "value": "1"}]}],
            "containers": [{"name": "app"},
                           {"name": "mine", "env": [
                               {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://127.0.0.1:1/"}]}]}
    out = podrunner.eks_pod_identity_mutate(meta, spec, "http://169.254.170.23/v1/credentials",
                                            "eu-west-1", True, events)
    sidecar = spec["initContainers"][0]
    app, mine = spec["containers"]
    # skip-containers applies in this mode too: the app is left alone
    assert app == {"name": "app"} and out["skipped"] == ["app"]
    # the sidecar gets the agent, the token file, region, regional STS and the mount
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://169.254.170.23/v1/credentials"
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == \
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
    assert env["AWS_REGION"] == "eu-west-1" and env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert sidecar["volumeMounts"] == [{"name": "eks-pod-identity-token", "readOnly": True,
                                        "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]
    # one of the pair already set: neither is added, the mount is
    names = [e["name"] for e in mine["env"]]
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" not in names
    assert mine["volumeMounts"][0]["name"] == "eks-pod-identity-token"
    assert spec["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "pods.eks.amazonaws.com", "expirationSeconds": 86400, "path": "eks-pod-identity-token"}
    assert meta["labels"] == {"eks.amazonaws.com/pod-identity": "enabled"}


def test_expansion_rules():
    look = {"A": "1", "B": "2"}.get
    assert podrunner.expand("$(A)-$(B)", look) == "1-2"
    assert podrunner.expand("$$(A)", look) == "$(A)"
    assert podrunner.expand("$(C)", look) == "$(C)"
    assert podrunner.expand("$(A", look) == "$(A"
    assert podrunner.expand("a$", look) == "a$"
    assert podrunner.expand("$x$$", look) == "$x$"


def test_liveness_failure_restarts_the_container():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: live}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: app
            image: py
            args: ["import time, signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(100)"]
            livenessProbe:
              exec: {command: ["/bin/false"]}
              periodSeconds: 1
              failureThreshold: 2
        """, "--run-for", "3", "--restart-backoff", "5")
    # The liveness kill comes at about 1.3 s; the restart waits 5 s, so the pod
    # stops while the container is in back-off, never in the instant a fresh
    # PID 1 has yet to install its SIGTERM handler (which ignores SIGTERM).
    assert rc == 0, err
    app = rep["containers"]["app"]
    assert app["restarts"] == 1
    assert any(e["type"] == "Unhealthy" for e in rep["events"])


def test_timeout_kills_everything_and_exits_124():
    rc, rep, _ = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: forever}
        spec:
          containers: [{name: app, image: sh, args: ["sleep 100"]}]
        """, "--timeout", "2")
    assert rc == 124 and rep["result"] == "timeout"
    assert rep["waiting_for"] == "app containers to exit: app"


def test_a_failing_app_fails_the_run_and_names_it():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: appfail}
        spec:
          containers:
          - {name: good, image: sh, args: ["true"]}
          - {name: bad, image: sh, args: ["echo oops; exit 7"]}
        """)
    assert rc == 1
    assert rep["failed_containers"] == ["bad: exit code 7"]
    assert "FAILED bad: exit code 7" in err and "oops" in err


# What a container sees of the pod: A and B each mount their own sub-directory
# of one emptyDir (created by the runner, as kubelet does, before "writer"
# fills them) and a Secret key by subPath; each tries to reach the other's.
SUBPATH_CHECK = """
    import json, os, stat, time
    me, other, workdir = os.environ["ME"], os.environ["OTHER"], os.environ["WORKDIR"]
    out = {"listing": sorted(os.listdir("/run/prt/mine")),
           "mine": open("/run/prt/mine/token").read(),
           "secret": open("/run/prt/key").read(),
           "env_other": os.environ.get("TOKEN_" + other.upper())}
    def reach(path):
        try:
            return open(path).read()
        except OSError as e:
            return e.strerror
    out["other_by_name"] = reach("/run/prt/" + other + "/token")
    out["other_by_workdir"] = reach(workdir + "/volumes/shared/roles/" + other + "/token")
    out["workdir"] = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    environs = []
    for p in out["pids"]:
        try:
            environs.append(open("/proc/%d/environ" % p, "rb").read())
        except OSError:
            pass
    out["other_env_seen"] = any(("ME=" + other).encode() in e for e in environs)
    out["write"] = "ok"
    try:
        open("/run/prt/mine/x", "w")
    except OSError as e:
        out["write"] = e.strerror
    print("RESULT " + json.dumps(out))
"""


def _subpath_pod(share):
    return """
        apiVersion: v1
        kind: Secret
        metadata: {name: keys}
        stringData: {a: key-of-a, b: key-of-b}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: subpaths}
        spec:
          shareProcessNamespace: %s
          initContainers:
          - name: writer
            image: sh
            args: ["mkdir -p /run/prt/all/roles/a /run/prt/all/roles/b; echo -n token-of-a > /run/prt/all/roles/a/token; echo -n token-of-b > /run/prt/all/roles/b/token"]
            volumeMounts: [{name: shared, mountPath: /run/prt/all}]
          containers:
          - name: a
            image: py
            args:
            - |
%s
            env:
            - {name: ME, value: a}
            - {name: OTHER, value: b}
            - {name: TOKEN_A, valueFrom: {secretKeyRef: {name: keys, key: a}}}
            securityContext: {runAsUser: 1001}
            volumeMounts:
            - {name: shared, mountPath: /run/prt/mine, subPath: roles/a, readOnly: true}
            - {name: keys, mountPath: /run/prt/key, subPath: a}
          - name: b
            image: py
            args:
            - |
%s
            env:
            - {name: ME, value: b}
            - {name: OTHER, value: a}
            - {name: TOKEN_B, valueFrom: {secretKeyRef: {name: keys, key: b}}}
            securityContext: {runAsUser: 1002}
            volumeMounts:
            - {name: shared, mountPath: /run/prt/mine, subPath: roles/b, readOnly: true}
            - {name: keys, mountPath: /run/prt/key, subPath: b}
          volumes:
          - {name: shared, emptyDir: {medium: Memory}}
          - {name: keys, secret: {secretName: keys}}
        """ % ("true" if share else "false", indent(SUBPATH_CHECK, 14), indent(SUBPATH_CHECK, 14))


def test_subpath_gives_each_container_only_its_own_directory_and_key():
    work = tempfile.mkdtemp(prefix="prt-subpath-")
    try:
        rc, rep, err = run_pod(_subpath_pod(False), "--workdir", work,
                               "--env", "a=WORKDIR=" + work, "--env", "b=WORKDIR=" + work)
        assert rc == 0, err
        a, b = json_line(rep, "a"), json_line(rep, "b")
        assert a["listing"] == ["token"] and a["mine"] == "token-of-a"
        assert b["listing"] == ["token"] and b["mine"] == "token-of-b"
        assert a["secret"] == "key-of-a" and b["secret"] == "key-of-b"
        assert a["env_other"] is None and b["env_other"] is None
        for r in (a, b):
            assert r["other_by_name"] == "No such file or directory"
            assert r["other_by_workdir"] == "No such file or directory"
            assert r["workdir"] == []
            assert r["pids"] == [1]
            assert r["other_env_seen"] is False
            assert r["write"] == "Read-only file system"
    finally:
        subprocess.run(["rm", "-rf", work])


def test_subpath_directories_are_made_with_the_volume_root_mode():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Secret
        metadata: {name: keys}
        stringData: {k: v}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: subpathmode}
        spec:
          securityContext: {fsGroup: 2000}
          containers:
          - name: app
            image: sh
            args: ["stat -c '%a %u %g' /run/prt/deep /run/prt/all/x /run/prt/all/x/y /run/prt/sec; ls -A /run/prt/seckeys | tr '\\n' ' '; echo; touch /run/prt/deep/f && echo writable"]
            securityContext: {runAsUser: 1001}
            volumeMounts:
            - {name: shared, mountPath: /run/prt/deep, subPath: x/y}
            - {name: shared, mountPath: /run/prt/all}
            - {name: keys, mountPath: /run/prt/sec, subPath: newdir}
            - {name: keys, mountPath: /run/prt/seckeys}
          volumes:
          - {name: shared, emptyDir: {}}
          - {name: keys, secret: {secretName: keys}}
        """)
    assert rc == 0, err
    lines = rep["containers"]["app"]["log_tail"]
    # Every new directory takes the mode of the volume's root, setgid and
    # sticky bits included: emptyDir 0777 + setgid (fsGroup) gives 2777, the
    # Secret volume's root (a tmpfs, 01777, + setgid) 3777; the group is the
    # fsGroup, passed down by the setgid parent.
    assert lines[0:4] == ["2777 0 2000", "2777 0 2000", "2777 0 2000", "3777 0 2000"], lines
    assert lines[4].split()[1:] == ["..data", "k", "newdir"], lines
    assert lines[5] == "writable"


def test_subpath_escaping_the_volume_is_a_config_error():
    rc, rep, err = run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: escape}
        spec:
          containers:
          - name: app
            image: sh
            args: ["true"]
            volumeMounts: [{name: shared, mountPath: /run/prt/x, subPath: ../../etc}]
          volumes:
          - {name: shared, emptyDir: {}}
        """)
    assert rc == 1
    assert "subPath '../../etc' must be a relative path without '..'" in rep["containers"]["app"]["config_error"]


def test_shared_process_namespace_shows_the_pod_not_the_host():
    work = tempfile.mkdtemp(prefix="prt-subpath-")
    try:
        rc, rep, err = run_pod(_subpath_pod(True), "--workdir", work,
                               "--env", "a=WORKDIR=" + work, "--env", "b=WORKDIR=" + work)
        assert rc == 0, err
        a = json_line(rep, "a")
        # The pod's PID namespace: its pause process is 1, and not the runner's
        # processes; the other container's environ is not readable across users.
        assert 1 in a["pids"] and len(a["pids"]) < 20, a["pids"]
        assert a["other_env_seen"] is False
        assert a["workdir"] == []
    finally:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    failed = 0
    names = [n for n in sorted(globals()) if n.startswith("test_")]
    for n in names:
        try:
            globals()[n]()
            print("ok", n)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL", n, repr(e))
    print("%d passed, %d failed" % (len(names) - failed, failed))
    sys.exit(1 if failed else 0)
