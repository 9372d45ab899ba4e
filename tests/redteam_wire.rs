//! Red team of the wire code that reads untrusted bytes: the hand attribute
//! scanner of the envelope reader (`envelope/scan.rs`), the table path of
//! subject decoding (`nats/subject.rs`), and the follower's one
//! acknowledgement per committed batch (`nats/follow.rs`).
//!
//! The scanner is attacked differentially: every crafted envelope is read
//! once as it is (the scanner reads it, or gives up) and once with an
//! escaped extension attribute in front, which the scanner never reads, so
//! that serde_json reads the whole envelope. Both must accept the same
//! events with the same content, and reject the same ones with the same
//! kind of error; and whatever is accepted must be JSON to serde_json.

#[path = "support/replica.rs"]
mod common_replica;

use common_replica::Customer;
use ecst::{DecodeError, Envelope, Replica, Router, Sequence};
use serde::de::IgnoredAny;

// ---------------------------------------------------------------------------
// Scanner: the oracle
// ---------------------------------------------------------------------------

/// A valid envelope, written the way ecst writes it (the scanner's shape).
fn base() -> String {
    let envelope = Envelope::upsert(
        "urn:s",
        "e-1",
        Sequence::new(7),
        Customer {
            id: "c-1".into(),
            name: "Ada".into(),
            email: Some("ada@example.com".into()),
            credit: 3,
        },
    );
    String::from_utf8(envelope.to_json().expect("encodes")).expect("ecst writes UTF-8")
}

