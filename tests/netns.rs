//! `irsa_proxy::sidecar::netns` against the real kernel, inside network namespaces that this
//! test creates, never the machine's own: on a cloud VM 169.254.169.254 is the
//! real metadata service.
//!
//! Each test re-executes this test binary under `unshare --net`, with [`CHILD`]
//! naming what the copy does. The copy first checks that it really is in a new
//! namespace (its `/proc/self/ns/net` differs from the parent's) with no route
//! out, and only then adds addresses, binds and connects. Creating a namespace
//! needs root, so these tests fail (rather than skip) when not run as root: CI
//! runs as root.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use irsa_proxy::sidecar::addresses::{ECS_ADDR, IMDS_V4, IMDS_V6};
use irsa_proxy::sidecar::netns::{add_to_loopback, is_on_loopback, routes_out, NetnsError};
use irsa_proxy::sidecar::port_redirect::{redirect_port_80, redirect_rules};

/// Set in the re-executed copy: which child body to run.
const CHILD: &str = "IRSA_PROXY_TEST_NETNS_CHILD";
/// Set in the re-executed copy: the inode of the parent's network namespace.
const PARENT_NETNS: &str = "IRSA_PROXY_TEST_NETNS_PARENT";
/// What a child prints last, so the parent knows its body ran to the end.
const DONE: &str = "netns-child-done:";

// ---------------------------------------------------------------------------
// The tests

/// Adds the credential addresses to `lo`, twice, then binds and connects to them.
#[test]
fn credential_addresses_on_loopback() {
    in_new_netns(
        "loopback",
        "credential_addresses_on_loopback",
        child_loopback,
    );
}

/// A route through another interface shows up in `routes_out`.
#[test]
fn routes_out_reports_a_route_that_leaves() {
    in_new_netns(
        "route-out",
        "routes_out_reports_a_route_that_leaves",
        child_route_out,
    );
}

/// Adding the IPv6 address where IPv6 is off is an error naming the cause.
#[test]
fn ipv6_disabled_is_a_clear_error() {
    in_new_netns(
        "ipv6-off",
        "ipv6_disabled_is_a_clear_error",
        child_ipv6_disabled,
    );
}

/// Without CAP_NET_ADMIN: reading works, a no-op add works, a real add is refused
/// with the NET_ADMIN message, and the addresses can be bound by a non-root user.
#[test]
fn without_net_admin() {
    in_new_netns("unprivileged", "without_net_admin", child_unprivileged);
}

/// The nftables redirect: port 80 of each address reaches a listener on
/// another port of the same address while an app holds `0.0.0.0:80`;
/// installing it twice leaves one rule per address.
#[test]
fn port_80_redirect_leaves_port_80_to_the_app() {
    in_new_netns(
        "redirect",
        "port_80_redirect_leaves_port_80_to_the_app",
        child_redirect,
    );
}

/// Without CAP_NET_ADMIN the redirect is refused with the NET_ADMIN message.
#[test]
fn port_80_redirect_needs_net_admin() {
    in_new_netns(
        "redirect-unprivileged",
        "port_80_redirect_needs_net_admin",
        child_redirect_unprivileged,
    );
}

// ---------------------------------------------------------------------------
// Child bodies: each runs inside its own new network namespace.

/// The sidecar's port on the link-local addresses in these tests.
const SIDECAR_PORT: u16 = 9911;

