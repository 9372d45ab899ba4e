//! Scenarios every durable store must pass, generic over the backend:
//! `store_sqlite.rs` and `store_postgres.rs` run each of them.

#![allow(dead_code)]

use ecst::consume::{ParkKind, ParkReason, ParkingLimits, Resolution};
use ecst::store::{
    Checkpoint, Commit, DurableReplica, Loaded, Message, Parked, ReplicaStore, StoreError,
    StoredEntry,
};
use ecst::{Entry, Outcome, Producer, Replica, Sequence, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

/// Version 1 of the `account` entity, as an older build declares it.
pub mod v1 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "account", version = 1)]
    pub struct Account {
        #[state_event(key)]
        pub id: String,
        pub owner: String,
        pub balance: i64,
    }
}

/// Version 2 of `account`, as the next build declares it: `owner` renamed
/// to `holder`, `email` added.
pub mod v2 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "account", version = 2)]
    pub struct Account {
        #[state_event(key)]
        pub id: String,
        #[state_event(renamed(since = 2, from = "owner"))]
        pub holder: String,
        #[state_event(added(since = 2))]
        pub email: Option<String>,
        pub balance: i64,
    }
}

/// `account` version 1 with `balance` as text: what it writes, a real
/// `v1::Account` cannot read.
pub mod garbled {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "account", version = 1)]
    pub struct Account {
        #[state_event(key)]
        pub id: String,
        pub owner: String,
        pub balance: String,
    }
}

/// An entity whose state cannot be serialized when `note` is `"poison"`
/// (it deserializes fine): a commit that fails in the middle. Version 2:
/// a state upcast from version 1 is serialized to be stored (one decoded as
/// written is stored as its event's `data`, unserialized), see [`poisoned`].
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "fragile", version = 2)]
pub struct Fragile {
    #[state_event(key)]
    pub id: String,
    #[serde(serialize_with = "refuse_poison")]
    pub note: String,
    #[state_event(added(since = 2))]
    pub tag: Option<String>,
}

/// `harmless` with its note made `"poison"`, as a version 1 event: upcast,
/// so the store must serialize the state, and cannot.
fn poisoned(harmless: Msg) -> Msg {
    Msg {
        payload: String::from_utf8(harmless.payload.clone())
            .unwrap()
            .replace("\"harmless\"", "\"poison\"")
            .replace("\"schemaversion\":2", "\"schemaversion\":1")
            .replace("fragile:v2", "fragile:v1")
            .into_bytes(),
        ..harmless
    }
}

fn refuse_poison<S: Serializer>(note: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if note == "poison" {
        return Err(serde::ser::Error::custom("refusing to serialize poison"));
    }
    serializer.serialize_str(note)
}

/// A database the scenarios open stores in, for any consumer name.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The store.
    type Store: ReplicaStore<v1::Account, Error = StoreError>
        + ReplicaStore<v2::Account, Error = StoreError>
        + ReplicaStore<garbled::Account, Error = StoreError>
        + ReplicaStore<Fragile, Error = StoreError>;

    /// Opens a new store (a new connection) on the same database: what a
    /// restarted process does.
    async fn open(&self, consumer: &str) -> Self::Store;

    /// Deletes every row of the store's consumer.
    async fn purge(&self, store: &mut Self::Store);
}

/// A SQLite database file of its own per test, in Cargo's scratch
/// directory, removed (with its WAL and shared-memory files) on drop.
#[cfg(feature = "sqlite")]
pub struct Sqlite {
    pub path: std::path::PathBuf,
}

#[cfg(feature = "sqlite")]
impl Sqlite {
    pub fn new(test: &str) -> Self {
        let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ecst-store-{}-{test}.db", std::process::id()));
        remove_database(&path);
        Sqlite { path }
    }
}

/// A SQLite database and its WAL and shared-memory files.
#[cfg(feature = "sqlite")]
pub fn remove_database(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(feature = "sqlite")]
impl Drop for Sqlite {
    fn drop(&mut self) {
        remove_database(&self.path);
    }
}

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    type Store = ecst::store::sqlite::SqliteStore;

    async fn open(&self, consumer: &str) -> Self::Store {
        ecst::store::sqlite::SqliteStore::open(&self.path, consumer)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.path.display()))
    }

    async fn purge(&self, store: &mut Self::Store) {
        store.purge_consumer().expect("purge");
    }
}

/// PostgreSQL at 127.0.0.1:5432 (trust, database `test`), or the
/// connection string in `ECST_TEST_POSTGRES`.
#[cfg(feature = "postgres")]
pub struct Postgres {
    pub config: String,
}

#[cfg(feature = "postgres")]
impl Postgres {
    pub fn new() -> Self {
        Postgres {
            config: std::env::var("ECST_TEST_POSTGRES").unwrap_or_else(|_| {
                "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned()
            }),
        }
    }
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    type Store = ecst::store::postgres::PostgresStore;

    async fn open(&self, consumer: &str) -> Self::Store {
        match ecst::store::postgres::PostgresStore::connect(&self.config, consumer).await {
            Ok(store) => store,
            Err(e) => panic!(
                "cannot reach PostgreSQL with `{}`: {e}\n\
                 These tests need a PostgreSQL server (any version from 12) that accepts \
                 that connection string, with trust authentication and a database `test`. \
                 For example:\n  \
                 docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:16\n\
                 or, on Debian/Ubuntu: apt-get install postgresql, set `host all all 127.0.0.1/32 trust` \
                 in pg_hba.conf, restart it, and run `createdb -U postgres test`.\n\
                 Set ECST_TEST_POSTGRES to use another connection string.",
                self.config
            ),
        }
    }

