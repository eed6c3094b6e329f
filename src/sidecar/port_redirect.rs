//! The pod's port-80 redirect: an nftables nat rule, made over netlink, that
//! sends TCP connections for port 80 of a link-local credential address to
//! another port on the same address.
//!
//! Why: SDKs dial `169.254.170.2:80` and `169.254.169.254:80`. If the sidecar
//! bound port 80 on those addresses, an app of the same pod could no longer
//! bind `0.0.0.0:80` (Linux refuses the wildcard next to a specific address of
//! the same port). With the redirect the sidecar listens on its own port there,
//! port 80 stays free for the apps, and the address a connection arrives on
//! still tells the sidecar which route was used.
//!
//! The contract:
//!
//! - [`redirect_port_80`] replaces, in one netlink transaction, the table
//!   [`TABLE`] of family `ip` (and `ip6` when an IPv6 address is given) with one
//!   that holds a base chain `output` (type nat, hook output, priority -100:
//!   locally made packets, where a pod's own connections start) and one rule per
//!   address: `ip daddr ADDR tcp dport 80 dnat to ADDR:PORT`. Running it again
//!   gives the same table, never a second copy of the rules (idempotent); the
//!   transaction is all or nothing. Nothing outside that table is touched.
//! - [`redirect_rules`] reads the rules back (address, port), for the log and
//!   the tests.
//!
//! Scope: nftables state belongs to a network namespace. In a pod that is the
//! pod's own, shared by its containers and by nothing else, and removed with
//! the pod; nothing is installed on the node. It needs `CAP_NET_ADMIN` in that
//! namespace and a kernel with nf_tables NAT (any kernel of a current
//! distribution: kube-proxy's nftables and iptables-nft modes use the same).
//!
//! The messages are `netlink-packet-netfilter`'s (the rust-netlink family, as
//! `rtnetlink`); the `nat` expression, which that crate does not model, is
//! written from its attributes in `linux/netfilter/nf_tables.h`.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook,
    Immediate, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload,
    Register, RuleAttribute, RuleMessage, TableAttribute, TableFlags, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::sidecar::netns::NetnsError;

/// The port SDKs dial on the link-local addresses: what is redirected.
pub const REDIRECTED_PORT: u16 = 80;
/// The table that holds the redirect, in family `ip` and `ip6`.
pub const TABLE: &str = "irsa-proxy";
/// Its base chain.
const CHAIN: &str = "output";
/// `NF_IP_PRI_NAT_DST`: where destination NAT runs on the output hook.
const PRIORITY: i32 = -100;
/// `NF_ACCEPT`: the chain's policy; the chain only rewrites, it never drops.
const POLICY_ACCEPT: u32 = 1;
/// `NFNL_SUBSYS_NFTABLES`, the batch's resource id.
const SUBSYS_NFTABLES: u16 = 10;
/// How long to wait for the kernel's answer before calling it lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

// `nft_payload_bases`, `nft_nat_types`, `nft_nat_attributes` and the nat range
// flag, from linux/netfilter/nf_tables.h and nf_nat.h.
const PAYLOAD_NETWORK_HEADER: u32 = 1;
const PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NAT_DNAT: u32 = 1;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_FLAGS: u16 = 7;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
/// `NFPROTO_IPV4`, `NFPROTO_IPV6`: the nat expression's family.
const NFPROTO_IPV4: u32 = 2;
const NFPROTO_IPV6: u32 = 10;

/// Installs (or replaces) the redirect of TCP port 80 of each of `addrs` to
/// `port` on the same address; see the module doc. An empty `addrs` is an
/// error: there would be nothing to redirect.
pub fn redirect_port_80(addrs: &[IpAddr], port: u16) -> Result<(), NetnsError> {
    let action = format!(
        "installing the nftables rule that redirects port {REDIRECTED_PORT} to port {port}"
    );
    let messages = batch(addrs, port);
    if messages.len() <= 2 {
        return Err(NetnsError::Netlink {
            action,
            detail: "no address to redirect".into(),
        });
    }
    let socket = open()?;
    let mut bytes = Vec::new();
    let mut acked = Vec::new();
    for (seq, mut message) in (1u32..).zip(messages) {
        message.header.sequence_number = seq;
        message.finalize();
        if message.header.flags & NLM_F_ACK != 0 {
            acked.push(seq);
        }
        let start = bytes.len();
        bytes.resize(start + message.buffer_len(), 0);
        message.serialize(&mut bytes[start..]);
    }
    socket.send(&bytes, 0).map_err(|e| classify(&action, e))?;
    // One answer per acked message, an ack or an error; a batch the kernel
    // cannot start (no nf_tables at all) gets one error and nothing else.
    let mut pending = acked.len();
    while pending > 0 {
        for answer in receive(&socket).map_err(|e| classify(&action, e))? {
            if let NetlinkPayload::Error(e) = answer.payload {
                if let Some(code) = e.code {
                    return Err(classify(
                        &action,
                        std::io::Error::from_raw_os_error(code.get().abs()),
                    ));
                }
                if acked.contains(&answer.header.sequence_number) {
                    pending = pending.saturating_sub(1);
                }
            }
        }
    }
    Ok(())
}

