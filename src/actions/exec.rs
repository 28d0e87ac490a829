//! Running Postfix, Dovecot and password programs: argv only (never a shell, so log
//! values stay data), input on stdin, a hard timeout, output drained while it runs
//! (`postqueue -j` on a full queue prints megabytes).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::model::Span;

pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The first line of stderr (or stdout), for one-line outcome texts.
    pub fn first_line(&self) -> String {
        let pick = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &self.stderr
        } else {
            &self.stdout
        };
        String::from_utf8_lossy(pick)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    }

    /// `program exited with 1: first line` for errors.
    pub fn failure(&self, program: &Path) -> String {
        let status = match self.code {
            Some(c) => format!("exited with {c}"),
            None => "was killed".to_owned(),
        };
        format!("{} {status}: {}", program.display(), self.first_line())
    }
}

/// Runs `program args…`, feeding `input`, killing it after `timeout`.
pub fn run(
    program: &Path,
    args: &[&str],
    input: Option<&[u8]>,
    timeout: Span,
) -> Result<Ran, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), input) {
        // A program that exits without reading its input is its own error; keep going.
        let _ = stdin.write_all(data);
    }
    let deadline = Instant::now() + Duration::from_millis(timeout.millis() as u64);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Ran {
            code: s.code(),
            stdout,
            stderr,
        }),
        None => Err(format!("{} timed out after {timeout}", program.display())),
    }
}
