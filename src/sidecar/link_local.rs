//! `irsa-proxy link-local`: the init step that lets the oldest SDKs find the
//! sidecar. It adds `169.254.170.2` (ECS, `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`)
//! and `169.254.169.254` (IMDS) to the loopback interface of the network
//! namespace it runs in. With `--redirect-port PORT` (what `inject --link-local`
//! writes) it also installs an nftables nat rule there that sends TCP for port
//! 80 of each address to PORT on the same address, where the non-root sidecar
//! listens: port 80 stays free for an app's `0.0.0.0:80`, and the address a
//! connection arrives on still tells the sidecar which route was used (IMDSv1
//! is served on 169.254.169.254 only). Without it, the sidecar binds port 80
//! itself (the pod sysctl `net.ipv4.ip_unprivileged_port_start=80` allows it),
//! and an app can then not bind `0.0.0.0:80`.
//!
//! All containers of a pod share one network namespace, so the addresses are the
//! pod's alone: other pods and the node do not see them. In any other namespace
//! they would hijack the node's (or a cloud VM's) real metadata service for
//! every process there, so the step refuses unless it can tell the namespace is
//! a pod's own:
//!
//! - with `--pod-ip` and `--host-ip` (the downward API's `status.podIP` and
//!   `status.hostIP`, which `inject --link-local` passes): the two differ for
//!   every pod but a `hostNetwork` one, which is refused;
//! - without them, only a namespace with no route out is accepted (a test's or
//!   a laptop's `unshare --net`).
//!
//! It runs as root with `NET_ADMIN` in an init container of its own, then exits;
//! it is idempotent, so a restarted init container succeeds again. The
//! addresses and the rule live in the pod's network namespace and go with it.

use std::net::IpAddr;
use std::process::ExitCode;

use crate::cli::LinkLocalArgs;
use crate::flags::{link_local as f, Environment, Flag, FlagError, Flags, Refusal};
use crate::sidecar::addresses::{is_credential_address, DEFAULT_ADDRESSES};
use crate::sidecar::netns;
use crate::Fatal;

/// Validated flags.
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    addresses: Vec<IpAddr>,
    /// `(pod IP, host IP)` when both were given.
    pod: Option<(IpAddr, IpAddr)>,
    /// Where port 80 of the addresses goes, when it is redirected.
    redirect_port: Option<u16>,
}

fn validate(args: &LinkLocalArgs, env: &dyn Environment) -> Result<Settings, Vec<FlagError>> {
    let mut flags = Flags::new(env);
    let mut addresses = Vec::new();
    for v in &args.address {
        let ip = flags.parse(&f::ADDRESS, Some(v), |v| {
            v.trim()
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| is_credential_address(*ip))
                .ok_or_else(|| {
                    Refusal::new(
                        "is not allowed",
                        "169.254.170.2, 169.254.169.254 or fd00:ec2::254",
                    )
                })
        });
        if let Some(ip) = ip.filter(|ip| !addresses.contains(ip)) {
            addresses.push(ip);
        }
    }
    if args.address.is_empty() {
        addresses.extend(DEFAULT_ADDRESSES);
    }
    let ip = |v: &str| {
        v.trim().parse::<IpAddr>().map_err(|_| {
            Refusal::new(
                "is not an IP address",
                "the address of status.podIP or status.hostIP",
            )
        })
    };
    let given = (
        flags.raw(&f::POD_IP, args.pod_ip.as_deref()),
        flags.raw(&f::HOST_IP, args.host_ip.as_deref()),
    );
    let pod_ip = flags.parse(&f::POD_IP, args.pod_ip.as_deref(), ip);
    let host_ip = flags.parse(&f::HOST_IP, args.host_ip.as_deref(), ip);
    let pod = pod_ip.zip(host_ip);
    // Only one of the two given (and valid): name the one that was.
    let lone = match given {
        (Some((v, source)), None) if pod_ip.is_some() => Some((&f::POD_IP, &f::HOST_IP, v, source)),
        (None, Some((v, source))) if host_ip.is_some() => {
            Some((&f::HOST_IP, &f::POD_IP, v, source))
        }
        _ => None,
    };
    if let Some((flag, missing, v, source)) = lone {
        flags.refuse(FlagError::refused(flag.name, source, &v, alone(missing)));
    }
    let redirect_port = flags.parse(&f::REDIRECT_PORT, args.redirect_port.as_deref(), |v| {
        let port = crate::flags::number_in(f::REDIRECT_PORT_RANGE)(v)?;
        if port == crate::sidecar::port_redirect::REDIRECTED_PORT {
            return Err(Refusal::new(
                "is the port that is redirected",
                "the sidecar's port, other than 80 (leave the flag out when the sidecar binds port 80 itself)",
            ));
        }
        Ok(port)
    });
    flags.finish(|| {
        Some(Settings {
            addresses,
            pod,
            redirect_port,
        })
    })
}

/// `--pod-ip` and `--host-ip` prove the namespace is the pod's only together.
fn alone(missing: &Flag) -> Refusal {
    Refusal::new(
        format!("is given without {}", missing.name),
        "--pod-ip and --host-ip together (IRSA_PROXY_POD_IP, IRSA_PROXY_HOST_IP from the downward API's status.podIP and status.hostIP)",
    )
}