    async fn purge(&self, store: &mut Self::Store) {
        store.purge_consumer().await.expect("purge");
    }
}

/// A consumer name unique to this test run and test.
pub fn consumer(test: &str) -> String {
    format!("ecst-test-{}-{test}", std::process::id())
}

/// This test's consumer name and its store, emptied of what an earlier
/// run of the test may have left.
pub async fn fresh<B: Backend>(backend: &B, test: &str) -> (String, B::Store) {
    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
    (consumer, store)
}

/// Empties `consumer`'s store at the end of a test.
pub async fn clean_up<B: Backend>(backend: &B, consumer: &str) {
    let mut store = backend.open(consumer).await;
    backend.purge(&mut store).await;
}

/// What a store holds, comparable: the entries sorted by key (state or
/// tombstone, with sequence), the checkpoint, and the parked events.
#[derive(Clone, Debug, PartialEq)]
pub struct Dump<T> {
    pub entries: Vec<(String, u64, Option<T>)>,
    pub checkpoint: Option<Checkpoint>,
    pub parked: Vec<Parked>,
}

pub fn entries<T: StateEvent + Clone>(replica: &Replica<T>) -> Vec<(String, u64, Option<T>)> {
    let mut out: Vec<_> = replica
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => {
                (key.to_string(), sequence.get(), Some(state.clone()))
            }
            Entry::Tombstone { sequence } => (key.to_string(), sequence.get(), None),
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn dump_of<T: StateEvent + Clone>(loaded: &Loaded<T>) -> Dump<T> {
    Dump {
        entries: entries(&loaded.replica),
        checkpoint: loaded.checkpoint,
        parked: loaded.parked.clone(),
    }
}

/// Opens a new store for `consumer` and loads it as `T`.
pub async fn reopen<T, B>(backend: &B, consumer: &str) -> Dump<T>
where
    T: StateEvent + Clone,
    B: Backend,
    B::Store: ReplicaStore<T, Error = StoreError>,
{
    let mut store = backend.open(consumer).await;
    let loaded = ReplicaStore::<T>::load(&mut store)
        .await
        .unwrap_or_else(|e| panic!("loading `{}`: {e}", T::ENTITY));
    dump_of(&loaded)
}

pub fn account1(id: &str, owner: &str, balance: i64) -> v1::Account {
    v1::Account {
        id: id.into(),
        owner: owner.into(),
        balance,
    }
}

pub fn account2(id: &str, holder: &str, email: Option<&str>, balance: i64) -> v2::Account {
    v2::Account {
        id: id.into(),
        holder: holder.into(),
        email: email.map(str::to_owned),
        balance,
    }
}

pub fn parked(stream_sequence: u64, key: Option<&str>, reason: &str, payload: &[u8]) -> Parked {
    Parked {
        stream_sequence,
        subject: format!("accounts.{}", key.unwrap_or("unknown")),
        key: key.map(str::to_owned),
        reason: ParkReason::new(ParkKind::Invalid, reason),
        payload: payload.to_vec(),
        resolution: None,
    }
}

fn live<'a, T: StateEvent>(key: &'a T::Key, sequence: u64, state: &'a T) -> StoredEntry<'a, T> {
    StoredEntry {
        key,
        sequence: Sequence::new(sequence),
        read_version: T::VERSION,
        state: Some(state),
        json: None,
        deleted_at: None,
    }
}

fn tombstone<T: StateEvent>(key: &T::Key, sequence: u64) -> StoredEntry<'_, T> {
    StoredEntry {
        key,
        sequence: Sequence::new(sequence),
        read_version: T::VERSION,
        state: None,
        json: None,
        deleted_at: Some(std::time::SystemTime::now()),
    }
}

