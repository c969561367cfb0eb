//! terraform-provider-iaprun: Identity-Aware Proxy in front of Cloud Run, as a Terraform provider.
//!
//! # Layout
//! - [`framework`]: Terraform semantics (schemas, values, diagnostics, generic planning, traits).
//! - [`provider`]: provider settings, configured context and the resource registry.
//! - [`protocol`]: gRPC and tfplugin5: handshake, mutual TLS, the provider service, the value codec.
//! - [`logging`]: go-hclog JSON lines on stderr, at the level `TF_LOG_PROVIDER`/`TF_LOG` asks for.
pub mod framework;
pub mod logging;
pub mod protocol;
pub mod provider;
