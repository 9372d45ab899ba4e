//! [`OutboxRelay`]: publishes committed outbox rows to JetStream (features
//! `nats` and `sqlite` or `postgres`).

mod batch;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;

use batch::{group, Entity, Outcome, Relayed};

use super::Outbox;
use crate::consume::RetryPolicy;
use crate::event::StateEvent;
use crate::nats::{NatsError, Publisher};
use crate::upcast::BoxError;

/// How a relay works; [`RelaySettings::default`] suits most owners.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RelaySettings {
    /// Unsent rows read per batch (default 1,000).
    pub batch: usize,
    /// Publishes in flight at once (default 256): different keys only.
    pub in_flight: usize,
    /// How often the relay looks for rows when nothing woke it (default
    /// 1 s). In-process staging (SQLite) and PostgreSQL's `NOTIFY` wake it
    /// at once; this is the fallback (rows staged by another process into
    /// SQLite, a notification lost with a connection).
    pub poll_interval: Duration,
    /// How long the relay waits after a pass that published something before
    /// it looks again (default 5 ms), so that under load each pass takes a
    /// larger batch: fewer write transactions on the outbox table, which in
    /// SQLite compete with the owner's for the one write lock. At most this
    /// much latency is added, only to rows staged right after a pass.
    pub linger: Duration,
    /// How long the relay lease lasts unless renewed (default 10 s): a
    /// crashed relay's successor waits at most this long.
    pub lease_ttl: Duration,
    /// How long sent rows are kept (`None`, the default: deleted once the
    /// server acknowledged them).
    pub keep_sent: Option<Duration>,
    /// Sent rows deleted at most per batch, with `keep_sent` (default
    /// 1,000).
    pub purge_batch: usize,
    /// The waits after failures (the broker or the database down): doubled
    /// from `initial_backoff` up to `max_backoff`. [`OutboxRelay::run`]
    /// retries for ever; `attempts` is not used.
    pub retry: RetryPolicy,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            batch: 1000,
            in_flight: 256,
            poll_interval: Duration::from_secs(1),
            linger: Duration::from_millis(5),
            lease_ttl: Duration::from_secs(10),
            keep_sent: None,
            purge_batch: 1000,
            retry: RetryPolicy {
                attempts: u32::MAX,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
            },
        }
    }
}

/// What one pass of the relay did ([`OutboxRelay::relay_once`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// Whether this relay holds the lease; without it, it did nothing.
    pub leader: bool,
    /// Rows read.
    pub read: usize,
    /// Events the stream acknowledged (or already had: a re-send).
    pub published: usize,
    /// Rows marked sent without a publish of their own: an older event of
    /// a key whose newer event went out in the same batch, or one the
    /// stream already holds a newer state of.
    pub superseded: usize,
    /// Rows set aside with a reason in their `error` column: they can never
    /// be published (they do not decode as their entity, or their message
    /// is over the server's `max_payload`), and the older rows of their key
    /// in the batch (publishing those would present an older state as the
    /// current one).
    pub set_aside: usize,
    /// Rows set aside (with a reason in their `error` column, and a
    /// warning logged) because the stream already holds a higher sequence
    /// of their key than the outbox ever handed out: the sequence table
    /// was not seeded with the sequences published before the outbox, or
    /// was reset or restored from a backup. Publishing them is refused by
    /// the guard; marking them sent would lose a committed state. Raise
    /// the key's row in `<table>_sequence` above the stream's sequence and
    /// stage the state again.
    pub stream_ahead: usize,
    /// Unsent rows of a schema version newer than this relay knows (an
    /// owner upgraded before its relay): left unsent for an upgraded relay,
    /// never set aside, and they hold no other key back. Counted when the
    /// pass read every other unsent row (`more` is false); a warning is
    /// logged when the count changes.
    pub newer_version: usize,
    /// Unsent rows of entity types this relay does not relay: they wait
    /// for a relay that registers them. A table is relayed by one relay at
    /// a time (the lease), so that relay must register every type staged in
    /// the table (or each type gets its own table). Counted and logged as
    /// `newer_version` is.
    pub unregistered: usize,
    /// Sent rows deleted by retention.
    pub purged: usize,
    /// The batch was full: more rows may be waiting.
    pub more: bool,
}