/// Commits states, tombstones, a checkpoint and parked events, reopens, and
/// gets exactly them back; then overwrites and unparks; then a v2 build
/// loads what v1 wrote, upcast; a v1 build refuses what v2 wrote.
pub async fn commit_then_reopen<B: Backend>(backend: &B, test: &str) {
    let (consumer, mut store) = fresh(backend, test).await;

    let (a1, a2, a3, a4) = (
        "a-1".to_owned(),
        "a-2".to_owned(),
        "a-3".to_owned(),
        "a-4".to_owned(),
    );
    let ada = account1("a-1", "Ada", 100);
    let max = account1("a-3", "Max", -7);
    // Out of order on purpose: load returns them by stream sequence.
    let parked_events = vec![
        parked(
            40,
            Some("a-4"),
            "held behind an earlier parked event of key `a-4`",
            b"{\"later\":1}",
        ),
        parked(12, None, "not a JSON CloudEvent", &[0xff, 0x00, 0xfe, b'x']),
        Parked {
            reason: ParkReason::new(ParkKind::FutureVersion, "schema version is newer"),
            resolution: Some(Resolution::Discarded("re-published by the owner".into())),
            ..parked(30, Some("a-4"), "", b"{}")
        },
        Parked {
            reason: ParkReason::new(ParkKind::Misaddressed, "sent to a-5, says a-1"),
            resolution: Some(Resolution::Superseded),
            ..parked(31, Some("a-5"), "", b"{}")
        },
    ];
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![
                live(&a1, 3, &ada),
                tombstone(&a2, 5),
                // The largest sequence a BIGINT holds round-trips.
                live(&a3, i64::MAX as u64, &max),
            ],
            parked: &parked_events,
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 42,
                applied: 7,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("first commit");
    drop(store);

    let mut sorted = parked_events.clone();
    sorted.sort_by_key(|p| p.stream_sequence);
    let expected = Dump {
        entries: vec![
            ("a-1".into(), 3, Some(ada.clone())),
            ("a-2".into(), 5, None),
            ("a-3".into(), i64::MAX as u64, Some(max.clone())),
        ],
        checkpoint: Some(Checkpoint {
            stream_sequence: 42,
            applied: 7,
            purged_through: 0,
            stream_created: None,
        }),
        parked: sorted.clone(),
    };
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, expected);

    // Second commit: overwrite a live state with a tombstone, revive a
    // tombstone, add a key, unpark one event, move the checkpoint.
    let bea = account1("a-2", "Bea", 5);
    let cy = account1("a-4", "Cy", 0);
    let mut store = backend.open(&consumer).await;
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![tombstone(&a1, 4), live(&a2, 6, &bea), live(&a4, 1, &cy)],
            parked: &[],
            unparked: &[30],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 50,
                applied: 10,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("second commit");
    drop(store);
    let expected = Dump {
        entries: vec![
            ("a-1".into(), 4, None),
            ("a-2".into(), 6, Some(bea.clone())),
            ("a-3".into(), i64::MAX as u64, Some(max.clone())),
            ("a-4".into(), 1, Some(cy.clone())),
        ],
        checkpoint: Some(Checkpoint {
            stream_sequence: 50,
            applied: 10,
            purged_through: 0,
            stream_created: None,
        }),
        parked: vec![sorted[0].clone(), sorted[2].clone(), sorted[3].clone()],
    };
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, expected);

    // A v2 build loads what v1 wrote: upcast.
    let upcast = reopen::<v2::Account, _>(backend, &consumer).await;
    assert_eq!(
        upcast.entries,
        vec![
            ("a-1".into(), 4, None),
            ("a-2".into(), 6, Some(account2("a-2", "Bea", None, 5))),
            (
                "a-3".into(),
                i64::MAX as u64,
                Some(account2("a-3", "Max", None, -7))
            ),
            ("a-4".into(), 1, Some(account2("a-4", "Cy", None, 0))),
        ]
    );
    assert_eq!(upcast.checkpoint, expected.checkpoint);
    assert_eq!(upcast.parked, expected.parked);

    // The v2 build writes one state in v2; the store now mixes versions,
    // and v2 reads both.
    let bea2 = account2("a-2", "Bea", Some("bea@example.com"), 6);
    let mut store = backend.open(&consumer).await;
    ReplicaStore::<v2::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&a2, 7, &bea2)],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 51,
                applied: 11,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("v2 commit");
    let v2_view = reopen::<v2::Account, _>(backend, &consumer).await;
    assert_eq!(v2_view.entries[1], ("a-2".into(), 7, Some(bea2)));
    assert_eq!(
        v2_view.entries[2],
        (
            "a-3".into(),
            i64::MAX as u64,
            Some(account2("a-3", "Max", None, -7))
        )
    );

    // ... and the v1 build refuses to load a state it cannot read: a typed
    // error naming consumer, entity, key and version.
    let mut store = backend.open(&consumer).await;
    let error = match ReplicaStore::<v1::Account>::load(&mut store).await {
        Ok(_) => panic!("a v1 build loaded a v2 state"),
        Err(error) => error,
    };
    match &error {
        StoreError::FutureVersion {
            context,
            key,
            version,
            newest,
            ..
        } => {
            assert_eq!(context.consumer, consumer);
            assert_eq!(context.entity, Some("account"));
            assert_eq!((key.as_str(), *version, *newest), ("a-2", 2, 1));
        }
        other => panic!("expected FutureVersion, got {other:?}"),
    }
    let message = error.to_string();
    for needle in [consumer.as_str(), "`account`", "`a-2`", "schema version 2"] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }

    backend.purge(&mut store).await;
}

/// A stored state that does not match its declared version is a typed
/// `DecodeState` error naming the key and the version, not a panic and
/// not a silently dropped row.
pub async fn undecodable_state_is_an_error<B: Backend>(backend: &B, test: &str) {
    let (consumer, mut store) = fresh(backend, test).await;
    let bad = garbled::Account {
        id: "g-1".into(),
        owner: "Gus".into(),
        balance: "a lot".into(),
    };
    let key = "g-1".to_owned();
    ReplicaStore::<garbled::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&key, 1, &bad)],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint::default(),
        },
    )
    .await
    .expect("commit");
    let error = match ReplicaStore::<v1::Account>::load(&mut store).await {
        Ok(loaded) => panic!("loaded {:?}", entries(&loaded.replica)),
        Err(error) => error,
    };
    match &error {
        StoreError::DecodeState { key, version, .. } => {
            assert_eq!((key.as_str(), *version), ("g-1", 1));
        }
        other => panic!("expected DecodeState, got {other:?}"),
    }
    let message = error.to_string();
    for needle in [consumer.as_str(), "`account`", "`g-1`", "schema version 1"] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }
    backend.purge(&mut store).await;
}

/// One broker message.
pub struct Msg {
    pub stream_sequence: u64,
    pub subject: String,
    pub payload: Vec<u8>,
}

pub fn messages(batch: &[Msg]) -> Vec<Message<'_>> {
    batch
        .iter()
        .map(|m| Message::new(m.stream_sequence, &m.subject, &m.payload))
        .collect()
}

