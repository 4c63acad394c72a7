//! The backup folder: archives with their metadata sidecars (`catalog`),
//! the `backup` command that writes into it, the retention policy (pure:
//! archives, policy and an injected `now` in, decisions with reasons out),
//! and `prune`, which carries a retention decision out.

pub mod backup;
pub mod catalog;
pub mod prune;
pub mod retention;
