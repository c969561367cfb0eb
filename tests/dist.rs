//! Release archives from scripts/dist.sh: names in the registry's convention, a SHA256SUMS file that
//! `sha256sum -c` accepts, a packed filesystem mirror that `terraform init -plugin-dir` installs on
//! every Terraform (checksums in the lock file, examples/provider valid), and the detached signature.
//! The script packages the binaries `cargo test` built (or a release build newer than them): it never
//! starts a release build here.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::support::terraform::target_dir;
use crate::support::{terraform_binaries, Workspace};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PLATFORM: &str = "linux_amd64";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn provider_zip() -> String {
    format!("terraform-provider-iaprun_{VERSION}_{PLATFORM}.zip")
}

fn emulator_zip() -> String {
    format!("iaprun-emulator_{VERSION}_{PLATFORM}.zip")
}

fn sums_file() -> String {
    format!("terraform-provider-iaprun_{VERSION}_SHA256SUMS")
}

fn manifest_file() -> String {
    format!("terraform-provider-iaprun_{VERSION}_manifest.json")
}

/// The provider and emulator to package: the release build when it is newer than the debug build
/// cargo made for this run (so it comes from these sources), else that debug build.
fn binaries() -> (PathBuf, PathBuf) {
    let debug = [
        PathBuf::from(env!("CARGO_BIN_EXE_terraform-provider-iaprun")),
        PathBuf::from(env!("CARGO_BIN_EXE_iaprun-emulator")),
    ];
    let release = debug.clone().map(|p| {
        target_dir()
            .join("release")
            .join(p.file_name().expect("binary name"))
    });
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let release_is_current = release
        .iter()
        .zip(&debug)
        .all(|(r, d)| matches!((modified(r), modified(d)), (Some(r), Some(d)) if r >= d));
    let [provider, emulator] = if release_is_current { release } else { debug };
    eprintln!(
        "dist tests package {} and {}",
        provider.display(),
        emulator.display()
    );
    (provider, emulator)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Makes `tool` available, installing Debian's `package` when it is missing; panics with the fix
/// when that fails. The tests never skip for want of a tool.
fn require_tool(tool: &str, package: &str) {
    static APT: Mutex<()> = Mutex::new(());
    if on_path(tool) {
        return;
    }
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !on_path(tool) && !install() {
        let _ = Command::new("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .output();
        install();
    }
    assert!(
        on_path(tool),
        "the release tests need `{tool}`, which is not on PATH and could not be installed; install Debian's `{package}` (apt-get install {package})"
    );
}

/// Runs scripts/dist.sh into `dist` with the test binaries and `env`, outside any caller setting.
fn run_dist(dist: &Path, provider: &Path, emulator: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(repo().join("scripts/dist.sh"))
        .stdin(Stdio::null())
        .env("DIST_DIR", dist)
        .env("IAPRUN_PROVIDER_BIN", provider)
        .env("IAPRUN_EMULATOR_BIN", emulator)
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"));
    for key in [
        "DIST_TARGETS",
        "DIST_PROFILE",
        "GPG_FINGERPRINT",
        "GPG_PASSPHRASE",
        "SOURCE_DATE_EPOCH",
    ] {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run bash scripts/dist.sh")
}

fn describe(output: &Output) -> String {
    format!(
        "scripts/dist.sh exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory under target/tmp")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Terraform's `h1:` package hash (Go's dirhash Hash1): the SHA-256 of the sorted lines
/// "<hex SHA-256 of the file>  <path>\n" of the package's files, in base64.
fn h1_hash(files: &[(&str, &[u8])]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
        .collect();
    lines.sort();
    let digest = Sha256::digest(lines.concat().as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The entry names of a zip, as `unzip -Z1` lists them.
fn zip_entries(zip: &Path) -> Vec<String> {
    let output = Command::new("unzip")
        .arg("-Z1")
        .arg(zip)
        .output()
        .expect("run unzip");
    assert!(output.status.success(), "unzip -Z1 {}", zip.display());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("read directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// The SHA256SUMS file as (file name, hex hash) pairs, in file order.
fn checksums(dist: &Path) -> Vec<(String, String)> {
    fs::read_to_string(dist.join(sums_file()))
        .expect("read SHA256SUMS")
        .lines()
        .map(|line| {
            let (hash, name) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("not a sha256sum line: {line:?}"));
            (name.to_string(), hash.to_string())
        })
        .collect()
}

/// `text` (starting with a hex digit, as checksums do) with its first digit changed.
fn first_digit_changed(text: &str) -> String {
    let replacement = if text.starts_with('0') { "1" } else { "0" };
    format!("{replacement}{}", &text[1..])
}

fn lock_file_with(hash: &str) -> String {
    format!(
        "provider \"registry.terraform.io/iaprun/iaprun\" {{\n  version = \"{VERSION}\"\n  hashes = [\n    \"{hash}\",\n  ]\n}}\n"
    )
}

#[test]
fn packed_mirror_installs_on_every_terraform_with_the_checksums_of_sha256sums() {
    require_tool("zip", "zip");
    require_tool("unzip", "unzip");
    require_tool("sha256sum", "coreutils");
    let (provider, emulator) = binaries();
    let out = temp_dir("dist-");
    let dist = out.path().join("dist");

    let output = run_dist(&dist, &provider, &emulator, &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "[sign]    skipped: GPG_FINGERPRINT is not set, so there is no {}.sig",
            sums_file()
        )),
        "no clear line about the missing signature:\n{}",
        describe(&output)
    );

    // Exactly the registry's names, and the packed mirror layout beside them.
    let mirrored = format!(
        "mirror/registry.terraform.io/iaprun/iaprun/{}",
        provider_zip()
    );
    let mut expected = vec![
        emulator_zip(),
        mirrored.clone(),
        sums_file(),
        provider_zip(),
        manifest_file(),
    ];
    expected.sort();
    assert_eq!(files_under(&dist), expected);
    let provider_zip_bytes = fs::read(dist.join(provider_zip())).expect("read provider zip");
    assert!(fs::read(dist.join(&mirrored)).expect("read mirrored zip") == provider_zip_bytes);
    let binary_name = format!("terraform-provider-iaprun_v{VERSION}");
    assert_eq!(
        zip_entries(&dist.join(provider_zip())),
        [binary_name.as_str()]
    );
    assert_eq!(zip_entries(&dist.join(emulator_zip())), ["iaprun-emulator"]);
    assert_eq!(
        fs::read(dist.join(manifest_file())).expect("read manifest"),
        fs::read(repo().join("terraform-registry-manifest.json")).expect("read the repository's")
    );

    // SHA256SUMS covers every archive and the manifest, and sha256sum agrees with it.
    let sums = checksums(&dist);
    let listed: BTreeSet<&str> = sums.iter().map(|(name, _)| name.as_str()).collect();
    let archives = [emulator_zip(), provider_zip(), manifest_file()];
    assert_eq!(listed, archives.iter().map(String::as_str).collect());
    let check = Command::new("sha256sum")
        .args(["-c", &sums_file()])
        .current_dir(&dist)
        .output()
        .expect("run sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let provider_sum = &sums
        .iter()
        .find(|(name, _)| *name == provider_zip())
        .expect("the provider zip is listed")
        .1;

    // The emulator archive runs as extracted.
    let unpacked = out.path().join("emulator");
    let unzip = Command::new("unzip")
        .args(["-q", "-d"])
        .arg(&unpacked)
        .arg(dist.join(emulator_zip()))
        .status()
        .expect("run unzip");
    assert!(unzip.success());
    let help = Command::new(unpacked.join("iaprun-emulator"))
        .arg("--help")
        .output()
        .expect("run the unpacked emulator");
    assert!(
        help.status.success()
            && String::from_utf8_lossy(&help.stdout)
                .contains("iaprun-emulator: an offline emulator"),
        "the unpacked emulator does not run: {help:?}"
    );

    let binary = fs::read(&provider).expect("read the packaged provider");
    let h1 = h1_hash(&[(&binary_name, &binary)]);
    let config = fs::read_to_string(repo().join("examples/provider/provider.tf"))
        .expect("read examples/provider");
    let plugin_dir = format!("-plugin-dir={}", dist.join("mirror").display());
    let init = ["init", "-input=false", "-no-color", plugin_dir.as_str()];
    for terraform in terraform_binaries() {
        let who = format!("Terraform {}", terraform.version);
        // A fresh install: the lock file records the hash of exactly what the zip holds.
        let workspace = Workspace::new(&terraform, &config);
        let run = workspace.run(&init).expect_success();
        assert!(
            run.stdout
                .contains(&format!("Installed iaprun/iaprun v{VERSION}")),
            "{who}: {run}"
        );
        let lock = fs::read_to_string(workspace.dir().join(".terraform.lock.hcl"))
            .expect("terraform init writes .terraform.lock.hcl");
        assert!(
            lock.contains(&format!("\"{h1}\"")),
            "{who}: the lock file lacks {h1}:\n{lock}"
        );
        let installed = workspace.dir().join(format!(
            ".terraform/providers/registry.terraform.io/iaprun/iaprun/{VERSION}/{PLATFORM}/{binary_name}"
        ));
        assert!(
            fs::read(&installed).expect("the installed provider") == binary,
            "{who}: the installed binary differs from the packaged one"
        );
        let validate = workspace.validate_json().expect_success();
        assert_eq!(validate.json()["valid"], true, "{who}: {validate}");

        // A lock file holding only the SHA256SUMS entry (as a registry install records it):
        // terraform checks the archive against it, and refuses one digit off.
        let locked = Workspace::new(&terraform, &config);
        locked.write(
            ".terraform.lock.hcl",
            &lock_file_with(&format!("zh:{provider_sum}")),
        );
        let run = locked.run(&init);
        assert!(
            run.success(),
            "{who}: the SHA256SUMS checksum is refused: {run}"
        );
        let lock = fs::read_to_string(locked.dir().join(".terraform.lock.hcl")).expect("lock");
        assert!(
            lock.contains(&format!("\"zh:{provider_sum}\"")) && lock.contains(&h1),
            "{who}: {lock}"
        );
        let wrong = first_digit_changed(provider_sum);
        let tampered = Workspace::new(&terraform, &config);
        tampered.write(
            ".terraform.lock.hcl",
            &lock_file_with(&format!("zh:{wrong}")),
        );
        let run = tampered.run(&init);
        assert!(
            !run.success() && run.stderr.contains("doesn't match any of the checksums"),
            "{who}: a wrong checksum was accepted: {run}"
        );
    }
}

/// An executable holding only the first 20 bytes of an ELF header for `machine` (bytes 18-19: 0x3e
/// x86-64, 0xb7 aarch64): enough for the script's platform check, when what it packs does not matter.
fn elf_stand_in(dir: &Path, name: &str, machine: u8) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut header = vec![0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[18] = machine;
    let path = dir.join(name);
    fs::write(&path, header).expect("write the stand-in binary");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("make it executable");
    path
}

/// Runs gpg with `home` as its GNUPGHOME.
fn gpg(home: &Path, args: &[&str]) -> Output {
    Command::new("gpg")
        .arg("--batch")
        .args(args)
        .env("GNUPGHOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run gpg")
}

/// Stops the gpg-agent that gpg started for `home`.
struct AgentGuard<'a>(&'a Path);

impl Drop for AgentGuard<'_> {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.0)
            .output();
    }
}

#[test]
fn checksums_are_signed_with_the_key_given_in_the_environment() {
    require_tool("gpg", "gnupg");
    require_tool("zip", "zip");
    require_tool("sha256sum", "coreutils");
    // gpg-agent's socket path must stay short, so the keyring lives in the system temp directory.
    let home = tempfile::tempdir().expect("temporary GNUPGHOME");
    let _agent = AgentGuard(home.path());
    let passphrase = "throwaway passphrase";
    // RSA: the key type the Terraform Registry accepts.
    let generated = gpg(
        home.path(),
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            "iaprun release test <release-test@example.invalid>",
            "rsa2048",
            "sign",
            "never",
        ],
    );
    assert!(
        generated.status.success(),
        "gpg --quick-gen-key: {generated:?}"
    );
    let listing = gpg(home.path(), &["--with-colons", "--list-secret-keys"]);
    let fingerprint = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .expect("the new key's fingerprint");

    let out = temp_dir("dist-signed-");
    let dist = out.path().join("dist");
    // What is signed is the checksum file, whatever the binaries: small stand-ins keep this quick.
    let provider = elf_stand_in(out.path(), "terraform-provider-iaprun", 0x3e);
    let emulator = elf_stand_in(out.path(), "iaprun-emulator", 0x3e);
    let home_str = home.path().to_str().expect("UTF-8 temp path");
    let output = run_dist(
        &dist,
        &provider,
        &emulator,
        &[
            ("GNUPGHOME", home_str),
            ("GPG_FINGERPRINT", &fingerprint),
            ("GPG_PASSPHRASE", passphrase),
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!(
            "[sign]    {}.sig, signed by {fingerprint}",
            sums_file()
        )),
        "{}",
        describe(&output)
    );

    let sums = dist.join(sums_file());
    let signature = dist.join(format!("{}.sig", sums_file()));
    let bytes = fs::read(&signature).expect("the signature file");
    // A binary OpenPGP packet (the tag byte's top bit is set), not ASCII armour.
    assert!(
        bytes.first().is_some_and(|b| b & 0x80 != 0),
        "not a binary signature"
    );
    let sig = signature.to_str().expect("UTF-8 path");
    let verify = gpg(
        home.path(),
        &[
            "--status-fd",
            "1",
            "--verify",
            sig,
            sums.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(
        verify.status.success()
            && String::from_utf8_lossy(&verify.stdout).contains(&format!("VALIDSIG {fingerprint}")),
        "the signature does not verify: {verify:?}"
    );
    // It covers these exact checksums: one changed line fails it.
    let altered = out.path().join("altered_SHA256SUMS");
    let text = fs::read_to_string(&sums).expect("read SHA256SUMS");
    fs::write(&altered, first_digit_changed(&text)).expect("write the altered copy");
    let verify = gpg(
        home.path(),
        &["--verify", sig, altered.to_str().expect("UTF-8 path")],
    );
    assert!(!verify.status.success(), "an altered SHA256SUMS verifies");
}

#[test]
fn a_signing_key_missing_from_the_keyring_stops_the_script_before_it_writes() {
    require_tool("gpg", "gnupg");
    let home = tempfile::tempdir().expect("temporary GNUPGHOME");
    let _agent = AgentGuard(home.path());
    let out = temp_dir("dist-nokey-");
    let dist = out.path().join("dist");
    let provider = elf_stand_in(out.path(), "terraform-provider-iaprun", 0x3e);
    let emulator = elf_stand_in(out.path(), "iaprun-emulator", 0x3e);
    let output = run_dist(
        &dist,
        &provider,
        &emulator,
        &[
            ("GNUPGHOME", home.path().to_str().expect("UTF-8 path")),
            (
                "GPG_FINGERPRINT",
                "0123456789ABCDEF0123456789ABCDEF01234567",
            ),
        ],
    );
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "GPG_FINGERPRINT=0123456789ABCDEF0123456789ABCDEF01234567 names no secret key"
        ),
        "{}",
        describe(&output)
    );
    assert!(!dist.exists(), "the script wrote {} anyway", dist.display());
}

#[test]
fn a_binary_for_another_platform_is_not_packaged_as_linux_amd64() {
    let out = temp_dir("dist-arch-");
    let foreign = elf_stand_in(out.path(), "terraform-provider-iaprun", 0xb7);
    let emulator = elf_stand_in(out.path(), "iaprun-emulator", 0x3e);
    let dist = out.path().join("dist");
    let output = run_dist(&dist, &foreign, &emulator, &[]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("is not a linux_amd64 executable (ELF machine b700)"),
        "{}",
        describe(&output)
    );
    assert!(
        !dist.join(provider_zip()).exists(),
        "a zip was written for the wrong binary"
    );
}
