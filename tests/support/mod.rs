//! Shared harness for the integration tests: real Terraform binaries and workspaces, the provider
//! binary driven as go-plugin drives it, and in-process providers Terraform reattaches to.
#![allow(dead_code, unused_imports)] // Each test module uses a different part.

pub mod compose;
pub mod plugin;
pub mod python;
pub mod reattach;
pub mod terraform;

pub use plugin::{ClientIdentity, Launch, PluginProcess};
pub use reattach::Reattached;
pub use terraform::{newest, terraform_binaries, Run, Terraform, Workspace};
