//! Shared harness for the integration tests, the benchmarks (`#[path]` from benches/perf) and the
//! fuzz targets (single files): real Terraform binaries and workspaces, plugin binaries driven as
//! go-plugin drives them, worlds built in the emulator over REST, and in-process providers
//! Terraform reattaches to.
#![allow(dead_code, unused_imports)] // Each test module uses a different part.

pub mod compose;
pub mod plugin;
pub mod python;
pub mod reattach;
pub mod terraform;
pub mod wire;
pub mod world;

pub use plugin::{ClientIdentity, Launch, PluginProcess};
pub use reattach::Reattached;
pub use terraform::{flatten, newest, terraform_binaries, Run, Terraform, Workspace};