/// The redirects [`redirect_port_80`] installed: `(address, port)` for each rule
/// of [`TABLE`], in order. Empty when there is no such table.
pub fn redirect_rules() -> Result<Vec<(IpAddr, u16)>, NetnsError> {
    let action = "listing the nftables rules".to_string();
    let socket = open()?;
    let mut request = message(
        NetfilterProtoFamily::Unspec,
        NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
        NLM_F_REQUEST | NLM_F_DUMP,
    );
    request.header.sequence_number = 1;
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0).map_err(|e| classify(&action, e))?;
    let mut rules = Vec::new();
    loop {
        for answer in receive(&socket).map_err(|e| classify(&action, e))? {
            match answer.payload {
                NetlinkPayload::Done(_) => return Ok(rules),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(classify(&action, e.to_io()))
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(rule)),
                    ..
                }) => rules.extend(read_rule(&rule)),
                _ => {}
            }
        }
    }
}

/// The address and port of one of our rules; `None` for any other rule.
fn read_rule(rule: &RuleMessage) -> Option<(IpAddr, u16)> {
    let in_table = rule
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Table(t) if t == TABLE));
    let expressions = rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Expressions(e) => Some(e),
        _ => None,
    })?;
    if !in_table {
        return None;
    }
    // The two immediates: the address (register 1), then the port (register 2).
    let loaded: Vec<&Vec<u8>> = expressions
        .iter()
        .filter_map(|e| match e {
            ListAttribute::Element(attrs) => Some(attrs),
            _ => None,
        })
        .flatten()
        .filter_map(|a| match a {
            ExpressionAttribute::Data(Expressions::Immediate(imm)) => Some(imm),
            _ => None,
        })
        .flatten()
        .filter_map(|i| match i {
            Immediate::Data(DataAttribute::Value(v)) => Some(v),
            _ => None,
        })
        .collect();
    let [address, port] = loaded.as_slice() else {
        return None;
    };
    let address = match address.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(address.as_slice()).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(address.as_slice()).ok()?),
    };
    let port = <[u8; 2]>::try_from(port.as_slice()).ok()?;
    Some((address, u16::from_be_bytes(port)))
}

/// The whole transaction: begin, per family the table made sure of, deleted
/// and made again with its chain and rules, end.
fn batch(addrs: &[IpAddr], port: u16) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let control = |inner: ControlMessage| {
        let mut m = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
            inner,
        ));
        m.header.flags = NLM_F_REQUEST;
        m
    };
    let mut out = vec![control(ControlMessage::BatchBegin)];
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let mine: Vec<IpAddr> = addrs
            .iter()
            .map(|a| a.to_canonical())
            .filter(|a| a.is_ipv4() == (family == NetfilterProtoFamily::IPv4))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let table = || {
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![
                    TableAttribute::Name(TABLE.into()),
                    TableAttribute::Flags(TableFlags::empty()),
                ],
            })
        };
        let ack = NLM_F_REQUEST | NLM_F_ACK;
        // Made sure of first, so that the delete never fails on a first run.
        out.push(message(family, table(), ack | NLM_F_CREATE));
        out.push(message(
            family,
            NfTablesMessage::DeleteTable(TableMessage {
                attributes: vec![TableAttribute::Name(TABLE.into())],
            }),
            ack,
        ));
        out.push(message(family, table(), ack | NLM_F_CREATE));
        out.push(message(
            family,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(TABLE.into()),
                    ChainAttribute::Name(CHAIN.into()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::LocalOut.into()),
                        Hook::Priority(PRIORITY as u32),
                    ]),
                    ChainAttribute::Policy(POLICY_ACCEPT),
                    ChainAttribute::Type("nat".into()),
                ],
            }),
            ack | NLM_F_CREATE,
        ));
        for addr in mine {
            out.push(message(
                family,
                NfTablesMessage::NewRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(TABLE.into()),
                        RuleAttribute::Chain(CHAIN.into()),
                        RuleAttribute::Expressions(rule(addr, port)),
                    ],
                }),
                ack | NLM_F_CREATE | NLM_F_APPEND,
            ));
        }
    }
    out.push(control(ControlMessage::BatchEnd));
    out
}

