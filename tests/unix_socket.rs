//! The go-plugin unix-socket transport: the handshake announces a socket in a fresh private
//! directory under `PLUGIN_UNIX_SOCKET_DIR`, removed however the plugin ends; another user cannot
//! connect; mutual TLS holds over it as over the TCP fallback; both Terraforms load the provider
//! over it, and reattach mode serves over one.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::plugin;
use crate::support::{terraform_binaries, ClientIdentity, Launch, PluginProcess, Reattached};
use crate::support::{Terraform, Workspace};

/// A directory to pass as `PLUGIN_UNIX_SOCKET_DIR`, in the system's temporary directory (a socket
/// path may be at most 107 bytes long), open for others to enter (mode 0755) so that only the
/// plugin's own directory and socket can keep another user out.
fn socket_base() -> tempfile::TempDir {
    let base = tempfile::Builder::new()
        .prefix("sockets-")
        .tempdir()
        .expect("a base directory");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755");
    base
}

/// The provider with AutoMTLS and `PLUGIN_UNIX_SOCKET_DIR=base`, and more environment.
fn launch(base: &Path, env: &[(&str, &str)]) -> Launch {
    let mut all = vec![(
        "PLUGIN_UNIX_SOCKET_DIR".to_string(),
        base.display().to_string(),
    )];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Launch {
        client: Some(Arc::new(ClientIdentity::generate())),
        env: all,
        ..Launch::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").uid()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list directory")
        .map(|entry| entry.expect("entry").path())
        .collect()
}

/// Waits up to `limit` for `dir` to hold nothing; returns what is left.
fn emptied(dir: &Path, limit: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + limit;
    loop {
        let left = entries(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that `provider` announced a socket in a fresh directory of its own directly under
/// `base`, mode 0700, the socket mode 0600, both ours; returns the socket's directory.
#[track_caller]
fn assert_private_socket(base: &Path, provider: &PluginProcess) -> PathBuf {
    let socket = plugin::socket_path(&provider.handshake.address).to_path_buf();
    let line = &provider.handshake.line;
    assert!(line.starts_with("1|5|unix|"), "{line}");
    let directory = socket.parent().expect("socket directory").to_path_buf();
    assert_eq!(
        directory.parent(),
        Some(base),
        "{line}: not directly under {base:?}"
    );
    assert_eq!(
        entries(base),
        vec![directory.clone()],
        "one fresh directory"
    );
    assert_eq!(
        entries(&directory),
        vec![socket.clone()],
        "only the socket in it"
    );
    let metadata = std::fs::metadata(&socket).expect("socket metadata");
    assert!(metadata.file_type().is_socket(), "{socket:?} is a socket");
    assert_eq!(mode(&directory), 0o700, "directory mode");
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(owner(&directory), owner(base), "directory owner");
    assert_eq!(owner(&socket), owner(base), "socket owner");
    directory
}

/// GetSchema answers over mutual TLS on the announced socket.
async fn answers(provider: &PluginProcess) {
    let channel = provider.channel().await.expect("mutual TLS channel");
    let schema = plugin::get_schema(channel)
        .await
        .expect("GetSchema over the socket");
    assert!(!schema.resource_schemas.is_empty());
}

// Several threads: the client's connection tasks must run while this thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_directory_is_private_and_goes_however_the_plugin_ends() {
    for (ending, signal) in [
        ("Shutdown", None),
        ("SIGTERM", Some(libc::SIGTERM)),
        ("SIGHUP", Some(libc::SIGHUP)),
    ] {
        let base = socket_base();
        let mut provider = PluginProcess::start(launch(base.path(), &[]));
        let directory = assert_private_socket(base.path(), &provider);
        answers(&provider).await;
        match signal {
            None => {
                let channel = provider.channel().await.expect("channel");
                plugin::shutdown(channel).await.expect("Shutdown answers");
            }
            Some(signal) => provider.signal(signal),
        }
        let status = provider
            .wait_for_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the provider exits after {ending}"));
        assert!(status.success(), "exit status after {ending}: {status}");
        assert!(
            !directory.exists(),
            "{} is left behind after {ending}",
            directory.display()
        );
        assert!(entries(base.path()).is_empty(), "after {ending}");
    }
}

/// The provider started by a shell that exits when its stdin closes, as when Terraform dies:
/// the provider is re-parented, notices, and removes its socket's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_directory_goes_when_the_parent_process_exits() {
    let base = socket_base();
    let launch = launch(base.path(), &[]);
    let inner = plugin::command(&launch);
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let pid_file = scratch.path().join("provider.pid");
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(r#""$0" </dev/null & echo $! > "$1"; read -r _"#)
        .arg(inner.get_program())
        .arg(&pid_file);
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    let mut child = shell
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let hold = child.stdin.take().expect("the shell's stdin");
    let mut shell = PluginProcess::read_handshake(child, launch.client.clone(), Instant::now());
    let pid = provider_pid(&pid_file);
    let directory = assert_private_socket(base.path(), &shell);
    answers(&shell).await;

    drop(hold);
    assert!(
        shell.wait_for_exit(Duration::from_secs(10)).is_some(),
        "the shell exits when its stdin closes"
    );
    let left = emptied(base.path(), Duration::from_secs(10));
    if !left.is_empty() {
        // SAFETY: kill(2) on the orphaned provider this test started, so it does not linger.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "{} left behind 10 s after the parent exited: {left:?}",
        directory.display()
    );
}

/// The pid the shell wrote to `file` (waiting up to 10 s for it).
fn provider_pid(file: &Path) -> libc::pid_t {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // A complete line: the shell may be writing it.
        if let Some(pid) = text.strip_suffix('\n').and_then(|t| t.parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to the unix socket at `path` as `uid`/`gid` (no supplementary groups) in a forked
/// child; returns `Ok` or the errno of the failed step.
fn connect_as(uid: libc::uid_t, gid: libc::gid_t, path: &Path) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    // Everything the child needs is ready before fork: after it, only async-signal-safe calls.
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < address.sun_path.len(), "{path:?} is too long");
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: the child only makes raw system calls (no allocation, no locks) and leaves with
    // _exit; the parent waits for it.
    unsafe {
        match libc::fork() {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let errno = || *libc::__errno_location();
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    libc::_exit(200);
                }
                let socket = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if socket < 0 {
                    libc::_exit(201);
                }
                let connected =
                    libc::connect(socket, std::ptr::addr_of!(address).cast(), length) == 0;
                libc::_exit(if connected { 0 } else { errno().clamp(1, 199) });
            }
            child => {
                let mut status = 0;
                assert_eq!(libc::waitpid(child, &mut status, 0), child, "waitpid");
                assert!(libc::WIFEXITED(status), "the child ended by a signal");
                match libc::WEXITSTATUS(status) {
                    0 => Ok(()),
                    200 => panic!("could not become uid {uid}"),
                    201 => panic!("socket(2) failed as uid {uid}"),
                    errno => Err(errno),
                }
            }
        }
    }
}

