//! The pod's network namespace: putting the link-local credential addresses on its
//! loopback interface, and the checks around that.
//!
//! Older AWS SDKs look for credentials only at fixed link-local addresses: the ECS
//! container endpoint `169.254.170.2:80` (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`)
//! and EC2 IMDS at `169.254.169.254:80`, or `[fd00:ec2::254]:80` over IPv6. All
//! containers of a Kubernetes pod share one network namespace, so an init container
//! with `CAP_NET_ADMIN` (running this binary: the image is distroless, with no `ip`
//! and no iptables) adds those addresses to the pod's `lo`, and the non-root sidecar
//! then binds them. Traffic to them stays inside the pod: the kernel delivers
//! packets for an address of its own namespace locally, so it never reaches the
//! node's metadata service.
//!
//! The contract:
//!
//! - [`add_to_loopback`] brings the loopback interface up if it is down and adds
//!   each address as a `/32` or `/128`. It changes only what is missing: addresses
//!   already on a loopback interface are left alone, so calling it again is fine
//!   and, when nothing is missing, needs no capability. IPv4 addresses are added
//!   with scope `host`, like `127.0.0.1`, so the kernel never picks one as the
//!   source address of a packet that leaves the pod. IPv6 addresses are added
//!   without duplicate address detection, so they are usable at once. When IPv6 is
//!   off in the namespace, adding an IPv6 address is an error
//!   ([`NetnsError::Ipv6Disabled`], [`NetnsError::Ipv6Unavailable`]): the caller
//!   decides whether to go on without it.
//! - [`is_on_loopback`] tells whether an address sits on an `IFF_LOOPBACK`
//!   interface of this namespace: the sidecar's check before it binds one of
//!   [`is_credential_address`](super::addresses::is_credential_address)'s addresses. It only reads, so it needs no privilege.
//! - [`routes_out`] lists the routes by which packets leave the namespace, one short
//!   `ip route`-style line each. In a pod there is at least the default route via
//!   `eth0`; an empty list means a namespace that only talks to itself (a test's).
//!
//! All three talk rtnetlink through the `rtnetlink` crate, one socket per call,
//! driven on the caller's task (no task is spawned, and the socket is closed when
//! the call returns); they need a Tokio runtime with I/O enabled.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::{Stream, TryStreamExt};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteType, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Moves this process into a new network namespace of its own, with only a `lo`
/// (down) and no route out: where `dev --link-local` may put the link-local
/// addresses without touching the machine's. As root, a network namespace; else
/// a user namespace too (mapping the caller to root inside it), where the kernel
/// allows unprivileged user namespaces.
///
/// A namespace change applies to the calling thread and the threads it starts
/// afterwards, and a user namespace can only be entered by a single-threaded
/// process: call this before the async runtime (or any thread) starts.
#[cfg(feature = "tools")]
pub fn enter_own_namespace() -> std::io::Result<()> {
    // SAFETY: these calls take no pointers and only change this process's
    // namespaces; errors are reported through errno.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 && unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // setgroups must be denied before an unprivileged process may write gid_map.
    match std::fs::write("/proc/self/setgroups", "deny") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// Why a netlink operation failed. Each message is one line naming what failed and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink (NETLINK_ROUTE) socket failed: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused a change for lack of privilege (EPERM or EACCES).
    #[error("{action} needs CAP_NET_ADMIN (the init container must keep NET_ADMIN)")]
    NeedsNetAdmin {
        /// What was refused, e.g. "adding 169.254.169.254/32 to lo".
        action: String,
    },
    /// IPv6 is switched off on the loopback interface by sysctl.
    #[error(
        "adding {addr}/128 to {link} failed: IPv6 is disabled there \
         (net.ipv6.conf.{link}.disable_ipv6=1); set that sysctl to 0 in the pod, \
         or leave the IPv6 address out"
    )]
    Ipv6Disabled {
        /// The address that could not be added.
        addr: Ipv6Addr,
        /// The loopback interface's name.
        link: String,
    },
    /// The kernel has no IPv6 at all (booted with `ipv6.disable=1`).
    #[error(
        "adding {addr}/128 to {link} failed: this kernel has IPv6 turned off; \
         leave the IPv6 address out"
    )]
    Ipv6Unavailable {
        /// The address that could not be added.
        addr: Ipv6Addr,
        /// The loopback interface's name.
        link: String,
    },
    /// No interface of the namespace has `IFF_LOOPBACK`.
    #[error("this network namespace has no loopback interface (none has IFF_LOOPBACK)")]
    NoLoopback,
    /// Any other failure of a netlink request.
    #[error("{action} failed: {detail}")]
    Netlink {
        /// What was being done, e.g. "listing routes".
        action: String,
        /// The kernel's or the netlink library's error.
        detail: String,
    },
}

