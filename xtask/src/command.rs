//! Running child processes: echo the command line, fail with the command named, and optionally
//! keep a copy of what the child printed while still showing it live.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};

/// What a finished child printed (stdout and stderr, interleaved by line) and how it ended.
pub struct Transcript {
    pub status: ExitStatus,
    pub text: String,
}

/// `program arg arg ...` with the environment variables this project sets shown first.
pub fn describe(command: &Command) -> String {
    let mut line = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            line.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    line.push_str(&command.get_program().to_string_lossy());
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` with inherited stdio; an error names the command and its exit status.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Runs `command`, returning its stdout if it succeeded (nothing is echoed).
pub fn capture(command: &mut Command) -> Result<String> {
    let shown = describe(command);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        bail!("`{shown}` failed: {}", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// Runs `command`, printing its output live and returning a copy. A non-zero exit is not an
/// error here: the caller reads the transcript and decides.
pub fn run_and_record(command: &mut Command) -> Result<Transcript> {
    let shown = describe(command);
    println!("$ {shown}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("child stdout")?;
    let stderr = child.stderr.take().context("child stderr")?;
    let readers = [
        forward_lines(stdout, lines_tx.clone(), false),
        forward_lines(stderr, lines_tx, true),
    ];
    let mut text = String::new();
    for line in lines_rx {
        text.push_str(&line);
        text.push('\n');
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    Ok(Transcript { status, text })
}

fn forward_lines(
    source: impl Read + Send + 'static,
    lines: mpsc::Sender<String>,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if to_stderr {
                        let _ = writeln!(std::io::stderr(), "{line}");
                    } else {
                        let _ = writeln!(std::io::stdout(), "{line}");
                    }
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}
