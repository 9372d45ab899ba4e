//! The payload reader (`ecst::envelope::payload`) against serde_json, the
//! reader it stands in for: whenever it reads a value, serde_json reads the
//! same text into the same type and gets the same value; everything else it
//! gives up on (and ecst reads it with serde_json).
//!
//! Inputs: random JSON texts (strings with and without escapes, control
//! characters and non-ASCII, numbers at the u64/i64/f64 edges, `-0`, deep
//! nesting, duplicate keys, all four whitespace bytes), texts shaped like a
//! payload, and both mutated (truncated, bytes replaced, inserted, removed).
//! Targets: `serde_json::Value`, a derived struct like an entity's payload
//! (`Option`, `Vec<String>`, a unit enum, `u64`, `bool`,
//! `#[serde(default)]`, a renamed field, a nested struct, a
//! `HashMap<String, i64>`, an enum with data), borrowed strings (`String`,
//! `&str`, `Cow<str>`) and a few more shapes serde_json treats specially.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use ecst::envelope::payload::{self, GaveUp, PayloadReader, MAX_DEPTH};
use proptest::prelude::*;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum Tier {
    Free,
    Pro,
}

#[derive(Deserialize, Debug, PartialEq)]
enum Shape {
    Point,
    Circle(u32),
    Pair(i64, bool),
    Rect { w: u64, h: u64 },
}

#[derive(Deserialize, Debug, PartialEq)]
struct Address {
    street: String,
    city: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Account {
    id: String,
    #[serde(rename = "fullName")]
    name: String,
    email: Option<String>,
    tags: Vec<String>,
    tier: Tier,
    credit: u64,
    active: bool,
    #[serde(default)]
    note: String,
    address: Address,
    limits: HashMap<String, i64>,
    #[serde(default)]
    shape: Option<Shape>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowing<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow)]
    city: Cow<'a, str>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Unit;

#[derive(Deserialize, Debug, PartialEq)]
struct Meters(u32);

/// What the payload reader gives for `text` as `T`, after checking it
/// against serde_json: `Some` only if serde_json reads the same value.
fn read_as<'de, T>(text: &'de str) -> Option<T>
where
    T: Deserialize<'de> + Debug + PartialEq,
{
    let fast = payload::from_str::<T>(text);
    let Ok(value) = fast else { return None };
    match serde_json::from_str::<T>(text) {
        Ok(expected) => assert_eq!(value, expected, "{text:?}"),
        Err(e) => {
            panic!("the payload reader read {value:?} where serde_json fails ({e}): {text:?}")
        }
    }
    Some(value)
}

/// [`read_as`] for every target; how many read it.
fn agree(text: &str) -> usize {
    fn owned<T: DeserializeOwned + Debug + PartialEq>(text: &str) -> usize {
        usize::from(read_as::<T>(text).is_some())
    }
    let mut read = 0;
    read += owned::<Value>(text);
    read += owned::<Account>(text);
    read += owned::<Address>(text);
    read += owned::<Option<Account>>(text);
    read += owned::<String>(text);
    read += usize::from(read_as::<&str>(text).is_some());
    read += usize::from(read_as::<Cow<str>>(text).is_some());
    read += usize::from(read_as::<Borrowing>(text).is_some());
    read += owned::<HashMap<String, i64>>(text);
    read += owned::<HashMap<String, Value>>(text);
    read += owned::<BTreeMap<Tier, u32>>(text);
    read += owned::<Vec<u64>>(text);
    read += owned::<Vec<i8>>(text);
    read += owned::<(u8, i32, bool)>(text);
    read += owned::<Vec<Option<bool>>>(text);
    read += owned::<Vec<f64>>(text);
    read += owned::<Vec<f32>>(text);
    read += owned::<Vec<char>>(text);
    read += owned::<Vec<Shape>>(text);
    read += owned::<Vec<Tier>>(text);
    read += owned::<Shape>(text);
    read += owned::<()>(text);
    read += owned::<Unit>(text);
    read += owned::<Meters>(text);
    read += owned::<u64>(text);
    read += owned::<i64>(text);
    read += owned::<Option<u16>>(text);
    read += owned::<IgnoredAny>(text);
    read += raw_as_serde_json(text);
    read
}

