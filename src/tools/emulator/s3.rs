//! A small in-memory S3 on the emulator's port, so that an app under `dev` can
//! do its real work (put and get objects) with the credentials it was given, and
//! be refused as S3 would refuse it when they are expired or were never issued.
//!
//! # Wire contract
//!
//! - Path-style only: `/{bucket}` and `/{bucket}/{key}` (STS keeps `/`). SDKs use
//!   path style on their own for an endpoint that is an IP address
//!   (`AWS_ENDPOINT_URL_S3=http://127.0.0.1:PORT`).
//! - Operations: `CreateBucket` (`PUT /b`), `HeadBucket` (`HEAD /b`),
//!   `PutObject` (`PUT /b/k`), `GetObject` (`GET /b/k`), `HeadObject`
//!   (`HEAD /b/k`), `DeleteObject` (`DELETE /b/k`). Any other subresource or
//!   operation answers `501 NotImplemented`.
//! - Every request is verified as [`super::sigv4`] verifies `GetCallerIdentity`
//!   (scope `s3`, S3's canonical request) and recorded in the ledger.
//! - Credentials issued with a session policy (`session_policy.rs`) may do
//!   only what it allows: `s3:CreateBucket`/`s3:ListBucket` (HeadBucket) on
//!   `arn:aws:s3:::bucket`, `s3:PutObject`/`s3:GetObject` (also HeadObject)/
//!   `s3:DeleteObject` on `arn:aws:s3:::bucket/key`; else `403 AccessDenied`
//!   `User: <session> is not authorized to perform: <action> on resource:
//!   "<arn>" because no session policy allows the <action> action` (or `with
//!   an explicit deny in a session policy`), recorded in the ledger.
//! - `x-amz-content-sha256`: a hex SHA-256 (checked against the body,
//!   `XAmzContentSHA256Mismatch`), `UNSIGNED-PAYLOAD`, and the `aws-chunked`
//!   forms `STREAMING-UNSIGNED-PAYLOAD-TRAILER`,
//!   `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` (decoded; the seed
//!   signature is verified, the per-chunk signatures are not).
//! - Checksums (`x-amz-checksum-crc32|sha1|sha256` in a header or a trailer) are
//!   verified (`BadDigest`); `crc32c` and `crc64nvme` are accepted unverified.
//!   `Content-MD5` is not checked, and ETags are not MD5s (they are opaque).
//! - Errors are S3's XML `<Error><Code/><Message/>...<RequestId/><HostId/></Error>`
//!   with S3's codes and statuses (`NoSuchBucket`, `NoSuchKey`, `ExpiredToken`,
//!   `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`,
//!   `EntityTooLarge`, ...); `HEAD` errors have no body.
//! - Bounded: objects up to [`MAX_OBJECT_BYTES`], at most [`MAX_OBJECTS`]
//!   objects and [`MAX_TOTAL_BYTES`] in all, [`MAX_BUCKETS`] buckets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::ledger::CallClass;
use super::sigv4::{self, Payload, Refused, Service};
use super::xml::escape;
use super::State;

/// Largest object stored.
pub(crate) const MAX_OBJECT_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes held across all objects.
pub(crate) const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// Most objects held.
pub(crate) const MAX_OBJECTS: usize = 1000;
/// Most buckets.
pub(crate) const MAX_BUCKETS: usize = 100;
/// Request bodies read at once: with the per-body limit, what bounds the memory
/// that uploads in flight can take (about 130 MiB) whatever the connections.
const UPLOADS_IN_FLIGHT: usize = 16;
/// Room for `aws-chunked` framing around the largest object.
const FRAMING_BYTES: usize = 256 * 1024;

/// One stored object.
#[derive(Debug, Clone)]
struct Object {
    body: Bytes,
    etag: String,
    content_type: Option<String>,
    last_modified: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    bytes: usize,
    objects: usize,
}

