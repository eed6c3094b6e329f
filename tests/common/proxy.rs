//! The real `irsa-proxy` binary, started for one test on 127.0.0.1:0 with a clean
//! environment, its stderr captured line by line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ProxyBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

pub struct ProxyProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<String>>,
    /// Holds the temporary HOME alive.
    _home: tempfile::TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_irsa-proxy")
}

/// A command for the binary with an environment that has no AWS credentials,
/// no profile files and no IMDS.
pub fn clean_command(home: &std::path::Path) -> Command {
    // Empty profile files: no credentials, and no warning about missing files.
    let _ = std::fs::write(home.join("no-config"), "");
    let _ = std::fs::write(home.join("no-credentials"), "");
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

impl ProxyBuilder {
    /// `serve` with the given role, token file and STS endpoint, on 127.0.0.1:0.
    pub fn serve(token_file: &std::path::Path, sts_url: &str) -> ProxyBuilder {
        ProxyBuilder {
            args: vec![
                "serve".into(),
                "--role-arn".into(),
                "arn:aws:iam::123456789012:role/test-role".into(),
                "--token-file".into(),
                token_file.display().to_string(),
                "--sts-endpoint".into(),
                sts_url.into(),
                "--region".into(),
                "us-east-1".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--shutdown-delay".into(),
                "0s".into(),
            ],
            env: vec![("RUST_LOG".into(), "info".into())],
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Replaces a flag's value (the first occurrence).
    pub fn set(mut self, flag: &str, value: &str) -> Self {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            self.args[i + 1] = value.into();
        } else {
            self.args.push(flag.into());
            self.args.push(value.into());
        }
        self
    }

    /// Removes a flag and its value.
    pub fn without(mut self, flag: &str) -> Self {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            self.args.drain(i..i + 2);
        }
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn start(self) -> ProxyProcess {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = clean_command(home.path());
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start irsa-proxy");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                        .collect();
                    if let Ok(a) = addr.parse() {
                        let _ = tx.send(a);
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "irsa-proxy did not report its address; logs:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        ProxyProcess {
            child,
            addr,
            logs,
            _home: home,
        }
    }
}

impl ProxyProcess {
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The parsed ECS credentials (status 200 expected).
    pub async fn ecs(&self, auth: Option<&str>) -> super::Reply {
        let mut h = vec![];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        super::request(self.addr, "GET", "/v1/credentials", &h).await
    }

    pub async fn metrics(&self) -> String {
        super::request(self.addr, "GET", "/metrics", &[]).await.body
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