/// serde_json's `RawValue`, borrowed, boxed, optional and as a field, read
/// by the payload reader: where it reads one, serde_json reads the same
/// text. How many read it.
fn raw_as_serde_json(text: &str) -> usize {
    #[derive(Deserialize)]
    struct Holder<'a> {
        #[serde(borrow)]
        raw: &'a RawValue,
        n: u32,
    }
    fn same<'de, T: Deserialize<'de>>(text: &'de str, get: fn(&T) -> String) -> usize {
        let Ok(value) = payload::from_str::<T>(text) else {
            return 0;
        };
        match serde_json::from_str::<T>(text) {
            Ok(expected) => assert_eq!(get(&value), get(&expected), "{text:?}"),
            Err(e) => {
                panic!("the payload reader read a raw value where serde_json fails ({e}): {text:?}")
            }
        }
        1
    }
    same::<&RawValue>(text, |raw| raw.get().to_owned())
        + same::<Box<RawValue>>(text, |raw| raw.get().to_owned())
        + same::<Option<&RawValue>>(text, |raw| format!("{:?}", raw.map(|raw| raw.get())))
        + same::<Vec<&RawValue>>(text, |raws| {
            format!("{:?}", raws.iter().map(|raw| raw.get()).collect::<Vec<_>>())
        })
        + same::<Holder>(text, |holder| format!("{} {}", holder.raw.get(), holder.n))
}

/// `text`, and `text` cut, with bytes replaced, inserted or removed, at
/// `at` (a fraction of its length), each checked.
fn agree_mutated(text: &str, at: f64, byte: u8) {
    agree(text);
    let bytes = text.as_bytes();
    let i = ((bytes.len() as f64) * at) as usize;
    let i = i.min(bytes.len().saturating_sub(1));
    let mut variants: Vec<Vec<u8>> = vec![bytes[..i].to_vec()];
    if !bytes.is_empty() {
        let mut replaced = bytes.to_vec();
        replaced[i] = byte;
        variants.push(replaced);
        let mut removed = bytes.to_vec();
        removed.remove(i);
        variants.push(removed);
    }
    let mut inserted = bytes.to_vec();
    inserted.insert(i, byte);
    variants.push(inserted);
    for variant in variants {
        if let Ok(text) = std::str::from_utf8(&variant) {
            agree(text);
        }
    }
}

/// A JSON value as text, built from tokens that include the ones the
/// reader gives up on.
#[derive(Clone, Debug)]
enum Json {
    Token(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(""),
        1 => Just(" "),
        1 => Just("\n"),
        1 => Just("\t\r\n "),
    ]
}

