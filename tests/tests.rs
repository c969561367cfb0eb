//! The single integration-test binary; one module per area.

// docs/ is current and every attribute is described.
mod docs;
// iaprun-emulator: every API's behaviour, error formats, faults, conformance, token exchange, binary.
mod emulator;
// Builds worlds in the emulator through the real REST APIs, for the resource tests.
mod world;
