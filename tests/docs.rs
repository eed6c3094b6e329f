//! The manual holds: README.md and the pages of docs/.
//!
//! - The configuration reference (docs/configuration.md) is generated from the
//!   clap definitions: its generated part must equal what
//!   [`configuration_reference`] makes of them, and `UPDATE_DOCS=1 cargo
//!   nextest run --test docs` rewrites it. Every variable the code names is on
//!   that page.
//! - Every command shown runs. A ```` ```sh ```` block runs as one script
//!   (`bash -euo pipefail`) and must exit 0. A ```` ```console ```` block is a
//!   session: each `$ ` line (with its `\` continuation lines) is a command, the
//!   lines up to the next command its output, compared with what the command
//!   prints (stdout and stderr), after both sides have their changing values
//!   (times, key ids, secrets, ports, request ids) replaced by placeholders; in
//!   the shown output, `…` stands for any text within a line, and a line that is
//!   only `…` for any number of lines. The blocks of a page run in order, in
//!   one shell, with `irsa-proxy` (the built binary) first on `PATH`, in a
//!   scratch directory holding links to the repository's files, and inside a
//!   network namespace and a `/tmp` of their own (fixed ports, no route out).
//! - A block preceded by `<!-- not run: REASON -->` is not run (it needs a
//!   cluster, an AWS account, a container engine, or is the test suite itself);
//!   one preceded by `<!-- output not compared: REASON -->` runs, but only the
//!   output of its `echo $?` lines is compared, and no command may exit 2
//!   (refused), 126 or 127 (cannot run).
//! - No command shown, run or not, holds `...` or `…`: examples paste as
//!   written. Commands are shown only in `sh` and `console` blocks.
//! - Relative links between the pages lead to a file that exists and, with a
//!   `#fragment`, to one of its headings.
//! - Each task page shows a command within its first 40 lines, and the README
//!   stays within 250 lines.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use irsa_proxy::cli::Cli;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_irsa-proxy");
const CONFIGURATION: &str = "docs/configuration.md";
const BEGIN: &str = "<!-- generated from the clap definitions by tests/docs.rs; `UPDATE_DOCS=1 cargo nextest run --test docs` rewrites it -->";
const END: &str = "<!-- end of the generated reference -->";
/// How long one page's blocks may run, all together.
const PAGE_LIMIT: Duration = Duration::from_secs(170);

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------
// The configuration reference

/// One table per subcommand (and per nested subcommand), in the order of the
/// `irsa-proxy --help` listing.
fn configuration_reference() -> String {
    let mut out = String::new();
    for sub in Cli::command().get_subcommands() {
        describe(&mut out, "irsa-proxy", sub);
    }
    out
}

fn describe(out: &mut String, parent: &str, cmd: &clap::Command) {
    let name = format!("{parent} {}", cmd.get_name());
    out.push_str(&format!("\n## `{name}`\n\n"));
    if let Some(about) = cmd.get_about() {
        out.push_str(&format!("{}\n\n", cell(&about.to_string())));
    }
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    if args.is_empty() {
        out.push_str("No flags.\n");
    } else {
        out.push_str("| flag | value | environment | default | meaning |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for arg in args {
            out.push_str(&row(&name, arg));
        }
    }
    for sub in cmd.get_subcommands() {
        describe(out, &name, sub);
    }
}

/// The subcommands whose flags have environment twins (the others' help may
/// name a variable that they only write, or pass to the sidecar).
fn reads_environment(command: &str) -> bool {
    [
        "irsa-proxy serve",
        "irsa-proxy doctor",
        "irsa-proxy link-local",
    ]
    .contains(&command)
}

/// `A, B, comma-separated` as `` `A`, `B` (comma-separated) ``.
fn environment(note: &str) -> String {
    let (names, words): (Vec<&str>, Vec<&str>) = note.split(", ").partition(|part| {
        part.split('=').next().is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
    });
    let mut out = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if !words.is_empty() {
        out.push_str(&format!(" ({})", words.join(", ")));
    }
    out
}

