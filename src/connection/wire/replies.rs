//! The replies to one request, kept as cheaply as their use allows: a
//! bulk string stays bytes in one buffer shared by all of them (a `DUMP`
//! payload is read from there, never copied into a value of its own), an
//! integer stays a number, and only arrays, errors and status replies
//! become the driver's `Value`s.

use redis::Value;

/// One reply.
#[derive(Debug)]
enum Slot {
    /// A bulk string: where its bytes are in the shared buffer.
    Bulk {
        start: usize,
        len: usize,
    },
    Int(i64),
    Value(Value),
    /// A capped reply that did not fit in the budget: read past.
    OverBudget,
}

/// The replies to one request, one per command, in order.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

impl Replies {
    pub(super) fn with_capacity(replies: usize) -> Self {
        Replies {
            bytes: Vec::new(),
            slots: Vec::with_capacity(replies),
        }
    }

    pub(super) fn push_bulk(&mut self, body: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(body);
        self.slots.push(Slot::Bulk {
            start,
            len: body.len(),
        });
    }

    pub(super) fn push_int(&mut self, n: i64) {
        self.slots.push(Slot::Int(n));
    }

    pub(super) fn push_value(&mut self, v: Value) {
        self.slots.push(Slot::Value(v));
    }

    pub(super) fn push_over_budget(&mut self) {
        self.slots.push(Slot::OverBudget);
    }

    /// Reply `i`'s bytes, when it is a bulk string.
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        match self.slots.get(i)? {
            Slot::Bulk { start, len } => self.bytes.get(*start..start + len),
            _ => None,
        }
    }

    /// Whether reply `i` was read past for want of budget (it reads as nil).
    pub fn over_budget(&self, i: usize) -> bool {
        matches!(self.slots.get(i), Some(Slot::OverBudget))
    }

    /// Reply `i` as a value, taken out (it reads as nil afterwards).
    pub fn take(&mut self, i: usize) -> Value {
        let Some(slot) = self.slots.get_mut(i) else {
            return Value::Nil;
        };
        match std::mem::replace(slot, Slot::Value(Value::Nil)) {
            Slot::Bulk { start, len } => Value::BulkString(
                self.bytes
                    .get(start..start + len)
                    .unwrap_or_default()
                    .to_vec(),
            ),
            Slot::Int(n) => Value::Int(n),
            Slot::Value(v) => v,
            Slot::OverBudget => Value::Nil,
        }
    }

    /// The replies that are neither bulk strings nor integers (arrays,
    /// errors, nil, status): where the server's errors are.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Value(v) => Some(v),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_kept_and_taken_in_their_form() {
        let mut r = Replies::with_capacity(4);
        r.push_bulk(b"listpack");
        r.push_int(-2);
        r.push_over_budget();
        r.push_value(Value::Array(vec![Value::Okay]));
        r.push_bulk(b"");
        assert_eq!(r.slots.len(), 5);
        assert_eq!(r.bytes(0), Some(&b"listpack"[..]));
        assert_eq!(r.bytes(1), None);
        assert!(r.over_budget(2) && !r.over_budget(1));
        assert_eq!(r.values().count(), 1);
        assert_eq!(r.take(1), Value::Int(-2));
        assert_eq!(r.take(0), Value::BulkString(b"listpack".to_vec()));
        assert_eq!(r.take(0), Value::Nil, "taken");
        assert_eq!(r.take(2), Value::Nil);
        assert_eq!(r.bytes(4), Some(&b""[..]));
        assert_eq!(r.take(9), Value::Nil);
    }
}
