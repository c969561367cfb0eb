#!/usr/bin/env bash
# Release archives: builds the release binaries and writes, for every platform it can build here,
#   terraform-provider-iaprun_{version}_{os}_{arch}.zip   holding terraform-provider-iaprun_v{version}
#   iaprun-emulator_{version}_{os}_{arch}.zip             holding iaprun-emulator
# and once per release terraform-provider-iaprun_{version}_SHA256SUMS (all the zips and the manifest),
# terraform-provider-iaprun_{version}_manifest.json, the detached signature ..._SHA256SUMS.sig when a
# GPG key is given, and mirror/registry.terraform.io/iaprun/iaprun/ (the packed filesystem-mirror
# layout: `terraform init -plugin-dir=dist/mirror`). Runs on Linux x86-64; one line per step.
#
# Optional environment:
#   DIST_DIR                 where to write (default dist/ in the repository, ignored by git)
#   DIST_TARGETS             platforms, e.g. "linux_amd64 linux_arm64" (default: linux_amd64, and
#                            linux_arm64 when its Rust standard library and cross linker are installed)
#   DIST_PROFILE             cargo profile to build (default release; dev packages debug builds fast)
#   IAPRUN_PROVIDER_BIN,     binaries built already, for linux_amd64: with both set, no cargo build
#   IAPRUN_EMULATOR_BIN      (the tests package their debug builds this way)
#   GPG_FINGERPRINT          the key (in gpg's keyring, GNUPGHOME) that signs the SHA256SUMS file;
#                            the Terraform Registry accepts RSA and DSA keys
#   GPG_PASSPHRASE           that key's passphrase, when it has one
#   SOURCE_DATE_EPOCH        modification time of the files in the zips (default: the last commit's)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# Paths given relative to where the script was started from keep meaning that after the cd.
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
dist=$(absolute "${DIST_DIR:-$repo/dist}")
[ -z "${IAPRUN_PROVIDER_BIN:-}" ] || IAPRUN_PROVIDER_BIN=$(absolute "$IAPRUN_PROVIDER_BIN")
[ -z "${IAPRUN_EMULATOR_BIN:-}" ] || IAPRUN_EMULATOR_BIN=$(absolute "$IAPRUN_EMULATOR_BIN")
cd "$repo"

fail() {
  printf 'error: %s\n' "$1" >&2
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    printf -- '--- %s ---\n' "$2" >&2
    tail -n 40 "$2" >&2
  fi
  exit 1
}
say() { printf '%-9s %s\n' "[$1]" "$2"; }

provider=terraform-provider-iaprun
emulator=iaprun-emulator
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || fail "no version in Cargo.toml"
profile=${DIST_PROFILE:-release}
case $profile in dev) profile_dir=debug ;; *) profile_dir=$profile ;; esac

[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] ||
  fail "this script builds on Linux x86-64 only (this is $(uname -s)/$(uname -m)); build from source elsewhere"
for tool in zip sha256sum; do
  command -v "$tool" > /dev/null || fail "$tool is not on PATH (Debian: apt-get install zip coreutils)"
done

# Check the signing key first, so a long release build cannot end in a key error.
if [ -n "${GPG_FINGERPRINT:-}" ]; then
  command -v gpg > /dev/null || fail "GPG_FINGERPRINT is set but gpg is not on PATH (Debian: apt-get install gnupg)"
  gpg --batch --list-secret-keys "$GPG_FINGERPRINT" > /dev/null 2>&1 ||
    fail "GPG_FINGERPRINT=$GPG_FINGERPRINT names no secret key in gpg's keyring (GNUPGHOME=${GNUPGHOME:-~/.gnupg})"
fi

# The Rust target triple, the ELF machine (bytes 18-19 of the header) and the cross linker of a platform.
triple_of() {
  case $1 in
    linux_amd64) echo x86_64-unknown-linux-gnu ;;
    linux_arm64) echo aarch64-unknown-linux-gnu ;;
    *) return 1 ;;
  esac
}
elf_machine_of() { case $1 in linux_amd64) echo 3e00 ;; linux_arm64) echo b700 ;; esac; }
cross_linker=aarch64-linux-gnu-gcc

# Why linux_arm64 cannot be built here, or nothing when it can.
arm64_missing() {
  local libdir
  libdir=$(rustc --print target-libdir --target aarch64-unknown-linux-gnu 2> /dev/null || true)
  if ! compgen -G "$libdir/libstd-*.rlib" > /dev/null; then
    echo "the Rust standard library for aarch64-unknown-linux-gnu is not installed (rustup target add aarch64-unknown-linux-gnu)"
  elif ! command -v "$cross_linker" > /dev/null; then
    echo "the cross linker $cross_linker is not on PATH (Debian: apt-get install gcc-aarch64-linux-gnu)"
  fi
}

prebuilt=
if [ -n "${IAPRUN_PROVIDER_BIN:-}" ] || [ -n "${IAPRUN_EMULATOR_BIN:-}" ]; then
  if [ -z "${IAPRUN_PROVIDER_BIN:-}" ] || [ -z "${IAPRUN_EMULATOR_BIN:-}" ]; then
    fail "set both IAPRUN_PROVIDER_BIN and IAPRUN_EMULATOR_BIN, or neither"
  fi
  prebuilt=1
fi

if [ -n "${DIST_TARGETS:-}" ]; then
  targets=$DIST_TARGETS
elif [ -n "$prebuilt" ]; then
  targets=linux_amd64
else
  targets=linux_amd64
  missing=$(arm64_missing)
  if [ -z "$missing" ]; then
    targets="linux_amd64 linux_arm64"
  else
    say skip "linux_arm64: $missing"
  fi