impl NetnsError {
    /// Classifies a netlink error: privilege errors become [`NetnsError::NeedsNetAdmin`].
    fn from_netlink(action: String, error: rtnetlink::Error) -> NetnsError {
        match errno(&error) {
            Some(libc::EPERM | libc::EACCES) => NetnsError::NeedsNetAdmin { action },
            _ => NetnsError::Netlink {
                action,
                detail: describe_error(&error),
            },
        }
    }
}

/// The errno of a kernel NACK, if that is what `error` is.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| code.get().abs()),
        _ => None,
    }
}

fn describe_error(error: &rtnetlink::Error) -> String {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().to_string(),
        // Its `Display` would `Debug`-format the whole message, which links the
        // `Debug` code of every rtnetlink type into the binary.
        rtnetlink::Error::UnexpectedMessage(_) => "an unexpected answer from the kernel".into(),
        other => other.to_string(),
    }
}

/// Routes in this network namespace that leave it: every route (IPv4 and IPv6, main
/// table) whose output interface is not a loopback interface, or that has a gateway.
/// Each described in one short line like "default via 10.0.0.1 dev eth0" /
/// "10.0.0.0/24 dev eth0".
///
/// A multipath route leaves when any of its next hops does; a route that names a
/// nexthop object (`nhid`) is counted as leaving, since its hops are not in the
/// route itself. Routes with neither an output interface nor a gateway (blackhole,
/// unreachable, prohibit) do not leave.
pub async fn routes_out() -> Result<Vec<String>, NetnsError> {
    with_handle(|handle| async move {
        let links = dump_links(&handle).await?;
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let request = match family {
                AddressFamily::Inet => RouteMessageBuilder::<Ipv4Addr>::new().build(),
                _ => RouteMessageBuilder::<Ipv6Addr>::new().build(),
            };
            let routes = handle.route().get(request).execute();
            let routes = match collect(routes).await {
                Ok(routes) => routes,
                // A kernel without IPv6 has no IPv6 routes.
                Err(e)
                    if family == AddressFamily::Inet6 && errno(&e) == Some(libc::EAFNOSUPPORT) =>
                {
                    Vec::new()
                }
                Err(e) => return Err(NetnsError::from_netlink("listing routes".into(), e)),
            };
            out.extend(
                routes
                    .iter()
                    // Without strict checking the kernel may answer with every
                    // family (a kernel without IPv6 does, for AF_INET6).
                    .filter(|route| route.header.address_family == family)
                    .filter(|route| route_table(route) == u32::from(RouteHeader::RT_TABLE_MAIN))
                    .filter(|route| route_leaves(route, &links.loopback))
                    .map(|route| describe_route(route, &links.names)),
            );
        }
        Ok(out)
    })
    .await
}

