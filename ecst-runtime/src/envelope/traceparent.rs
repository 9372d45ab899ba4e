//! The W3C Trace Context `traceparent`, the CloudEvents distributed tracing
//! extension's attribute (`ce-traceparent` in binary mode).
//!
//! The envelope keeps `traceparent` as the string that came on the wire;
//! [`TraceParent::parse`] reads it strictly, as the W3C recommendation asks
//! of a receiver: what it refuses is ignored by the tracing layer (the
//! event's apply span then has no remote parent), never a panic and never a
//! reason to reject the event.

use core::fmt;
use core::str::FromStr;

/// A parsed W3C `traceparent`: which trace an event belongs to and which
/// span (the producer's) it came from.
///
/// Written as `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`,
/// lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not `version-traceid-parentid-flags` with fields of 2, 32, 16 and 2
    /// characters (version `00` allows nothing after the flags; a later
    /// version allows more fields after a `-`).
    #[error("not `version-traceid-parentid-flags` with fields of 2, 32, 16 and 2 characters")]
    Layout,
    /// A field holds something other than lower-case hexadecimal digits.
    #[error("the {field} is not lower-case hexadecimal")]
    NotHex {
        /// `version`, `trace id`, `parent id` or `flags`.
        field: &'static str,
    },
    /// Version `ff`, which the recommendation forbids.
    #[error("version ff is forbidden")]
    ForbiddenVersion,
    /// The trace id is all zeros.
    #[error("the trace id is all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("the parent id is all zeros")]
    ZeroParentId,
}

impl TraceParent {
    /// A trace parent; `None` if either id is all zeros (invalid).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Reads a `traceparent` strictly: lower-case hex fields of the right
    /// lengths, version other than `ff`, ids not all zeros. A version above
    /// `00` may carry more after the flags (read as version `00`, as the
    /// recommendation says).
    pub fn parse(text: &str) -> Result<Self, TraceParentError> {
        let bytes = text.as_bytes();
        // `vv-` + 32 + `-` + 16 + `-` + 2.
        if bytes.len() < 55 {
            return Err(TraceParentError::Layout);
        }
        let dashes = [2, 35, 52];
        if dashes.iter().any(|&at| bytes[at] != b'-') {
            return Err(TraceParentError::Layout);
        }
        let mut version = [0u8; 1];
        hex(&bytes[0..2], &mut version, "version")?;
        if version[0] == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if bytes.len() > 55 && (version[0] == 0 || bytes[55] != b'-') {
            return Err(TraceParentError::Layout);
        }
        let mut trace_id = [0u8; 16];
        hex(&bytes[3..35], &mut trace_id, "trace id")?;
        let mut parent_id = [0u8; 8];
        hex(&bytes[36..52], &mut parent_id, "parent id")?;
        let mut flags = [0u8; 1];
        hex(&bytes[53..55], &mut flags, "flags")?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span the event came from.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the producer sampled (recorded) its trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TraceParent::parse(text)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for byte in self.trace_id {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("-")?;
        for byte in self.parent_id {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

/// Decodes lower-case hex `digits` (twice as many as `out` holds) into `out`.
fn hex(digits: &[u8], out: &mut [u8], field: &'static str) -> Result<(), TraceParentError> {
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(TraceParentError::NotHex { field }),
    };
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_w3c_form() {
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parent.trace_id()[0], 0x4b);
        assert_eq!(parent.parent_id()[7], 0xb7);
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), GOOD);
        assert_eq!(GOOD.parse::<TraceParent>(), Ok(parent));
        // A later version may carry more fields; read as version 00.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever";
        assert_eq!(
            TraceParent::parse(later).unwrap().to_string()[3..52],
            GOOD[3..52]
        );
    }

    #[test]
    fn refuses_what_the_recommendation_refuses() {
        let cases: &[(&str, TraceParentError)] = &[
            ("", TraceParentError::Layout),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                TraceParentError::Layout,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                TraceParentError::Layout,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                TraceParentError::Layout,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                TraceParentError::Layout,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::ForbiddenVersion,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "trace id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                TraceParentError::NotHex { field: "parent id" },
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "version" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
                TraceParentError::NotHex { field: "flags" },
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::ZeroParentId,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(TraceParent::parse(text), Err(*error), "{text:?}");
        }
        // Multi-byte characters where a dash or a digit belongs: refused,
        // never a panic on a character boundary.
        let wide = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert!(TraceParent::parse(wide).is_err());
        let wide = "00é4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(TraceParent::parse(wide).is_err());
    }
}