fi
for platform in $targets; do
  triple_of "$platform" > /dev/null || fail "unknown platform $platform (known: linux_amd64 linux_arm64)"
  if [ -n "$prebuilt" ] && [ "$platform" != linux_amd64 ]; then
    fail "IAPRUN_PROVIDER_BIN and IAPRUN_EMULATOR_BIN are linux_amd64 binaries; $platform is built by cargo"
  fi
  if [ "$platform" = linux_arm64 ]; then
    missing=$(arm64_missing)
    [ -z "$missing" ] || fail "cannot build linux_arm64: $missing"
  fi
done

say dist "$provider $version for $targets into $dist"
log=$(mktemp "${TMPDIR:-/tmp}/iaprun-dist.XXXXXX")
stage=$(mktemp -d "${TMPDIR:-/tmp}/iaprun-dist-stage.XXXXXX")
trap 'rm -rf "$log" "$stage"' EXIT

# Only what this script writes is removed: an older version's archives never linger beside the new ones.
mkdir -p "$dist"
rm -rf "$dist/mirror" "$dist/$provider"_* "$dist/$emulator"_*
mirror=$dist/mirror/registry.terraform.io/iaprun/iaprun
mkdir -p "$mirror"

# Zips are reproducible: fixed file times, no extra fields (uid, gid, access time).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2> /dev/null || date +%s)}

# pack PLATFORM BINARY NAME_IN_ZIP ZIP: checks the binary is built for PLATFORM, then zips it.
pack() {
  local machine
  [ -x "$2" ] || fail "$2 is not an executable"
  machine=$(od -An -tx1 -j18 -N2 "$2" | tr -d ' \n')
  [ "$machine" = "$(elf_machine_of "$1")" ] || fail "$2 is not a $1 executable (ELF machine $machine)"
  rm -rf "$stage/zip" && mkdir -p "$stage/zip"
  cp "$2" "$stage/zip/$3"
  chmod 0755 "$stage/zip/$3"
  touch -d "@$epoch" "$stage/zip/$3"
  (cd "$stage/zip" && zip -X -q "$dist/$4" "$3")
  summed+=("$4")
}
summed=()

for platform in $targets; do
  triple=$(triple_of "$platform")
  if [ -n "$prebuilt" ]; then
    provider_bin=$IAPRUN_PROVIDER_BIN
    emulator_bin=$IAPRUN_EMULATOR_BIN
    say build "$platform: skipped, packaging $provider_bin and $emulator_bin"
  else
    command -v cargo > /dev/null || fail "cargo is not on PATH: install a Rust toolchain (https://rustup.rs)"
    # The host's build goes where `cargo build --release` puts it, so an existing one is reused.
    build=(cargo build --locked --bins --profile "$profile")
    out=${CARGO_TARGET_DIR:-target}/$profile_dir
    if [ "$platform" = linux_arm64 ]; then
      build+=(--target "$triple")
      out=${CARGO_TARGET_DIR:-target}/$triple/$profile_dir
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$cross_linker \
        CC_aarch64_unknown_linux_gnu=$cross_linker AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    fi
    printf '%-9s %s' "[build]" "$platform: ${build[*]} (up to an hour from scratch on 2 cores) "
    "${build[@]}" > "$log" 2>&1 || { printf 'FAILED\n'; fail "cargo build for $platform failed" "$log"; }
    provider_bin=$out/$provider
    emulator_bin=$out/$emulator
    printf '%s, %s\n' "$provider_bin" "$emulator_bin"
  fi
  pack "$platform" "$provider_bin" "${provider}_v$version" "${provider}_${version}_$platform.zip"
  pack "$platform" "$emulator_bin" "$emulator" "${emulator}_${version}_$platform.zip"
  ln "$dist/${provider}_${version}_$platform.zip" "$mirror/" 2> /dev/null ||
    cp "$dist/${provider}_${version}_$platform.zip" "$mirror/"
  say zip "$platform: ${provider}_${version}_$platform.zip, ${emulator}_${version}_$platform.zip"
done

manifest=${provider}_${version}_manifest.json
cp terraform-registry-manifest.json "$dist/$manifest"
summed+=("$manifest")
sums=${provider}_${version}_SHA256SUMS
(cd "$dist" && LC_ALL=C sha256sum -- "${summed[@]}" | LC_ALL=C sort -k 2 > "$sums")
say sums "$sums: $(wc -l < "$dist/$sums" | tr -d ' ') files (check: cd $dist && sha256sum -c $sums)"

if [ -n "${GPG_FINGERPRINT:-}" ]; then
  # A detached binary signature, as the Terraform Registry and `terraform init` expect.
  gpg_args=(--batch --yes --local-user "$GPG_FINGERPRINT" --detach-sign --output "$dist/$sums.sig")
  if [ -n "${GPG_PASSPHRASE:-}" ]; then
    gpg_args=(--pinentry-mode loopback --passphrase-fd 0 "${gpg_args[@]}")
  fi
  gpg "${gpg_args[@]}" "$dist/$sums" <<< "${GPG_PASSPHRASE:-}" > "$log" 2>&1 ||
    fail "gpg could not sign $sums with $GPG_FINGERPRINT" "$log"
  gpg --batch --verify "$dist/$sums.sig" "$dist/$sums" > "$log" 2>&1 ||
    fail "the signature of $sums does not verify" "$log"
  say sign "$sums.sig, signed by $GPG_FINGERPRINT"
else
  say sign "skipped: GPG_FINGERPRINT is not set, so there is no $sums.sig (the Terraform Registry needs one)"
fi
say "done" "$dist: terraform init -plugin-dir=$dist/mirror installs $provider $version"