/// Brings the loopback interface up if it is down and adds each address (/32 or
/// /128) to it; an address already on a loopback interface is fine (idempotent).
/// Adding an IPv6 address where IPv6 is disabled is an error; the caller decides.
pub async fn add_to_loopback(addrs: &[IpAddr]) -> Result<(), NetnsError> {
    with_handle(|handle| async move {
        let links = dump_links(&handle).await?;
        let lo = links.first_loopback().ok_or(NetnsError::NoLoopback)?;
        let name = links.name(lo.header.index);

        if !lo.header.flags.contains(LinkFlags::Up) {
            handle
                .link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(|e| NetnsError::from_netlink(format!("bringing {name} up"), e))?;
        }

        let present = addresses_on(&handle, &links.loopback).await?;
        for &addr in addrs {
            let addr = addr.to_canonical();
            if present.contains(&addr) {
                continue;
            }
            let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
            let mut request = handle.address().add(lo.header.index, addr, prefix_len);
            let message = request.message_mut();
            match addr {
                IpAddr::V4(_) => message.header.scope = AddressScope::Host,
                IpAddr::V6(_) => message.header.flags |= AddressHeaderFlags::Nodad,
            }
            match request.execute().await {
                Ok(()) => {}
                // Added meanwhile by someone else: what we wanted.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(add_error(addr, prefix_len, &name, e)),
            }
        }
        Ok(())
    })
    .await
}

/// Turns a failure to add `addr` to the loopback interface `link` into its error.
fn add_error(addr: IpAddr, prefix_len: u8, link: &str, error: rtnetlink::Error) -> NetnsError {
    let link = link.to_string();
    if let IpAddr::V6(addr) = addr {
        match errno(&error) {
            Some(libc::EAFNOSUPPORT) => return NetnsError::Ipv6Unavailable { addr, link },
            // The kernel answers EACCES when the interface has disable_ipv6=1.
            Some(libc::EACCES) if ipv6_disabled_on(&link) => {
                return NetnsError::Ipv6Disabled { addr, link }
            }
            _ => {}
        }
    }
    NetnsError::from_netlink(format!("adding {addr}/{prefix_len} to {link}"), error)
}

/// Whether the sysctl `net.ipv6.conf.<link>.disable_ipv6` of this namespace is set.
fn ipv6_disabled_on(link: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6"))
        .is_ok_and(|value| value.trim() == "1")
}

/// True when `ip` is assigned to an interface with IFF_LOOPBACK in this namespace.
/// An IPv4-mapped IPv6 address is looked up as the IPv4 address it maps.
///
/// It does not look at whether the interface is up. An address on a down `lo`
/// can still be bound, but connections to it time out; in a pod `lo` is up (the
/// CNI loopback plugin, or [`add_to_loopback`], brings it up). Taking `lo` down
/// also drops its IPv6 addresses, while the IPv4 ones stay.
pub async fn is_on_loopback(ip: IpAddr) -> Result<bool, NetnsError> {
    with_handle(|handle| async move {
        let links = dump_links(&handle).await?;
        let present = addresses_on(&handle, &links.loopback).await?;
        Ok(present.contains(&ip.to_canonical()))
    })
    .await
}

// ---------------------------------------------------------------------------
// Netlink plumbing

/// Opens a netlink socket and runs `work` with its handle, driving the connection
/// on this task until `work` is done.
async fn with_handle<T, F, Fut>(work: F) -> Result<T, NetnsError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetnsError>>,
{
    let (connection, handle, _messages) =
        rtnetlink::new_connection().map_err(NetnsError::Socket)?;
    tokio::select! {
        result = work(handle) => result,
        () = connection => Err(NetnsError::Netlink {
            action: "talking to the kernel".into(),
            detail: "the netlink connection closed".into(),
        }),
    }
}

