//! terraform-provider-iaprun: Identity-Aware Proxy in front of Cloud Run, as a Terraform provider.
//!
//! # Layout
//! - [`framework`]: Terraform semantics (schemas, values, diagnostics, generic planning, traits).
//! - [`provider`]: provider settings, configured context and the resource registry.
pub mod docs;
pub mod framework;
pub mod names;
pub mod provider;
pub mod resources;
pub mod validation;