/// `input` with an extension attribute holding an escape in front: the
/// scanner gives up at it, so serde_json reads everything. `None` when the
/// input does not start with an object (nothing to put it in).
fn through_serde(input: &[u8]) -> Option<Vec<u8>> {
    let at = input.iter().position(|&b| b == b'{')?;
    if !input[..at].iter().all(|b| b" \t\r\n".contains(b)) {
        return None;
    }
    let mut out = input[..=at].to_vec();
    out.extend_from_slice(br#""x-force":"\u0041","#);
    // `{}` stays an object: drop the comma before a closing brace.
    let rest = &input[at + 1..];
    let first = rest.iter().find(|b| !b" \t\r\n".contains(b));
    if first == Some(&b'}') {
        out.pop();
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// What a reader made of an envelope: the decoded envelope, or the kind of
/// error (its variant and attribute name, not serde_json's position, which
/// the inserted attribute moves).
fn outcome<T: std::fmt::Debug>(result: Result<T, DecodeError>) -> String {
    match result {
        Ok(value) => format!("Ok {value:?}"),
        Err(e) => {
            let kind = format!("{:?}", e.kind());
            let variant: String = kind
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '{' || *c == ' ' || *c == '"')
                .collect();
            format!("Err {variant}")
        }
    }
}

/// Every reader of structured JSON on `input`: `Envelope::from_json`,
/// `Replica::apply_json` (the gated reader) and `Router::apply_json` (the
/// raw reader), and `Replica::apply_json` of a replica whose version gate
/// refuses the base envelope's upsert.
fn readers(input: &[u8]) -> [String; 4] {
    let envelope = outcome(Envelope::<Customer>::from_json(input));
    let mut replica = Replica::<Customer>::new();
    let applied = outcome(replica.apply_json(input).map(|o| (o, replica.len())));
    let mut router = Router::new();
    router.add(Replica::<Customer>::new()).expect("one entity");
    let routed = outcome(router.apply_json(input).map(|r| r.outcome));
    // Through the version gate: `c-1` held at a higher sequence, so that an
    // upsert of it is refused without its data being decoded.
    let mut ahead = Replica::<Customer>::new();
    ahead.apply(Envelope::upsert(
        "urn:s",
        "e-0",
        Sequence::new(9),
        Customer {
            id: "c-1".into(),
            name: "Held".into(),
            email: None,
            credit: 0,
        },
    ));
    let gated = outcome(ahead.apply_json(input).map(|o| (o, ahead.len())));
    [envelope, applied, routed, gated]
}

/// The scanner and serde_json agree on `input`, and so do the three
/// readers on whether it is an event; an accepted input is JSON.
fn agree(input: &[u8]) {
    let shown = String::from_utf8_lossy(input);
    let scanned = readers(input);
    if let Some(forced) = through_serde(input) {
        let serde = readers(&forced);
        assert_eq!(scanned, serde, "scanner vs serde_json on {shown}");
    }
    // The gated reader may refuse an upsert without reading its data.
    let accepted = scanned[..3]
        .iter()
        .map(|s| s.starts_with("Ok"))
        .collect::<Vec<_>>();
    assert!(
        accepted.iter().all(|&a| a == accepted[0]),
        "the readers disagree on {shown}: {scanned:?}"
    );
    if accepted[0] {
        // `IgnoredAny`, not `Value`: valid JSON deeper than serde_json's
        // recursion limit, or with a number beyond an f64 (`1e400`), is
        // still JSON (ecst skips unknown payload fields unbounded).
        assert!(
            serde_json::from_slice::<IgnoredAny>(input).is_ok(),
            "accepted but not JSON: {shown}"
        );
    }
}

#[test]
fn the_oracle_sees_the_base_envelope_accepted_both_ways() {
    let base = base();
    let forced = through_serde(base.as_bytes()).expect("an object");
    assert!(readers(base.as_bytes())[0].starts_with("Ok"), "{base}");
    assert_eq!(readers(base.as_bytes()), readers(&forced));
    // The oracle can fail: a different event is a different outcome.
    let other = base.replace("\"Ada\"", "\"Bob\"");
    assert_ne!(readers(base.as_bytes()), readers(other.as_bytes()));
}

// ---------------------------------------------------------------------------
// Scanner: the attacks
// ---------------------------------------------------------------------------

/// Replaces the first `"name":value` of the base envelope (value up to the
/// next comma) with `member`.
fn with_member(name: &str, member: &str) -> String {
    let base = base();
    let start = base.find(&format!("\"{name}\":")).expect("attribute");
    let end = start + base[start..].find(',').expect("not last");
    format!("{}{}{}", &base[..start], member, &base[end..])
}

#[test]
fn escapes_in_attribute_values() {
    for (name, value) in [
        ("id", r#""e\u0000""#),
        ("id", r#""e\/1""#),
        ("id", r#""\ud83d\ude00""#),
        ("id", r#""\ud800""#),
        ("id", r#""\udc00x""#),
        ("id", r#""\ud800\u0041""#),
        ("subject", r#""c\u002d1""#),
        ("subject", r#""c-1\u0000""#),
        ("subject", r#""c\/1""#),
        ("source", r#""urn:\u0073""#),
        ("type", r#""\u0063ustomer""#),
        ("operation", r#""upser\u0074""#),
        ("specversion", r#""1\u002e0""#),
        ("id", "\"e\u{7f}1\""),
        ("id", "\"e\u{1}1\""),
        ("id", "\"e\t1\""),
        ("id", "\"\u{e9}t\u{e9}\""),
    ] {
        agree(with_member(name, &format!("\"{name}\":{value}")).as_bytes());
    }
}

#[test]
fn attribute_names_spelled_with_escapes_and_duplicates() {
    let base = base();
    for spelled in [
        r#""\u0069d""#,
        r#""i\u0064""#,
        r#""\u0064ata""#,
        r#""s\u0065quence""#,
        r#""subject\u0000""#,
        r#""ID""#,
        r#""id ""#,
    ] {
        agree(base.replacen("\"id\"", spelled, 1).as_bytes());
        agree(base.replacen("\"data\"", spelled, 1).as_bytes());
        agree(base.replacen("\"sequence\"", spelled, 1).as_bytes());
    }
    // A second occurrence of each attribute, first and last, plain and escaped,
    // null and not.
    for name in [
        "id",
        "subject",
        "sequence",
        "schemaversion",
        "operation",
        "type",
    ] {
        for value in [r#""x""#, "null", "1", r#""delete""#] {
            let early = format!("{{\"{name}\":{value},{}", &base[1..]);
            agree(early.as_bytes());
            let late = base.replacen("\"data\":", &format!("\"{name}\":{value},\"data\":"), 1);
            agree(late.as_bytes());
            let escaped = format!(
                "{{\"\\u{:04x}{}\":{value},{}",
                name.as_bytes()[0],
                &name[1..],
                &base[1..]
            );
            agree(escaped.as_bytes());
        }
    }
    // Two `data` members, each first.
    let two = base.replacen("\"data\":", "\"data\":null,\"data\":", 1);
    agree(two.as_bytes());
    let data_at = base.find("\"data\":").expect("data");
    let data = &base[data_at..base.len() - 1];
    agree(format!("{{{data},{}", &base[1..]).as_bytes());
    agree(format!("{},{data}}}", &base[..base.len() - 1]).as_bytes());
}

#[test]
fn numbers_for_sequence_and_schemaversion() {
    let numbers = [
        "0",
        "7",
        "07",
        "-7",
        "-0",
        "7.0",
        "7e0",
        "7E0",
        "0.7e1",
        "70e-1",
        "9223372036854775807",
        "9223372036854775808",
        "9999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "0000000000000000000007",
        "4294967295",
        "4294967296",
        "1",
        "2",
        "3",
        "true",
        "null",
        "[]",
        "{}",
        r#""7""#,
        r#""07""#,
        r#""00000000000000000007""#,
        r#""-7""#,
        r#""""#,
        r#""18446744073709551616""#,
        r#""\u0037""#,
        r#""+7""#,
        r#"" 7""#,
    ];
    for n in numbers {
        agree(with_member("sequence", &format!("\"sequence\":{n}")).as_bytes());
        agree(with_member("schemaversion", &format!("\"schemaversion\":{n}")).as_bytes());
        agree(with_member("sequence", &format!("\"x-ext\":{n},\"sequence\":7")).as_bytes());
    }
}

#[test]
fn whitespace_bom_and_trailing_bytes() {
    let base = base();
    for input in [
        format!("\u{feff}{base}"),
        format!(" \t\r\n{base} \t\r\n"),
        format!("{base}\u{0}"),
        format!("{base}\u{a0}"),
        format!("{base}\u{0b}"),
        format!("{base}\u{0c}"),
        format!("{base}}}"),
        format!("{base},"),
        format!("{base}{base}"),
        format!("{base} {{}}"),
        base.replace(',', "\u{0b},"),
        base.replace(':', "\u{a0}:"),
        base.replacen("\"data\":", "\"data\":\u{0c}", 1),
        base[..base.len() - 1].to_owned() + " \n}",
        base[..base.len() - 2].to_owned() + "}",
        base[..base.len() - 1].to_owned() + "}}",
        base.replacen('{', "[", 1),
    ] {
        agree(input.as_bytes());
    }
}

#[test]
fn tricky_strings_inside_data() {
    let base = base();
    for name in [
        r#""Ada}""#,
        r#""Ada\"}""#,
        r#""Ada\\""#,
        r#""\u0000""#,
        r#""\ud800""#,
        r#""\ud83d\ude00""#,
        r#""}}}}""#,
        r#""\"data\":1}""#,
        "\"A\u{1}\"",
        "\"\u{e9}\"",
    ] {
        agree(base.replacen("\"Ada\"", name, 1).as_bytes());
    }
    // Unknown payload fields of every shape, last member or not.
    for extra in [
        r#""x":"}""#,
        r#""x":[1,{"y":"]"}]"#,
        r#""x":1e400"#,
        r#""x":-0.0"#,
        r#""x":"\udfff""#,
    ] {
        agree(
            base.replacen("\"id\":\"c-1\"", &format!("\"id\":\"c-1\",{extra}"), 1)
                .as_bytes(),
        );
        let end = base.len() - 2; // before data's closing brace
        agree(format!("{},{extra}{}", &base[..end], &base[end..]).as_bytes());
    }
}

#[test]
fn deep_nesting_inside_data() {
    let base = base();
    let end = base.len() - 2; // before data's closing brace
    for depth in (1..=10).chain(120..=135).chain([1_000, 100_000]) {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for nested in [arrays, objects] {
            agree(format!("{},\"x\":{nested}{}", &base[..end], &base[end..]).as_bytes());
            // A delete carries no data: nested data is an error either way.
            let deleted = format!(
                "{{\"specversion\":\"1.0\",\"id\":\"e\",\"source\":\"s\",\"type\":\"customer\",\
                 \"subject\":\"c-1\",\"sequence\":1,\"schemaversion\":2,\"operation\":\"delete\",\
                 \"data\":{nested}}}"
            );
            agree(deleted.as_bytes());
        }
    }
}

#[test]
fn very_long_strings() {
    let long = "a".repeat(1 << 20);
    for name in ["id", "subject", "source", "x-ext"] {
        let member = format!("\"{name}\":\"{long}\"");
        if name == "x-ext" {
            agree(with_member("id", &format!("{member},\"id\":\"e-1\"")).as_bytes());
        } else {
            agree(with_member(name, &member).as_bytes());
        }
    }
    agree(
        base()
            .replacen("\"Ada\"", &format!("\"{long}\""), 1)
            .as_bytes(),
    );
}

#[test]
fn truncations_and_non_utf8_bytes_at_every_offset() {
    let base = base();
    let bytes = base.as_bytes();
    for at in 0..=bytes.len() {
        agree(&bytes[..at]);
        for bad in [0xff_u8, 0x80, 0xc3, 0xed] {
            let mut input = bytes.to_vec();
            input.insert(at, bad);
            agree(&input);
        }
        if at < bytes.len() {
            let mut input = bytes.to_vec();
            input[at] = 0xc0;
            agree(&input);
        }
    }
}

// ---------------------------------------------------------------------------
// Subjects: the table path against the encoding's definition
// ---------------------------------------------------------------------------

#[cfg(feature = "nats")]
mod subjects {
    use std::borrow::Cow;

    use ecst::nats::{decode_key, encode_key, Subjects};

    /// The decoding as the module documentation defines it, written
    /// independently of the library: `%` is the empty key; otherwise each
    /// `%` and two upper-case hexadecimal digits is a byte, a safe
    /// character or `.` stands for itself, anything else is refused; the
    /// bytes must be UTF-8 and the input must be the key's one encoding.
    fn reference(encoded: &str) -> Option<String> {
        if encoded == "%" {
            return Some(String::new());
        }
        let bytes = encoded.as_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            if b == b'%' {
                let hex = |i: usize| {
                    bytes
                        .get(at + i)
                        .filter(|d| d.is_ascii_digit() || (b'A'..=b'F').contains(d))
                        .map(|&d| char::from(d).to_digit(16).map(|v| v as u8))
                };
                let (Some(Some(high)), Some(Some(low))) = (hex(1), hex(2)) else {
                    return None;
                };
                out.push(high << 4 | low);
                at += 3;
                continue;
            }
            let safe = b.is_ascii_alphanumeric() || b"-_@+=:,~.".contains(&b);
            if !safe {
                return None;
            }
            out.push(b);
            at += 1;
        }
        let key = String::from_utf8(out).ok()?;
        (encode_key(&key) == encoded).then_some(key)
    }

    fn check(encoded: &str) {
        let decoded = decode_key(encoded).ok().map(Cow::into_owned);
        assert_eq!(decoded, reference(encoded), "decode_key({encoded:?})");
        // Through a subject: the same key, the same entity.
        let subjects = Subjects::new("ecst").expect("a valid prefix");
        let subject = format!("ecst.customer.{encoded}");
        let addressed = subjects
            .address(&subject)
            .ok()
            .map(|a| (a.entity.to_owned(), a.key.into_owned()));
        let expected = reference(encoded)
            .filter(|_| !encoded.is_empty())
            .map(|key| ("customer".to_owned(), key));
        assert_eq!(addressed, expected, "address({subject:?})");
        // A key that needs no escape is borrowed from the subject.
        if let Ok(Cow::Owned(key)) = decode_key(encoded) {
            assert_ne!(key, encoded, "{encoded:?} decoded to itself but was copied");
        }
    }

    /// Every string of up to three characters from an alphabet of the
    /// characters that matter (safe ones, `.`, `%`, hexadecimal digits of
    /// both cases, wildcards, whitespace, a control character, non-ASCII),
    /// and of four from a smaller one.
    #[test]
    fn the_table_path_decodes_as_the_definition_says() {
        let alphabet: Vec<char> = "aZ09-_@+=:,~.%2Ee*> /\u{0}\u{7f}\u{e9}\u{1f600}F"
            .chars()
            .collect();
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..3 {
            let next: Vec<String> = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(next.iter().cloned());
            last = next;
        }
        let small: Vec<char> = "a.%2E".chars().collect();
        let mut last = vec![String::new()];
        for _ in 0..6 {
            let next: Vec<String> = last
                .iter()
                .flat_map(|s| small.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(next.iter().cloned());
            last = next;
        }
        for s in &strings {
            check(s);
        }
        // Every byte value on its own and inside a safe key.
        for byte in 0..=u8::MAX {
            let c = char::from(byte);
            check(&c.to_string());
            check(&format!("c-{c}1"));
            check(&format!("%{byte:02X}"));
            check(&format!("%{byte:02x}"));
            check(&format!("c%{byte:02X}1"));
        }
    }

    /// Keys round-trip, the long ones too; escapes and separators that the
    /// encoder never writes are refused.
    #[test]
    fn keys_round_trip_and_foreign_spellings_are_refused() {
        let long = "a".repeat(1 << 20);
        let keys = [
            "",
            "c-1",
            "a.b",
            ".a",
            "a.",
            "a..b",
            ".",
            "%",
            "%25",
            "*",
            ">",
            "a b",
            "\u{0}",
            "\u{e9}t\u{e9}",
            "\u{1f600}",
            "ADA@example.com",
            long.as_str(),
        ];
        for key in keys {
            let encoded = encode_key(key);
            assert_eq!(decode_key(&encoded).as_deref(), Ok(key), "{encoded}");
            check(&encoded);
        }
        for foreign in [
            "%41",
            "%2e",
            "%c3%a9",
            "a.%2Eb",
            "%2E",
            "a..b",
            ".a",
            "a.",
            "*",
            ">",
            "a*",
            "a>",
            "a b",
            "%",
            "%%",
            "%4",
            "%G0",
            "%E9",
            "%C3",
            "%ED%A0%80",
        ] {
            check(foreign);
        }
        check(&long);
        check(&format!("{long}.{long}"));
        check(&format!("{long}%20"));
    }
}

// ---------------------------------------------------------------------------
// Acknowledgements: one per committed batch (`AckPolicy::All`)
// ---------------------------------------------------------------------------

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;

#[cfg(feature = "nats")]
mod acks {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
    use ecst::store::{DurableReplica, MemoryStore};
    use ecst::Producer;
    use futures_util::StreamExt;

    use super::common_replica::Customer;
    use super::nats_server::NatsServer;

    /// A hang guard (never an assertion on speed).
    const PATIENCE: Duration = Duration::from_secs(120);

    async fn stream(server: &NatsServer) -> (async_nats::Client, Subjects) {
        let client = async_nats::connect(server.url()).await.expect("connects");
        let subjects = Subjects::new("crm").expect("a valid prefix");
        StateStream::new("CRM", subjects.clone())
            .ensure(
                &async_nats::jetstream::new(client.clone()),
                ServerVersion::of(&client).expect("connected"),
            )
            .await
            .expect("the state stream");
        (client, subjects)
    }

    /// Publishes one event per key of `keys`, named `name`.
    async fn publish(
        client: &async_nats::Client,
        subjects: &Subjects,
        producer: &mut Producer<Customer>,
        keys: std::ops::Range<usize>,
        name: &str,
    ) {
        let publisher =
            Publisher::new(async_nats::jetstream::new(client.clone()), subjects.clone());
        for i in keys {
            let envelope = producer
                .upsert(Customer {
                    id: format!("c-{i}"),
                    name: name.into(),
                    email: None,
                    credit: 1,
                })
                .expect("an envelope");
            publisher.publish(&envelope).await.expect("published");
        }
    }

    fn settings(subjects: &Subjects) -> FollowSettings {
        let mut settings = FollowSettings::new("CRM", "billing", subjects.clone());
        settings.batch = 4;
        settings.fetch_wait = Duration::from_millis(250);
        settings.ack_wait = Duration::from_secs(1);
        settings.lease_ttl = None;
        settings
    }

    /// What the stream holds, read by a consumer of its own: each key's last
    /// name, and the stream's last sequence.
    async fn truth(client: &async_nats::Client) -> (BTreeMap<String, String>, u64) {
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js.get_stream("CRM").await.expect("the stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
            .await
            .expect("an ephemeral consumer");
        let mut held = BTreeMap::new();
        let mut messages = consumer
            .fetch()
            .max_messages(10_000)
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = messages.next().await {
            let message = message.expect("a message");
            let envelope =
                ecst::Envelope::<Customer>::from_json(&message.payload).expect("ecst's own event");
            if let ecst::Change::Upsert(state) = envelope.change {
                held.insert(state.id, state.name);
            }
        }
        (held, last)
    }

    fn held(follower: &Follower<Customer, MemoryStore>) -> BTreeMap<String, String> {
        follower
            .replica()
            .replica()
            .iter()
            .map(|(key, state)| (key.clone(), state.name.clone()))
            .collect()
    }

    /// A hostile schedule for one acknowledgement per batch: a batch
    /// requested ahead left waiting past `ack_wait` (redelivered while the
    /// originals are still in the inbox), polls dropped mid-flight, a
    /// follower restarted from its replica, a broker restarted, events
    /// published in between. At the end the follower holds exactly what
    /// the stream holds and its checkpoint is the stream's last sequence:
    /// no message was acknowledged before it was committed, none skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_acknowledged_before_its_batch_is_committed() {
        let mut server = NatsServer::start();
        let (client, subjects) = stream(&server).await;
        let mut producer = Producer::<Customer>::new("urn:s");
        publish(&client, &subjects, &mut producer, 0..20, "v1").await;
        publish(&client, &subjects, &mut producer, 5..25, "v2").await;

        let durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
            .await
            .expect("opens");
        let mut follower = Follower::start(client.clone(), settings(&subjects), durable)
            .await
            .expect("starts");
        // A batch committed, the next one requested ahead and delivered.
        follower.poll().await.expect("a batch");
        // Past ack_wait: the batch in the inbox is delivered again.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        follower.poll().await.expect("a batch");
        follower.poll().await.expect("a batch");
        // Polls dropped wherever they are.
        for micros in [1, 50, 500, 5_000] {
            let _ = tokio::time::timeout(Duration::from_micros(micros), follower.poll()).await;
        }
        follower.poll().await.expect("a batch");
        // The process restarts mid-batch: a new follower over the replica.
        let _ = tokio::time::timeout(Duration::from_micros(200), follower.poll()).await;
        let durable = follower.into_replica();
        let mut follower = Follower::start(client.clone(), settings(&subjects), durable)
            .await
            .expect("starts again");
        follower.poll().await.expect("a batch");
        // The broker restarts; more events come.
        server.restart();
        let (client, _) = stream(&server).await;
        publish(&client, &subjects, &mut producer, 20..30, "v3").await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::time::timeout(PATIENCE, follower.catch_up())
            .await
            .expect("caught up (hang guard)")
            .expect("catches up");

        let (expected, last) = truth(&client).await;
        assert_eq!(expected.len(), 30);
        assert_eq!(held(&follower), expected);
        assert_eq!(follower.replica().resume_after(), last);
    }
}
