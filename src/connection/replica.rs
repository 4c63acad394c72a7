//! Asking a server for its snapshot the way a replica does: log in,
//! `REPLCONF`, `PSYNC ? -1`, and receive the RDB the server makes for it.
//!
//! This speaks the replication handshake itself, on a plain blocking
//! socket, because no client library exposes it and because what follows
//! the handshake is not RESP but a raw RDB stream that the RDB reader
//! consumes directly from the socket's buffer (nothing is held whole).
//! It runs on a thread of its own, never on the async runtime.
//!
//! The server sends the RDB in one of two framings: `$<length>\r\n` and
//! that many bytes (the server wrote the RDB to disk first), or
//! `$EOF:<40-byte mark>\r\n`, the RDB, and the mark again (diskless
//! replication, the default since Redis 7.0). Before either, while the
//! server forks and prepares, it sends bare newlines to keep the link
//! alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::*;

/// How long a silent server is waited for. A server preparing a snapshot
/// sends a newline every second, so silence this long means it is gone.
const SILENCE: Duration = Duration::from_secs(120);

/// What a server said when it agreed to send its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPoint {
    /// The replication id of the server's history.
    pub replid: String,
    /// The replication offset the snapshot stands for.
    pub offset: u64,
}

/// How the server frames the RDB it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes follow.
    Length(u64),
    /// The RDB is followed by this 40-byte mark.
    EofMark(Vec<u8>),
}

/// A replication link whose next bytes are the server's RDB.
pub struct ReplicaLink {
    /// The socket, buffered; the RDB reader reads from it directly.
    pub input: BufReader<TcpStream>,
    /// The snapshot's place in the server's history.
    pub point: SyncPoint,
    /// How the RDB ends.
    pub framing: Framing,
    endpoint: String,
}

impl std::fmt::Debug for ReplicaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaLink")
            .field("endpoint", &self.endpoint)
            .field("point", &self.point)
            .finish()
    }
}

impl Endpoint {
    /// Open a replication link to this endpoint's server and ask for a
    /// full snapshot. Blocking: call it from a thread of its own.
    pub fn open_replica(&self) -> Result<ReplicaLink> {
        let display = self.display();
        let (host, port) = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            ConnectionAddr::TcpTls { .. } => {
                return Err(Error::SnapshotRefused {
                    endpoint: display,
                    reason: "a snapshot over TLS (rediss://) is not supported".into(),
                });
            }
            _ => {
                return Err(Error::SnapshotRefused {
                    endpoint: display,
                    reason: "a snapshot needs a TCP address (host:port)".into(),
                });
            }
        };
        let unreachable = |reason: String| Error::Unreachable {
            endpoint: display.clone(),
            reason,
        };
        let address = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable(format!("{host} has no address")))?;
        let socket = TcpStream::connect_timeout(&address, self.timeouts.connect)
            .map_err(|e| unreachable(e.to_string()))?;
        socket
            .set_read_timeout(Some(SILENCE))
            .and_then(|()| socket.set_nodelay(true))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut link = Handshake {
            input: BufReader::with_capacity(256 << 10, socket),
            endpoint: display,
            side: self.side,
        };
        let settings = self.info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = settings.username() {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            link.send(&auth)?;
            link.expect_ok("logging in")?;
        }
        // Only the RDB is wanted, not the stream of writes after it (Redis
        // 7.0+ and Valkey; older servers refuse it, which is harmless).
        link.send(&[b"REPLCONF", b"rdb-only", b"1"])?;
        let _ = link.line("asking for the snapshot only")?;
        link.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])?;
        link.expect_ok("announcing replica capabilities (REPLCONF)")?;
        link.send(&[b"PSYNC", b"?", b"-1"])?;
        let point = loop {
            let reply = link.line("asking for a snapshot (PSYNC)")?;
            // A server still busy with another child (a BGSAVE, another
            // replica's snapshot) answers only once it can fork, and sends
            // bare newlines until then.
            if reply.is_empty() {
                continue;
            }
            break parse_fullresync(&reply).ok_or_else(|| link.refused(&reply))?;
        };
        let framing = loop {
            let line = link.line("waiting for the snapshot")?;
            if line.is_empty() {
                continue; // the server's keep-alive while it forks
            }
            break parse_framing(&line).ok_or_else(|| link.refused(&line))?;
        };
        Ok(ReplicaLink {
            input: link.input,
            point,
            framing,
            endpoint: link.endpoint,
        })
    }
}

