//! The integration tests: one binary with a module per area (as ripgrep and
//! rustic do), so that the test support is compiled and linked once. Every
//! test starts its own servers (`support`) and drives the real `archive`
//! binary, or the library where the binary cannot be driven into a path.

mod support;

mod audit;
mod cluster;
mod compare;
mod crash;
mod encodings;
mod encryption;
mod errors;
mod exit_codes;
mod faults;
mod fidelity;
mod fixtures;
mod folder;
mod hostile;
mod interrupt;
mod large;
mod legacy;
mod library;
mod mutations;
mod profiles;
mod rdb;
mod redact;
mod renames;
mod restore_modes;
mod rollback;
mod roundtrip;
mod secrets;
mod shared;
mod snapshot;
mod streams;
mod torn;
mod transfer;
mod upgrade;
mod validate;