fn msg<T: StateEvent>(stream_sequence: u64, envelope: ecst::Envelope<T>) -> Msg {
    Msg {
        stream_sequence,
        subject: format!("{}.{}", T::ENTITY, envelope.key),
        payload: envelope.to_json().expect("encode"),
    }
}

/// A `DurableReplica` applies real envelopes, commits, and a reopened one
/// holds exactly the same; redelivering the batch applies nothing new.
pub async fn durable_replica_batch<B: Backend>(backend: &B, test: &str) {
    let (consumer, store) = fresh(backend, test).await;

    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = vec![
        msg(1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        msg(2, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
        msg(3, producer.upsert(account1("a-1", "Ada", 11)).unwrap()),
        msg(4, producer.upsert(account1("a-3", "Cy", 30)).unwrap()),
        msg(5, producer.delete("a-2".to_owned()).unwrap()),
        // Late: a stale copy of a-1's first event.
        msg(6, {
            let mut stale = Producer::<v1::Account>::new("urn:example:bank");
            stale.upsert(account1("a-1", "Ada", 10)).unwrap()
        }),
    ];

    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    assert_eq!(durable.checkpoint(), None);
    assert_eq!(durable.resume_after(), 0);
    let outcome = durable.apply_batch(&messages(&batch)).await.expect("batch");
    assert_eq!(
        outcome.applied,
        vec![
            (1, Outcome::Inserted),
            (2, Outcome::Inserted),
            (3, Outcome::Updated),
            (4, Outcome::Inserted),
            (5, Outcome::Deleted),
            (6, Outcome::Stale),
        ]
    );
    assert!(outcome.parked.is_empty());
    let checkpoint = Checkpoint {
        stream_sequence: 6,
        applied: 5,
        purged_through: 0,
        stream_created: None,
    };
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    let in_memory = entries(durable.replica());
    assert_eq!(
        in_memory,
        vec![
            ("a-1".into(), 2, Some(account1("a-1", "Ada", 11))),
            ("a-2".into(), 2, None),
            ("a-3".into(), 1, Some(account1("a-3", "Cy", 30))),
        ]
    );
    drop(durable);

    // Reopen: the same, from the store.
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(entries(durable.replica()), in_memory);
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    assert_eq!(durable.resume_after(), 6);
    assert_eq!(durable.parked_len(), 0);

    // Redelivery after the reopen (the broker did not see the ack):
    // nothing new is applied, the counter does not move. Each key's last
    // event is a duplicate, its earlier ones are stale.
    let outcome = durable
        .apply_batch(&messages(&batch))
        .await
        .expect("redelivery");
    assert_eq!(
        outcome.applied,
        vec![
            (1, Outcome::Stale),
            (2, Outcome::Stale),
            (3, Outcome::Duplicate),
            (4, Outcome::Duplicate),
            (5, Outcome::Duplicate),
            (6, Outcome::Stale),
        ]
    );
    assert!(outcome.parked.is_empty());
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    assert_eq!(entries(durable.replica()), in_memory);
    let reopened = reopen::<v1::Account, _>(backend, &consumer).await;
    assert_eq!(reopened.entries, in_memory);
    assert_eq!(reopened.checkpoint, Some(checkpoint));

    clean_up(backend, &consumer).await;
}

/// Parking holds nothing back and is superseded by newer states: garbage,
/// a future-version event and a misaddressed event are parked with typed
/// reasons; a later valid event of the same key applies at once and
/// supersedes what it makes obsolete; a future version above everything
/// applied stays pending until an upgraded build retries it; an operator
/// discards what can never apply; resolved events are purged past the
/// limits. Everything survives a reopen, and redeliveries park nothing twice.
pub async fn parking_and_retry<B: Backend>(backend: &B, test: &str) {
    let (consumer, store) = fresh(backend, test).await;

    let mut old = Producer::<v1::Account>::new("urn:example:bank");
    let mut new = Producer::<v2::Account>::new("urn:example:bank");
    let mut spoof = Producer::<v1::Account>::new("urn:example:attacker");
    let rev = Sequence::new;
    let garbage = |stream_sequence, subject: &str| Msg {
        stream_sequence,
        subject: subject.into(),
        payload: b"this is not JSON".to_vec(),
    };
    let batch = vec![
        msg(1, old.upsert_at(account1("b-1", "Bo", 1), rev(1)).unwrap()),
        garbage(2, "account.garbage"),
        // Written by an upgraded producer: the v1 consumer cannot read it.
        msg(
            3,
            new.upsert_at(account2("b-1", "Bo", Some("bo@example.com"), 2), rev(2))
                .unwrap(),
        ),
        // Applies at once (nothing is held behind 3), and supersedes 3.
        msg(4, old.upsert_at(account1("b-1", "Bo", 3), rev(3)).unwrap()),
        msg(5, old.upsert_at(account1("b-2", "Di", 5), rev(1)).unwrap()),
        // Newer than anything applied for b-1: stays pending.
        msg(
            6,
            new.upsert_at(account2("b-1", "Bo", Some("bo@example.org"), 4), rev(4))
                .unwrap(),
        ),
        // Sent to b-2, but its envelope claims b-1 at a huge sequence.
        msg(
            7,
            spoof
                .upsert_at(account1("b-1", "Eve", 666), rev(1 << 40))
                .unwrap(),
        ),
        // Garbage sent to b-2: its key comes from the address.
        garbage(8, "account.b-2"),
        msg(9, old.upsert_at(account1("b-2", "Di", 6), rev(2)).unwrap()),
    ];
    let addresses = ["b-1", "", "b-1", "b-1", "b-2", "b-1", "b-2", "b-2", "b-2"];
    let addressed = |batch: &[Msg]| -> Vec<Message<'static>> {
        batch
            .iter()
            .zip(addresses)
            .map(|(m, key)| {
                let message = Message::new(
                    m.stream_sequence,
                    Box::leak(m.subject.clone().into_boxed_str()),
                    Box::leak(m.payload.clone().into_boxed_slice()),
                );
                if key.is_empty() {
                    message
                } else {
                    message.addressed_to("account", key)
                }
            })
            .collect()
    };

    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    let outcome = durable
        .apply_batch(&addressed(&batch))
        .await
        .expect("batch");
    assert_eq!(
        outcome.applied,
        vec![
            (1, Outcome::Inserted),
            (4, Outcome::Updated),
            (5, Outcome::Inserted),
            (9, Outcome::Updated)
        ]
    );
    let kinds: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (2, ParkKind::Invalid),
            (3, ParkKind::FutureVersion),
            (6, ParkKind::FutureVersion),
            (7, ParkKind::Misaddressed),
            (8, ParkKind::Invalid),
        ]
    );
    let reasons: Vec<&str> = outcome
        .parked
        .iter()
        .map(|(_, r)| r.message.as_str())
        .collect();
    assert!(
        reasons[0].contains("not a JSON CloudEvent"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("newer than this build knows"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[3].contains("key `b-2`") && reasons[3].contains("key `b-1`"),
        "{}",
        reasons[3]
    );
    assert_eq!(outcome.superseded, vec![3, 7, 8]);
    let checkpoint = Checkpoint {
        stream_sequence: 9,
        applied: 4,
        purged_through: 0,
        stream_created: None,
    };
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    let parked_now: Vec<Parked> = durable.parked().cloned().collect();
    let status: Vec<(u64, Option<&str>, bool)> = parked_now
        .iter()
        .map(|p| (p.stream_sequence, p.key.as_deref(), p.is_pending()))
        .collect();
    assert_eq!(
        status,
        vec![
            (2, None, true),
            (3, Some("b-1"), false),
            (6, Some("b-1"), true),
            (7, Some("b-2"), false),
            (8, Some("b-2"), false),
        ]
    );
    assert_eq!(durable.pending_parked(), 2);
    assert_eq!(parked_now[0].payload, b"this is not JSON");
    assert_eq!(parked_now[0].subject, "account.garbage");
    assert_eq!(parked_now[1].resolution, Some(Resolution::Superseded));
    // The spoofed key was never touched.
    let v1_entries = vec![
        ("b-1".into(), 3, Some(account1("b-1", "Bo", 3))),
        ("b-2".into(), 2, Some(account1("b-2", "Di", 6))),
    ];
    assert_eq!(entries(durable.replica()), v1_entries);
    drop(durable);

    // Reopen: the parked events are still there, same order, same reasons,
    // same resolutions.
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(durable.parked().cloned().collect::<Vec<_>>(), parked_now);
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    assert_eq!(entries(durable.replica()), v1_entries);

    // Redelivered: nothing changes; the pending parked ones are reported
    // again (parked once, not twice), the resolved ones not at all.
    let outcome = durable
        .apply_batch(&addressed(&batch))
        .await
        .expect("redelivery");
    assert_eq!(
        outcome.applied,
        vec![
            (1, Outcome::Stale),
            (4, Outcome::Duplicate),
            (5, Outcome::Stale),
            (9, Outcome::Duplicate)
        ]
    );
    assert_eq!(
        outcome.parked.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![2, 6]
    );
    assert!(outcome.superseded.is_empty());
    assert_eq!(durable.parked().cloned().collect::<Vec<_>>(), parked_now);
    assert_eq!(durable.checkpoint(), Some(checkpoint));
    // A retry with the old build changes nothing.
    let outcome = durable.retry_parked().await.expect("retry with v1");
    assert!(outcome.applied.is_empty(), "{:?}", outcome.applied);
    drop(durable);
    let reopened = reopen::<v1::Account, _>(backend, &consumer).await;
    assert_eq!(reopened.parked, parked_now);
    assert_eq!(reopened.checkpoint, Some(checkpoint));

    // The upgraded build opens the same store: v1 states are upcast, and
    // the retry applies b-1's pending v2 event; the garbage stays.
    let mut durable = DurableReplica::<v2::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("open with v2");
    let outcome = durable.retry_parked().await.expect("retry with v2");
    assert_eq!(outcome.applied, vec![(6, Outcome::Updated)]);
    assert_eq!(
        outcome.parked.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![2]
    );
    let v2_entries = vec![
        (
            "b-1".into(),
            4,
            Some(account2("b-1", "Bo", Some("bo@example.org"), 4)),
        ),
        ("b-2".into(), 2, Some(account2("b-2", "Di", None, 6))),
    ];
    assert_eq!(entries(durable.replica()), v2_entries);
    assert_eq!(durable.pending_parked(), 1);
    assert!(
        durable.parked_at(6).is_none(),
        "applied events leave the lot"
    );

    // The garbage can never apply: an operator discards it, saying why.
    assert!(!durable.discard_parked(6, "no such event").await.unwrap());
    assert!(durable
        .discard_parked(2, "garbage from a test publisher")
        .await
        .unwrap());
    assert_eq!(durable.pending_parked(), 0);
    assert_eq!(
        durable.parked_at(2).and_then(|p| p.resolution.clone()),
        Some(Resolution::Discarded(
            "garbage from a test publisher".into()
        ))
    );
    assert_eq!(durable.parked_len(), 4);
    drop(durable);

    // Resolved events are kept within the limits: past them, the oldest go
    // with the next commit.
    let durable = DurableReplica::<v2::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen with v2");
    assert_eq!(durable.parked_len(), 4);
    assert_eq!(durable.pending_parked(), 0);
    let mut durable = durable.with_parking_limits(ParkingLimits {
        max_resolved: 2,
        ..ParkingLimits::default()
    });
    let next = msg(
        10,
        new.upsert_at(account2("b-3", "Al", None, 1), rev(1))
            .unwrap(),
    );
    durable
        .apply_batch(&messages(std::slice::from_ref(&next)))
        .await
        .expect("batch under limits");
    let left: Vec<u64> = durable.parked().map(|p| p.stream_sequence).collect();
    assert_eq!(left, vec![7, 8]);
    drop(durable);
    let reopened = reopen::<v2::Account, _>(backend, &consumer).await;
    assert_eq!(
        reopened
            .parked
            .iter()
            .map(|p| p.stream_sequence)
            .collect::<Vec<_>>(),
        vec![7, 8]
    );

    clean_up(backend, &consumer).await;
}

/// A commit that fails partway leaves the store exactly as it was.
pub async fn failed_commit_changes_nothing<B: Backend>(backend: &B, test: &str) {
    let (consumer, mut store) = fresh(backend, test).await;

    let (a1, a2, a9) = ("a-1".to_owned(), "a-2".to_owned(), "a-9".to_owned());
    let ada = account1("a-1", "Ada", 1);
    let baseline_parked = [parked(10, Some("a-2"), "newer", b"{}")];
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&a1, 1, &ada), tombstone(&a2, 2)],
            parked: &baseline_parked,
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 10,
                applied: 2,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("baseline");
    let before = reopen::<v1::Account, _>(backend, &consumer).await;

    let ada2 = account1("a-1", "Ada", 2);
    let nine = account1("a-9", "Nine", 9);
    let more_parked = [parked(11, None, "garbage", b"x")];
    let too_big = i64::MAX as u64 + 1;

    // 1. Fails at the checkpoint, after the entries, the parked and the
    //    unparked rows were written in the transaction.
    let error = ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&a1, 2, &ada2), live(&a9, 1, &nine), tombstone(&a2, 3)],
            parked: &more_parked,
            unparked: &[10],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: u64::MAX,
                applied: 5,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect_err("stream sequence above i64::MAX");
    match &error {
        StoreError::OutOfRange { column, value, .. } => {
            assert_eq!(*column, "ecst_checkpoint.stream_sequence");
            assert_eq!(*value, i128::from(u64::MAX));
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert!(
        error.to_string().contains("18446744073709551615"),
        "{error}"
    );
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, before);

    // 2. Fails at the second parked event, after the entries were written.
    let bad_parked = [
        parked(12, None, "garbage", b"y"),
        parked(too_big, Some("a-1"), "held", b"z"),
    ];
    let error = ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&a1, 2, &ada2), live(&a9, 1, &nine)],
            parked: &bad_parked,
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 12,
                applied: 4,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect_err("parked stream sequence above i64::MAX");
    assert!(
        matches!(&error, StoreError::OutOfRange { column: "ecst_parked.stream_sequence", key: Some(k), .. } if k == "a-1"),
        "{error:?}"
    );
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, before);

    // 3. Fails at the second entry's sequence.
    let error = ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&a9, 1, &nine), live(&a1, too_big, &ada2)],
            parked: &[],
            unparked: &[10],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 12,
                applied: 4,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect_err("sequence above i64::MAX");
    assert!(
        matches!(&error, StoreError::OutOfRange { column: "ecst_replica.sequence", key: Some(k), .. } if k == "a-1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`a-1`"), "{error}");
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, before);

    // 4. A state that cannot be serialized, after a good one.
    let (f1, f2) = ("f-1".to_owned(), "f-2".to_owned());
    let fine = Fragile {
        id: f1.clone(),
        note: "fine".into(),
        tag: None,
    };
    ReplicaStore::<Fragile>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&f1, 1, &fine)],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 1,
                applied: 1,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("fragile baseline");
    let fragile_before = reopen::<Fragile, _>(backend, &consumer).await;
    let better = Fragile {
        id: f1.clone(),
        note: "better".into(),
        tag: None,
    };
    let poison = Fragile {
        id: f2.clone(),
        note: "poison".into(),
        tag: None,
    };
    let error = ReplicaStore::<Fragile>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![live(&f1, 2, &better), live(&f2, 1, &poison)],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 2,
                applied: 3,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect_err("poison");
    match &error {
        StoreError::EncodeState { key, context, .. } => {
            assert_eq!(key, "f-2");
            assert_eq!(context.entity, Some("fragile"));
        }
        other => panic!("expected EncodeState, got {other:?}"),
    }
    assert!(
        error.to_string().contains("refusing to serialize poison"),
        "{error}"
    );
    assert_eq!(
        reopen::<Fragile, _>(backend, &consumer).await,
        fragile_before
    );
    // The other entity of the consumer is untouched too.
    assert_eq!(reopen::<v1::Account, _>(backend, &consumer).await, before);

    // 5. The same through a DurableReplica: the batch fails, nothing is
    //    durable, and the next batch starts from the store again.
    let mut producer =
        Producer::<Fragile>::resume("urn:example:notes", [(f1.clone(), Sequence::new(1))]);
    let good = msg(2, producer.upsert(better.clone()).unwrap());
    let harmless = msg(
        3,
        producer
            .upsert(Fragile {
                id: f2.clone(),
                note: "harmless".into(),
                tag: None,
            })
            .unwrap(),
    );
    let poisoned = poisoned(harmless);
    let mut durable = DurableReplica::<Fragile, _>::open(backend.open(&consumer).await)
        .await
        .expect("open fragile");
    // The store refuses the poisoned state: its message is parked, the
    // rest of the batch commits (before, the whole batch failed on every
    // redelivery and the consumer stalled).
    let outcome = durable
        .apply_batch(&messages(&[good, poisoned]))
        .await
        .expect("the batch commits without the poisoned state");
    assert_eq!(outcome.applied, vec![(2, Outcome::Updated)]);
    assert_eq!(outcome.parked.len(), 1);
    assert_eq!(outcome.parked[0].1.kind, ParkKind::Unstorable);
    assert_ne!(
        reopen::<Fragile, _>(backend, &consumer).await,
        fragile_before
    );
    let next = msg(4, producer.upsert(better.clone()).unwrap());
    let outcome = durable
        .apply_batch(&messages(&[next]))
        .await
        .expect("next batch");
    assert_eq!(outcome.applied, vec![(4, Outcome::Updated)]);
    assert_eq!(
        entries(durable.replica()),
        vec![("f-1".into(), 3, Some(better.clone()))]
    );
    assert_eq!(
        durable.checkpoint(),
        Some(Checkpoint {
            stream_sequence: 4,
            applied: 3,
            purged_through: 0,
            stream_created: None,
        })
    );
    let after = reopen::<Fragile, _>(backend, &consumer).await;
    assert_eq!(after.entries, entries(durable.replica()));
    assert_eq!(after.checkpoint, durable.checkpoint());

    clean_up(backend, &consumer).await;
}

