//! Where the SDK clients of the tests are: `tests/clients/` and the Python that
//! has boto3 (CI puts its venv first on PATH).

use std::path::{Path, PathBuf};

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The Python interpreter that has boto3, resolved with the caller's
/// environment (version managers such as pyenv need it) so that it can then
/// run with a cleared one.
pub fn python_with_boto3() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, boto3; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 not found ({e}); install Python 3, then `pip install -r tests/requirements.txt`")
        });
    assert!(
        out.status.success(),
        "boto3 is not importable by python3: `pip install -r tests/requirements.txt`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!exe.is_empty(), "python3 did not report sys.executable");
    exe
}