impl Framing {
    /// After the RDB reader has read the whole RDB (`consumed` bytes) from
    /// `input`: check that the framing ends where the RDB did.
    pub fn check_end(
        &self,
        input: &mut impl Read,
        consumed: u64,
    ) -> std::result::Result<(), String> {
        match self {
            Framing::Length(n) if *n == consumed => Ok(()),
            Framing::Length(n) => Err(format!(
                "the server announced {n} bytes and the RDB ended after {consumed}"
            )),
            Framing::EofMark(mark) => {
                let mut end = vec![0; mark.len()];
                input
                    .read_exact(&mut end)
                    .map_err(|e| format!("the RDB's end mark did not arrive: {e}"))?;
                if &end == mark {
                    Ok(())
                } else {
                    Err("the RDB is not followed by its end mark".into())
                }
            }
        }
    }
}

struct Handshake {
    input: BufReader<TcpStream>,
    endpoint: String,
    side: Side,
}

impl Handshake {
    fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut out = Vec::new();
        super::wire::encode_command(&mut out, args);
        self.input
            .get_mut()
            .write_all(&out)
            .map_err(|e| self.dropped("sending the replication handshake", e))
    }

    /// One reply line, without its line end.
    fn line(&mut self, action: &str) -> Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.input)
            .take(64 << 10)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.dropped(action, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(self.dropped(
                action,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ),
            ));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn expect_ok(&mut self, action: &str) -> Result<()> {
        let reply = self.line(action)?;
        if reply == "+OK" {
            return Ok(());
        }
        let reason = reply.trim_start_matches('-').to_string();
        if reply.starts_with("-WRONGPASS") || reply.starts_with("-ERR invalid password") {
            return Err(Error::AuthRefused {
                endpoint: self.endpoint.clone(),
                reason,
                password_env: self.side.password_env(),
            });
        }
        Err(self.refused(&reply))
    }

    fn refused(&self, reply: &str) -> Error {
        let reply = reply.trim_start_matches(['-', '+']);
        let reason = if reply.starts_with("NOPERM") || reply.contains("unknown command") {
            format!(
                "{reply}: this server or user may not replicate (an ACL needs +psync +replconf, or a managed service forbids it)"
            )
        } else if reply.starts_with("LOADING") {
            format!("{reply}: the server is loading its data; try again when it is done")
        } else if reply.starts_with("MISCONF") {
            format!("{reply}: the server cannot make snapshots now (see its log)")
        } else {
            format!("unexpected reply {reply:?}")
        };
        Error::SnapshotRefused {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }

    fn dropped(&self, action: &str, e: std::io::Error) -> Error {
        Error::SnapshotRefused {
            endpoint: self.endpoint.clone(),
            reason: format!(
                "the connection ended while {action} ({e}); the server may have failed to fork or run out of memory (see its log)"
            ),
        }
    }
}

fn parse_fullresync(reply: &str) -> Option<SyncPoint> {
    let mut words = reply.strip_prefix("+FULLRESYNC ")?.split(' ');
    let replid = words.next()?.to_string();
    let offset = words.next()?.parse().ok()?;
    Some(SyncPoint { replid, offset })
}

fn parse_framing(line: &str) -> Option<Framing> {
    let rest = line.strip_prefix('$')?;
    match rest.strip_prefix("EOF:") {
        Some(mark) if mark.len() == 40 => Some(Framing::EofMark(mark.as_bytes().to_vec())),
        Some(_) => None,
        None => rest.parse().ok().map(Framing::Length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_replies_parse() {
        assert_eq!(
            parse_fullresync("+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 4523"),
            Some(SyncPoint {
                replid: "8de1787ba490483314a4d30f1c628bc5025eb761".into(),
                offset: 4523
            })
        );
        assert_eq!(parse_fullresync("+CONTINUE"), None);
        assert_eq!(parse_framing("$1234"), Some(Framing::Length(1234)));
        let mark = "a".repeat(40);
        assert_eq!(
            parse_framing(&format!("$EOF:{mark}")),
            Some(Framing::EofMark(mark.into_bytes()))
        );
        assert_eq!(parse_framing("$EOF:short"), None);
        assert_eq!(parse_framing("-ERR nope"), None);
    }
}