/// Two consumers in one database do not see each other's rows, and
/// purging one leaves the other.
pub async fn consumers_are_isolated<B: Backend>(backend: &B, test: &str) {
    let first = consumer(&format!("{test}-first"));
    let second = consumer(&format!("{test}-second"));
    let mut one = backend.open(&first).await;
    let mut two = backend.open(&second).await;
    backend.purge(&mut one).await;
    backend.purge(&mut two).await;

    let key = "k-1".to_owned();
    let (ones, twos) = (account1("k-1", "One", 1), account1("k-1", "Two", 2));
    let (parked_one, parked_two) = (
        [parked(7, Some("k-1"), "one", b"1")],
        [parked(7, None, "two", b"2")],
    );
    ReplicaStore::<v1::Account>::commit(
        &mut one,
        Commit {
            owed: None,
            entries: vec![live(&key, 1, &ones)],
            parked: &parked_one,
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 7,
                applied: 1,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("first consumer");
    ReplicaStore::<v1::Account>::commit(
        &mut two,
        Commit {
            owed: None,
            entries: vec![live(&key, 9, &twos)],
            parked: &parked_two,
            unparked: &[],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 70,
                applied: 10,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("second consumer");
    // The second unparks stream sequence 7: only its own.
    ReplicaStore::<v1::Account>::commit(
        &mut two,
        Commit {
            owed: None,
            entries: vec![],
            parked: &[],
            unparked: &[7],
            purged: &[],
            checkpoint: Checkpoint {
                stream_sequence: 71,
                applied: 10,
                purged_through: 0,
                stream_created: None,
            },
        },
    )
    .await
    .expect("second consumer unparks");

    let seen_one = reopen::<v1::Account, _>(backend, &first).await;
    let seen_two = reopen::<v1::Account, _>(backend, &second).await;
    assert_eq!(
        seen_one,
        Dump {
            entries: vec![("k-1".into(), 1, Some(ones))],
            checkpoint: Some(Checkpoint {
                stream_sequence: 7,
                applied: 1,
                purged_through: 0,
                stream_created: None,
            }),
            parked: parked_one.to_vec(),
        }
    );
    assert_eq!(
        seen_two,
        Dump {
            entries: vec![("k-1".into(), 9, Some(twos))],
            checkpoint: Some(Checkpoint {
                stream_sequence: 71,
                applied: 10,
                purged_through: 0,
                stream_created: None,
            }),
            parked: vec![],
        }
    );

    backend.purge(&mut one).await;
    assert_eq!(
        reopen::<v1::Account, _>(backend, &first).await,
        Dump {
            entries: vec![],
            checkpoint: None,
            parked: vec![],
        }
    );
    assert_eq!(reopen::<v1::Account, _>(backend, &second).await, seen_two);
    backend.purge(&mut two).await;
}

/// A state the store cannot hold (its `Serialize` fails) used to fail the
/// commit of its whole batch, again on every redelivery: the consumer
/// stalled for good. Now its message is parked as unstorable, the rest of
/// the batch commits, and a redelivery changes nothing.
pub async fn an_unstorable_state_is_parked_and_the_rest_commits<B: Backend>(
    backend: &B,
    test: &str,
) {
    let (consumer, store) = fresh(backend, test).await;
    let mut producer = Producer::<Fragile>::new("urn:example:notes");
    let note = |id: &str, note: &str| Fragile {
        id: id.into(),
        note: note.into(),
        tag: None,
    };
    // A foreign producer's state that reads fine and does not serialize
    // (ecst's own producer could not have encoded it).
    let harmless = msg(2, producer.upsert(note("f-2", "harmless")).unwrap());
    let poisoned = poisoned(harmless);
    let batch = vec![
        msg(1, producer.upsert(note("f-1", "fine")).unwrap()),
        poisoned,
        msg(3, producer.upsert(note("f-3", "fine too")).unwrap()),
        msg(4, producer.upsert(note("f-1", "better")).unwrap()),
    ];
    let mut durable = DurableReplica::<Fragile, _>::open(store)
        .await
        .expect("open");
    let outcome = durable
        .apply_batch(&messages(&batch))
        .await
        .expect("the batch commits without the unstorable state");
    let applied: Vec<u64> = outcome.applied.iter().map(|(s, _)| *s).collect();
    assert_eq!(applied, vec![1, 3, 4]);
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    let (sequence, reason) = &outcome.parked[0];
    assert_eq!(*sequence, 2);
    assert_eq!(reason.kind, ParkKind::Unstorable);
    assert!(reason.message.contains("f-2"), "{reason}");
    assert_eq!(durable.replica().get("f-2"), None);
    assert_eq!(durable.checkpoint().map(|c| c.applied), Some(3));
    let expected = vec![
        ("f-1".to_owned(), 2, Some(note("f-1", "better"))),
        ("f-3".to_owned(), 1, Some(note("f-3", "fine too"))),
    ];
    assert_eq!(entries(durable.replica()), expected);
    // Redelivered: the parked one stays parked once, nothing else changes.
    let again = durable
        .apply_batch(&messages(&batch))
        .await
        .expect("redelivery");
    assert_eq!(again.parked.len(), 1);
    drop(durable);
    let reopened = DurableReplica::<Fragile, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(entries(reopened.replica()), expected);
    assert_eq!(reopened.pending_parked(), 1);
    clean_up(backend, &consumer).await;
}

/// Found by a red-team review: a future-version event sent on the
/// attacker's own subject (`mallory`) naming another key (`victim`) was
/// parked under `victim`, and `retry_parked` after the upgrade applied it
/// there. An addressed message is parked under the key it was sent to, as
/// misaddressed, and never applies to another.
pub async fn a_misaddressed_undecodable_event_never_reaches_its_claimed_key<B: Backend>(
    backend: &B,
    test: &str,
) {
    let (consumer, store) = fresh(backend, test).await;
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let owner = producer.upsert(account1("victim", "Ada", 1)).unwrap();
    let mut upgraded = Producer::<v2::Account>::new("urn:example:attacker");
    let hostile = upgraded
        .upsert_at(
            account2("victim", "Mallory", None, 999_999),
            Sequence::new(1_000),
        )
        .unwrap();
    let batch = [msg(1, owner), msg(2, hostile)];
    let addressed: Vec<Message<'_>> = batch
        .iter()
        .zip(["victim", "mallory"])
        .map(|(m, key)| {
            Message::new(m.stream_sequence, &m.subject, &m.payload).addressed_to("account", key)
        })
        .collect();
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    durable.apply_batch(&addressed).await.expect("batch");
    let parked = durable.parked_at(2).expect("parked").clone();
    assert_eq!(parked.key.as_deref(), Some("mallory"));
    assert_eq!(parked.reason.kind, ParkKind::Misaddressed);
    drop(durable);
    // After the upgrade, the retry leaves it where it is.
    let mut durable = DurableReplica::<v2::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("open with v2");
    let outcome = durable.retry_parked().await.expect("retry");
    assert!(outcome.applied.is_empty(), "{outcome:?}");
    assert_eq!(
        durable.replica().get("victim").map(|a| a.holder.as_str()),
        Some("Ada")
    );
    clean_up(backend, &consumer).await;
}

/// After a stream is re-created (`rewind_stream_position`), its messages
/// are numbered from 1 again, at positions where messages of the old
/// stream are parked (pending or resolved). A new message at such a
/// position is new: it applies, and is never taken for a redelivery of
/// the parked one. The same message delivered again is still recognised.
pub async fn a_rewound_stream_is_not_taken_for_parked_messages<B: Backend>(
    backend: &B,
    test: &str,
) {
    let (consumer, store) = fresh(backend, test).await;
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let garbage = Msg {
        stream_sequence: 1,
        subject: "account.a-1".to_owned(),
        payload: b"{not an envelope".to_vec(),
    };
    let old = [
        garbage,
        msg(2, producer.upsert(account1("a-2", "Bea", 2)).unwrap()),
    ];
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    let outcome = durable.apply_batch(&messages(&old)).await.expect("old");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(durable.pending_parked(), 1);
    // Delivered again: still the parked message, parked once.
    let again = durable
        .apply_batch(&messages(&old[..1]))
        .await
        .expect("again");
    assert_eq!(again.parked.len(), 1, "{again:?}");
    assert!(again.applied.is_empty(), "{again:?}");

    durable.rewind_stream_position().await.expect("rewind");
    drop(durable);
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    let mut fresh = Producer::<v1::Account>::new("urn:example:bank");
    let new = [
        msg(1, fresh.upsert(account1("a-3", "Cy", 3)).unwrap()),
        msg(2, producer.upsert(account1("a-2", "Bea", 22)).unwrap()),
    ];
    let outcome = durable.apply_batch(&messages(&new)).await.expect("new");
    assert_eq!(
        outcome.applied,
        vec![(1, Outcome::Inserted), (2, Outcome::Updated)],
        "{outcome:?}"
    );
    assert_eq!(
        durable.replica().get("a-3"),
        Some(&account1("a-3", "Cy", 3))
    );
    assert_eq!(
        durable.replica().get("a-2"),
        Some(&account1("a-2", "Bea", 22))
    );
    // The old stream's parked message is still listed, pending.
    assert_eq!(durable.pending_parked(), 1);
    clean_up(backend, &consumer).await;
}