/// Why a pass of the relay failed. [`OutboxRelay::run`] logs it and tries
/// again after a backoff; nothing is lost (the rows stay unsent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The outbox's database failed (the source is the driver's error,
    /// shown with the database's own message and SQLSTATE).
    #[error(
        "the outbox relay's {operation} failed: {}",
        super::error::described(source)
    )]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        source: BoxError,
    },
    /// Publishing failed (the broker is down, say); the events stay unsent.
    #[error("publishing {failed} outbox event(s) failed: {source}")]
    Publish {
        /// How many keys' events failed in the pass.
        failed: usize,
        /// The first failure.
        source: NatsError,
    },
    /// No entity type was registered with [`OutboxRelay::entity`].
    #[error("the outbox relay has no entity types: register them with `OutboxRelay::entity`")]
    NoEntities,
}

impl RelayError {
    pub(crate) fn database(operation: &'static str, source: impl Into<BoxError>) -> Self {
        RelayError::Database {
            operation,
            source: source.into(),
        }
    }
}

enum Source {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteSource),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresSource),
}

/// Publishes an [`Outbox`]'s committed rows to JetStream.
///
/// - **Order.** Each pass reads the unsent rows (every one: it never uses
///   "the highest position sent" as a cursor, since in PostgreSQL a later
///   position can commit first) and publishes, per key, the event with the
///   highest sequence, with the [`Publisher`] given (its `Nats-Msg-Id` is
///   the event id, so the server drops a re-send after a crash). The older
///   rows of that key in the batch are marked sent with it: the stream
///   keeps one message per subject, and a consumer that is behind would
///   only see the newest anyway. The rows of one key commit in sequence
///   order (the staging call holds the key's counter row until commit), so
///   a batch always holds the oldest unsent events of each key.
/// - **Acknowledged, then marked.** Rows are marked sent (or deleted) only
///   after the server acknowledged their event. A crash or a cancellation
///   anywhere leaves them unsent; they are published again, and dropped by
///   the server's de-duplication or by the guard.
/// - **One relay at a time.** A lease row (`<table>_lease`, renewed each
///   pass, [`RelaySettings::lease_ttl`]) lets one relay of an outbox work;
///   the others wait to take over. A lease rather than `FOR UPDATE SKIP
///   LOCKED`: with several relays sharing the rows, two of them could hold
///   two events of one key, and the later could reach the stream first.
///   The lease alone cannot stop a relay that was paused past its lease
///   (a long GC pause, a stopped VM) from publishing a stale batch when it
///   wakes: the guarded [`Publisher`] (the default) does, since it publishes
///   with `Nats-Expected-Last-Subject-Sequence` and refuses an event not
///   newer than the stream's (such a row is counted as superseded). With
///   [`Publisher::unguarded`] the order rests on the lease alone.
/// - **A stream ahead of the outbox.** When the guard finds a higher
///   sequence of a key in the stream than the outbox ever handed out for
///   it (`<table>_sequence` not seeded, reset, or restored from a backup),
///   the row is not superseded but a committed state about to be lost: it
///   is set aside with the stream's sequence and the fix in its `error`
///   column, logged, and counted in [`RelayReport::stream_ahead`].
/// - **Types and versions.** A relay reads only the rows of the entity
///   types it registers, up to their schema version. Rows of a newer
///   version (an owner upgraded before its relay) and of types not
///   registered stay unsent, hold no other key back, and are counted in
///   [`RelayReport::newer_version`] and [`RelayReport::unregistered`] and
///   logged. Since one relay of a table works at a time, register every
///   type staged in the table.
/// - **Failures.** A broker or database failure fails the pass
///   ([`RelayError`]); [`OutboxRelay::run`] waits (doubling backoff) and
///   tries again, for ever, keeping every row. A row that can never be
///   published (it does not decode as its entity, its message is over the
///   server's `max_payload`) is set aside with the reason in its `error`
///   column and never blocks the others; so are the older rows of its key
///   in the batch, which would otherwise be published as if they were the
///   key's current state.
pub struct OutboxRelay {
    source: Source,
    publisher: Publisher,
    entities: HashMap<&'static str, Arc<dyn Relayed>>,
    types: Vec<String>,
    /// The schema version relayed of each of `types`.
    versions: Vec<i64>,
    /// What the last count of skipped rows found, logged when it changes.
    skipped: (usize, usize),
    settings: RelaySettings,
    holder: String,
    wake: Arc<Notify>,
    lease_until: Option<Instant>,
}