/// The buckets and their objects.
#[derive(Debug)]
pub(crate) struct Objects {
    /// A std `Mutex`: no `.await` happens while it is held.
    inner: Mutex<Inner>,
    /// Permits to read a request body ([`UPLOADS_IN_FLIGHT`]).
    uploads: tokio::sync::Semaphore,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            inner: Mutex::default(),
            uploads: tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT),
        }
    }
}

impl Objects {
    pub(crate) fn with_buckets(names: &[String]) -> Objects {
        let objects = Objects::default();
        {
            let mut inner = objects.lock();
            for n in names.iter().take(MAX_BUCKETS) {
                inner.buckets.entry(n.clone()).or_default();
            }
        }
        objects
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// An S3 error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Error {
    pub code: &'static str,
    pub message: String,
    pub status: StatusCode,
    /// Extra elements: `Key`, `BucketName`, `MaxSizeAllowed`...
    pub extra: Vec<(&'static str, String)>,
}

impl S3Error {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> S3Error {
        S3Error {
            code,
            message: message.into(),
            status,
            extra: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.extra.push((name, value.into()));
        self
    }

    fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new(
            "NoSuchBucket",
            StatusCode::NOT_FOUND,
            "The specified bucket does not exist",
        )
        .with("BucketName", bucket)
    }

    fn not_implemented(what: &str) -> S3Error {
        S3Error::new(
            "NotImplemented",
            StatusCode::NOT_IMPLEMENTED,
            format!("A header or operation you provided implies functionality that is not implemented: {what} (irsa-proxy's S3 emulator serves CreateBucket, HeadBucket, PutObject, GetObject, HeadObject and DeleteObject)"),
        )
    }

    fn invalid_request(message: impl Into<String>) -> S3Error {
        S3Error::new("InvalidRequest", StatusCode::BAD_REQUEST, message)
    }

    /// The refusal of a signed request, in S3's words.
    fn from_refusal(r: &Refused) -> S3Error {
        match r.class {
            CallClass::Expired | CallClass::Revoked => S3Error::new(
                "ExpiredToken",
                StatusCode::BAD_REQUEST,
                "The provided token has expired.",
            ),
            CallClass::NeverIssued => S3Error::new(
                "InvalidAccessKeyId",
                StatusCode::FORBIDDEN,
                "The AWS Access Key Id you provided does not exist in our records.",
            ),
            _ => match r.fault.code {
                "SignatureDoesNotMatch" => S3Error::new(
                    "SignatureDoesNotMatch",
                    StatusCode::FORBIDDEN,
                    r.fault.message.clone(),
                ),
                "MissingAuthenticationToken" => S3Error::new(
                    "AccessDenied",
                    StatusCode::FORBIDDEN,
                    "Anonymous access is forbidden: sign the request with the credentials irsa-proxy serves",
                ),
                _ => S3Error::new(
                    "AuthorizationHeaderMalformed",
                    StatusCode::BAD_REQUEST,
                    r.fault.message.clone(),
                ),
            },
        }
    }

    /// The `<Error>` document.
    pub(crate) fn to_xml(&self, request_id: &str) -> String {
        let mut extra = String::new();
        for (name, value) in &self.extra {
            extra.push_str(&format!("<{name}>{}</{name}>", escape(value)));
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>{extra}<RequestId>{}</RequestId><HostId>{}</HostId></Error>",
            escape(self.code),
            escape(&self.message),
            escape(request_id),
            escape(&host_id(request_id)),
        )
    }
}

/// `x-amz-id-2`: opaque, derived from the request id.
fn host_id(request_id: &str) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, request_id.as_bytes()).as_ref())
}

fn request_id() -> String {
    let b: [u8; 8] = rand::random();
    b.iter().map(|x| format!("{x:02X}")).collect()
}

type S3Response = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: Bytes, request_id: &str) -> S3Response {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&host_id(request_id)) {
        h.insert("x-amz-id-2", v);
    }
    h.insert(
        header::SERVER,
        HeaderValue::from_static("irsa-proxy-s3-emulator"),
    );
    resp
}