#[tokio::test]
async fn another_user_cannot_connect_to_the_socket() {
    let base = socket_base();
    let provider = PluginProcess::start(launch(base.path(), &[]));
    let directory = assert_private_socket(base.path(), &provider);
    let socket = plugin::socket_path(&provider.handshake.address).to_path_buf();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        // Only root can act as another user; the private modes and our ownership (checked above)
        // are then what keeps others out.
        eprintln!(
            "not root (uid {euid}): checked the socket directory is 0700 and the socket 0600, both owned by uid {euid}; no connect attempt as another user"
        );
        return;
    }
    eprintln!("root: connecting as uid 65534 (nobody)");
    // Every directory above the base must let others through, or a refusal would prove nothing.
    for ancestor in base.path().ancestors() {
        assert!(
            mode(ancestor) & 0o001 != 0,
            "{} does not let other users through; the test needs a base they can enter",
            ancestor.display()
        );
    }
    // Control: the same user connects to an open socket beside the plugin's directory.
    let control = base.path().join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&control).expect("control socket");
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert_eq!(
        connect_as(65534, 65534, &control),
        Ok(()),
        "uid 65534 connects to an open socket"
    );

    assert_eq!(
        connect_as(65534, 65534, &socket),
        Err(libc::EACCES),
        "uid 65534 is refused by the 0700 directory"
    );
    // The socket's own mode keeps it out too, should the directory be opened up.
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let through_open_directory = connect_as(65534, 65534, &socket);
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(
        through_open_directory,
        Err(libc::EACCES),
        "uid 65534 is refused by the 0600 socket"
    );
    // The owner still gets in.
    answers(&provider).await;
}

