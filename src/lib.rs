//! terraform-provider-iaprun: a Terraform provider putting Identity-Aware Proxy in front of Cloud Run,
//! and `iaprun-emulator`, an offline emulator of the Google APIs it uses.
//!
//! # Layout
//! - [`protocol`]: gRPC and tfplugin5: handshake, mutual TLS, the provider service, the value codec.
//! - [`logging`]: go-hclog JSON lines on stderr, at the level `TF_LOG_PROVIDER`/`TF_LOG` asks for.
//! - [`framework`]: Terraform semantics (schemas, values, diagnostics, generic planning, traits).
//! - [`provider`]: provider settings, configured context and the resource registry.
//! - [`resources`]: the three resource types.
//! - [`validation`]: every known limitation, as a named check.
//! - [`google`]: the Google API clients, one module per API over one transport.
//! - [`names`]: parsing of import ids and IAP resource names.
//! - [`docs`]: renders docs/ from the schemas and examples.
//! - [`emulator`]: the offline emulator of the Google APIs.
pub mod docs;
pub mod emulator;
pub mod framework;
pub mod google;
pub mod logging;
pub mod names;
pub mod protocol;
pub mod provider;
pub mod resources;
pub mod validation;