pub async fn run(args: LinkLocalArgs, env: &dyn Environment) -> Result<ExitCode, Fatal> {
    let s = validate(&args, env).map_err(Fatal::Flags)?;
    crate::logging::init(crate::logging::LogFormat::Text);
    match s.pod {
        Some((pod, host)) if pod == host => {
            return Err(Fatal::usage(format!(
                "link-local: the pod's IP {pod} is the node's: a hostNetwork pod shares the node's network namespace, where 169.254.169.254 on lo would hijack the node's metadata service for every process. Run the pod without hostNetwork"
            )));
        }
        Some((pod, host)) => {
            tracing::info!(%pod, %host, "the pod has a network namespace of its own")
        }
        None => {
            refuse_route_out(
                "link-local",
                " and nothing shows it is a pod's own; pass --pod-ip and --host-ip (status.podIP, status.hostIP), or run in a namespace with no route out",
            )
            .await?
        }
    }
    netns::add_to_loopback(&s.addresses)
        .await
        .map_err(|e| Fatal::Runtime(format!("link-local: {e}")))?;
    for a in &s.addresses {
        tracing::info!(address = %a, "on lo");
    }
    if let Some(port) = s.redirect_port {
        crate::sidecar::port_redirect::redirect_port_80(&s.addresses, port)
            .map_err(|e| Fatal::Runtime(format!("link-local: {e}")))?;
        for a in &s.addresses {
            let to = std::net::SocketAddr::new(*a, port);
            tracing::info!(address = %a, "tcp port 80 redirected to {to}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a network namespace with a route out, where the link-local
/// addresses on `lo` would hijack a real metadata service for every process:
/// `link-local` without proof of a pod's namespace, and `dev --link-local`.
/// The message starts with `who` and the routes, then `advice`.
pub(crate) async fn refuse_route_out(who: &str, advice: &str) -> Result<(), Fatal> {
    let routes = netns::routes_out()
        .await
        .map_err(|e| Fatal::Runtime(format!("{who}: {e}")))?;
    if routes.is_empty() {
        return Ok(());
    }
    Err(Fatal::usage(format!(
        "{who}: this network namespace has a route out ({}){advice}",
        routes.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn args(address: &[&str], pod: Option<&str>, host: Option<&str>) -> LinkLocalArgs {
        LinkLocalArgs {
            address: address.iter().map(|s| s.to_string()).collect(),
            pod_ip: pod.map(String::from),
            host_ip: host.map(String::from),
            redirect_port: None,
        }
    }

    #[test]
    fn defaults_should_be_the_ecs_and_imds_addresses() {
        let s = validate(&args(&[], None, None), &HashMap::new()).unwrap();
        assert_eq!(s.addresses, DEFAULT_ADDRESSES.to_vec());
        assert_eq!(s.pod, None);
        assert_eq!(s.redirect_port, None);
    }

    #[test]
    fn redirect_port_should_be_a_port_other_than_80() {
        let with = |port: &str| LinkLocalArgs {
            redirect_port: Some(port.to_string()),
            ..args(&[], None, None)
        };
        let s = validate(&with("9911"), &HashMap::new()).unwrap();
        assert_eq!(s.redirect_port, Some(9911));
        for (bad, why) in [
            ("80", "is the port that is redirected"),
            ("0", "is out of range; expected 1 to 65535"),
            ("65536", "is not a whole number"),
            ("http", "is not a whole number"),
        ] {
            let errs = validate(&with(bad), &HashMap::new()).unwrap_err();
            let text = errs[0].to_string();
            assert!(
                text.starts_with(&format!("--redirect-port: \"{bad}\"")),
                "{text}"
            );
            assert!(text.contains(why), "{bad}: {text}");
        }
    }

    #[test]
    fn only_credential_addresses_and_ip_pairs_should_pass() {
        let errs = validate(
            &args(&["10.0.0.1", "169.254.1.1"], Some("x"), None),
            &HashMap::new(),
        )
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        assert!(errs.contains("--address: \"10.0.0.1\""), "{errs}");
        assert!(errs.contains("--address: \"169.254.1.1\""), "{errs}");
        assert!(
            errs.contains("--pod-ip: \"x\" is not an IP address"),
            "{errs}"
        );
        let errs = validate(&args(&[], Some("10.0.0.5"), None), &HashMap::new()).unwrap_err();
        assert!(
            errs[0].to_string().contains("is given without --host-ip"),
            "{errs:?}"
        );
        let env: HashMap<String, String> = [
            ("IRSA_PROXY_POD_IP".to_string(), "10.0.0.5".to_string()),
            ("IRSA_PROXY_HOST_IP".to_string(), "10.0.1.1".to_string()),
        ]
        .into();
        let s = validate(&args(&["fd00:ec2::254"], None, None), &env).unwrap();
        assert_eq!(
            s.pod.map(|(p, _)| p.to_string()).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            s.addresses,
            vec!["fd00:ec2::254".parse::<IpAddr>().unwrap()]
        );
    }
}