/// The provider's stderr up to the line holding `needle` (waiting up to 10 s for it).
fn stderr_until(provider: &PluginProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut said = Vec::new();
    loop {
        said.extend(provider.stderr_lines());
        if let Some(line) = said.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on stderr:\n{}",
            said.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn mutual_tls_holds_over_the_socket_and_over_the_tcp_fallback() {
    let base = socket_base();
    let missing = base.path().join("missing");
    for (network, socket_dir) in [("unix", base.path()), ("tcp", missing.as_path())] {
        let provider = PluginProcess::start(launch(socket_dir, &[("TF_LOG", "debug")]));
        assert_eq!(
            provider.handshake.address.network(),
            network,
            "{}",
            provider.handshake.line
        );
        if network == "tcp" {
            let said = stderr_until(
                &provider,
                "no unix socket; serving on TCP 127.0.0.1 instead",
            );
            assert!(
                said.contains(&missing.display().to_string()),
                "the fallback names the directory it could not use:\n{said}"
            );
        }
        let admitted = plugin::strangers_admitted(&provider).await;
        assert!(
            admitted.is_empty(),
            "over {network}: {}",
            admitted.join("\n")
        );
        answers(&provider).await;
    }
}

/// `terraform validate` with `TF_LOG=debug` and `PLUGIN_UNIX_SOCKET_DIR`; returns what is wrong.
fn loads_over_the_socket(terraform: &Terraform) -> Vec<String> {
    let version = &terraform.version;
    let base = socket_base();
    let mut workspace = Workspace::new(
        terraform,
        r#"
terraform {
  required_providers {
    iaprun = { source = "iaprun/iaprun" }
  }
}

provider "iaprun" {
  project = "p"
}
"#,
    );
    workspace.init();
    let base_text = base.path().display().to_string();
    workspace
        .env("TF_LOG", "debug")
        .env("PLUGIN_UNIX_SOCKET_DIR", &base_text);
    let run = workspace.run(&["validate", "-no-color"]);
    let mut problems = Vec::new();
    if !run.success() {
        problems.push(format!("terraform {version} validate failed:\n{run}"));
        return problems;
    }
    // The provider's own line, which Terraform's plugin client forwards under the provider's name
    // (Terraform logs a `plugin started` line of its own, without the address).
    let started: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("provider.terraform-provider-iaprun"))
        .filter(|line| line.contains("plugin started"))
        .collect();
    let launched = run
        .stderr
        .lines()
        .filter(|line| line.contains("provider: plugin started"))
        .count();
    if started.is_empty() || started.len() != launched {
        problems.push(format!(
            "terraform {version} started the provider {launched} times; {} said where they serve",
            started.len()
        ));
    }
    let expected_address = format!("address={base_text}/iaprun-plugin-");
    for line in &started {
        if !line.contains("network=unix") || !line.contains(&expected_address) {
            problems.push(format!(
                "terraform {version}: not a socket under {base_text}: {line}"
            ));
        }
    }
    // Every provider process Terraform started removed its directory before it exited.
    let left = entries(base.path());
    if !left.is_empty() {
        problems.push(format!(
            "terraform {version}: socket directories left behind: {left:?}"
        ));
    }
    eprintln!(
        "terraform {version}: {} provider processes served on unix sockets under {base_text}, e.g. {}",
        started.len(),
        started.first().unwrap_or(&"")
    );
    problems
}

#[test]
fn both_terraforms_load_the_provider_over_the_socket() {
    let binaries = terraform_binaries();
    let problems: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = binaries
            .iter()
            .map(|t| scope.spawn(move || loads_over_the_socket(t)))
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("terraform run panicked"))
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Terraform reattaches to the real provider served in-process on a unix socket, under a source
/// address no mirror holds: only the reattached server can have answered.
#[test]
fn reattach_mode_serves_over_a_unix_socket() {
    const FIXTURE: &str = "registry.terraform.io/example/fixture";
    #[allow(clippy::default_constructed_unit_structs)]
    let served = Reattached::serve(iaprun::provider::IaprunProvider::default(), FIXTURE);
    let reattach = served.env_value();
    let value: serde_json::Value = serde_json::from_str(&reattach).expect("JSON");
    assert_eq!(value[FIXTURE]["Addr"]["Network"], "unix", "{reattach}");
    assert_eq!(
        value[FIXTURE]["Addr"]["String"],
        served.socket.display().to_string()
    );
    let config = r#"
terraform {
  required_providers {
    iaprun = { source = "example/fixture" }
  }
}

provider "iaprun" {
  project = "p"
}
"#;
    for terraform in terraform_binaries() {
        let mut workspace = Workspace::new(&terraform, config);
        workspace.env("TF_REATTACH_PROVIDERS", &reattach);
        workspace.init();
        let schema = workspace.providers_schema_json();
        let resources = &schema["provider_schemas"][FIXTURE]["resource_schemas"];
        assert!(
            resources.get("iaprun_access_binding").is_some(),
            "terraform {}: the reattached provider's schema: {schema}",
            terraform.version
        );
    }
}
