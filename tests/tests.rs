//! The single integration-test binary; one module per area.

// docs/ is current and every attribute is described.
mod docs;
// iaprun-emulator: every API's behaviour, error formats, faults, conformance, token exchange, binary.
mod emulator;
// Builds worlds in the emulator through the real REST APIs (the shared kit's, also the benchmarks').
use support::world;
// Shared harness: real Terraform binaries and workspaces, the plugin driven as go-plugin drives it.
mod support;
// iaprun_service_iap end to end through terraform against the emulator.
mod service_iap;
// iaprun_access_binding end to end: parallel apply under conflicts, coalesced refresh, drift, import.
mod access_binding;
// iaprun_access_member end to end: composition across modules, conflicts, binding_conflict, JWT audiences.
mod access_member;
// moved blocks from the google provider's IAP IAM resources: no change on 1.8+, the import path on 1.0.
mod moved;
// iaprun_backend_iap end to end: global and regional backends, OAuth clients, drift, import, destroy.
mod backend_iap;
// iaprun_iap_settings end to end: update masks, drift, others' settings kept, import, the secret.
mod iap_settings;
// Schemas seen by every terraform, diagnostics on the attribute, plugin process: mTLS, Shutdown, SIGINT.
mod foundation;
// The unix-socket transport: private directory, removed at exit, other users refused, mTLS, both terraforms.
mod unix_socket;
// Google's own Python client libraries (REST) against the emulator; system parameters on the wire.
mod client_libraries;
// iaprun-emulator --seed: every kind of object, malformed seeds, `terraform test` of the module.
mod seed;
// The Google API clients against the emulator: typed calls, errors, retries, operations, conflicts, tokens.
mod google_client;
// data "iaprun_audit": every finding on its service, near misses clean, bounded read-only calls.
mod audit;
// Every known-limitation check fires on the attribute at fault, near misses stay silent, nothing changes.
mod checks;
// The newcomer's path: quickstart script end to end, every example validated, examples applied.
mod examples;
// Faults, the provider killed mid-apply, 200 racing bindings, secrets in trace logs, IAM safety.
mod reliability;
// A corpus of malformed configurations: rejected on the attribute at fault, nothing changed.
mod bad_input;
// Untrusted wire input: DynamicValue bytes and Google API answers never panic (proptest).
mod wire_input;
// One configuration creates the services, the load balancer and the IAP; checks wait for apply.
mod composition;
// Replacement on effective changes, grants recorded and never leaked, drift, propagation, endpoints.
mod lifecycle;
// Release archives (scripts/dist.sh): registry names, SHA256SUMS, signature, the packed mirror installed.
mod dist;