fn error_response(e: &S3Error, method: &Method, request_id: &str) -> S3Response {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(e.to_xml(request_id))
    };
    let mut resp = respond(e.status, body, request_id);
    if method != Method::HEAD {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
    }
    resp
}

/// The request, once its bucket and key are read from the path.
#[derive(Debug)]
struct Target {
    bucket: String,
    /// `None` for a bucket operation.
    key: Option<String>,
}

fn target(path: &str) -> Result<Target, S3Error> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b, Some(k)),
        Some((b, _)) => (b, None),
        None => (path, None),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| S3Error::invalid_request("The path is not valid UTF-8 once decoded"))
    };
    let bucket = decode(bucket)?;
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid {
        return Err(S3Error::new(
            "InvalidBucketName",
            StatusCode::BAD_REQUEST,
            "The specified bucket is not valid.",
        )
        .with("BucketName", bucket));
    }
    let key = key.map(decode).transpose()?;
    if key.as_ref().is_some_and(|k| k.len() > 1024) {
        return Err(S3Error::new(
            "KeyTooLongError",
            StatusCode::BAD_REQUEST,
            "Your key is too long",
        ));
    }
    Ok(Target { bucket, key })
}

fn entity_too_large() -> S3Error {
    S3Error::new(
        "EntityTooLarge",
        StatusCode::BAD_REQUEST,
        "Your proposed upload exceeds the maximum allowed object size (irsa-proxy's S3 emulator keeps objects up to 8 MiB).",
    )
    .with("MaxSizeAllowed", MAX_OBJECT_BYTES.to_string())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The body as decoded, and the trailers an `aws-chunked` body carried.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub data: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

/// Decodes an `aws-chunked` body:
/// `SIZE[;chunk-signature=SIG]\r\nDATA\r\n ... 0[;...]\r\n[NAME:VALUE\r\n]*\r\n`.
pub(crate) fn decode_aws_chunked(body: &[u8], limit: usize) -> Result<Decoded, S3Error> {
    let malformed = || {
        S3Error::new(
            "IncompleteBody",
            StatusCode::BAD_REQUEST,
            "The aws-chunked body is malformed.",
        )
    };
    let line = |at: usize| -> Result<(&[u8], usize), S3Error> {
        let rest = body.get(at..).ok_or_else(malformed)?;
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(malformed)?;
        Ok((&rest[..end], at + end + 2))
    };
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let (head, next) = line(at)?;
        let size_hex = head.split(|b| *b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(malformed)?;
        at = next;
        if size == 0 {
            break;
        }
        if data.len().saturating_add(size) > limit {
            return Err(entity_too_large());
        }
        let chunk = body
            .get(at..at.saturating_add(size))
            .ok_or_else(malformed)?;
        data.extend_from_slice(chunk);
        at += size;
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err(malformed());
        }
        at += 2;
    }
    let mut trailers = Vec::new();
    while at < body.len() {
        let (l, next) = line(at)?;
        at = next;
        if l.is_empty() {
            break;
        }
        let l = std::str::from_utf8(l).map_err(|_| malformed())?;
        let (name, value) = l.split_once(':').ok_or_else(malformed)?;
        trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Decoded { data, trailers })
}

