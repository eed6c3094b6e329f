//! The real [`AssumeRole`]: `aws-sdk-sts`, unsigned (the token is the proof,
//! so the client is built with no credentials provider at all), over the SDK's
//! HTTP client configured for the route: proxy, trust roots, endpoint variants.
//! Region and endpoint resolution, retries with back-off inside one attempt,
//! and `AWS_ENDPOINT_URL_STS` come from the SDK.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sts::config::endpoint::{self, ResolveEndpoint as _};
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use super::diagnose::{ask_the_proxy, classify_sdk_error, error_chain};
use super::{AssumeRequest, AssumeRole, ErrorClass, StsError};
use crate::flags::Refusal;
use crate::sidecar::credentials::Credentials;
use crate::sidecar::egress::{CaBundle, EgressSettings, HttpClientError, Route, StsEndpoints};

/// Why the STS client cannot be built: a configuration that cannot work. Each
/// is one line naming where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The profile's `ca_bundle` is not a usable PEM bundle.
    #[error("{from}: {path:?} {why}")]
    ProfileCaBundle {
        from: String,
        path: String,
        why: Refusal,
    },
    /// The profile's `sts_regional_endpoints` is neither `regional` nor `legacy`.
    #[error("sts_regional_endpoints of profile {profile:?}: {value:?} {why}")]
    ProfileStsEndpoints {
        profile: String,
        value: String,
        why: Refusal,
    },
    /// The SDK's endpoint rules refuse the settings (FIPS with a custom
    /// endpoint, a region without a FIPS endpoint, ...).
    #[error("STS endpoint: {0}")]
    Endpoint(String),
    /// The proxy URL or the TLS settings of the HTTP client.
    #[error(transparent)]
    HttpClient(#[from] HttpClientError),
}

/// Settings of the real STS client.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Proxy, trust roots and endpoint variants (crate::sidecar::egress).
    pub egress: EgressSettings,
}

/// `aws-sdk-sts`, unsigned, over the SDK's HTTP client configured for the
/// route (proxy and trust roots).
#[derive(Debug, Clone)]
pub struct SdkSts {
    client: aws_sdk_sts::Client,
    /// Which way the calls go, to say so when one fails.
    route: Arc<Route>,
    /// Scrubs proxy passwords from error text.
    egress: Arc<EgressSettings>,
}

impl SdkSts {
    /// Builds the client and resolves the endpoint once. Without a region, the
    /// profile's region is used, then `us-east-1` (the global STS endpoint's
    /// region); IMDS is not asked, since on a laptop or in a pod without a node
    /// role it only delays start-up.
    ///
    /// `Err` is one line for a configuration that cannot work: the profile's
    /// `ca_bundle` unusable, or endpoint settings the SDK's rules refuse (FIPS
    /// with a custom endpoint, a region that has no FIPS endpoint, ...).
    pub async fn new(settings: &ClientSettings) -> Result<SdkSts, ClientError> {
        let profile = aws_config::profile::load(
            &aws_types::os_shim_internal::Fs::real(),
            &aws_types::os_shim_internal::Env::real(),
            &Default::default(),
            None,
        )
        .await
        .ok();
        let from_profile = |key: &str| {
            profile.as_ref().and_then(|p| {
                p.get(key)
                    .map(|v| (v.to_string(), p.selected_profile().to_string()))
            })
        };
        let trust = match (&settings.egress.ca_bundle, from_profile("ca_bundle")) {
            (Some(b), _) => Some(b.clone()),
            (None, Some((path, name))) => {
                let from = format!("ca_bundle of profile {name:?}");
                match CaBundle::load(Path::new(&path), from.clone()) {
                    Ok(b) => Some(b),
                    Err(why) => return Err(ClientError::ProfileCaBundle { from, path, why }),
                }
            }
            (None, None) => None,
        };
        let sts_endpoints = match (
            settings.egress.sts_endpoints,
            from_profile("sts_regional_endpoints"),
        ) {
            (Some(e), _) => e,
            (None, Some((value, profile))) => {
                StsEndpoints::parse(&value).map_err(|why| ClientError::ProfileStsEndpoints {
                    profile,
                    value: value.clone(),
                    why,
                })?
            }
            (None, None) => StsEndpoints::Regional,
        };

        let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .no_credentials()
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some(url) = &settings.endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(fips) = settings.egress.use_fips {
            loader = loader.use_fips(fips);
        }
        if let Some(dual) = settings.egress.use_dual_stack {
            loader = loader.use_dual_stack(dual);
        }
        let config = loader.load().await;

        let region = config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let use_fips = config.use_fips().unwrap_or(false);
        let use_dual_stack = config.use_dual_stack().unwrap_or(false);
        let legacy = sts_endpoints == StsEndpoints::Legacy;
        let params = endpoint::Params::builder()
            .region(region.clone())
            .use_fips(use_fips)
            .use_dual_stack(use_dual_stack)
            .set_endpoint(config.endpoint_url().map(str::to_string))
            .use_global_endpoint(legacy)
            .build()
            .map_err(|e| ClientError::Endpoint(e.to_string()))?;
        let resolved = endpoint::DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| ClientError::Endpoint(error_chain(e.as_ref())))?;
        let resolved_from = match config.endpoint_url() {
            Some(url) => format!("--sts-endpoint/AWS_ENDPOINT_URL_STS {url}"),
            None => format!(
                "region {region}, FIPS {}, dual-stack {}, {} STS endpoints",
                on_off(use_fips),
                on_off(use_dual_stack),
                if legacy { "legacy" } else { "regional" }
            ),
        };
        let route = Route::new(
            resolved.url().to_string(),
            region,
            resolved_from,
            &settings.egress,
            trust.as_ref(),
        );
        let http = crate::sidecar::egress::http_client(&route, &settings.egress)?;
        let sts_config = aws_sdk_sts::config::Builder::from(&config)
            .http_client(http)
            .endpoint_resolver(GlobalAware {
                legacy,
                inner: endpoint::DefaultResolver::new(),
            })
            .build();
        Ok(SdkSts {
            client: aws_sdk_sts::Client::from_conf(sts_config),
            route: Arc::new(route),
            egress: Arc::new(settings.egress.clone()),
        })
    }

    /// Which way the calls go.
    pub fn route(&self) -> &Route {
        &self.route
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The SDK's STS endpoint rules, with `UseGlobalEndpoint` set from
/// `AWS_STS_REGIONAL_ENDPOINTS`, which the Rust SDK does not read itself.
#[derive(Debug)]
struct GlobalAware {
    legacy: bool,
    inner: endpoint::DefaultResolver,
}

impl endpoint::ResolveEndpoint for GlobalAware {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a endpoint::Params,
    ) -> endpoint::EndpointFuture<'a> {
        use endpoint::EndpointFuture;
        use futures_util::FutureExt as _;
        let with_global = endpoint::Params::builder()
            .set_region(params.region().map(str::to_string))
            .set_use_fips(params.use_fips())
            .set_use_dual_stack(params.use_dual_stack())
            .set_endpoint(params.endpoint().map(str::to_string))
            .use_global_endpoint(self.legacy)
            .build();
        let result = match with_global {
            // The generated resolver answers at once; it never waits.
            Ok(p) => self
                .inner
                .resolve_endpoint(&p)
                .now_or_never()
                .unwrap_or_else(|| Err("the STS endpoint resolver did not answer at once".into())),
            Err(e) => Err(e.into()),
        };
        EndpointFuture::ready(result)
    }
}

