//! Talking to the NATS server: connecting, finding the state stream of a
//! prefix, reading a subject's last message, and scanning messages in
//! stream order with an ordered consumer.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectErrorKind, HeaderMap, ServerAddr};
use ecst_runtime::nats::Subjects;
use futures_util::StreamExt;

use crate::error::{chain, redacted, Failure};

/// How long to wait for the server to answer the connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// How long a scan waits for the next message the server said is pending.
pub const NEXT_WITHIN: Duration = Duration::from_secs(15);

/// A connection to the server, with JetStream.
pub struct Nats {
    /// The JetStream context.
    pub js: Context,
    /// The server URL, as given.
    pub server: String,
}

/// Connects to `server`, or fails with one line saying why.
pub async fn connect(given: &str) -> Result<Nats, Failure> {
    let server = redacted(given);
    let server = server.as_str();
    let address: ServerAddr = given.parse().map_err(|error| {
        Failure::new(format!(
            "`{server}` is not a NATS server URL ({}); give one like nats://127.0.0.1:4222 with \
             --server or NATS_URL",
            chain(&error)
        ))
    })?;
    let client = async_nats::ConnectOptions::new()
        .name("ecst-cli")
        .connection_timeout(CONNECT_WITHIN)
        .connect(address)
        .await
        .map_err(|error| {
            let why = match error.kind() {
                ConnectErrorKind::TimedOut => "no answer".to_owned(),
                ConnectErrorKind::Io => {
                    let text = chain(&error);
                    text.strip_prefix("IO error: ").unwrap_or(&text).to_owned()
                }
                _ => chain(&error),
            };
            Failure::new(format!(
                "cannot reach a NATS server at {server} ({why}); start one, or give its URL with \
                 --server or NATS_URL"
            ))
        })?;
    if !client.server_info().jetstream {
        return Err(Failure::new(format!(
            "JetStream is not enabled on {server} (start nats-server with -js)"
        )));
    }
    Ok(Nats {
        js: jetstream::new(client),
        server: server.to_owned(),
    })
}

/// The subjects of `prefix`, or a failure naming the bad prefix.
pub fn subjects(prefix: &str) -> Result<Subjects, Failure> {
    Subjects::new(prefix).map_err(|error| Failure::new(chain(&error)))
}

impl Nats {
    /// The stream that captures `subject` (a subject of `prefix`), or a
    /// failure saying that none does.
    pub async fn stream_for(&self, prefix: &str, subject: &str) -> Result<Stream, Failure> {
        let name = match self.js.stream_by_subject(subject).await {
            Ok(name) => name,
            Err(error) => {
                use async_nats::jetstream::context::GetStreamByNameErrorKind as Kind;
                return Err(match error.kind() {
                    Kind::NotFound => Failure::new(format!(
                        "no stream on {} captures `{subject}`: is `{prefix}` the right prefix?",
                        self.server
                    )),
                    _ => Failure::new(format!(
                        "looking up the stream of `{subject}` on {} failed: {}",
                        self.server,
                        chain(&error)
                    )),
                });
            }
        };
        self.js.get_stream(&name).await.map_err(|error| {
            Failure::new(format!(
                "reading stream `{name}` on {} failed: {}",
                self.server,
                chain(&error)
            ))
        })
    }

    /// The last message on `subject` in `stream`, `None` if there is none.
    pub async fn last_message(
        &self,
        stream: &Stream,
        subject: &str,
    ) -> Result<Option<StoredMessage>, Failure> {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(StoredMessage {
                subject: message.subject.to_string(),
                stream_sequence: message.sequence,
                published: rfc3339(message.time.unix_timestamp_nanos()),
                headers: Some(message.headers),
                payload: message.payload.to_vec(),
            })),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(Failure::new(format!(
                "reading the last message of `{subject}` failed: {}",
                chain(&error)
            ))),
        }
    }
}

/// A message as stored in the stream.
pub struct StoredMessage {
    /// Its subject.
    pub subject: String,
    /// Its stream sequence.
    pub stream_sequence: u64,
    /// When the server stored it, as the server's clock says.
    pub published: String,
    /// Its headers (binary-mode events carry their attributes there).
    pub headers: Option<HeaderMap>,
    /// Its body.
    pub payload: Vec<u8>,
}

/// Where a scan starts.
#[derive(Clone, Copy, Debug)]
pub enum From {
    /// Every message the stream holds under the filter.
    All,
    /// The last message of every subject under the filter.
    LastPerSubject,
    /// Only messages stored from now on.
    New,
}

/// Messages of a stream in stream order, from an ordered (ephemeral,
/// unacknowledged, in-memory) consumer, which the server deletes 30 s after
/// the command ends.
pub struct Scan {
    messages: Ordered,
    /// How many messages matched when the scan started.
    pub pending_at_start: u64,
}

impl Scan {
    /// Starts reading `stream`'s messages under `filter` from `from`.
    pub async fn start(stream: &Stream, filter: &str, from: From) -> Result<Self, Failure> {
        let deliver_policy = match from {
            From::All => DeliverPolicy::All,
            From::LastPerSubject => DeliverPolicy::LastPerSubject,
            From::New => DeliverPolicy::New,
        };
        let config = OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ..OrderedConfig::default()
        };
        let fail = |error: &dyn std::error::Error| {
            Failure::new(format!(
                "reading `{filter}` from stream `{}` failed: {}",
                stream.cached_info().config.name,
                chain(error)
            ))
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| fail(&e))?;
        let pending_at_start = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| fail(&e))?;
        Ok(Scan {
            messages,
            pending_at_start,
        })
    }

    /// The next message, waiting at most `within` (`None`: for ever);
    /// `None` if none came in time.
    pub async fn next(&mut self, within: Option<Duration>) -> Result<Option<Scanned>, Failure> {
        let next = match within {
            Some(within) => match tokio::time::timeout(within, self.messages.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(None),
            },
            None => self.messages.next().await,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                return Err(Failure::new(format!(
                    "reading messages failed: {}",
                    chain(&error)
                )))
            }
            None => return Err(Failure::new("the server ended the message stream")),
        };
        let info = message.info().map_err(|error| {
            Failure::new(format!(
                "a delivered message has no stream metadata: {}",
                chain(error.as_ref())
            ))
        })?;
        let scanned = Scanned {
            pending: info.pending,
            message: StoredMessage {
                subject: message.subject.to_string(),
                stream_sequence: info.stream_sequence,
                published: rfc3339(info.published.unix_timestamp_nanos()),
                headers: message.headers.clone(),
                payload: message.payload.to_vec(),
            },
        };
        Ok(Some(scanned))
    }

    /// The next message of a scan of what the stream holds: the server
    /// said more is pending, so waiting long for it is a failure.
    pub async fn next_pending(&mut self) -> Result<Scanned, Failure> {
        self.next(Some(NEXT_WITHIN)).await?.ok_or_else(|| {
            Failure::new(format!(
                "the server said more messages were pending but sent none within {}s",
                NEXT_WITHIN.as_secs()
            ))
        })
    }
}

/// One message of a scan.
pub struct Scanned {
    /// The message.
    pub message: StoredMessage,
    /// How many more messages matched when it was sent.
    pub pending: u64,
}

/// A Unix time in nanoseconds as RFC 3339 (UTC, milliseconds).
fn rfc3339(nanos: i128) -> String {
    let Ok(nanos) = u64::try_from(nanos) else {
        return format!("{nanos} ns since the Unix epoch");
    };
    let time = std::time::UNIX_EPOCH + Duration::from_nanos(nanos);
    humantime::format_rfc3339_millis(time).to_string()
}