/// `ip daddr ADDR tcp dport 80 dnat to ADDR:PORT` (or `ip6 daddr`), as the
/// expressions `nft` makes of it.
fn rule(addr: IpAddr, port: u16) -> Vec<ListAttribute<ExpressionAttribute>> {
    let (octets, daddr_offset, nat_family) = match addr {
        IpAddr::V4(v4) => (v4.octets().to_vec(), 16, NFPROTO_IPV4),
        IpAddr::V6(v6) => (v6.octets().to_vec(), 24, NFPROTO_IPV6),
    };
    let u32_be = |kind: u16, v: u32| DefaultNla::new(kind, v.to_be_bytes().to_vec());
    vec![
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(PAYLOAD_NETWORK_HEADER),
            Payload::Offset(daddr_offset),
            Payload::Len(octets.len() as u32),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(octets.clone())),
        ])
        .into(),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::L4Proto),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(vec![libc::IPPROTO_TCP as u8])),
        ])
        .into(),
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(PAYLOAD_TRANSPORT_HEADER),
            Payload::Offset(2),
            Payload::Len(2),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(REDIRECTED_PORT.to_be_bytes().to_vec())),
        ])
        .into(),
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Reg1),
            Immediate::Data(DataAttribute::Value(octets)),
        ])
        .into(),
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Reg2),
            Immediate::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
        ])
        .into(),
        Expressions::Other {
            expression_type: "nat".into(),
            attributes: vec![
                u32_be(NFTA_NAT_TYPE, NAT_DNAT),
                u32_be(NFTA_NAT_FAMILY, nat_family),
                u32_be(NFTA_NAT_REG_ADDR_MIN, u32::from(Register::Reg1)),
                u32_be(NFTA_NAT_REG_PROTO_MIN, u32::from(Register::Reg2)),
                u32_be(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED),
            ],
        }
        .into(),
    ]
}

fn message(
    family: NetfilterProtoFamily,
    inner: NfTablesMessage,
    flags: u16,
) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            inner,
        )),
    );
    m.header.flags = flags;
    m
}

/// A netfilter netlink socket, bound, that gives up on a silent kernel.
fn open() -> Result<Socket, NetnsError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetnsError::Socket)?;
    socket.bind_auto().map_err(NetnsError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetnsError::Socket)?;
    let timeout = libc::timeval {
        tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: the pointer and length describe `timeout`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NetnsError::Socket(std::io::Error::last_os_error()));
    }
    Ok(socket)
}

/// The messages of one datagram from the kernel.
fn receive(socket: &Socket) -> std::io::Result<Vec<NetlinkMessage<NetfilterMessage>>> {
    let (bytes, _) = socket.recv_from_full()?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(&bytes[at..])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let len = message.header.length as usize;
        // Netlink messages are 4-byte aligned.
        at += len.max(1).div_ceil(4) * 4;
        out.push(message);
    }
    Ok(out)
}