async fn collect<T>(
    stream: impl Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<Vec<T>, rtnetlink::Error> {
    stream.try_collect().await
}

/// The interfaces of this namespace, as far as these functions care.
struct Links {
    names: HashMap<u32, String>,
    loopback: HashSet<u32>,
    messages: Vec<LinkMessage>,
}

impl Links {
    fn first_loopback(&self) -> Option<&LinkMessage> {
        self.messages
            .iter()
            .filter(|link| self.loopback.contains(&link.header.index))
            .min_by_key(|link| link.header.index)
    }

    fn name(&self, index: u32) -> String {
        link_name(&self.names, index)
    }
}

async fn dump_links(handle: &Handle) -> Result<Links, NetnsError> {
    let messages = collect(handle.link().get().execute())
        .await
        .map_err(|e| NetnsError::from_netlink("listing network interfaces".into(), e))?;
    let mut names = HashMap::new();
    let mut loopback = HashSet::new();
    for link in &messages {
        if link.header.flags.contains(LinkFlags::Loopback) {
            loopback.insert(link.header.index);
        }
        for attribute in &link.attributes {
            if let LinkAttribute::IfName(name) = attribute {
                names.insert(link.header.index, name.clone());
            }
        }
    }
    Ok(Links {
        names,
        loopback,
        messages,
    })
}

/// The addresses assigned to the interfaces in `links`.
async fn addresses_on(
    handle: &Handle,
    links: &HashSet<u32>,
) -> Result<HashSet<IpAddr>, NetnsError> {
    let messages = collect(handle.address().get().execute())
        .await
        .map_err(|e| NetnsError::from_netlink("listing addresses".into(), e))?;
    Ok(messages
        .iter()
        .filter(|message| links.contains(&message.header.index))
        .filter_map(assigned_address)
        .collect())
}

/// The address an `RTM_NEWADDR` message assigns: `IFA_LOCAL` for IPv4 (on a
/// point-to-point link `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS`.
fn assigned_address(message: &AddressMessage) -> Option<IpAddr> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address)
}

// ---------------------------------------------------------------------------
// Routes

/// The routing table a route is in: `RTA_TABLE` when present (ids above 255 are
/// only there), else the header's.
fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// Whether packets following `route` leave the namespace: it has a gateway, an
/// output interface that is not a loopback one, a next hop that does either, or a
/// nexthop object whose hops we cannot see.
fn route_leaves(route: &RouteMessage, loopback: &HashSet<u32>) -> bool {
    let leaves_by = |attributes: &[RouteAttribute], interface: Option<u32>| {
        let interface = interface.filter(|&index| index != 0);
        attributes.iter().any(|a| match a {
            RouteAttribute::Gateway(_) | RouteAttribute::Via(_) | RouteAttribute::NhId(_) => true,
            RouteAttribute::Oif(index) => !loopback.contains(index),
            _ => false,
        }) || interface.is_some_and(|index| !loopback.contains(&index))
    };
    leaves_by(&route.attributes, None)
        || route.attributes.iter().any(|a| match a {
            RouteAttribute::MultiPath(hops) => hops
                .iter()
                .any(|hop| leaves_by(&hop.attributes, Some(hop.interface_index))),
            _ => false,
        })
}

/// One `ip route`-style line: "default via 10.0.0.1 dev eth0", "10.0.0.0/24 dev eth0".
fn describe_route(route: &RouteMessage, names: &HashMap<u32, String>) -> String {
    let mut line = String::new();
    if let Some(kind) = route_kind(route.header.kind) {
        line.push_str(kind);
        line.push(' ');
    }
    let destination = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(address) => Some(address),
        _ => None,
    });
    let prefix_len = route.header.destination_prefix_length;
    match destination {
        None if prefix_len == 0 => line.push_str("default"),
        None => line.push_str(&format!("?/{prefix_len}")),
        Some(address) => {
            line.push_str(&route_address(address));
            let host_len = match address {
                RouteAddress::Inet(_) => 32,
                RouteAddress::Inet6(_) => 128,
                _ => 0,
            };
            if prefix_len != host_len {
                line.push_str(&format!("/{prefix_len}"));
            }
        }
    }
    describe_hop(&mut line, &route.attributes, None, names);
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::NhId(id) => line.push_str(&format!(" nhid {id}")),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    describe_next_hop(&mut line, hop, names);
                }
            }
            _ => {}
        }
    }
    line
}

fn describe_next_hop(line: &mut String, hop: &RouteNextHop, names: &HashMap<u32, String>) {
    line.push_str(" nexthop");
    let interface = Some(hop.interface_index).filter(|&index| index != 0);
    describe_hop(line, &hop.attributes, interface, names);
}