fn child_redirect() {
    let (_, addrs) = credential_addresses();
    assert_eq!(redirect_rules().unwrap(), vec![], "rules before any");
    runtime().block_on(add_to_loopback(&addrs)).unwrap();
    redirect_port_80(&addrs, SIDECAR_PORT).unwrap();
    redirect_port_80(&addrs, SIDECAR_PORT).unwrap();
    let expected: Vec<(IpAddr, u16)> = addrs.iter().map(|a| (*a, SIDECAR_PORT)).collect();
    assert_eq!(
        redirect_rules().unwrap(),
        expected,
        "after installing twice"
    );
    // Changing the port replaces the rules, it does not add to them.
    redirect_port_80(&addrs, 9920).unwrap();
    let moved: Vec<(IpAddr, u16)> = addrs.iter().map(|a| (*a, 9920)).collect();
    assert_eq!(redirect_rules().unwrap(), moved);
    redirect_port_80(&addrs, SIDECAR_PORT).unwrap();

    // The app of the pod takes port 80 on every address.
    let app = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).expect("the app binds 0.0.0.0:80");
    for &addr in &addrs {
        let sidecar = TcpListener::bind((addr, SIDECAR_PORT)).unwrap();
        let mut client =
            TcpStream::connect_timeout(&SocketAddr::new(addr, 80), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connecting to {addr}:80: {e}"));
        let (mut server, _) = sidecar.accept().unwrap();
        // The address still tells which route it was; the port is the sidecar's.
        assert_eq!(
            server.local_addr().unwrap(),
            SocketAddr::new(addr, SIDECAR_PORT)
        );
        client.write_all(b"ping\n").unwrap();
        let mut buf = [0u8; 5];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"pong\n").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong\n");
        // The client sees the address and port it dialled.
        assert_eq!(client.peer_addr().unwrap(), SocketAddr::new(addr, 80));
        println!("{addr}:80 reached the listener on port {SIDECAR_PORT}");
    }
    // Port 80 of any other address is the app's.
    let _to_app = TcpStream::connect_timeout(
        &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 80),
        Duration::from_secs(5),
    )
    .unwrap();
    let (conn, _) = app.accept().expect("127.0.0.1:80 reaches the app");
    assert_eq!(conn.local_addr().unwrap().port(), 80);
}

fn child_redirect_unprivileged() {
    runtime()
        .block_on(add_to_loopback(&[IMDS_V4.into()]))
        .unwrap();
    become_nobody();
    assert_needs_net_admin(
        redirect_port_80(&[IMDS_V4.into()], SIDECAR_PORT).unwrap_err(),
        "installing the nftables rule that redirects port 80 to port 9911",
    );
}

fn child_loopback() {
    let (ipv6, addrs) = credential_addresses();

    let rt = runtime();
    for &addr in &addrs {
        assert!(
            !rt.block_on(is_on_loopback(addr)).unwrap(),
            "{addr} on lo before adding it"
        );
    }
    assert!(!lo_is_up(), "lo of a new namespace starts down");

    rt.block_on(add_to_loopback(&addrs)).unwrap();
    assert!(lo_is_up(), "add_to_loopback brings lo up");
    for &addr in &addrs {
        assert!(
            rt.block_on(is_on_loopback(addr)).unwrap(),
            "{addr} not on lo after adding it"
        );
    }
    // Bringing lo up gives it 127.0.0.1; other addresses are not on it.
    assert!(rt
        .block_on(is_on_loopback(Ipv4Addr::LOCALHOST.into()))
        .unwrap());
    assert!(!rt
        .block_on(is_on_loopback("10.255.0.1".parse().unwrap()))
        .unwrap());
    assert!(!rt
        .block_on(is_on_loopback("169.254.169.253".parse().unwrap()))
        .unwrap());

    // Idempotent, and the addresses show as the kernel stored them.
    rt.block_on(add_to_loopback(&addrs)).unwrap();
    let shown = ip(&["-o", "addr", "show", "dev", "lo"]);
    println!("{shown}");
    assert!(
        shown.contains("inet 169.254.169.254/32 scope host lo"),
        "{shown}"
    );
    assert!(
        shown.contains("inet 169.254.170.2/32 scope host lo"),
        "{shown}"
    );
    if ipv6 {
        assert!(shown.contains("inet6 fd00:ec2::254/128"), "{shown}");
        assert!(!shown.contains("tentative"), "{shown}");
    }

    // Addresses on lo add no route out.
    let out = rt.block_on(routes_out()).unwrap();
    assert!(
        out.is_empty(),
        "routes out after adding addresses to lo: {out:?}"
    );

    for &addr in &addrs {
        echo_through(SocketAddr::new(addr, 80));
    }
}

