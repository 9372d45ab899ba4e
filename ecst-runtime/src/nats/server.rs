//! Which nats-server we talk to, and what it can do.
//!
//! nats-server 2.9 (what Debian ships) silently ignores configuration
//! fields it does not know, such as 2.10's `filter_subjects`, `metadata` or
//! stream `compression`: a consumer asked to filter on two subjects would
//! quietly receive everything. ecst checks the server version before it
//! relies on such a field and refuses with [`NatsError::ServerTooOld`].

use core::fmt;

use super::NatsError;

/// A nats-server version, as the server reports it in its INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// 2.10.0: multiple filter subjects, consumer metadata, stream compression.
    pub const V2_10: ServerVersion = ServerVersion::new(2, 10, 0);

    /// A version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses `2.9.10`, `v2.10.4`, `2.11.0-beta.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(ServerVersion::new(major, minor, patch))
    }

    /// The version of the server `client` is connected to.
    pub fn of(client: &async_nats::Client) -> Result<Self, NatsError> {
        let reported = client.server_info().version;
        ServerVersion::parse(&reported).ok_or(NatsError::UnknownServerVersion(reported))
    }

    /// `Ok` if this server has `feature`, which needs `minimum`.
    pub fn require(self, feature: &'static str, minimum: ServerVersion) -> Result<(), NatsError> {
        if self >= minimum {
            Ok(())
        } else {
            Err(NatsError::ServerTooOld {
                feature,
                needs: minimum,
                server: self,
            })
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_and_prerelease_versions() {
        assert_eq!(
            ServerVersion::parse("2.9.10"),
            Some(ServerVersion::new(2, 9, 10))
        );
        assert_eq!(
            ServerVersion::parse("v2.10.4"),
            Some(ServerVersion::new(2, 10, 4))
        );
        assert_eq!(
            ServerVersion::parse("2.11.0-beta.1"),
            Some(ServerVersion::new(2, 11, 0))
        );
        assert_eq!(ServerVersion::parse("garbage"), None);
        assert!(ServerVersion::new(2, 9, 10) < ServerVersion::V2_10);
    }

    #[test]
    fn refuses_features_the_server_lacks() {
        let old = ServerVersion::new(2, 9, 10);
        let err = old
            .require("stream compression", ServerVersion::V2_10)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream compression needs nats-server 2.10.0 or newer, but the server is 2.9.10 \
             (older servers silently ignore the setting)"
        );
        assert!(ServerVersion::new(2, 10, 0)
            .require("stream compression", ServerVersion::V2_10)
            .is_ok());
    }
}