/// Appends " via GATEWAY dev NAME" for what `attributes` (and `interface`) name.
fn describe_hop(
    line: &mut String,
    attributes: &[RouteAttribute],
    interface: Option<u32>,
    names: &HashMap<u32, String>,
) {
    for attribute in attributes {
        match attribute {
            RouteAttribute::Gateway(address) => {
                line.push_str(&format!(" via {}", route_address(address)));
            }
            RouteAttribute::Via(RouteVia::Inet(ip)) => line.push_str(&format!(" via inet {ip}")),
            RouteAttribute::Via(RouteVia::Inet6(ip)) => line.push_str(&format!(" via inet6 {ip}")),
            RouteAttribute::Via(_) => line.push_str(" via ?"),
            _ => {}
        }
    }
    let oif = attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    });
    if let Some(index) = oif.or(interface) {
        line.push_str(&format!(" dev {}", link_name(names, index)));
    }
}

fn route_address(address: &RouteAddress) -> String {
    match address {
        RouteAddress::Inet(ip) => ip.to_string(),
        RouteAddress::Inet6(ip) => ip.to_string(),
        _ => "?".to_string(),
    }
}

/// The word `ip route` puts before a route of this type; none for unicast.
fn route_kind(kind: RouteType) -> Option<&'static str> {
    Some(match kind {
        RouteType::Unspec | RouteType::Unicast => return None,
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        RouteType::ExternalResolve => "xresolve",
        _ => "type?",
    })
}

