//! RESP2 by hand: commands written straight into one buffer, replies found
//! in one buffer and turned into the driver's `Value`s.
//!
//! Finding a reply's end and decoding it are two passes. The first walks
//! headers only (a bulk string's body is jumped over by its length) and
//! can stop anywhere and go on once more bytes have arrived, so a reply
//! that comes in many reads is never walked from its start again; the
//! second runs once the reply is whole. Error replies, which are rare, are
//! decoded by the driver itself, so that they read exactly as the driver's
//! own connection gives them.

use redis::Value;

/// A pipeline of commands, already in RESP.
#[derive(Debug, Default)]
pub(crate) struct Request {
    buf: Vec<u8>,
    commands: usize,
    /// Commands (in order) whose bulk-string replies count against the
    /// request's byte budget.
    capped: Vec<usize>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Self {
        Request::default()
    }

    /// An empty request with room for `bytes` of commands.
    pub fn with_capacity(bytes: usize) -> Self {
        Request {
            buf: Vec::with_capacity(bytes),
            ..Request::default()
        }
    }

    /// Append one command.
    pub fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        encode_command(&mut self.buf, args);
        self.commands += 1;
        self
    }

    /// Count the bulk-string reply of the last command appended against
    /// the byte budget: a reply that does not fit is read past, not kept.
    pub fn capped(&mut self) -> &mut Self {
        if let Some(last) = self.commands.checked_sub(1) {
            self.capped.push(last);
        }
        self
    }

    /// Commands in the request.
    pub fn len(&self) -> usize {
        self.commands
    }

    /// Whether no command was appended.
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(super) fn is_capped(&self, command: usize) -> bool {
        self.capped.binary_search(&command).is_ok()
    }
}

/// `*N\r\n` and `$len\r\narg\r\n` for each argument.
pub(crate) fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A number as decimal text, without an allocation.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // Most numbers here are lengths of names and keys.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Where the walk over one reply's headers stands.
#[derive(Debug, Default)]
pub(super) struct Walk {
    /// Bytes of the reply walked so far.
    pos: usize,
    /// Elements still to come in each array that is open.
    open: Vec<u64>,
}

/// What the walk found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The reply is whole and this long.
    Whole(usize),
    /// More bytes are needed: at least this many from the reply's start
    /// (0 when not known yet).
    Short(usize),
    /// Not RESP2.
    Bad(String),
}

impl Walk {
    pub fn new() -> Self {
        Walk::default()
    }

