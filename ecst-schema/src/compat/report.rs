//! What a check found.

use core::fmt;

use super::kind::DifferenceKind;
use super::mode::{Mode, Policy};

/// Which check found a difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A reader on the new schema reading data written with an older one.
    Backward,
    /// A reader on an older schema reading data written with the new one.
    Forward,
}

impl Direction {
    /// `"old"` or `"new"`: the schema the data was written with.
    pub const fn writer(self) -> &'static str {
        match self {
            Direction::Backward => "old",
            Direction::Forward => "new",
        }
    }

    /// `"new"` or `"old"`: the schema the data is read with.
    pub const fn reader(self) -> &'static str {
        match self {
            Direction::Backward => "new",
            Direction::Forward => "old",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        })
    }
}

/// One way the reader's schema differs from the writer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// A JSON pointer to where the difference is, as the walk reached it:
    /// `"#/properties/email"`, `"#"` for the schema itself. A `$ref` on the
    /// way is not part of the path (`#/properties/home/properties/zip`
    /// even when `home` is a `$ref`), as in Confluent's reports.
    pub path: String,
    /// What changed.
    pub kind: DifferenceKind,
    /// Whether the reader still reads the writer's data despite it, under
    /// the report's policy.
    pub compatible: bool,
    /// Which check found it: backward (new reader, old data) or forward
    /// (old reader, new data).
    pub direction: Direction,
    /// Why it breaks, or does not break, which reader: one sentence.
    pub explanation: String,
    /// The earlier version the newest one was compared with: its index in
    /// the history given to [`check_history`](super::check_history), or `0`
    /// for [`check`](super::check).
    pub against: usize,
}

impl Difference {
    /// What changed from the old schema to the new one, in a few words:
    /// the kind's phrase for a backward difference; for a forward one, the
    /// same change seen from the old schema (a forward check finds a
    /// variant added in the new schema as an alternative the old reader
    /// lacks, [`DifferenceKind::SumTypeNarrowed`]: "alternative added").
    pub fn change(&self) -> String {
        super::change::phrase(&self.kind, self.direction)
    }
}

impl fmt::Display for Difference {
    /// `#/properties/email: optional property added to an open content
    /// model: <why>`, the change told from the old schema to the new one
    /// (see [`Difference::change`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.change(), self.explanation)
    }
}

/// The result of a compatibility check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub(crate) mode: Mode,
    pub(crate) policy: Policy,
    pub(crate) differences: Vec<Difference>,
    pub(crate) compared: Vec<usize>,
}

impl Report {
    /// Whether every difference is compatible under the mode and policy.
    pub fn is_compatible(&self) -> bool {
        self.differences.iter().all(|d| d.compatible)
    }

    /// The mode checked.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The policy the differences were judged by.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Every difference found, compatible or not: for each earlier version
    /// compared, the backward differences, then the forward ones.
    pub fn differences(&self) -> &[Difference] {
        &self.differences
    }

    /// The differences that break a reader.
    pub fn incompatibilities(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| !d.compatible)
    }

    /// The indices of the earlier versions the newest one was compared
    /// with: none for [`Mode::None`] or a history of fewer than two
    /// versions, one for the non-transitive modes, all for the transitive
    /// ones.
    pub fn compared_against(&self) -> &[usize] {
        &self.compared
    }
}

impl fmt::Display for Report {
    /// One line per incompatible difference: where, what, and why it breaks
    /// which reader (prefixed with the version compared against when the
    /// newest schema was compared with several). A compatible report prints
    /// one line saying so.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_compatible() {
            return write!(f, "compatible ({}, {})", self.mode, self.policy);
        }
        let several = self.compared.len() > 1;
        let mut first = true;
        for difference in self.incompatibilities() {
            if !first {
                writeln!(f)?;
            }
            first = false;
            if several {
                write!(f, "against version {}: ", difference.against)?;
            }
            write!(f, "{difference}")?;
        }
        Ok(())
    }
}
