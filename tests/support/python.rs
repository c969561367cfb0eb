//! Python packages from PyPI installed once under target/ (`pip install --target`), for tests that
//! drive the emulator with Google's own client libraries.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::terraform::{target_dir, FileLock};

/// Installs `requirements` (pinned `name==version` lines) into `target/<name>/`, unless an earlier
/// run did; returns the directory to put on PYTHONPATH. Parallel test processes wait on a file
/// lock instead of racing. A failed install is an error, never a skip.
pub fn pip_target(name: &str, requirements: &[&str]) -> Result<PathBuf, String> {
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
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--target",
        ])
        .arg(&staging)
        .args(requirements)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run python3 -m pip: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "pip install {} failed: {}",
            requirements.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::write(staging.join(".requirements"), &wanted).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&home);
    fs::rename(&staging, &home).map_err(|e| e.to_string())?;
    eprintln!(
        "installed {} Python packages into {} in {:.1} s",
        requirements.len(),
        home.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(home)
}
