//! Test support: real `redis-server` processes and the real `archive` binary.
//!
//! Every server runs on a free port with `--save ""` in its own temp dir and
//! is killed when dropped; nothing assumes a server on 6379 and nothing is
//! mocked. When a check fails, the server's log goes into the message.
//!
//! Which server: [`RedisServer::start`] and [`RedisCluster::start`] run
//! `$ARCHIVE_TEST_SERVER` and `$ARCHIVE_TEST_CLI` (default `redis-server`
//! and `redis-cli` from `PATH`), so `./scripts/test` runs a whole suite
//! against another server by setting them. A test that needs one server
//! whatever the default is starts it with [`RedisServer::start_version`];
//! [`RedisServer::version`] says what a running server is.

mod cluster;
pub mod dataset;
mod mixed;
mod run;
mod server;
mod state;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::{Commands, Connection, Value};

pub use cluster::*;
pub use mixed::*;
pub use run::*;
pub use server::*;
pub use state::*;

/// The relay profile as the application shipped it at data schema_version
/// 1 (no upgrades), written into `dir`.
pub fn relay_schema_1_profile(dir: &Path) -> PathBuf {
    let relay = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profiles/relay.toml");
    let current = std::fs::read_to_string(relay).unwrap();
    let cut = current.find("# Version 1 kept").unwrap();
    let v1 = current[..cut].replace("schema_version = 2", "schema_version = 1");
    let path = dir.join("relay-v1.toml");
    std::fs::write(&path, v1).unwrap();
    path
}
