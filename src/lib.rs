//! terraform-provider-iaprun: Identity-Aware Proxy in front of Cloud Run, as a Terraform provider.
//!
//! # Layout
//! - [`framework`]: Terraform semantics (schemas, values, diagnostics, generic planning, traits).
pub mod framework;
