//! Byte strings and scores in JSON: text when it is plain UTF-8, base64
//! otherwise; scores as the shortest number that reads back to the same
//! double, or `"inf"`/`"-inf"`.

use super::*;

/// A binary-safe byte string; see the module docs for its JSON form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", printable(&self.0))
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes(v.as_bytes().to_vec())
    }
}

/// Whether bytes are written as a JSON string: valid UTF-8 without control
/// characters other than tab, newline and carriage return. Other control
/// characters would be escaped as `\u00XX`, six bytes each; base64 keeps
/// every record within 4/3 of its data (2x for text full of `"` and `\\`).
pub(crate) fn as_text(bytes: &[u8]) -> Option<&str> {
    let plain = bytes
        .iter()
        .all(|&b| !(b < 0x20 || b == 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'));
    if plain {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BytesRef(&self.0).serialize(s)
    }
}

/// Borrowed bytes written as [`Bytes`] are, for lines written in bulk
/// (a restore's journal names every key it writes) without a copy each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BytesRef<'a>(pub &'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match as_text(self.0) {
            Some(text) => s.serialize_str(text),
            None => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("b64", &B64.encode(self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or {\"b64\": \"...\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Hollow::keep(v.as_bytes()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
                Ok(Hollow::keep_owned(v.into_bytes()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
                let mut out = None;
                while let Some(name) = map.next_key::<std::borrow::Cow<str>>()? {
                    if name != "b64" || out.is_some() {
                        return Err(de::Error::custom(format!(
                            "unexpected field {name:?} in a byte string"
                        )));
                    }
                    let text = map.next_value::<std::borrow::Cow<str>>()?;
                    let decoded = B64.decode(text.as_bytes()).map_err(de::Error::custom)?;
                    out = Some(Hollow::keep_owned(decoded));
                }
                out.ok_or_else(|| de::Error::custom("empty byte string object"))
            }
        }
        d.deserialize_any(BytesVisitor)
    }
}

/// Where a hollow decode ([`Record::decode_hollow`]) or a spilled one
/// ([`Record::decode_spilled`]) is, on this thread.
///
/// The state lives beside the deserializer rather than in a second set of
/// record types, so that a hollow or spilled decode runs exactly the code
/// (and so the checks) of a full one: only what [`Bytes`] keeps differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hollow {
    /// Bytes are kept.
    Off,
    /// A hollow decode is under way, outside any collection's elements.
    Requested,
    /// Inside the elements of a collection of a hollow decode: bytes are
    /// checked and dropped.
    Active,
    /// A spilled decode is under way, outside any collection's elements.
    SpillRequested,
    /// Inside the elements of a collection of a spilled decode: bytes are
    /// checked and written by the thread's [`Spill`] (scores are kept).
    Spilling,
}

/// How a spilled decode writes the byte strings of hashes, lists, sets and
/// sorted sets into one buffer, in the order they are read (sorted sets'
/// scores stay in the hollow value). The reader that asks for it (a
/// restore turning records into `RESTORE` payloads) chooses the encoding;
/// records only hand the elements over.
pub(crate) type Spill = fn(&mut Vec<u8>, &[u8]);

thread_local! {
    static HOLLOW: std::cell::Cell<Hollow> = const { std::cell::Cell::new(Hollow::Off) };
    static SPILL: std::cell::RefCell<Option<(Spill, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Puts the thread's previous state back when dropped, also on an error.
pub(crate) struct HollowGuard(Hollow);

impl Drop for HollowGuard {
    fn drop(&mut self) {
        HOLLOW.with(|h| h.set(self.0));
    }
}

impl Hollow {
    fn enter(state: Hollow) -> HollowGuard {
        HollowGuard(HOLLOW.with(|h| h.replace(state)))
    }

    fn now() -> Hollow {
        HOLLOW.with(|h| h.get())
    }

    /// Start a hollow decode on this thread, until the guard is dropped.
    pub(crate) fn request() -> HollowGuard {
        Hollow::enter(Hollow::Requested)
    }

    /// `v` as [`Bytes`], unless it is a collection's element in a hollow
    /// decode (dropped) or a spilled one (written to the spill).
    fn keep(v: &[u8]) -> Bytes {
        match Hollow::now() {
            Hollow::Active => Bytes::default(),
            Hollow::Spilling => {
                spill_with(|spill, out| spill(out, v));
                Bytes::default()
            }
            _ => Bytes(v.to_vec()),
        }
    }

    /// [`Hollow::keep`] of bytes already owned.
    fn keep_owned(v: Vec<u8>) -> Bytes {
        match Hollow::now() {
            Hollow::Active | Hollow::Spilling => Hollow::keep(&v),
            _ => Bytes(v),
        }
    }
}

fn spill_with(write: impl FnOnce(Spill, &mut Vec<u8>)) {
    SPILL.with(|s| {
        if let Some((spill, out)) = s.borrow_mut().as_mut() {
            write(*spill, out);
        }
    });
}

/// Run `parse` as a spilled decode on this thread: the elements of the
/// collections it reads are written by `spill` to `out` (which is
/// replaced), and come back empty.
pub(crate) fn spilled<T>(spill: Spill, out: &mut Vec<u8>, parse: impl FnOnce() -> T) -> T {
    SPILL.with(|s| *s.borrow_mut() = Some((spill, std::mem::take(out))));
    let parsed = {
        let _spilling = Hollow::enter(Hollow::SpillRequested);
        parse()
    };
    if let Some((_, written)) = SPILL.with(|s| s.borrow_mut().take()) {
        *out = written;
    }
    parsed
}

/// Deserializes a collection's elements: hollow ones in a hollow decode,
/// spilled ones in a spilled decode.
pub(crate) fn hollow_ok<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    let _guard = match Hollow::now() {
        Hollow::Requested => Some(Hollow::enter(Hollow::Active)),
        Hollow::SpillRequested => Some(Hollow::enter(Hollow::Spilling)),
        _ => None,
    };
    T::deserialize(d)
}

/// [`hollow_ok`] for elements a spilled decode keeps whole (stream
/// entries' fields, whose payload is made from the whole entries).
pub(crate) fn hollow_only<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    let _guard = (Hollow::now() == Hollow::Requested).then(|| Hollow::enter(Hollow::Active));
    T::deserialize(d)
}

/// A sorted-set score. JSON numbers cannot say infinity, so `inf` and
/// `-inf` are the strings Redis itself uses; finite scores are numbers
/// written with the shortest form that reads back to the same f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else if self.0 > 0.0 {
            s.serialize_str("inf")
        } else if self.0 < 0.0 {
            s.serialize_str("-inf")
        } else {
            Err(serde::ser::Error::custom("NaN is not a valid score"))
        }
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScoreVisitor;
        impl Visitor<'_> for ScoreVisitor {
            type Value = Score;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Score, E> {
                Ok(Score(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Score, E> {
                Ok(Score(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Score, E> {
                Ok(Score(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Score, E> {
                parse_score(v.as_bytes())
                    .filter(|s| !s.is_finite())
                    .map(Score)
                    .ok_or_else(|| E::custom(format!("invalid score {v:?}")))
            }
        }
        d.deserialize_any(ScoreVisitor)
    }
}

/// Parse a score as Redis prints it (`1.5`, `inf`, `-inf`, `+inf`).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let v = match text {
        "inf" | "+inf" | "Inf" | "+Inf" => f64::INFINITY,
        "-inf" | "-Inf" => f64::NEG_INFINITY,
        _ => text.parse::<f64>().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// Format a score for a command so that the server parses the same f64.
pub(crate) fn format_score(v: f64) -> String {
    if v == f64::INFINITY {
        "+inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        // Rust's Display for f64 is the shortest string that round-trips.
        format!("{v}")
    }
}
