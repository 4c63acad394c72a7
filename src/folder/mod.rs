//! The backup folder: archives with their metadata sidecars (`catalog`),
//! the `backup` command that writes into it, the retention policy (pure:
//! archives, policy and an injected `now` in, decisions with reasons out),
//! `prune`, which carries a retention decision out, and the audit log of
//! every run against the folder.

pub mod audit;
pub mod backup;
pub mod catalog;
pub mod prune;
pub mod retention;
