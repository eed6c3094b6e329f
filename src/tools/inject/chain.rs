//! Role chaining in manifests: `inject`'s chain flags become the sidecar's
//! `IRSA_PROXY_*` variables (the ExternalId from a Secret's key, read by the
//! kubelet when the sidecar starts), checked by the same code `serve` uses, so
//! a manifest `inject` writes never makes a sidecar that refuses to start.

use serde_json::Value;

use super::pod::{env_from_secret, env_var};
use crate::cli::{InjectArgs, ServeArgs};
use crate::flags::{serve as sf, FlagError, Flags, NoEnvironment, Refusal};

/// The key of `--chain-external-id-secret` that holds the ExternalId.
pub(crate) const EXTERNAL_ID_KEY: &str = "external-id";

/// The chain settings of the sidecar, as env entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainEnv {
    /// Name and value, in a stable order.
    values: Vec<(&'static str, String)>,
    /// The Secret holding the last hop's ExternalId.
    external_id_secret: Option<String>,
}

impl ChainEnv {
    /// Reads and checks `inject`'s chain flags, recording every refusal.
    pub(crate) fn from_args(flags: &mut Flags<'_>, args: &InjectArgs) -> ChainEnv {
        let serve_args = ServeArgs {
            chain: args.chain.clone(),
            session_name: args.session_name.clone(),
            ..Default::default()
        };
        // Checked on its own environment-free copy: the refusals name inject's
        // flags, which are serve's names.
        let mut own = Flags::new(&NoEnvironment);
        let plan = crate::sidecar::chain::Plan::from_args(&mut own, &serve_args, None);
        for e in own.finish(|| Some(())).err().into_iter().flatten() {
            flags.refuse(e);
        }
        if let Some(name) = &args.chain_external_id_secret {
            if plan.hops.is_empty() {
                flags.refuse(FlagError::refused(
                    "--chain-external-id-secret",
                    None,
                    name,
                    Refusal::new(
                        "needs a chain",
                        "--chain-role-arn too: the ExternalId goes with its last hop",
                    ),
                ));
            }
        }
        let mut values = Vec::new();
        let mut put = |name: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                values.push((name, v));
            }
        };
        put(
            sf::CHAIN_ROLE_ARN.env[0],
            (!args.chain.chain_role_arn.is_empty()).then(|| args.chain.chain_role_arn.join(",")),
        );
        put(sf::SESSION_NAME.env[0], args.session_name.clone());
        put(
            sf::SESSION_TAGS.env[0],
            (!args.chain.session_tags.is_empty()).then(|| args.chain.session_tags.join(",")),
        );
        put(
            sf::TRANSITIVE_TAG_KEYS.env[0],
            args.chain.transitive_tag_keys.clone(),
        );
        put(
            sf::SOURCE_IDENTITY.env[0],
            args.chain.source_identity.clone(),
        );
        put(sf::CLUSTER_NAME.env[0], args.chain.cluster_name.clone());
        put(sf::CLUSTER_ARN.env[0], args.chain.cluster_arn.clone());
        ChainEnv {
            values,
            external_id_secret: args.chain_external_id_secret.clone(),
        }
    }

    /// The sidecar's env entries.
    pub(crate) fn entries(&self) -> Vec<Value> {
        let mut env: Vec<Value> = self
            .values
            .iter()
            .map(|(name, v)| env_var(name, v))
            .collect();
        if let Some(secret) = &self.external_id_secret {
            env.push(env_from_secret(
                sf::CHAIN_EXTERNAL_ID.env[0],
                secret,
                EXTERNAL_ID_KEY,
            ));
        }
        env
    }
}