fn child_route_out() {
    let kind = make_link("d0");
    ip(&["link", "set", "d0", "up"]);
    ip(&["addr", "add", "10.255.0.1/24", "dev", "d0"]);
    ip(&["route", "add", "default", "via", "10.255.0.2"]);
    println!("{}", ip(&["route"]));

    let out = runtime().block_on(routes_out()).unwrap();
    println!("routes out through a {kind} link: {out:?}");
    assert!(
        out.contains(&"default via 10.255.0.2 dev d0".to_string()),
        "{out:?}"
    );
    assert!(out.contains(&"10.255.0.0/24 dev d0".to_string()), "{out:?}");
    // Only main-table routes through d0; the local table's are not listed.
    assert!(out.iter().all(|line| line.ends_with(" dev d0")), "{out:?}");
    assert!(
        !out.iter().any(|line| line.starts_with("local ")),
        "{out:?}"
    );
}

fn child_ipv6_disabled() {
    let rt = runtime();
    if !Path::new("/proc/net/if_inet6").exists() {
        // The kernel has no IPv6 at all.
        match rt.block_on(add_to_loopback(&[IpAddr::V6(IMDS_V6)])) {
            Err(NetnsError::Ipv6Unavailable { .. }) => {}
            other => panic!("expected Ipv6Unavailable, got {other:?}"),
        }
        return;
    }
    std::fs::write("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "1").unwrap();
    let error = rt
        .block_on(add_to_loopback(&[IpAddr::V4(IMDS_V4), IpAddr::V6(IMDS_V6)]))
        .unwrap_err();
    println!("{error}");
    assert!(
        matches!(error, NetnsError::Ipv6Disabled { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "adding fd00:ec2::254/128 to lo failed: IPv6 is disabled there \
         (net.ipv6.conf.lo.disable_ipv6=1); set that sysctl to 0 in the pod, \
         or leave the IPv6 address out"
    );
    // The IPv4 address before it was added all the same.
    assert!(rt.block_on(is_on_loopback(IMDS_V4.into())).unwrap());
    assert!(!rt.block_on(is_on_loopback(IMDS_V6.into())).unwrap());
}

fn child_unprivileged() {
    let rt = runtime();
    rt.block_on(add_to_loopback(&[IMDS_V4.into()])).unwrap();
    // A pod lets its non-root containers bind port 80 with this (namespaced) sysctl.
    std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "80").unwrap();

    become_nobody();

    assert!(rt.block_on(is_on_loopback(IMDS_V4.into())).unwrap());
    assert!(!rt.block_on(is_on_loopback(ECS_ADDR.into())).unwrap());
    assert!(rt.block_on(routes_out()).unwrap().is_empty());
    // Nothing missing: nothing to change, so no privilege needed.
    rt.block_on(add_to_loopback(&[IMDS_V4.into()])).unwrap();

    assert_needs_net_admin(
        rt.block_on(add_to_loopback(&[ECS_ADDR.into()]))
            .unwrap_err(),
        "adding 169.254.170.2/32 to lo",
    );

    // The non-root sidecar can bind what the init container added.
    echo_through(SocketAddr::new(IMDS_V4.into(), 80));
}

// ---------------------------------------------------------------------------
// Parent and child plumbing

/// In the parent: runs this binary's `test` again in a new network namespace with
/// [`CHILD`] set to `mode`, and fails with its output unless it finished. In the
/// child (the copy whose [`CHILD`] is `mode`): checks the namespace is new and
/// closed, then runs `body`.
fn in_new_netns(mode: &str, test: &str, body: fn()) {
    if let Ok(child) = std::env::var(CHILD) {
        assert_eq!(child, mode, "child started for another test");
        ensure_private_namespace();
        body();
        println!("{DONE}{mode}");
        return;
    }

    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root: it creates a network namespace (unshare --net) and \
         changes its interfaces; run it as root (CI does), e.g. \
         `sudo -E cargo nextest run --test netns`"
    );
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env(PARENT_NETNS, netns_inode().to_string())
        .output()
        .expect("running unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- child stdout\n{stdout}\n--- child stderr\n{stderr}");
    assert!(
        output.status.success(),
        "child in a new network namespace failed: {}",
        output.status
    );
    assert!(
        stdout.contains(&format!("{DONE}{mode}")),
        "child did not run its body"
    );
}

/// Panics unless this process is in a network namespace other than its parent's,
/// with no route that leaves it (checked by the kernel's own tables too).
fn ensure_private_namespace() {
    let parent: u64 = std::env::var(PARENT_NETNS).unwrap().parse().unwrap();
    assert_ne!(
        netns_inode(),
        parent,
        "still in the parent's network namespace"
    );
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap();
    // Empty until the main table exists, then a header line.
    let routes = v4.lines().filter(|l| !l.starts_with("Iface")).count();
    assert_eq!(routes, 0, "IPv4 routes in the new namespace:\n{v4}");
    if let Ok(v6) = std::fs::read_to_string("/proc/net/ipv6_route") {
        let off_lo: Vec<&str> = v6
            .lines()
            .filter(|l| !l.trim_end().ends_with(" lo"))
            .collect();
        assert!(
            off_lo.is_empty(),
            "IPv6 routes off lo in the new namespace: {off_lo:?}"
        );
    }
    let out = runtime().block_on(routes_out()).unwrap();
    assert!(out.is_empty(), "routes out of the new namespace: {out:?}");
}

fn netns_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").unwrap().ino()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The credential addresses to try here: the IPv6 one only where IPv6 works.
fn credential_addresses() -> (bool, Vec<IpAddr>) {
    let ipv6 = ipv6_available();
    let mut addrs = vec![IpAddr::V4(ECS_ADDR), IpAddr::V4(IMDS_V4)];
    if ipv6 {
        addrs.push(IpAddr::V6(IMDS_V6));
    }
    println!("IPv6 in the namespace: {ipv6}");
    (ipv6, addrs)
}

/// Becomes nobody: with every uid non-zero the kernel clears the capabilities.
fn become_nobody() {
    // SAFETY: plain syscalls; glibc applies them to every thread of the process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
        assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
        assert_eq!(libc::geteuid(), 65534);
    }
}

