//! `irsa-proxy probe URL`: one HTTP GET, exit 0 on a 2xx answer, 1 otherwise.
//!
//! Kubernetes' `httpGet` probes connect to the pod IP, but `serve` listens on
//! loopback only (the credentials must not be reachable from the network), and the
//! distroless image has no shell or curl. So the sidecar's probes are `exec` probes
//! that run this subcommand inside the container, against 127.0.0.1.

use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::ProbeArgs;
use crate::duration::parse_duration;
use crate::Fatal;

/// The status line is all we read; a bound keeps a confused peer from feeding us.
const MAX_RESPONSE_HEAD: usize = 1024;

pub async fn run(args: ProbeArgs) -> Result<ExitCode, Fatal> {
    let timeout = parse_duration(&args.timeout)
        .map_err(|allowed| Fatal::usage(format!("--timeout: {:?}: {allowed}", args.timeout)))?;
    let (authority, path) =
        parse_url(&args.url).map_err(|why| Fatal::usage(format!("URL: {:?}: {why}", args.url)))?;
    match tokio::time::timeout(timeout, get_status(&authority, &path)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(ExitCode::SUCCESS),
        Ok(Ok(status)) => {
            eprintln!("irsa-proxy probe: {}: HTTP {status}", args.url);
            Ok(ExitCode::from(1))
        }
        Ok(Err(e)) => {
            eprintln!("irsa-proxy probe: {}: {e}", args.url);
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            eprintln!(
                "irsa-proxy probe: {}: no answer within {timeout:?}",
                args.url
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// Splits `http://host:port/path` into `host:port` and `/path`.
fn parse_url(url: &str) -> Result<(String, String), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "expected http://HOST:PORT/PATH")?;
    if uri.scheme_str() != Some("http") {
        return Err("expected an http:// URL");
    }
    let authority = uri.authority().ok_or("expected http://HOST:PORT/PATH")?;
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok((format!("{}:{port}", authority.host()), path.to_string()))
}

async fn get_status(authority: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_RESPONSE_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_should_split_authority_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:9911/readyz"),
            Ok(("127.0.0.1:9911".to_string(), "/readyz".to_string()))
        );
        assert_eq!(
            parse_url("http://localhost"),
            Ok(("localhost:80".to_string(), "/".to_string()))
        );
        assert!(parse_url("https://127.0.0.1/readyz").is_err());
        assert!(parse_url("127.0.0.1:9911").is_err());
    }

    #[tokio::test]
    async fn get_status_should_read_the_status_code() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await?;
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
        });
        assert_eq!(get_status(&addr.to_string(), "/readyz").await?, 503);
        server.await.map_err(std::io::Error::other)??;
        Ok(())
    }
}