fn row(command: &str, arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|_| arg.get_action().takes_values())
        .unwrap_or_else(|| "–".into());
    let flag = if arg.is_positional() {
        match arg.is_last_set() {
            true => format!("`-- {}`", value.trim_matches('`')),
            false => format!("{value} (positional)"),
        }
    } else {
        let mut names: Vec<String> = Vec::new();
        if let Some(s) = arg.get_short() {
            names.push(format!("`-{s}`"));
        }
        if let Some(l) = arg.get_long() {
            names.push(format!("`--{l}`"));
        }
        names.join(", ")
    };
    let value = if arg.is_positional() {
        "–".into()
    } else {
        value
    };
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let (meaning, env, default_note) = annotations(&help);
    let repeat = matches!(arg.get_action(), clap::ArgAction::Append) && !arg.is_positional();
    let meaning = match repeat {
        true if !meaning.to_lowercase().contains("repeat") => {
            format!("{meaning} (repeatable)")
        }
        _ => meaning,
    };
    let default = if let Some(d) = default_note {
        format!("`{d}`")
    } else if arg.is_hide_default_value_set() {
        "–".into()
    } else {
        let values: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
            .collect();
        match values.is_empty() {
            true => "–".into(),
            false => format!("`{}`", values.join(", ")),
        }
    };
    let env = env
        .filter(|_| reads_environment(command))
        .map_or_else(|| "–".into(), |e| environment(&e));
    format!(
        "| {flag} | {value} | {} | {} | {} |\n",
        cell(&env),
        cell(&default),
        cell(&meaning)
    )
}

/// The help text without its `[env: …]` and `[default: …]` notes, and those
/// notes.
fn annotations(help: &str) -> (String, Option<String>, Option<String>) {
    let mut text = help.to_string();
    let mut take = |key: &str| -> Option<String> {
        let open = format!("[{key}: ");
        let start = text.find(&open)?;
        let end = start + text[start..].find(']')?;
        let value = text[start + open.len()..end].to_string();
        text.replace_range(start..=end, "");
        Some(value)
    };
    let env = take("env");
    let default = take("default");
    (text.trim().trim_end_matches('.').to_string(), env, default)
}

