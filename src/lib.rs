//! terraform-provider-iaprun: a Terraform provider putting Identity-Aware Proxy in front of Cloud Run,
//! and `iaprun-emulator`, an offline emulator of the Google APIs it uses.
//!
//! # Layers
//!
//! Imports run one way: `protocol -> framework <- resources -> google`.
//!
//! - [`protocol`]: gRPC and tfplugin5 only: handshake, mutual TLS, the value codec, and the
//!   `Provider` service, which decodes each request, calls the engine and encodes the reply. No
//!   generated type leaves it.
//! - [`framework`]: Terraform semantics on plain Rust types: values, schemas, typed models
//!   ([`framework::Attr`]), diagnostics, the [`framework::Resource`] and [`framework::DataSource`]
//!   traits, and the engine ([`framework::server`]) that plans, applies, refreshes, imports and
//!   upgrades any resource. It knows neither gRPC nor Google.
//! - [`resources`]: one file per resource type or data source: its model, its schema and its
//!   calls to Google; pieces several types share in `resources/common.rs`; the run-time
//!   [`resources::Context`] (clients, coalesced reads, what this run plans).
//! - [`google`]: the Google API clients, one module per API over one transport, and what several
//!   APIs compose ([`google::IapAgent`], the IAP-enabled paths to a Cloud Run service).
//! - [`validation`]: every known limitation as a named check citing its source.
//! - [`provider`]: the provider block's settings and how they become a context.
//! - [`names`]: parsers of import ids and IAP resource names; [`docs`] renders docs/ from the
//!   schemas; [`logging`] writes go-hclog lines; [`emulator`] mirrors [`google`] module by module.
//!
//! # How a request flows
//!
//! Terraform calls, say, PlanResourceChange. [`protocol`] finds the type's schema through the
//! engine, decodes prior state, proposed state and config into [`framework::Value`]s and calls
//! [`framework::server::Server::plan_resource`]. The engine makes the generic plan (computed values
//! unknown on create, `RequiresReplace` for changed force-new attributes and blocks, defaults) and
//! hands it, as the resource's typed model, to the resource's `plan`, which fills what needs the
//! APIs and runs the plan-time checks. The engine shapes the result to the schema and the protocol
//! layer encodes it. Apply goes the same way to `create`, `update` or `delete`, with the deadline
//! from `timeouts` and private state decoded; the engine stores what a failed apply did not learn
//! as null and reports unknowns left by a successful one as a provider bug.
//!
//! # Adding a resource or data source
//!
//! Write `src/resources/<name>.rs`: a serde model of [`framework::Attr`] fields named like the
//! schema's attributes, and an `impl Resource<Context>` (schema, optional validate and plan,
//! create, read, update, delete, optional import) or `impl DataSource<Context>` (schema, optional
//! validate, read). Add one line to [`resources::all`] or [`resources::data_sources`], and the
//! example folder `examples/resources/<type>/` (resource.tf, import.sh) or
//! `examples/data-sources/<type>/data-source.tf`; docs/ is generated from them.
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
