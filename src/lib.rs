//! terraform-provider-iaprun: Identity-Aware Proxy in front of Cloud Run, as a Terraform provider.
//!
//! # Layout
//! - [`framework`]: Terraform semantics (schemas, values, diagnostics, generic planning, traits).
//! - [`provider`]: provider settings, configured context and the resource registry.
pub mod framework;
pub mod protocol;
pub mod provider;
