//! The single integration-test binary; one module per area.

// iaprun-emulator: every API's behaviour, error formats, faults, conformance, token exchange, binary.
mod emulator;