/// One line for a failed nftables request, with the fix for the usual causes.
fn classify(action: &str, e: std::io::Error) -> NetnsError {
    let action = action.to_string();
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => NetnsError::NeedsNetAdmin { action },
        Some(libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::ENOENT) => NetnsError::Netlink {
            action,
            detail: format!(
                "{e}: this kernel has no nftables NAT (nf_tables with nft_chain_nat); use a node kernel with it, or inject without --link-local (the environment-variable routes need none)"
            ),
        },
        Some(libc::EAGAIN) => NetnsError::Netlink {
            action,
            detail: format!("no answer from the kernel within {}s", ANSWER_TIMEOUT.as_secs()),
        },
        _ => NetnsError::Netlink {
            action,
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of `batch`, written as the kernel receives it and read back.
    fn over_the_wire(addrs: &[IpAddr], port: u16) -> Vec<NetlinkMessage<NetfilterMessage>> {
        batch(addrs, port)
            .into_iter()
            .map(|mut m| {
                m.finalize();
                let mut bytes = vec![0; m.buffer_len()];
                m.serialize(&mut bytes);
                NetlinkMessage::<NetfilterMessage>::deserialize(&bytes).unwrap()
            })
            .collect()
    }

    fn rules_of(messages: &[NetlinkMessage<NetfilterMessage>]) -> Vec<(IpAddr, u16)> {
        messages
            .iter()
            .filter_map(|m| match &m.payload {
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(r)),
                    ..
                }) => read_rule(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_address_should_get_one_rule_that_reads_back() {
        let v4: IpAddr = "169.254.169.254".parse().unwrap();
        let ecs: IpAddr = "169.254.170.2".parse().unwrap();
        let v6: IpAddr = "fd00:ec2::254".parse().unwrap();
        let messages = over_the_wire(&[ecs, v4, v6], 9911);
        assert_eq!(
            rules_of(&messages),
            vec![(ecs, 9911), (v4, 9911), (v6, 9911)]
        );
        // Begin, 4 table/chain messages and the rules per family, end.
        assert_eq!(messages.len(), 1 + (4 + 2) + (4 + 1) + 1);
        let acked = messages
            .iter()
            .filter(|m| m.header.flags & NLM_F_ACK != 0)
            .count();
        assert_eq!(acked, messages.len() - 2, "every command is acked");
    }

    #[test]
    fn an_ipv4_mapped_address_should_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:169.254.169.254".parse().unwrap();
        let messages = over_the_wire(&[mapped], 9920);
        assert_eq!(
            rules_of(&messages),
            vec![("169.254.169.254".parse().unwrap(), 9920)]
        );
        assert!(messages.iter().all(|m| match &m.payload {
            NetlinkPayload::InnerMessage(n) => {
                n.header.family != NetfilterProtoFamily::IPv6
            }
            _ => true,
        }));
    }

    /// The rule's bytes hold what `nft --debug=netlink` shows for
    /// `ip daddr 169.254.169.254 tcp dport 80 dnat to 169.254.169.254:9911`:
    /// the address, port 80 and port 9911 in network order, and the nat
    /// expression with DNAT, IPv4, registers 1 and 2, and the port flag.
    #[test]
    fn the_rule_should_carry_nfts_expressions() {
        let exprs = rule("169.254.169.254".parse().unwrap(), 9911);
        let names: Vec<&str> = exprs
            .iter()
            .filter_map(|e| match e {
                ListAttribute::Element(attrs) => attrs.iter().find_map(|a| match a {
                    ExpressionAttribute::Name(n) => Some(n.as_str()),
                    _ => None,
                }),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "payload",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "cmp",
                "immediate",
                "immediate",
                "nat"
            ]
        );
        let Some(ListAttribute::Element(nat)) = exprs.last() else {
            panic!("no nat expression");
        };
        let Some(ExpressionAttribute::Data(Expressions::Other { attributes, .. })) = nat.get(1)
        else {
            panic!("nat without data: {nat:?}");
        };
        let values: Vec<(u16, Vec<u8>)> = attributes
            .iter()
            .map(|a| {
                use netlink_packet_core::Nla;
                let mut v = vec![0; a.value_len()];
                a.emit_value(&mut v);
                (a.kind(), v)
            })
            .collect();
        assert_eq!(
            values,
            vec![
                (NFTA_NAT_TYPE, vec![0, 0, 0, 1]),
                (NFTA_NAT_FAMILY, vec![0, 0, 0, 2]),
                (NFTA_NAT_REG_ADDR_MIN, vec![0, 0, 0, 1]),
                (NFTA_NAT_REG_PROTO_MIN, vec![0, 0, 0, 2]),
                (NFTA_NAT_FLAGS, vec![0, 0, 0, 2]),
            ]
        );
    }

    #[test]
    fn no_address_should_be_an_error_before_any_socket() {
        let e = redirect_port_80(&[], 9911).unwrap_err();
        assert!(e.to_string().contains("no address to redirect"), "{e}");
    }

    #[test]
    fn kernel_errors_should_name_the_fix() {
        let action = "installing";
        let e = classify(action, std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(e, NetnsError::NeedsNetAdmin { .. }), "{e:?}");
        let e = classify(action, std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        assert!(e.to_string().contains("no nftables NAT"), "{e}");
        let e = classify(action, std::io::Error::from_raw_os_error(libc::EAGAIN));
        assert!(e.to_string().contains("no answer from the kernel"), "{e}");
        for e in [libc::EPERM, libc::ENOENT, libc::EAGAIN, libc::EINVAL] {
            let text = classify(action, std::io::Error::from_raw_os_error(e)).to_string();
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