/// String contents (without quotes): plain, non-ASCII, escapes, raw
/// control characters, serde_json's private tokens.
fn string_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-zA-Z0-9 .,:{}\\[\\]-]{0,12}",
        1 => Just("\u{e9}t\u{e9} \u{1f600}".to_owned()),
        1 => Just("\\n".to_owned()),
        1 => Just("\\\"".to_owned()),
        1 => Just("\\u00e9".to_owned()),
        1 => Just("\\ud83d\\ude00".to_owned()),
        1 => Just("\u{1}".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("\u{7f}".to_owned()),
        1 => Just("$serde_json::private::Number".to_owned()),
        1 => Just("$serde_json::private::RawValue".to_owned()),
        2 => prop::sample::select(vec![
            "id", "fullName", "email", "tags", "tier", "credit", "active", "note", "address",
            "limits", "shape", "street", "city", "name", "free", "pro", "Point", "Circle",
            "Pair", "Rect", "w", "h",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..3).prop_map(|pieces| pieces.concat())
}

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u64>().prop_map(|n| n.to_string()),
        4 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (0u32..300).prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
        4 => prop::sample::select(vec![
            "0", "-0", "1", "-1", "01", "-01", "00", "1.0", "1.5", "1e5", "1E5", "1e-5", "-1.5",
            "0.0", "-0.0", "18446744073709551615", "18446744073709551616",
            "99999999999999999999", "184467440737095516150", "9223372036854775807",
            "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
            "-18446744073709551615", "-", "1.", ".5", "+1", "255", "256", "-128", "-129",
            "4294967296", "1e400", "16777217", "9007199254740993",
        ])
        .prop_map(str::to_owned),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        2 => number_text().prop_map(Json::Token),
        3 => string_text().prop_map(|s| Json::Token(format!("\"{s}\""))),
        1 => prop::sample::select(vec!["null", "true", "false", "nul", "tru", "nulll"])
            .prop_map(|s| Json::Token(s.to_owned())),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((string_text(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

/// An object shaped like an `Account`: its keys (some twice, some
/// missing, some unknown), mostly with values of the right type.
fn account() -> impl Strategy<Value = Json> {
    let s = |v: &str| Json::Token(format!("\"{v}\""));
    let value_for = move |key: &'static str| -> BoxedStrategy<Json> {
        let right: BoxedStrategy<Json> = match key {
            "id" | "fullName" | "note" => string_text().prop_map(move |t| s(&t)).boxed(),
            "email" => prop_oneof![
                Just(Json::Token("null".into())),
                string_text().prop_map(move |t| s(&t))
            ]
            .boxed(),
            "tags" => prop::collection::vec(string_text().prop_map(move |t| s(&t)), 0..4)
                .prop_map(Json::Array)
                .boxed(),
            "tier" => {
                prop::sample::select(vec!["\"free\"", "\"pro\"", "\"Pro\"", "{\"pro\":null}"])
                    .prop_map(|t| Json::Token(t.to_owned()))
                    .boxed()
            }
            "credit" => number_text().prop_map(Json::Token).boxed(),
            "active" => prop::sample::select(vec!["true", "false"])
                .prop_map(|t| Json::Token(t.to_owned()))
                .boxed(),
            "address" => (string_text(), prop::option::of(string_text()))
                .prop_map(move |(street, city)| {
                    let mut entries = vec![("street".to_owned(), s(&street))];
                    if let Some(city) = city {
                        entries.push(("city".to_owned(), s(&city)));
                    }
                    Json::Object(entries)
                })
                .boxed(),
            "limits" => prop::collection::vec((string_text(), number_text()), 0..4)
                .prop_map(|entries| {
                    Json::Object(
                        entries
                            .into_iter()
                            .map(|(k, n)| (k, Json::Token(n)))
                            .collect(),
                    )
                })
                .boxed(),
            "shape" => prop::sample::select(vec![
                "\"Point\"",
                "{\"Point\":null}",
                "{\"Circle\":3}",
                "{\"Pair\":[-4,true]}",
                "{\"Rect\":{\"w\":1,\"h\":2}}",
                "{\"Rect\":[1,2]}",
                "\"Circle\"",
                "{\"Circle\":3,\"Point\":null}",
                "null",
            ])
            .prop_map(|t| Json::Token(t.to_owned()))
            .boxed(),
            _ => json().boxed(),
        };
        prop_oneof![9 => right, 1 => json()].boxed()
    };
    let keys = vec![
        "id", "fullName", "email", "tags", "tier", "credit", "active", "note", "address", "limits",
        "shape", "unknown",
    ];
    (
        prop::collection::vec(0..keys.len(), 0..3),
        prop::collection::vec(any::<bool>(), 12),
    )
        .prop_flat_map(move |(extra, present)| {
            let mut order: Vec<&'static str> = keys
                .iter()
                .zip(&present)
                .filter(|(k, p)| **p || !matches!(**k, "note" | "shape" | "email" | "unknown"))
                .map(|(k, _)| *k)
                .collect();
            order.extend(extra.iter().map(|&i| keys[i]));
            let values: Vec<BoxedStrategy<(String, Json)>> = order
                .into_iter()
                .map(|k| value_for(k).prop_map(move |v| (k.to_owned(), v)).boxed())
                .collect();
            values.prop_map(Json::Object)
        })
}

fn render(json: &Json, spaces: &[&str], n: &mut usize, out: &mut String) {
    fn space(spaces: &[&str], n: &mut usize, out: &mut String) {
        if !spaces.is_empty() {
            out.push_str(spaces[*n % spaces.len()]);
            *n += 1;
        }
    }
    match json {
        Json::Token(t) => out.push_str(t),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(spaces, n, out);
                render(item, spaces, n, out);
                space(spaces, n, out);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(spaces, n, out);
                out.push('"');
                out.push_str(key);
                out.push('"');
                space(spaces, n, out);
                out.push(':');
                space(spaces, n, out);
                render(value, spaces, n, out);
                space(spaces, n, out);
            }
            out.push('}');
        }
    }
}

fn text(json: &Json, spaces: &[&str]) -> String {
    let mut out = String::new();
    let mut n = 0;
    render(json, spaces, &mut n, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_json_reads_as_serde_json_reads_it(
        json in json(),
        spaces in prop::collection::vec(whitespace(), 0..4),
        at in 0.0..1.0f64,
        byte in prop::sample::select(b" \t\n\r\"\\,:{}[]0-.eEnx\x01/".to_vec()),
    ) {
        agree_mutated(&text(&json, &spaces), at, byte);
    }

    #[test]
    fn payload_shaped_json_reads_as_serde_json_reads_it(
        json in account(),
        spaces in prop::collection::vec(whitespace(), 0..4),
        at in 0.0..1.0f64,
        byte in prop::sample::select(b" \t\n\r\"\\,:{}[]0-.eEnx\x01/".to_vec()),
    ) {
        agree_mutated(&text(&json, &spaces), at, byte);
    }
}

/// The test above checks agreement; this one that the reader does read the
/// common shapes (else it would agree by never reading anything).
#[test]
fn plain_payloads_are_read() {
    let account = r#" {"id":"c-1","fullName":"Ada Lovelace, Countess","email":null,
        "tags":["a","b\u00e9"],"tier":"pro","credit":18446744073709551615,"active":true,
        "address":{"street":"1 Main St","city":"London"},"limits":{"x":-9223372036854775808,"y":0},
        "unknown":[{"deep":[1,-2,true,null,"s"]},{}],"shape":{"Rect":{"w":1,"h":2}}} "#;
    // The one escape is in a tag: not read, serde_json's turn.
    assert!(read_as::<Account>(account).is_none());
    let account = account.replace("\\u00e9", "\u{e9}");
    let read = read_as::<Account>(&account).expect("a plain payload is read");
    assert_eq!(read.credit, u64::MAX);
    assert_eq!(read.limits["x"], i64::MIN);
    assert_eq!(read.shape, Some(Shape::Rect { w: 1, h: 2 }));
    assert!(read_as::<Value>(&account).is_some());
    assert!(
        read_as::<Address>(r#"["1 Main St",null]"#).is_some(),
        "a struct from an array"
    );
    assert!(read_as::<Vec<Shape>>(r#"["Point",{"Circle":7},{"Pair":[-1,false]}]"#).is_some());
    assert!(read_as::<BTreeMap<Tier, u32>>(r#"{"free":1,"pro":2}"#).is_some());
    assert!(read_as::<Vec<f64>>("[1,-2,18446744073709551615]").is_some());
    assert!(read_as::<Vec<char>>(r#"["a","\u00e9"]"#).is_none());
    assert!(read_as::<Vec<char>>("[\"a\",\"\u{e9}\"]").is_some());
    assert_eq!(read_as::<&str>(" \"borrowed\"\n"), Some("borrowed"));
    assert!(read_as::<Borrowing>(r#"{"name":"n","city":"c"}"#).is_some());
    assert!(read_as::<IgnoredAny>("[1,{\"a\":[]}]").is_some());
    assert!(agree(&account) >= 3);
}

/// serde_json's `RawValue` is the text of the value, without the
/// whitespace around it, as serde_json gives it (the version gate reads
/// the `data` of an event it refuses as one).
#[test]
fn raw_values_are_handed_over_as_serde_json_hands_them() {
    let raw = payload::from_str::<&RawValue>(" {\"a\": [1, \"x\", null]} ").unwrap();
    assert_eq!(raw.get(), r#"{"a": [1, "x", null]}"#);
    // Borrowed, boxed, optional and as a field: all read this object.
    assert_eq!(raw_as_serde_json(r#"{"raw": {"b": true}, "n": 3}"#), 4);
    // Borrowed, boxed, optional, in a list and as a struct's fields (a
    // struct reads from an array too): all read `[1, 2]`.
    assert_eq!(raw_as_serde_json("[1, 2]"), 5);
    let none = payload::from_str::<Option<&RawValue>>("null").unwrap();
    assert!(none.is_none());
    // Too deep for the reader: left to serde_json, which reads it.
    let deep = "[".repeat(usize::from(MAX_DEPTH) + 1) + &"]".repeat(usize::from(MAX_DEPTH) + 1);
    assert_eq!(payload::from_str::<&RawValue>(&deep).map(drop), Err(GaveUp));
    assert!(serde_json::from_str::<&RawValue>(&deep).is_ok());
}

/// Each rule of what the reader gives up on, one input each; serde_json
/// reads all of these (or fails: then the reader must fail too).
#[test]
fn what_serde_json_reads_its_own_way_is_left_to_it() {
    type Read = fn(&str) -> Result<(), GaveUp>;
    let cases: &[(&str, Read)] = &[
        (r#""a\nb""#, |t| payload::from_str::<String>(t).map(drop)),
        ("\"a\u{1}b\"", |t| payload::from_str::<String>(t).map(drop)),
        ("1.0", |t| payload::from_str::<Value>(t).map(drop)),
        ("1e2", |t| payload::from_str::<f64>(t).map(drop)),
        ("-0", |t| payload::from_str::<Value>(t).map(drop)),
        ("18446744073709551616", |t| {
            payload::from_str::<Value>(t).map(drop)
        }),
        ("-9223372036854775809", |t| {
            payload::from_str::<Value>(t).map(drop)
        }),
        ("01", |t| payload::from_str::<Value>(t).map(drop)),
        ("1", |t| payload::from_str::<u128>(t).map(drop)),
        ("1", |t| payload::from_str::<i128>(t).map(drop)),
        (r#""ab""#, |t| {
            payload::from_str::<serde_bytes_like::Bytes>(t).map(drop)
        }),
        (r#"{"1":2}"#, |t| {
            payload::from_str::<HashMap<u32, u32>>(t).map(drop)
        }),
        (r#"{"true":2}"#, |t| {
            payload::from_str::<HashMap<bool, u32>>(t).map(drop)
        }),
        (r#"{"$serde_json::private::Number":"1"}"#, |t| {
            payload::from_str::<Value>(t).map(drop)
        }),
        (r#"["a\nb"]"#, |t| {
            payload::from_str::<&RawValue>(t).map(drop)
        }),
        ("[1.5]", |t| payload::from_str::<Box<RawValue>>(t).map(drop)),
        ("[1,]", |t| payload::from_str::<Vec<u8>>(t).map(drop)),
        ("{\"a\":1,}", |t| payload::from_str::<Value>(t).map(drop)),
        ("[1] x", |t| payload::from_str::<Vec<u8>>(t).map(drop)),
        ("nul", |t| payload::from_str::<()>(t).map(drop)),
    ];
    for (text, read) in cases {
        assert_eq!(read(text), Err(GaveUp), "{text}");
    }
    // Nesting: up to the bound, and no further.
    let depth = usize::from(MAX_DEPTH) - 1;
    let nested = "[".repeat(depth) + &"]".repeat(depth);
    assert!(read_as::<Value>(&nested).is_some());
    let deeper = "[".repeat(depth + 1) + &"]".repeat(depth + 1);
    assert!(payload::from_str::<Value>(&deeper).is_err());
    assert!(payload::from_str::<IgnoredAny>(&deeper).is_err());
    let too_deep = "[".repeat(200) + &"]".repeat(200);
    agree(&too_deep);
}

/// A visitor that swallows the reader's failure and goes on cannot make it
/// read a value: once it gave up, `end` fails.
#[test]
fn a_failure_is_final() {
    struct Lenient;
    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Lenient;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Lenient, A::Error> {
                    while let Ok(Some(IgnoredAny)) = seq.next_element() {}
                    Ok(Lenient)
                }
            }
            d.deserialize_seq(V)
        }
    }
    // `-0` is left to serde_json (a float there); the visitor goes on, and
    // the `]` that follows is read.
    let mut reader = PayloadReader::new("[-0]");
    assert!(Lenient::deserialize(&mut reader).is_ok());
    assert_eq!(reader.end(), Err(GaveUp));
    let mut reader = PayloadReader::new("[0]");
    assert!(Lenient::deserialize(&mut reader).is_ok());
    assert_eq!(reader.end(), Ok(()));
}

/// A `deserialize_bytes` target without another crate.
mod serde_bytes_like {
    use serde::de::{Deserialize, Deserializer, Visitor};

    pub struct Bytes;

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, _: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes)
                }
                fn visit_str<E>(self, _: &str) -> Result<Bytes, E> {
                    Ok(Bytes)
                }
            }
            d.deserialize_bytes(V)
        }
    }
}