fn link_name(names: &HashMap<u32, String>, index: u32) -> String {
    names
        .get(&index)
        .cloned()
        .unwrap_or_else(|| format!("if{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::addresses::IMDS_V6;

    fn names() -> HashMap<u32, String> {
        HashMap::from([(1, "lo".to_string()), (2, "eth0".to_string())])
    }

    fn loopback() -> HashSet<u32> {
        HashSet::from([1])
    }

    fn v4_route(destination: Option<(&str, u8)>, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.kind = RouteType::Unicast;
        if let Some((ip, len)) = destination {
            route.header.destination_prefix_length = len;
            route
                .attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    ip.parse().unwrap(),
                )));
        }
        route.attributes.extend(attributes);
        route
    }

    fn gateway(ip: &str) -> RouteAttribute {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RouteAttribute::Gateway(RouteAddress::Inet(v4)),
            IpAddr::V6(v6) => RouteAttribute::Gateway(RouteAddress::Inet6(v6)),
        }
    }

    #[test]
    fn default_route_via_gateway() {
        let route = v4_route(None, vec![gateway("10.0.0.1"), RouteAttribute::Oif(2)]);
        assert_eq!(
            describe_route(&route, &names()),
            "default via 10.0.0.1 dev eth0"
        );
        assert!(route_leaves(&route, &loopback()));
    }

    #[test]
    fn connected_subnet() {
        let route = v4_route(Some(("10.0.0.0", 24)), vec![RouteAttribute::Oif(2)]);
        assert_eq!(describe_route(&route, &names()), "10.0.0.0/24 dev eth0");
        assert!(route_leaves(&route, &loopback()));
    }

    #[test]
    fn host_route_has_no_prefix_length_and_unknown_interface_is_numbered() {
        let route = v4_route(Some(("10.0.0.7", 32)), vec![RouteAttribute::Oif(9)]);
        assert_eq!(describe_route(&route, &names()), "10.0.0.7 dev if9");
    }

    #[test]
    fn route_on_loopback_does_not_leave_but_a_gateway_does() {
        let on_lo = v4_route(Some(("169.254.0.0", 16)), vec![RouteAttribute::Oif(1)]);
        assert_eq!(describe_route(&on_lo, &names()), "169.254.0.0/16 dev lo");
        assert!(!route_leaves(&on_lo, &loopback()));

        let via = v4_route(
            Some(("169.254.0.0", 16)),
            vec![gateway("127.0.0.2"), RouteAttribute::Oif(1)],
        );
        assert!(route_leaves(&via, &loopback()));
    }

    #[test]
    fn blackhole_without_interface_does_not_leave() {
        let mut route = v4_route(Some(("10.0.0.0", 8)), vec![]);
        route.header.kind = RouteType::BlackHole;
        assert_eq!(describe_route(&route, &names()), "blackhole 10.0.0.0/8");
        assert!(!route_leaves(&route, &loopback()));
    }

    #[test]
    fn ipv6_routes() {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet6;
        route.header.destination_prefix_length = 64;
        route.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6("fe80::".parse().unwrap())),
            RouteAttribute::Oif(2),
        ];
        assert_eq!(describe_route(&route, &names()), "fe80::/64 dev eth0");
        assert!(route_leaves(&route, &loopback()));

        let mut default = RouteMessage::default();
        default.header.address_family = AddressFamily::Inet6;
        default.attributes = vec![gateway("fe80::1"), RouteAttribute::Oif(2)];
        assert_eq!(
            describe_route(&default, &names()),
            "default via fe80::1 dev eth0"
        );

        let mut host = RouteMessage::default();
        host.header.address_family = AddressFamily::Inet6;
        host.header.destination_prefix_length = 128;
        host.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6(IMDS_V6)),
            RouteAttribute::Oif(1),
        ];
        assert_eq!(describe_route(&host, &names()), "fd00:ec2::254 dev lo");
        assert!(!route_leaves(&host, &loopback()));
    }

    #[test]
    fn ipv4_via_ipv6_gateway() {
        let route = v4_route(
            None,
            vec![
                RouteAttribute::Via(RouteVia::Inet6("fe80::1".parse().unwrap())),
                RouteAttribute::Oif(2),
            ],
        );
        assert_eq!(
            describe_route(&route, &names()),
            "default via inet6 fe80::1 dev eth0"
        );
        assert!(route_leaves(&route, &loopback()));
    }

    #[test]
    fn multipath_leaves_when_any_hop_does() {
        let hop = |interface_index, attributes| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = interface_index;
            hop.attributes = attributes;
            hop
        };
        let route = v4_route(
            None,
            vec![RouteAttribute::MultiPath(vec![
                hop(1, vec![]),
                hop(2, vec![gateway("10.0.0.1")]),
            ])],
        );
        assert_eq!(
            describe_route(&route, &names()),
            "default nexthop dev lo nexthop via 10.0.0.1 dev eth0"
        );
        assert!(route_leaves(&route, &loopback()));

        let all_lo = v4_route(None, vec![RouteAttribute::MultiPath(vec![hop(1, vec![])])]);
        assert!(!route_leaves(&all_lo, &loopback()));
    }

    #[test]
    fn nexthop_object_counts_as_leaving() {
        let route = v4_route(Some(("10.1.0.0", 16)), vec![RouteAttribute::NhId(5)]);
        assert_eq!(describe_route(&route, &names()), "10.1.0.0/16 nhid 5");
        assert!(route_leaves(&route, &loopback()));
    }

    #[test]
    fn table_attribute_wins_over_header() {
        let mut route = v4_route(None, vec![RouteAttribute::Table(1000)]);
        route.header.table = 252;
        assert_eq!(route_table(&route), 1000);
        let route = v4_route(None, vec![]);
        assert_eq!(route_table(&route), 254);
    }

    #[test]
    fn ipv4_address_is_ifa_local() {
        let mut message = AddressMessage::default();
        message.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().unwrap()),
            AddressAttribute::Local("10.0.0.1".parse().unwrap()),
        ];
        assert_eq!(
            assigned_address(&message),
            Some("10.0.0.1".parse().unwrap())
        );
        message.attributes = vec![AddressAttribute::Address(IpAddr::V6(IMDS_V6))];
        assert_eq!(assigned_address(&message), Some(IpAddr::V6(IMDS_V6)));
    }

    #[test]
    fn error_messages_are_one_line() {
        let errors = [
            NetnsError::NeedsNetAdmin {
                action: "adding 169.254.169.254/32 to lo".into(),
            },
            NetnsError::Ipv6Disabled {
                addr: IMDS_V6,
                link: "lo".into(),
            },
            NetnsError::Ipv6Unavailable {
                addr: IMDS_V6,
                link: "lo".into(),
            },
            NetnsError::NoLoopback,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
        assert_eq!(
            NetnsError::NeedsNetAdmin {
                action: "adding 169.254.169.254/32 to lo".into()
            }
            .to_string(),
            "adding 169.254.169.254/32 to lo needs CAP_NET_ADMIN \
             (the init container must keep NET_ADMIN)"
        );
    }
}