/// `error` is the NET_ADMIN refusal of `action`, in its one-line form.
fn assert_needs_net_admin(error: NetnsError, action: &str) {
    println!("{error}");
    assert!(
        matches!(error, NetnsError::NeedsNetAdmin { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("{action} needs CAP_NET_ADMIN (the init container must keep NET_ADMIN)")
    );
}

/// IPv6 works in this namespace: the kernel has it and lo does not disable it.
fn ipv6_available() -> bool {
    Path::new("/proc/net/if_inet6").exists()
        && std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
            .is_ok_and(|v| v.trim() == "0")
}

fn lo_is_up() -> bool {
    // Not /sys/class/net: sysfs shows the namespace of whoever mounted it.
    ip(&["-o", "link", "show", "dev", "lo"])
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
}

/// Runs `ip ARGS` (iproute2, only ever inside the new namespace) and returns its
/// output; panics on failure.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates a link named `name` that is not loopback: a dummy one, or, on kernels
/// built without the dummy driver, one end of a veth pair (both ends stay in this
/// namespace). Returns the kind used.
fn make_link(name: &str) -> &'static str {
    let dummy = Command::new("ip")
        .args(["link", "add", name, "type", "dummy"])
        .output()
        .expect("running ip (iproute2)");
    if dummy.status.success() {
        return "dummy";
    }
    ip(&[
        "link",
        "add",
        name,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}p"),
    ]);
    "veth"
}

/// Binds `addr`, connects to it and sends a line each way; the connection's ends
/// are `addr` itself, so the traffic stayed in the namespace.
fn echo_through(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let (mut server, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), addr.ip(), "client address for {addr}");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    client.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    server.write_all(b"pong\n").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong\n");
    println!("bound, connected and echoed through {addr}");
}