/// Text fit for a table cell: one line, pipes escaped, and `<` too, so that
/// `<token>` is not taken for an HTML tag.
fn cell(s: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    for c in s.split_whitespace().collect::<Vec<_>>().join(" ").chars() {
        match c {
            '`' => code = !code,
            '|' => out.push('\\'),
            '<' if !code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

#[test]
fn the_configuration_reference_should_be_generated_from_the_clap_definitions() {
    let page = read(CONFIGURATION);
    let (before, rest) = page
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{CONFIGURATION} has no line {BEGIN}"));
    let (generated, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{CONFIGURATION} has no line {END}"));
    let expected = configuration_reference();
    let expected = format!("\n{}\n", expected.trim());
    if generated == expected {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(
            Path::new(ROOT).join(CONFIGURATION),
            format!("{before}{BEGIN}{expected}{END}{after}"),
        )
        .unwrap();
        return;
    }
    let first = generated
        .lines()
        .zip(expected.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("the page has:\n{a}\nthe flags say:\n{b}"))
        .unwrap_or_else(|| "the page and the flags differ in length".into());
    panic!(
        "{CONFIGURATION} is not what the clap definitions say; regenerate it with \
         `UPDATE_DOCS=1 cargo nextest run --test docs`. First difference: {first}"
    );
}

/// Every environment variable the code names (a string literal such as
/// `"IRSA_PROXY_…"`, `"AWS_…"`, `"HTTPS_PROXY"`) is on the configuration page.
#[test]
fn every_variable_the_code_names_should_be_in_the_configuration_reference() {
    let page = read(CONFIGURATION);
    let pattern =
        regex_lite::Regex::new(r#""((?:IRSA_PROXY|AWS)_[A-Z0-9_]+|(?:HTTPS|HTTP|ALL|NO)_PROXY)""#)
            .unwrap();
    let mut missing = BTreeSet::new();
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for cap in pattern.captures_iter(&text) {
            let name = &cap[1];
            // `PREFIX_<NAME>` on the page stands for every name that has
            // that prefix (a role's token variable, say).
            let by_prefix = name
                .match_indices('_')
                .any(|(i, _)| page.contains(&format!("`{}<", &name[..=i])));
            if !by_prefix
                && !page.contains(&format!("`{name}`"))
                && !page.contains(&format!("`{name}="))
            {
                missing.insert(format!("{name} ({})", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "variables the code names that {CONFIGURATION} does not: {missing:#?}"
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

// ---------------------------------------------------------------------------
// Pages and their blocks

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Run,
    NotRun,
    NotCompared,
}

#[derive(Debug)]
struct Block {
    /// `sh`, `console`, or another info string.
    lang: String,
    line: usize,
    mode: Mode,
    text: String,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = page.lines().enumerate();
    let mut last_nonblank = "";
    while let Some((i, line)) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let mode = if last_nonblank.starts_with("<!-- not run:") {
                Mode::NotRun
            } else if last_nonblank.starts_with("<!-- output not compared:") {
                Mode::NotCompared
            } else {
                Mode::Run
            };
            let mut text = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            out.push(Block {
                lang: info.trim().to_string(),
                line: i + 1,
                mode,
                text,
            });
            last_nonblank = "";
        } else if !line.trim().is_empty() {
            last_nonblank = line.trim();
        }
    }
    out
}

/// A console block's commands, each with the output shown after it.
fn session(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        if continued {
            let (cmd, _) = out.last_mut().unwrap();
            cmd.push('\n');
            cmd.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_string(), Vec::new()));
            continued = cmd.ends_with('\\');
        } else if let Some((_, shown)) = out.last_mut() {
            shown.push(line.to_string());
        } else {
            panic!("console block output before any command: {line}");
        }
    }
    out
}

/// The rules for every block, run or not.
fn check_commands_shown(rel: &str, page: &str) {
    for b in blocks(page) {
        let commands: Vec<String> = match b.lang.as_str() {
            "sh" => b.text.lines().map(str::to_string).collect(),
            "console" => session(&b.text).into_iter().map(|(c, _)| c).collect(),
            _ => {
                assert!(
                    !b.text.lines().any(|l| l.starts_with("$ ")),
                    "{rel}:{}: a ```{} block shows `$ ` commands; show commands in ```sh or ```console blocks",
                    b.line,
                    b.lang
                );
                continue;
            }
        };
        for c in commands {
            if c.trim_start().starts_with('#') {
                continue; // a comment, often output shown in an sh block
            }
            let code = c.split(" #").next().unwrap_or_default();
            assert!(
                !code.contains("...") && !code.contains('…'),
                "{rel}:{}: a command with an elision does not paste: {c}",
                b.line
            );
        }
    }
}

/// Values that change from run to run, replaced by placeholders on both sides.
fn normalize(line: &str) -> String {
    const RULES: &[(&str, &str)] = &[
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "<time>",
        ),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<uuid>",
        ),
        (r"\b(ASIA|AROA|AKIA)[A-Z0-9]{12,}", "<id>"),
        (r"[A-Za-z0-9+/=]{32,}", "<blob>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"\((\d+[hms] ?)+ left\)", "(<left>)"),
    ];
    let mut s = line.trim_end().to_string();
    for (pattern, with) in RULES {
        s = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&s, *with)
            .into_owned();
    }
    s
}

fn line_matches(shown: &str, actual: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    if parts.len() == 1 {
        return shown == actual;
    }
    let mut rest = match actual.strip_prefix(parts[0]) {
        Some(r) => r,
        None => return false,
    };
    let last = parts[parts.len() - 1];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn lines_match(shown: &[String], actual: &[String]) -> bool {
    match shown.first() {
        None => actual.is_empty(),
        Some(s) if s == "…" => (0..=actual.len()).any(|n| lines_match(&shown[1..], &actual[n..])),
        Some(s) => {
            !actual.is_empty()
                && line_matches(s, &actual[0])
                && lines_match(&shown[1..], &actual[1..])
        }
    }
}

const MARK: &str = "@@docs-status";

enum Step {
    Sh {
        line: usize,
        text: String,
    },
    Command {
        line: usize,
        cmd: String,
        shown: Option<Vec<String>>,
        compare_status: bool,
    },
}

/// Runs the page's runnable blocks as one shell session and checks each.
fn run_page(rel: &str) {
    let page = read(rel);
    check_commands_shown(rel, &page);
    let mut steps = Vec::new();
    for b in blocks(&page) {
        if b.mode == Mode::NotRun {
            continue;
        }
        match b.lang.as_str() {
            "sh" => steps.push(Step::Sh {
                line: b.line,
                text: b.text,
            }),
            "console" => {
                for (cmd, shown) in session(&b.text) {
                    let is_status = cmd.trim() == "echo $?";
                    let compared = b.mode == Mode::Run || is_status;
                    steps.push(Step::Command {
                        line: b.line,
                        cmd,
                        shown: compared.then_some(shown),
                        compare_status: b.mode == Mode::NotCompared,
                    });
                }
            }
            _ => {}
        }
    }
    if steps.is_empty() {
        return;
    }
    common::podrunner::require_root();
    let work = tempfile::Builder::new()
        .prefix("docs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    for entry in std::fs::read_dir(ROOT).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), work.path().join(&name)).unwrap();
    }
    let home = work.path().join(".home");
    std::fs::create_dir(&home).unwrap();

    let mut script = String::from("exec 2>&1\nset +e\n");
    script.push_str(&format!("cd '{}'\n", work.path().display()));
    for step in &steps {
        match step {
            Step::Sh { text, .. } => script.push_str(&format!(
                "(\nset -euo pipefail\n{text}wait\n)\nprintf '\\n{MARK} %s\\n' $?\n"
            )),
            // The status is printed, then given back to `$?` for an `echo $?`.
            Step::Command { cmd, .. } => script.push_str(&format!(
                "{cmd}\n__docs_status=$?\nprintf '\\n{MARK} %s\\n' $__docs_status\n(exit $__docs_status)\n"
            )),
        }
    }
    let script_file = work.path().join(".page.sh");
    std::fs::write(&script_file, &script).unwrap();

    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--", "bash", "-c"])
        .arg("ip link set lo up && mount -t tmpfs tmpfs /tmp && exec bash \"$0\"")
        .arg(&script_file)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // The AWS CLI may be a pyenv shim, which finds pyenv under the real home.
    if let Some(root) = std::env::var_os("PYENV_ROOT").or_else(|| {
        let p = Path::new(&std::env::var_os("HOME")?).join(".pyenv");
        p.is_dir().then(|| p.into_os_string())
    }) {
        cmd.env("PYENV_ROOT", root);
    }
    let mut child = cmd.spawn().expect("unshare");
    let pgid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > PAGE_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever a block left running in the background goes with the group.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(
        status.is_some(),
        "{rel}: the blocks did not finish within {PAGE_LIMIT:?}; output so far:\n{out}"
    );

    // Split the output at the status marks: one part per step.
    let mut parts: Vec<(Vec<String>, i32)> = Vec::new();
    let mut current = Vec::new();
    for line in out.lines() {
        if let Some(at) = line.find(MARK) {
            // The mark starts a line of its own; text before it on the line
            // came from something still running in the background.
            if at > 0 {
                current.push(line[..at].to_string());
            }
            let code = line[at + MARK.len()..].trim().parse().unwrap();
            parts.push((std::mem::take(&mut current), code));
        } else {
            current.push(line.to_string());
        }
    }
    assert_eq!(
        parts.len(),
        steps.len(),
        "{rel}: {} steps, {} finished; output:\n{out}",
        steps.len(),
        parts.len()
    );
    for (step, (output, code)) in steps.iter().zip(parts) {
        match step {
            Step::Sh { line, text } => assert_eq!(
                code,
                0,
                "{rel}:{line}: the block exited {code}:\n{text}\noutput:\n{}",
                output.join("\n")
            ),
            Step::Command {
                line,
                cmd,
                shown,
                compare_status,
            } => {
                if *compare_status {
                    assert!(
                        ![2, 126, 127].contains(&code),
                        "{rel}:{line}: `{cmd}` exited {code}; output:\n{}",
                        output.join("\n")
                    );
                }
                let Some(shown) = shown else { continue };
                let trim = |v: Vec<String>| {
                    let mut v: Vec<String> = v.iter().map(|l| normalize(l)).collect();
                    while v.last().is_some_and(|l| l.is_empty()) {
                        v.pop();
                    }
                    v
                };
                let shown_n = trim(shown.clone());
                let actual_n = trim(output.clone());
                assert!(
                    lines_match(&shown_n, &actual_n),
                    "{rel}:{line}: `{cmd}` (exit {code}) printed what the page does not show.\n\
                     --- shown:\n{}\n--- printed:\n{}\n--- shown, normalised:\n{}\n--- printed, normalised:\n{}",
                    shown.join("\n"),
                    output.join("\n"),
                    shown_n.join("\n"),
                    actual_n.join("\n")
                );
            }
        }
    }
}

/// The pages with a test of their own, so they run side by side.
macro_rules! pages {
    ($($name:ident => $path:literal,)*) => {
        const PAGES: &[&str] = &[$($path),*];
        $(
            #[test]
            fn $name() {
                run_page($path);
            }
        )*
    };
}

pages! {
    readme_should_run_as_shown => "README.md",
    legacy_apps_page_should_run_as_shown => "docs/legacy-apps.md",
    inject_page_should_run_as_shown => "docs/inject.md",
    webhook_page_should_run_as_shown => "docs/webhook.md",
    dev_page_should_run_as_shown => "docs/dev.md",
    private_clusters_page_should_run_as_shown => "docs/private-clusters.md",
    emulator_page_should_run_as_shown => "docs/emulator.md",
    doctor_page_should_run_as_shown => "docs/doctor.md",
    configuration_page_should_run_as_shown => "docs/configuration.md",
    operations_page_should_run_as_shown => "docs/operations.md",
    development_page_should_run_as_shown => "docs/development.md",
    cross_account_page_should_run_as_shown => "docs/cross-account.md",
}

/// Every other page of docs/ (and SECURITY.md, BENCHMARKS.md), one after the
/// other: a new page is checked without being listed.
#[test]
fn the_other_pages_should_run_as_shown() {
    let mut others: Vec<String> = vec!["SECURITY.md".into(), "BENCHMARKS.md".into()];
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            others.push(format!("docs/{name}"));
        }
    }
    for rel in others.iter().filter(|r| !PAGES.contains(&r.as_str())) {
        run_page(rel);
    }
}

// ---------------------------------------------------------------------------
// Links

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to
/// hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut fenced = false;
    for line in page.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            let base = anchor(line.trim_start_matches('#'));
            let mut name = base.clone();
            let mut n = 0;
            while !set.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
        }
    }
    set
}