impl OutboxRelay {
    /// A relay of `outbox` in SQLite, reading with its own connection
    /// `conn` to the owner's database file, woken by the staging calls of
    /// `outbox` and its clones (in this process), and polling for rows
    /// staged by other processes.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(
        outbox: &Outbox,
        conn: rusqlite::Connection,
        publisher: Publisher,
    ) -> Result<Self, RelayError> {
        let source = sqlite::SqliteSource::new(conn, &outbox.tables)?;
        Ok(Self::with_source(
            Source::Sqlite(source),
            publisher,
            Arc::clone(&outbox.wake),
        ))
    }

    /// A relay of `outbox` in PostgreSQL, connecting with `config` (a
    /// tokio-postgres connection string, no TLS) and woken by the insert
    /// trigger's `NOTIFY` (delivered at commit, never for a rolled-back
    /// transaction). It connects on its first pass, and again after the
    /// connection broke. Must run inside a Tokio runtime.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(outbox: &Outbox, config: &str, publisher: Publisher) -> Self {
        let wake = Arc::new(Notify::new());
        let source = postgres::PostgresSource::new(config, &outbox.tables, Arc::clone(&wake));
        Self::with_source(Source::Postgres(source), publisher, wake)
    }

    fn with_source(source: Source, publisher: Publisher, wake: Arc<Notify>) -> Self {
        OutboxRelay {
            source,
            publisher,
            entities: HashMap::new(),
            types: Vec::new(),
            versions: Vec::new(),
            skipped: (0, 0),
            settings: RelaySettings::default(),
            holder: holder_name(),
            wake,
            lease_until: None,
        }
    }

    /// Relays the rows of entity `T` (their `aggregatetype` is
    /// `T::ENTITY`) written in schema version `T::VERSION` or older.
    ///
    /// Register every entity type staged in the outbox's table: the lease
    /// lets one relay of a table work at a time, so rows of a type the
    /// working relay does not register wait (counted in
    /// [`RelayReport::unregistered`] and logged) until a relay that
    /// registers it takes over. Rows of a newer schema version wait for
    /// an upgraded relay ([`RelayReport::newer_version`]).
    #[must_use]
    pub fn entity<T: StateEvent>(mut self) -> Self {
        if self
            .entities
            .insert(T::ENTITY, Arc::new(Entity::<T>::new()))
            .is_none()
        {
            self.types.push(T::ENTITY.to_owned());
            self.versions.push(i64::from(T::VERSION));
        } else if let Some(i) = self.types.iter().position(|t| t == T::ENTITY) {
            self.versions[i] = i64::from(T::VERSION);
        }
        self
    }

    /// The same relay with `settings`.
    #[must_use]
    pub fn with_settings(mut self, settings: RelaySettings) -> Self {
        self.settings = settings;
        self
    }

    /// The name this relay holds the lease under (host-independent: the
    /// process id and a time stamp).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs the relay until the future is dropped: passes back to back while
    /// rows are waiting, then waits for a wake-up or the poll interval.
    /// Failures are logged (`tracing`) and retried after a backoff, for
    /// ever; nothing is lost. Cancellation-safe: drop it at any point and
    /// run a new one, every committed row is published, per key in order.
    pub async fn run(&mut self) {
        let mut failures: u32 = 0;
        let mut woken = false;
        loop {
            match self.relay_once().await {
                Ok(report) if report.more && progressed(&report) => {
                    failures = 0;
                    continue;
                }
                Ok(report) => {
                    failures = 0;
                    if progressed(&report) && !self.settings.linger.is_zero() {
                        tokio::time::sleep(self.settings.linger).await;
                        woken = false;
                        continue;
                    }
                    if !report.leader {
                        let wait = self.settings.lease_ttl / 2;
                        tokio::time::sleep(wait.min(self.settings.poll_interval)).await;
                        continue;
                    }
                    if woken && report.read == 0 {
                        // Woken by a staging call whose transaction had
                        // not committed yet: look again shortly.
                        self.settle().await;
                    }
                    woken = tokio::time::timeout(self.settings.poll_interval, self.wake.notified())
                        .await
                        .is_ok();
                }
                Err(error) => {
                    let wait = self.settings.retry.backoff(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, ?wait, "outbox relay pass failed; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// After a wake-up that found nothing: a few quick looks (1 ms up to
    /// 64 ms apart, or at once on the next wake-up) for the row of a
    /// transaction that was committing.
    async fn settle(&mut self) {
        let mut wait = Duration::from_millis(1);
        while wait <= Duration::from_millis(64) {
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            match self.relay_once().await {
                Ok(report) if report.read > 0 => return,
                Ok(_) => wait *= 2,
                Err(_) => return,
            }
        }
    }

    /// One pass: take or renew the lease, read a batch of unsent rows,
    /// publish the newest event of each key, mark what the server
    /// acknowledged, delete what retention allows.
    ///
    /// Cancellation-safe: rows are marked only after the acknowledgements,
    /// in one step; dropped earlier, the pass leaves them unsent.
    pub async fn relay_once(&mut self) -> Result<RelayReport, RelayError> {
        if self.entities.is_empty() {
            return Err(RelayError::NoEntities);
        }
        let mut report = RelayReport::default();
        if !self.lease().await? {
            return Ok(report);
        }
        report.leader = true;
        let rows = self.fetch().await?;
        report.read = rows.len();
        report.more = rows.len() >= self.settings.batch;
        let groups = group(&rows);
        let publisher = &self.publisher;
        let entities = &self.entities;
        // The futures are built first, then run a bounded number at a time
        // (a stream combinator over borrowed rows would not be `Send`).
        let mut work = Vec::with_capacity(groups.len());
        for (i, keyed) in groups.iter().enumerate() {
            let row = &rows[keyed.newest];
            let entity = entities.get(row.aggregatetype.as_str()).cloned();
            work.push(async move {
                let outcome = match entity {
                    Some(entity) => entity.publish(publisher, &row.payload).await,
                    None => Outcome::Poison(format!(
                        "no entity type `{}` registered",
                        row.aggregatetype
                    )),
                };
                (i, outcome)
            });
        }
        let outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(work)
            .buffer_unordered(self.settings.in_flight.max(1))
            .collect()
            .await;
        let mut sent = Vec::new();
        let mut poison = Vec::new();
        let mut failed: Option<NatsError> = None;
        let mut failures = 0;
        for (i, outcome) in outcomes {
            let keyed = &groups[i];
            let row = &rows[keyed.newest];
            match outcome {
                Outcome::Published => {
                    report.published += 1;
                    report.superseded += keyed.positions.len() - 1;
                    sent.extend_from_slice(&keyed.positions);
                }
                Outcome::NotNewer { stored } => {
                    let handed_out = self
                        .last_sequence(&row.aggregatetype, &row.aggregateid)
                        .await?
                        .unwrap_or(row.sequence)
                        .max(row.sequence);
                    if i64::try_from(stored).map_or(true, |stored| stored > handed_out) {
                        let reason = format!(
                            "the stream already holds sequence {stored} of this key, above the \
                             last sequence the outbox handed out ({handed_out}): the sequence \
                             table was not seeded with the sequences published before the \
                             outbox, or was reset or restored. Raise the key's row in the \
                             sequence table above {stored} and stage the state again"
                        );
                        tracing::warn!(
                            id = %row.aggregateid,
                            entity = %row.aggregatetype,
                            sequence = row.sequence,
                            stored,
                            "outbox event set aside: the stream is ahead of the outbox's sequence"
                        );
                        report.stream_ahead += keyed.positions.len();
                        set_aside(&mut poison, keyed, row, &reason);
                    } else {
                        report.superseded += keyed.positions.len();
                        sent.extend_from_slice(&keyed.positions);
                    }
                }
                Outcome::Poison(reason) => {
                    tracing::error!(
                        id = %row.aggregateid,
                        entity = %row.aggregatetype,
                        sequence = row.sequence,
                        %reason,
                        "outbox event set aside: it can never be published"
                    );
                    report.set_aside += keyed.positions.len();
                    set_aside(&mut poison, keyed, row, &reason);
                }
                Outcome::NewerVersion(reason) => {
                    // Left unsent, with the older rows of its key: an
                    // upgraded relay publishes the newest.
                    tracing::warn!(
                        id = %row.aggregateid,
                        entity = %row.aggregatetype,
                        sequence = row.sequence,
                        %reason,
                        "outbox event left unsent: a schema version newer than this relay knows"
                    );
                    report.newer_version += keyed.positions.len();
                }
                Outcome::Failed(error) => {
                    failures += 1;
                    failed.get_or_insert(error);
                }
            }
        }
        self.finish(&sent, &poison).await?;
        // After marking: the scan then meets only the rows left unsent.
        if !report.more {
            let (newer, unregistered) = self.skipped().await?;
            report.newer_version += newer;
            report.unregistered = unregistered;
            if (report.newer_version, unregistered) != self.skipped {
                self.skipped = (report.newer_version, unregistered);
                if report.newer_version > 0 || unregistered > 0 {
                    tracing::warn!(
                        newer_version = report.newer_version,
                        unregistered,
                        relayed = ?self.types,
                        "outbox events this relay leaves unsent: of a schema version newer than \
                         it knows (upgrade it), or of entity types it does not register \
                         (register every type staged in the table)"
                    );
                }
            }
        }
        if let Some(source) = failed {
            return Err(RelayError::Publish {
                failed: failures,
                source,
            });
        }
        if let Some(keep) = self.settings.keep_sent {
            report.purged = self.purge(keep).await?;
        }
        Ok(report)
    }

    /// Gives the lease up (a successor takes over at once instead of after
    /// the lease's time to live). The relay takes it again on its next pass
    /// if nobody else did.
    pub async fn release(&mut self) -> Result<(), RelayError> {
        self.lease_until = None;
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.release(&self.holder),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.release(&self.holder).await,
        }
    }

    /// Whether this relay holds the lease, renewing it when half its time
    /// to live has passed.
    async fn lease(&mut self) -> Result<bool, RelayError> {
        let ttl = self.settings.lease_ttl;
        if let Some(until) = self.lease_until {
            if Instant::now() + ttl / 2 < until {
                return Ok(true);
            }
        }
        let started = Instant::now();
        let held = match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.take_lease(&self.holder, ttl)?,
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.take_lease(&self.holder, ttl).await?,
        };
        self.lease_until = held.then_some(started + ttl);
        Ok(held)
    }

    /// The entity types relayed, as a JSON object of the schema version
    /// relayed of each (SQLite's parameter).
    #[cfg(feature = "sqlite")]
    fn types_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .types
            .iter()
            .zip(&self.versions)
            .map(|(t, v)| (t.clone(), serde_json::Value::from(*v)))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    async fn fetch(&mut self) -> Result<Vec<batch::UnsentRow>, RelayError> {
        let limit = self.settings.batch.max(1);
        #[cfg(feature = "sqlite")]
        let types = self.types_json();
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.fetch(&types, limit),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.fetch(&self.types, &self.versions, limit).await,
        }
    }

    /// The unsent rows this relay does not read: (of a newer schema
    /// version, of a type not registered).
    async fn skipped(&mut self) -> Result<(usize, usize), RelayError> {
        #[cfg(feature = "sqlite")]
        let types = self.types_json();
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.skipped(&types),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.skipped(&self.types, &self.versions).await,
        }
    }

    /// The last sequence the outbox handed out for a key.
    async fn last_sequence(&mut self, entity: &str, key: &str) -> Result<Option<i64>, RelayError> {
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.last_sequence(entity, key),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.last_sequence(entity, key).await,
        }
    }

    async fn finish(&mut self, sent: &[i64], poison: &[(i64, String)]) -> Result<(), RelayError> {
        if sent.is_empty() && poison.is_empty() {
            return Ok(());
        }
        let keep = self.settings.keep_sent.is_some();
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.finish(sent, poison, keep),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.finish(sent, poison, keep).await,
        }
    }

    async fn purge(&mut self, keep: Duration) -> Result<usize, RelayError> {
        let limit = self.settings.purge_batch.max(1);
        match &mut self.source {
            #[cfg(feature = "sqlite")]
            Source::Sqlite(source) => source.purge(keep, limit),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.purge(keep, limit).await,
        }
    }
}

/// Whether a pass did something to the rows it read (rows left unsent for
/// an upgraded relay are read again by every pass).
fn progressed(report: &RelayReport) -> bool {
    report.published + report.superseded + report.set_aside + report.stream_ahead > 0
}

/// Sets aside every row of a key in the batch: the newest with `reason`,
/// the older ones because publishing them would present an older state as
/// the current one.
fn set_aside(
    poison: &mut Vec<(i64, String)>,
    keyed: &batch::KeyRows,
    newest: &batch::UnsentRow,
    reason: &str,
) {
    for &position in &keyed.positions {
        if position == newest.position {
            poison.push((position, reason.to_owned()));
        } else {
            poison.push((
                position,
                format!(
                    "a newer event of this key (sequence {}) was set aside: {reason}",
                    newest.sequence
                ),
            ));
        }
    }
}

/// A name for this relay's lease: the process id and the time it started,
/// unique enough that two relays never share one.
fn holder_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "relay-{}-{nanos}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}