impl AssumeRole for SdkSts {
    async fn assume(&self, request: AssumeRequest) -> Result<Credentials, StsError> {
        let out = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&request.role_arn)
            .role_session_name(&request.session_name)
            .duration_seconds(request.duration.as_secs().min(i32::MAX as u64) as i32)
            .web_identity_token(request.token.expose())
            .set_policy(request.policy.document)
            .set_policy_arns(policy_arns(request.policy.arns))
            .send()
            .await;
        match out {
            Ok(out) => credentials_from(out.credentials(), out.assumed_role_user()),
            Err(e) => Err(self.failure(e).await),
        }
    }
}

/// `PolicyArns` as the SDK takes them; `None` (the parameter left out) when
/// there are none.
pub(crate) fn policy_arns(
    arns: Vec<String>,
) -> Option<Vec<aws_sdk_sts::types::PolicyDescriptorType>> {
    (!arns.is_empty()).then(|| {
        arns.into_iter()
            .map(|a| {
                aws_sdk_sts::types::PolicyDescriptorType::builder()
                    .arn(a)
                    .build()
            })
            .collect()
    })
}

impl SdkSts {
    /// The SDK client, for the other STS calls (`crate::sidecar::chain`).
    pub(crate) fn client(&self) -> &aws_sdk_sts::Client {
        &self.client
    }

    /// An SDK failure as an [`StsError`], asking the proxy what it answers when
    /// it refused the tunnel.
    pub(crate) async fn failure<E>(&self, err: SdkError<E, HttpResponse>) -> StsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let e = classify_sdk_error(err, &self.route, &self.egress);
        ask_the_proxy(e, &self.route, &self.egress).await
    }
}

/// The credentials of an STS answer (`AssumeRoleWithWebIdentity`, `AssumeRole`).
pub(crate) fn credentials_from(
    credentials: Option<&aws_sdk_sts::types::Credentials>,
    user: Option<&aws_sdk_sts::types::AssumedRoleUser>,
) -> Result<Credentials, StsError> {
    let c = credentials.ok_or_else(|| StsError {
        code: "InvalidResponse".into(),
        message: "STS answered without Credentials".into(),
        class: ErrorClass::Retryable,
    })?;
    let expiration = SystemTime::try_from(*c.expiration()).map_err(|_| StsError {
        code: "InvalidResponse".into(),
        message: "STS answered an Expiration that is not a valid time".into(),
        class: ErrorClass::Retryable,
    })?;
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        c.session_token(),
        expiration,
        user.map(|u| u.arn().to_string()),
    ))
}