#[test]
fn links_between_the_pages_should_resolve() {
    let link = regex_lite::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let code_span = regex_lite::Regex::new(r"`[^`]*`").unwrap();
    let mut pages: Vec<PathBuf> = ["README.md", "SECURITY.md", "BENCHMARKS.md"]
        .iter()
        .map(|p| Path::new(ROOT).join(p))
        .collect();
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let dir = page.parent().unwrap();
        // Links outside code: fenced blocks and code spans dropped.
        let mut fenced = false;
        let prose: String = text
            .lines()
            .filter(|l| {
                if l.starts_with("```") {
                    fenced = !fenced;
                    return false;
                }
                !fenced
            })
            .map(|l| code_span.replace_all(l, "").into_owned() + "\n")
            .collect();
        for cap in link.captures_iter(&prose) {
            let target = &cap[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            if !fragment.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&path).unwrap());
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// The first screen of a task page says what it is for and shows the command
/// to try: a ```` ```sh ```` or ```` ```console ```` block within its first 40
/// lines.
#[test]
fn every_task_page_should_show_a_command_on_its_first_screen() {
    let mut late = Vec::new();
    for rel in PAGES.iter().chain(&["docs/pod-identity.md"]) {
        let page = read(rel);
        let first = blocks(&page)
            .into_iter()
            .find(|b| b.lang == "sh" || b.lang == "console")
            .map(|b| b.line);
        if first.is_none_or(|line| line > 40) {
            late.push(format!("{rel}: first command block at line {first:?}"));
        }
    }
    assert!(late.is_empty(), "{late:#?}");
}

#[test]
fn the_readme_should_stay_short() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; topics go to docs/"
    );
}

#[test]
fn the_matcher_should_treat_an_ellipsis_as_any_text() {
    let v = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(lines_match(&v(&["a…c"]), &v(&["abbbc"])));
    assert!(!lines_match(&v(&["a…c"]), &v(&["abbb"])));
    assert!(lines_match(&v(&["x", "…", "z"]), &v(&["x", "1", "2", "z"])));
    assert!(lines_match(&v(&["x", "…"]), &v(&["x"])));
    assert!(!lines_match(&v(&["x"]), &v(&["x", "y"])));
    assert_eq!(
        normalize("<AccessKeyId>ASIAI0ADRYX9OQ26TGXI</AccessKeyId> at 2026-11-28T21:04:07Z"),
        "<AccessKeyId><id></AccessKeyId> at <time>"
    );
}