    /// Go on walking `reply` (the bytes from the reply's start, as many
    /// as have arrived) from where the last call stopped.
    pub fn advance(&mut self, reply: &[u8]) -> Found {
        loop {
            let rest = reply.get(self.pos..).unwrap_or_default();
            let Some((kind, header, line)) = header(rest) else {
                return Found::Short(0);
            };
            match kind {
                b'+' | b'-' | b':' => self.pos += line,
                b'$' => match parse_int(header) {
                    Some(n) if n < 0 => self.pos += line,
                    Some(n) => {
                        let whole = line.saturating_add(n as usize).saturating_add(2);
                        if rest.len() < whole {
                            return Found::Short(self.pos.saturating_add(whole));
                        }
                        self.pos += whole;
                    }
                    None => return Found::Bad(format!("bad bulk length {header:?}")),
                },
                b'*' => match parse_int(header) {
                    Some(n) if n > 0 => {
                        self.pos += line;
                        self.open.push(n as u64);
                        continue;
                    }
                    Some(_) => self.pos += line,
                    None => return Found::Bad(format!("bad array length {header:?}")),
                },
                other => return Found::Bad(format!("unexpected reply type {:?}", other as char)),
            }
            // An element ended: close every array it completes.
            loop {
                match self.open.last_mut() {
                    None => return Found::Whole(self.pos),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// The first line of `bytes`: its type byte, the text after it (without
/// the line end) and the line's length with the line end; `None` when the
/// line has not fully arrived.
pub(super) fn header(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let kind = *bytes.first()?;
    let text = bytes.get(1..end.saturating_sub(1)).unwrap_or_default();
    Some((kind, text, end + 1))
}

pub(super) fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// Error replies decoded before, by their text: a batch can bring the
/// same error for many keys (WRONGTYPE), and the driver's decoding of one
/// costs more than the rest of a batch's replies.
#[derive(Debug, Default)]
pub(super) struct Errors(Vec<(Vec<u8>, Value)>);

impl Errors {
    /// Texts kept; the first ones seen stay.
    const KEPT: usize = 16;

    fn decode(&mut self, line: &[u8]) -> Result<Value, String> {
        if let Some((_, v)) = self.0.iter().find(|(text, _)| text == line) {
            return Ok(v.clone());
        }
        let v = redis::parse_redis_value(line).map_err(|e| e.to_string())?;
        if self.0.len() < Self::KEPT {
            self.0.push((line.to_vec(), v.clone()));
        }
        Ok(v)
    }
}

/// Decode one whole reply (as [`Walk`] found it).
pub(super) fn decode(reply: &[u8], errors: &mut Errors) -> Result<Value, String> {
    let mut pos = 0;
    decode_at(reply, &mut pos, errors)
}

fn decode_at(bytes: &[u8], pos: &mut usize, errors: &mut Errors) -> Result<Value, String> {
    let rest = bytes.get(*pos..).unwrap_or_default();
    let (kind, text, line) = header(rest).ok_or("a reply ended early")?;
    *pos += line;
    let int = || parse_int(text).ok_or_else(|| format!("bad number {text:?}"));
    Ok(match kind {
        b'+' if text == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(String::from_utf8_lossy(text).into_owned()),
        b':' => Value::Int(int()?),
        b'-' => errors.decode(&rest[..line])?,
        b'$' => match usize::try_from(int()?) {
            Err(_) => Value::Nil,
            Ok(n) => {
                let body = bytes
                    .get(*pos..pos.saturating_add(n))
                    .ok_or("a bulk string ended early")?;
                *pos += n + 2;
                Value::BulkString(body.to_vec())
            }
        },
        b'*' => match usize::try_from(int()?) {
            Err(_) => Value::Nil,
            Ok(n) => {
                // Each element takes at least 3 bytes: no more room is
                // reserved than the reply can fill.
                let mut items = Vec::with_capacity(n.min(rest.len() / 3));
                for _ in 0..n {
                    items.push(decode_at(bytes, pos, errors)?);
                }
                Value::Array(items)
            }
        },
        other => return Err(format!("unexpected reply type {:?}", other as char)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_resp_arrays() {
        let mut r = Request::new();
        r.cmd(&[b"GET", b"k"]).cmd(&[b"DUMP", b"\r\n"]).capped();
        assert_eq!(
            r.bytes(),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nDUMP\r\n$2\r\n\r\n\r\n"
        );
        assert_eq!(r.len(), 2);
        assert!(!r.is_capped(0) && r.is_capped(1));
        let mut n = Vec::new();
        for v in [0, 7, 10, 12345, u64::MAX] {
            n.clear();
            push_decimal(&mut n, v);
            assert_eq!(n, v.to_string().as_bytes());
        }
    }

    const REPLIES: &[u8] = b"+OK\r\n+PONG\r\n:-42\r\n$-1\r\n*-1\r\n$3\r\na\r\n\r\n*2\r\n$1\r\n0\r\n*3\r\n$1\r\nx\r\n*0\r\n:7\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn all(bytes: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < bytes.len() {
            let mut walk = Walk::new();
            let Found::Whole(n) = walk.advance(&bytes[start..]) else {
                panic!("not whole at {start}")
            };
            out.push(decode(&bytes[start..start + n], &mut Errors::default()).unwrap());
            start += n;
        }
        out
    }

    #[test]
    fn replies_decode_as_the_driver_decodes_them() {
        let mine = all(REPLIES);
        let mut theirs = Vec::new();
        let mut rest = REPLIES;
        while !rest.is_empty() {
            let mut walk = Walk::new();
            let Found::Whole(n) = walk.advance(rest) else {
                panic!()
            };
            theirs.push(redis::parse_redis_value(&rest[..n]).unwrap());
            rest = &rest[n..];
        }
        assert_eq!(mine, theirs);
        assert_eq!(mine.len(), 8);
        assert_eq!(mine[5], Value::BulkString(b"a\r\n".to_vec()));
        assert!(matches!(&mine[7], Value::ServerError(e) if e.code() == "WRONGTYPE"));
    }

    #[test]
    fn a_walk_goes_on_where_it_stopped_whatever_the_pieces() {
        let reply: &[u8] = b"*2\r\n$1\r\n0\r\n*3\r\n$5\r\nhello\r\n*0\r\n:7\r\n";
        for cut in 0..reply.len() {
            let mut walk = Walk::new();
            match walk.advance(&reply[..cut]) {
                Found::Short(need) => assert!(need == 0 || need > cut, "{cut}: {need}"),
                other => panic!("{cut}: {other:?}"),
            }
            assert_eq!(walk.advance(reply), Found::Whole(reply.len()), "{cut}");
        }
        // A bulk string says how much it needs before its body arrives.
        let mut walk = Walk::new();
        assert_eq!(walk.advance(b"$10\r\nabc"), Found::Short(17));
    }

    #[test]
    fn what_is_not_resp2_is_refused() {
        for bad in [&b"%1\r\n"[..], b"$x\r\n", b"*99999999999999999999\r\n"] {
            assert!(matches!(Walk::new().advance(bad), Found::Bad(_)), "{bad:?}");
        }
        assert_eq!(parse_int(b"-0"), Some(0));
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"9223372036854775808"), None);
    }
}
