//! The addresses SDKs look for credentials at, and the predicate the sidecar,
//! `link-local` and `inject` share: one small module, so that the endpoints and
//! the pod-mutation engine need none of the netlink code in [`super::netns`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The ECS container credentials endpoint's address.
pub const ECS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The EC2 instance metadata service's IPv4 address.
pub const IMDS_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The EC2 instance metadata service's IPv6 address, `fd00:ec2::254`.
pub const IMDS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The addresses SDKs look for credentials at, which may be bound when they sit on
/// this namespace's loopback interface. An IPv4-mapped IPv6 address
/// (`::ffff:169.254.169.254`) counts as the IPv4 address it maps.
pub fn is_credential_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == ECS_ADDR || v4 == IMDS_V4,
        IpAddr::V6(v6) => v6 == IMDS_V6,
    }
}

/// What `link-local` adds when no `--address` is given, and what `dev
/// --link-local` serves on. The IPv6 IMDS address is left out: only SDKs that
/// also speak the loopback endpoints use it.
pub const DEFAULT_ADDRESSES: [IpAddr; 2] = [IpAddr::V4(ECS_ADDR), IpAddr::V4(IMDS_V4)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_addresses() {
        assert!(is_credential_address(IpAddr::V4(ECS_ADDR)));
        assert!(is_credential_address(IpAddr::V4(IMDS_V4)));
        assert!(is_credential_address(IpAddr::V6(IMDS_V6)));
        assert!(is_credential_address("169.254.169.254".parse().unwrap()));
        assert!(is_credential_address("fd00:ec2::254".parse().unwrap()));
        assert!(is_credential_address(
            "::ffff:169.254.170.2".parse().unwrap()
        ));
        for other in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.169.253",
            "169.254.170.3",
            "169.254.170.23",
            "10.0.0.1",
            "::1",
            "::",
            "fd00:ec2::253",
            "fe80::254",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_credential_address(other.parse().unwrap()), "{other}");
        }
    }

    #[test]
    fn imds_v6_is_the_documented_address() {
        assert_eq!(IMDS_V6, "fd00:ec2::254".parse::<Ipv6Addr>().unwrap());
    }
}
