//! Counting what went wrong without keeping all of it: a report names the
//! first few failed keys, differences or problems and counts the rest, so a
//! million failures cost a count, not a list. Below every other layer, so
//! the archive reader and the reports share it.

/// How many failed keys a report names; the rest are only counted.
pub(crate) const MAX_ERROR_SAMPLES: usize = 20;

/// Counts everything and keeps the first 20 of it: what
/// every report that names what went wrong (failed keys, differences,
/// problems) needs, so that a million failures cost a count, not a list.
#[derive(Debug, Clone)]
pub struct Samples<T> {
    total: u64,
    first: Vec<T>,
}

impl<T> Default for Samples<T> {
    fn default() -> Self {
        Samples {
            total: 0,
            first: Vec::new(),
        }
    }
}

impl<T> Samples<T> {
    /// Count one more, and keep it if there is still room.
    pub fn add(&mut self, item: T) {
        self.total += 1;
        if self.first.len() < MAX_ERROR_SAMPLES {
            self.first.push(item);
        }
    }

    /// Add another tally's counts and, room permitting, its examples.
    pub(crate) fn absorb(&mut self, other: Samples<T>) {
        self.total += other.total;
        let room = MAX_ERROR_SAMPLES.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }

    /// Take back one count (something counted that turned out not to
    /// count); an example already kept stays, as an example.
    pub(crate) fn uncount(&mut self) {
        self.total = self.total.saturating_sub(1);
    }

    /// Everything counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The first ones, in the order they came.
    pub fn examples(&self) -> &[T] {
        &self.first
    }

    /// The count and the examples, for a report.
    pub(crate) fn into_parts(self) -> (u64, Vec<T>) {
        (self.total, self.first)
    }
}