/// Checks the `x-amz-checksum-*` values given (header or trailer) against the data.
fn check_checksums(data: &[u8], given: &[(String, String)]) -> Result<(), S3Error> {
    for (name, value) in given {
        let Some(algorithm) = name.strip_prefix("x-amz-checksum-") else {
            continue;
        };
        let computed = match algorithm {
            "crc32" => STANDARD.encode(crc32fast::hash(data).to_be_bytes()),
            "sha256" => STANDARD.encode(digest::digest(&digest::SHA256, data).as_ref()),
            "sha1" => {
                STANDARD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref())
            }
            // Accepted unverified (docs/dev.md says so).
            "crc32c" | "crc64nvme" => continue,
            // `x-amz-checksum-type`, `-algorithm`, `-mode`: not checksums.
            _ => continue,
        };
        if computed != *value {
            return Err(S3Error::new(
                "BadDigest",
                StatusCode::BAD_REQUEST,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(())
}

/// The object's data from the body, as `x-amz-content-sha256` says it is framed.
fn payload_data(declared: &str, headers: &HeaderMap, body: &[u8]) -> Result<Decoded, S3Error> {
    let decoded = match declared {
        "UNSIGNED-PAYLOAD" => Decoded {
            data: body.to_vec(),
            trailers: Vec::new(),
        },
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => {
            let d = decode_aws_chunked(body, MAX_OBJECT_BYTES)?;
            if let Some(n) = header_str(headers, "x-amz-decoded-content-length") {
                if n.parse::<usize>().ok() != Some(d.data.len()) {
                    return Err(S3Error::new(
                        "IncompleteBody",
                        StatusCode::BAD_REQUEST,
                        "You did not provide the number of bytes specified by the x-amz-decoded-content-length header.",
                    ));
                }
            }
            d
        }
        hash if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let actual = digest::digest(&digest::SHA256, body);
            let actual: String = actual.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            if !actual.eq_ignore_ascii_case(hash) {
                return Err(S3Error::new(
                    "XAmzContentSHA256Mismatch",
                    StatusCode::BAD_REQUEST,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
            Decoded {
                data: body.to_vec(),
                trailers: Vec::new(),
            }
        }
        other => {
            return Err(S3Error::new(
                "InvalidArgument",
                StatusCode::BAD_REQUEST,
                format!("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], or a valid sha256 value; got {other:?}"),
            ))
        }
    };
    if decoded.data.len() > MAX_OBJECT_BYTES {
        return Err(entity_too_large());
    }
    let mut given: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-amz-checksum-"))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.trim().to_string())))
        .collect();
    given.extend(decoded.trailers.iter().cloned());
    check_checksums(&decoded.data, &given)?;
    Ok(decoded)
}

/// The IAM action and resource ARN of a request (`None` for what this S3
/// does not serve), in the partition of the session that signed it.
fn s3_action(method: &Method, target: &Target, session: &str) -> Option<(&'static str, String)> {
    let partition = session.split(':').nth(1).unwrap_or("aws");
    let bucket = format!("arn:{partition}:s3:::{}", target.bucket);
    let action = match (method, &target.key) {
        (&Method::PUT, None) => "s3:CreateBucket",
        (&Method::HEAD, None) => "s3:ListBucket",
        (&Method::PUT, Some(_)) => "s3:PutObject",
        (&Method::GET | &Method::HEAD, Some(_)) => "s3:GetObject",
        (&Method::DELETE, Some(_)) => "s3:DeleteObject",
        _ => return None,
    };
    let resource = match &target.key {
        Some(key) => format!("{bucket}/{key}"),
        None => bucket,
    };
    Some((action, resource))
}

/// Serves one S3 request.
pub(crate) async fn handle(req: Request<Incoming>, state: &State, peer: SocketAddr) -> S3Response {
    let request_id = request_id();
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let mut access_key_id = None;
    let payload = header_str(&parts.headers, "x-amz-content-sha256")
        .map(|v| if v.len() == 64 { "sha256" } else { v })
        .unwrap_or("-")
        .to_string();
    let result = serve(parts, body, state, &mut access_key_id).await;
    let akid = access_key_id.as_deref().unwrap_or("-");
    match result {
        Ok((op, resp)) => {
            tracing::info!(%peer, request_id, operation = op, access_key_id = akid, payload, status = resp.status().as_u16(), "s3-emulator: {op}");
            let mut resp = resp;
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-amz-request-id", v);
            }
            if let Ok(v) = HeaderValue::from_str(&host_id(&request_id)) {
                resp.headers_mut().insert("x-amz-id-2", v);
            }
            resp
        }
        Err(e) => {
            tracing::info!(%peer, request_id, access_key_id = akid, code = e.code, status = e.status.as_u16(), "s3-emulator: refused: {}", e.message);
            error_response(&e, &method, &request_id)
        }
    }
}

async fn serve(
    parts: http::request::Parts,
    body: Incoming,
    state: &State,
    access_key_id: &mut Option<String>,
) -> Result<(&'static str, S3Response), S3Error> {
    let target = target(parts.uri.path())?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    if let Some(n) =
        header_str(&parts.headers, "content-length").and_then(|n| n.parse::<usize>().ok())
    {
        if n > MAX_OBJECT_BYTES + FRAMING_BYTES {
            return Err(entity_too_large());
        }
    }
    let body = {
        // Never closed, so acquiring cannot fail; a closed semaphore would
        // only mean reading without a permit.
        let _permit = state.s3.uploads.acquire().await.ok();
        Limited::new(body, MAX_OBJECT_BYTES + FRAMING_BYTES)
            .collect()
            .await
            .map_err(|_| entity_too_large())?
            .to_bytes()
    };

    // What the signature covers of the body.
    let presigned = query.iter().any(|(k, _)| k == "X-Amz-Signature");
    let declared = match header_str(&parts.headers, "x-amz-content-sha256") {
        Some(v) => v.to_string(),
        None if presigned => "UNSIGNED-PAYLOAD".to_string(),
        None if parts.headers.contains_key(header::AUTHORIZATION) => {
            return Err(S3Error::invalid_request(
                "Missing required header for this request: x-amz-content-sha256",
            ))
        }
        None => "UNSIGNED-PAYLOAD".to_string(),
    };
    let now = state.settings.clock.now();
    let verified = sigv4::verify(
        &parts,
        &query,
        Payload::Declared(declared.clone()),
        &state.store,
        &state.settings.ledger,
        Service::S3,
        now,
    );
    if let Some(k) = auth_key(&parts, &query) {
        *access_key_id = Some(k);
    }
    let creds = verified.map_err(|r| S3Error::from_refusal(&r))?;

    // Subresources and query parameters other than the SDKs' `x-id` mark
    // operations this emulator does not serve.
    let signing = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "x-id",
    ];
    if let Some((k, _)) = query.iter().find(|(k, _)| !signing.contains(&k.as_str())) {
        return Err(S3Error::not_implemented(&format!("?{k}")));
    }

    // The session policy the credentials were issued with, if any.
    if let (Some(sp), Some((action, resource))) = (
        &creds.session.session_policy,
        s3_action(&parts.method, &target, &creds.assumed_role_arn),
    ) {
        if let Err(denied) = sp.check(action, &resource) {
            state
                .settings
                .ledger
                .denied(&creds.assumed_role_arn, action, &resource);
            return Err(S3Error::new(
                "AccessDenied",
                StatusCode::FORBIDDEN,
                format!(
                    "User: {} is not authorized to perform: {action} on resource: \"{resource}\" {denied}",
                    creds.assumed_role_arn
                ),
            ));
        }
    }

    let objects = &state.s3;
    match (&parts.method, target.key) {
        (&Method::PUT, None) => {
            let mut inner = objects.lock();
            if !inner.buckets.contains_key(&target.bucket) && inner.buckets.len() >= MAX_BUCKETS {
                return Err(S3Error::new(
                    "TooManyBuckets",
                    StatusCode::BAD_REQUEST,
                    format!("You have attempted to create more buckets than allowed ({MAX_BUCKETS} in irsa-proxy's S3 emulator)."),
                ));
            }
            inner.buckets.entry(target.bucket.clone()).or_default();
            let mut resp = respond(StatusCode::OK, Bytes::new(), "");
            if let Ok(v) = HeaderValue::from_str(&format!("/{}", target.bucket)) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(("CreateBucket", resp))
        }
        (&Method::HEAD, None) => {
            if objects.lock().buckets.contains_key(&target.bucket) {
                Ok(("HeadBucket", respond(StatusCode::OK, Bytes::new(), "")))
            } else {
                Err(S3Error::no_such_bucket(&target.bucket))
            }
        }
        (_, None) => Err(S3Error::not_implemented(&format!(
            "{} on a bucket",
            parts.method
        ))),
        (&Method::PUT, Some(key)) => {
            if parts.headers.contains_key("x-amz-copy-source") {
                return Err(S3Error::not_implemented("CopyObject"));
            }
            let decoded = payload_data(&declared, &parts.headers, &body)?;
            let data = Bytes::from(decoded.data);
            let etag = etag(&data);
            let object = Object {
                etag: etag.clone(),
                content_type: header_str(&parts.headers, "content-type").map(str::to_string),
                last_modified: now,
                body: data,
            };
            put(objects, &target.bucket, key, object)?;
            let mut resp = respond(StatusCode::OK, Bytes::new(), "");
            if let Ok(v) = HeaderValue::from_str(&etag) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            // Echo the checksums the client sent, as S3 does.
            for (name, value) in parts
                .headers
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("x-amz-checksum-"))
                .map(|(n, v)| (n.clone(), v.clone()))
                .chain(decoded.trailers.iter().filter_map(|(n, v)| {
                    Some((
                        header::HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                }))
                .filter(|(n, _)| n.as_str().starts_with("x-amz-checksum-"))
            {
                resp.headers_mut().insert(name, value);
            }
            Ok(("PutObject", resp))
        }
        (&Method::GET | &Method::HEAD, Some(key)) => {
            if parts.headers.contains_key(header::RANGE) {
                return Err(S3Error::not_implemented("Range"));
            }
            let object = {
                let inner = objects.lock();
                let bucket = inner
                    .buckets
                    .get(&target.bucket)
                    .ok_or_else(|| S3Error::no_such_bucket(&target.bucket))?;
                bucket.get(&key).cloned().ok_or_else(|| {
                    S3Error::new(
                        "NoSuchKey",
                        StatusCode::NOT_FOUND,
                        "The specified key does not exist.",
                    )
                    .with("Key", key.clone())
                })?
            };
            let head = parts.method == Method::HEAD;
            let len = object.body.len();
            let mut resp = respond(
                StatusCode::OK,
                if head { Bytes::new() } else { object.body },
                "",
            );
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&object.etag) {
                h.insert(header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(object.last_modified)) {
                h.insert(header::LAST_MODIFIED, v);
            }
            let ct = object
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("binary/octet-stream"));
            h.insert(header::CONTENT_TYPE, ct);
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if head {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            Ok((if head { "HeadObject" } else { "GetObject" }, resp))
        }
        (&Method::DELETE, Some(key)) => {
            let mut inner = objects.lock();
            let inner = &mut *inner;
            let bucket = inner
                .buckets
                .get_mut(&target.bucket)
                .ok_or_else(|| S3Error::no_such_bucket(&target.bucket))?;
            if let Some(old) = bucket.remove(&key) {
                inner.bytes -= old.body.len();
                inner.objects -= 1;
            }
            Ok((
                "DeleteObject",
                respond(StatusCode::NO_CONTENT, Bytes::new(), ""),
            ))
        }
        (m, Some(_)) => Err(S3Error::new(
            "MethodNotAllowed",
            StatusCode::METHOD_NOT_ALLOWED,
            format!("The specified method is not allowed against this resource: {m}"),
        )),
    }
}

/// The access key id a request names, for the log line.
fn auth_key(parts: &http::request::Parts, query: &[(String, String)]) -> Option<String> {
    let credential = match parts.headers.get(header::AUTHORIZATION) {
        Some(v) => v.to_str().ok()?.split("Credential=").nth(1)?.to_string(),
        None => query
            .iter()
            .find(|(k, _)| k == "X-Amz-Credential")?
            .1
            .clone(),
    };
    let key = credential.split('/').next()?;
    (!key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| key.to_string())
}

/// An opaque ETag (not an MD5): the first 16 bytes of the SHA-256, quoted.
fn etag(data: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, data);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// Stores `object`, within the bounds.
fn put(objects: &Objects, bucket: &str, key: String, object: Object) -> Result<(), S3Error> {
    let mut inner = objects.lock();
    let inner = &mut *inner;
    let b = inner
        .buckets
        .get_mut(bucket)
        .ok_or_else(|| S3Error::no_such_bucket(bucket))?;
    let replaced = b.get(&key).map(|o| o.body.len());
    let objects_after = inner.objects + usize::from(replaced.is_none());
    let bytes_after = inner.bytes - replaced.unwrap_or(0) + object.body.len();
    if objects_after > MAX_OBJECTS || bytes_after > MAX_TOTAL_BYTES {
        return Err(S3Error::invalid_request(format!(
            "irsa-proxy's S3 emulator holds at most {MAX_OBJECTS} objects and {} MiB in all; delete some objects first",
            MAX_TOTAL_BYTES / (1024 * 1024)
        )));
    }
    inner.objects = objects_after;
    inner.bytes = bytes_after;
    b.insert(key, object);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_should_decode_with_their_trailers() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let d = decode_aws_chunked(body, 100).unwrap();
        assert_eq!(d.data, b"hello world");
        assert_eq!(
            d.trailers,
            [("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]
        );
        check_checksums(&d.data, &d.trailers).unwrap();
        let signed = b"3;chunk-signature=abc\r\nabc\r\n0;chunk-signature=def\r\n\r\n";
        assert_eq!(decode_aws_chunked(signed, 100).unwrap().data, b"abc");
        for bad in [&b"zz\r\n"[..], b"5\r\nhel", b"3\r\nabcXY0\r\n\r\n", b""] {
            assert!(decode_aws_chunked(bad, 100).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode_aws_chunked(b"a\r\n0123456789\r\n0\r\n\r\n", 5)
                .unwrap_err()
                .code,
            "EntityTooLarge"
        );
    }

    #[test]
    fn a_wrong_checksum_should_be_bad_digest() {
        let e = check_checksums(
            b"hello",
            &[("x-amz-checksum-crc32".into(), "AAAAAA==".into())],
        )
        .unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("BadDigest", 400));
        assert!(check_checksums(b"x", &[("x-amz-checksum-crc32c".into(), "?".into())]).is_ok());
    }

    #[test]
    fn paths_should_name_a_valid_bucket_and_a_decoded_key() {
        let t = target("/my-bucket/dir/a%20b.txt").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.key.as_deref()),
            ("my-bucket", Some("dir/a b.txt"))
        );
        assert_eq!(target("/my-bucket/").unwrap().key, None);
        assert_eq!(
            target("/My_Bucket/k").unwrap_err().code,
            "InvalidBucketName"
        );
        assert_eq!(target("/ab/k").unwrap_err().code, "InvalidBucketName");
    }

    #[test]
    fn error_documents_should_be_s3_shaped_and_escaped() {
        let xml = S3Error::new(
            "NoSuchKey",
            StatusCode::NOT_FOUND,
            "The specified key does not exist.",
        )
        .with("Key", "<k>")
        .to_xml("RID");
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
        ));
        assert!(xml.contains("<Key>&lt;k&gt;</Key><RequestId>RID</RequestId><HostId>"));
    }

    #[test]
    fn storage_should_be_bounded() {
        let objects = Objects::with_buckets(&["b".to_string()]);
        let obj = |n: usize| Object {
            body: Bytes::from(vec![0u8; n]),
            etag: String::new(),
            content_type: None,
            last_modified: SystemTime::UNIX_EPOCH,
        };
        for i in 0..8 {
            put(&objects, "b", format!("k{i}"), obj(MAX_OBJECT_BYTES)).unwrap();
        }
        assert_eq!(
            put(&objects, "b", "k8".into(), obj(1)).unwrap_err().code,
            "InvalidRequest"
        );
        // Replacing an object frees its bytes first.
        put(&objects, "b", "k0".into(), obj(1)).unwrap();
        assert_eq!(
            put(&objects, "x", "k".into(), obj(1)).unwrap_err().code,
            "NoSuchBucket"
        );
    }
}
