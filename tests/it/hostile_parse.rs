//! Hostile replies, property-tested: `update_envs::classify` (and through it the envelope
//! parser and the 465 parser `Phase1Data::parse`) over any status 100..=599, garbage headers,
//! arbitrary bytes and mutated versions of the fixture bodies.
//!
//! The runs are deterministic (a fixed seed) unless `PROPTEST_RNG_SEED` is set; the case count
//! is proptest's (`PROPTEST_CASES`, 256 by default). A long run:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --release --test hostile_parse -- --nocapture
//! ```
//!
//! Each property prints how many cases it ran and how long they took.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use phala_cloud::__internals::classify;
use phala_cloud::Phase1Data;
use phala_cloud::{ConflictRetry, ErrorEnvelope, UpdateEnvsError};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::sync::LazyLock;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Inputs

/// The fixture bodies, by file name.
static FIXTURES: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    let dir = format!("{}/tests/fixtures/responses", env!("CARGO_MANIFEST_DIR"));
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    all.sort();
    assert!(all.len() >= 14, "fixtures missing");
    all
});

/// The JSON fixtures, parsed.
static JSON_FIXTURES: LazyLock<Vec<(String, Value)>> = LazyLock::new(|| {
    FIXTURES
        .iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .map(|(name, raw)| (name.clone(), serde_json::from_slice(raw).unwrap()))
        .collect()
});

/// Raw JSON text that a `serde_json::Value` cannot hold or that breaks parsers: numbers out of
/// every range, lone surrogates, nesting past serde_json's limit, unterminated structures.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut t: Vec<String> = [
        "1e400",
        "-1e400",
        "1E999999999",
        "18446744073709551616",
        "-9223372036854775809",
        "340282366920938463463374607431768211456",
        "-0",
        "-0.0",
        "1.7976931348623157e308",
        "5e-324",
        "NaN",
        "Infinity",
        "\"\\ud800\"",
        "\"\\udfff\\ud800\"",
        "\"\\u0000\"",
        "\"\\u2028\\u2029\\r\\n\\u000b\\u000c\\u0085\"",
        "\"\x1b[31mred\x1b[0m\"",
        "\"\\u001b[31mred\\u001b]0;title\\u0007\"",
        "0x2105",
        "\"0x2105\"",
        "\"8453\"",
        "\"0xffffffffffffffffff\"",
        "01",
        "1.",
        ".5",
        "tru",
        "nul",
        "[,]",
        "{,}",
        "{\"a\" 1}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    t.push("1".repeat(4000));
    t.push(format!("0.{}1", "0".repeat(4000)));
    t.push(format!("{}{}", "[".repeat(127), "]".repeat(127)));
    t.push(format!("{}{}", "[".repeat(129), "]".repeat(129)));
    t.push("[".repeat(20_000));
    t.push(format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200)));
    t.push(format!("\"{}\"", "\\n".repeat(500)));
    t.push(format!("\"{}\"", "x".repeat(100_000)));
    t
});

/// Strings aimed at the hex parsers (compose hash 32 bytes, app id 20 bytes) and at `Display`.
fn tricky_string() -> impl Strategy<Value = String> {
    let h64 = "18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49";
    let h40 = "a172cedcae47474b615c54d510a5d84a8dea3032";
    let fixed = vec![
        h64.to_owned(),
        format!("0x{h64}"),
        format!("0X{}", h64.to_uppercase()),
        format!(" 0x{h64}\n"),
        format!("0x0x{h64}"),
        h64[..63].to_owned(),
        format!("{h64}0"),
        h40.to_owned(),
        format!("0x{h40}"),
        "é".repeat(32),  // 64 bytes, not hex
        "ａ".repeat(20), // 60 bytes, full-width letters
        "0x".to_owned(),
        String::new(),
        "ERR-01-005\nsecond line".to_owned(),
        "a\u{2028}b\u{85}c\rd".to_owned(),
        "x".repeat(10_000),
    ];
    prop_oneof![
        3 => prop::sample::select(fixed),
        1 => "[0-9a-fA-FxX]{0,70}",
        1 => "\\PC{0,40}",
        1 => any::<String>(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        tricky_string().prop_map(Value::String),
    ]
}

/// Keys the parsers look for, and others.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "error_code", "message", "request_id", "details", "suggestions", "links", "detail", "field",
            "value", "loc", "msg", "type", "compose_hash", "app_id", "device_id", "kms_info", "chain_id",
            "id", "slug", "url", "version", "kms_contract_address", "gateway_app_id", "k256_pubkey",
            "status", "correlation_id", "allowed_envs_changed", "label", "input", "ctx",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(json_key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a parsed fixture. Node indexes count the nodes in pre-order, modulo their
/// number.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove the `k`-th field (or element) of a node.
    Drop(usize, usize),
    /// Replace a node with another value (a wrong type, junk).
    Replace(usize, Value),
    /// Replace a node with one of [`TOKENS`], spliced into the text.
    Token(usize, usize),
    /// Add a field (or element) to a node.
    Insert(usize, String, Value),
    /// Bury a node in nested junk.
    Wrap(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>()).prop_map(|(n, k)| Mutation::Drop(n, k)),
        3 => (any::<usize>(), json_value()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(n, t)| Mutation::Token(n, t)),
        2 => (any::<usize>(), json_key(), json_value()).prop_map(|(n, k, v)| Mutation::Insert(n, k, v)),
        1 => (any::<usize>(), 1u8..40).prop_map(|(n, d)| Mutation::Wrap(n, d)),
    ]
}

/// A change to the bytes of a body.
#[derive(Debug, Clone)]
enum ByteEdit {
    /// Cut the body at this point (modulo its length + 1).
    Truncate(usize),
    /// Insert these bytes (any, so non-UTF-8 too).
    Insert(usize, Vec<u8>),
    /// Flip bits of one byte.
    Xor(usize, u8),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), prop_oneof![vec(0x80u8..=0xff, 1..4), vec(any::<u8>(), 1..8)])
            .prop_map(|(at, b)| ByteEdit::Insert(at, b)),
        (any::<usize>(), 1u8..=255).prop_map(|(at, x)| ByteEdit::Xor(at, x)),
    ]
}

fn apply_bytes(mut body: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        match edit {
            ByteEdit::Truncate(at) => body.truncate(at % (body.len() + 1)),
            ByteEdit::Insert(at, bytes) => {
                let at = at % (body.len() + 1);
                body.splice(at..at, bytes.iter().copied());
            }
            ByteEdit::Xor(at, x) => {
                if !body.is_empty() {
                    let at = at % body.len();
                    body[at] ^= x;
                }
            }
        }
    }
    body
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(m) => m.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn nth_node(v: &mut Value, n: usize) -> &mut Value {
    fn go<'a>(v: &'a mut Value, n: usize, seen: &mut usize) -> Option<&'a mut Value> {
        if *seen == n {
            return Some(v);
        }
        *seen += 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|x| go(x, n, seen)),
            Value::Object(m) => m.values_mut().find_map(|x| go(x, n, seen)),
            _ => None,
        }
    }
    let n = n % count_nodes(v);
    go(v, n, &mut 0).expect("n < number of nodes")
}

/// Applies the mutations and serializes, splicing in the raw tokens.
fn mutate_json(mut v: Value, mutations: &[Mutation], pretty: bool) -> Vec<u8> {
    let mut tokens = Vec::new();
    for m in mutations {
        match m {
            Mutation::Drop(n, k) => match nth_node(&mut v, *n) {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(k % map.len()).unwrap().clone();
                    map.remove(&key);
                }
                Value::Array(a) if !a.is_empty() => {
                    let k = k % a.len();
                    a.remove(k);
                }
                _ => {}
            },
            Mutation::Replace(n, junk) => *nth_node(&mut v, *n) = junk.clone(),
            Mutation::Token(n, t) => {
                let placeholder = format!("@@TOKEN{}@@", tokens.len());
                tokens.push((format!("\"{placeholder}\""), TOKENS[t % TOKENS.len()].clone()));
                *nth_node(&mut v, *n) = Value::String(placeholder);
            }
            Mutation::Insert(n, key, junk) => match nth_node(&mut v, *n) {
                Value::Object(map) => {
                    map.insert(key.clone(), junk.clone());
                }
                Value::Array(a) => a.push(junk.clone()),
                _ => {}
            },
            Mutation::Wrap(n, depth) => {
                let node = nth_node(&mut v, *n);
                let mut inner = node.take();
                for d in 0..*depth {
                    inner = if d % 2 == 0 { Value::Array(vec![inner]) } else { serde_json::json!({ "value": inner }) };
                }
                *node = inner;
            }
        }
    }
    let mut text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
    for (placeholder, token) in tokens {
        text = text.replacen(&placeholder, &token, 1);
    }
    text.into_bytes()
}

/// The status a fixture was written for (its name starts with it).
fn fixture_status(name: &str) -> Option<u16> {
    name.get(..3)?.parse().ok()
}

/// Any body a server or a proxy could send, with the status of the fixture it came from
/// (`Bytes`, whose `Debug` shows a failing body readably).
fn body_with_status() -> impl Strategy<Value = (Option<u16>, Bytes)> {
    let n_fixtures = FIXTURES.len();
    let n_json = JSON_FIXTURES.len();
    let json_status = |i: usize| fixture_status(&JSON_FIXTURES[i].0);
    let any_status = |i: usize| fixture_status(&FIXTURES[i].0);
    prop_oneof![
        // Arbitrary bytes.
        3 => vec(any::<u8>(), 0..2048).prop_map(|b| (None, b)),
        // A fixture, structurally mutated, then maybe its bytes edited.
        5 => (0..n_json, vec(mutation(), 0..4), any::<bool>(), vec(byte_edit(), 0..2)).prop_map(
            move |(i, ms, pretty, edits)| {
                (json_status(i), apply_bytes(mutate_json(JSON_FIXTURES[i].1.clone(), &ms, pretty), &edits))
            }
        ),
        // A fixture with its bytes edited (cut short, non-UTF-8, flipped).
        2 => (0..n_fixtures, vec(byte_edit(), 1..4))
            .prop_map(move |(i, edits)| (any_status(i), apply_bytes(FIXTURES[i].1.clone(), &edits))),
        // A fixture as it is.
        1 => (0..n_fixtures).prop_map(move |i| (any_status(i), FIXTURES[i].1.clone())),
        // Any JSON, with the keys the parsers look for.
        2 => json_value().prop_map(|v| (None, serde_json::to_vec(&v).unwrap())),
        // A raw token alone.
        1 => any::<usize>().prop_map(|t| (None, TOKENS[t % TOKENS.len()].clone().into_bytes())),
    ]
    .prop_map(|(status, body)| (status, Bytes::from(body)))
}

/// Any body.
fn body() -> impl Strategy<Value = Bytes> {
    body_with_status().prop_map(|(_, body)| body)
}

/// Header values: Retry-After forms and garbage, request ids, bytes that are not UTF-8.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    let fixed = prop::sample::select(vec![
        "0",
        "7",
        "-1",
        " 7 ",
        "7.5",
        "1e3",
        "+5",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Mon, 32 Foo 2020 99:99:99 GMT",
        "",
        "req-465-a1",
    ])
    .prop_map(HeaderValue::from_static);
    prop_oneof![
        2 => fixed,
        1 => any::<u64>().prop_map(HeaderValue::from),
        1 => "[ -~]{0,80}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        // Any bytes, with the ones a header cannot carry moved into obs-text.
        2 => vec(any::<u8>(), 0..80).prop_map(|bytes| {
            let bytes: Vec<u8> =
                bytes.into_iter().map(|b| if (b < 0x20 && b != b'\t') || b == 0x7f { b | 0x80 } else { b }).collect();
            HeaderValue::from_bytes(&bytes).unwrap()
        }),
    ]
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => prop::sample::select(vec!["x-request-id", "X-Request-ID", "retry-after", "Retry-After", "content-type",
            "content-length", "location", "www-authenticate"])
        .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
        1 => "[a-z][a-z0-9-]{0,20}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    vec((header_name(), header_value()), 0..6).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            // `append`: a header may come twice, with different values.
            map.append(name, value);
        }
        map
    })
}

/// Statuses 100..=599, leaning on the mapped ones and their neighbours.
fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        2 => 100u16..=599,
        1 => prop::sample::select(vec![
            200u16, 201, 202, 204, 299, 401, 403, 404, 409, 422, 464, 465, 466, 467, 468, 469, 500, 502,
        ]),
    ]
    .prop_map(|s| StatusCode::from_u16(s).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Properties

thread_local! {
    /// What the cases of [`check_classify`] on this thread turned out to be, to show that the
    /// inputs reach every path.
    static TALLY: RefCell<[u64; 8]> = const { RefCell::new([0; 8]) };
}
const TALLY_NAMES: [&str; 8] =
    ["ok", "ok with fields", "error", "structured", "detail", "validation", "465", "465 with phase-1 data"];

fn tally(i: usize) {
    TALLY.with(|t| t.borrow_mut()[i] += 1);
}

fn print_tally(name: &str) {
    let counts = TALLY.with(|t| *t.borrow());
    let parts: Vec<String> = TALLY_NAMES.iter().zip(counts).map(|(n, c)| format!("{n} {c}")).collect();
    eprintln!("{name} outcomes: {}", parts.join(", "));
}

const LINE_BREAKS: [char; 7] = ['\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{2028}', '\u{2029}'];

/// The longest `Display` accepted: the messages are capped at 300 characters each, the rest is
/// ours.
const MAX_DISPLAY: usize = 1500;

fn expected_predicate(status: u16) -> (&'static str, fn(&UpdateEnvsError) -> bool) {
    match status {
        401 => ("Unauthorized", UpdateEnvsError::is_unauthorized),
        403 => ("Forbidden", UpdateEnvsError::is_forbidden),
        404 => ("NotFound", UpdateEnvsError::is_not_found),
        409 => ("Conflict", UpdateEnvsError::is_conflict),
        422 => ("Validation", UpdateEnvsError::is_validation),
        465 => ("RegistrationRequired", UpdateEnvsError::is_registration_required),
        466 => ("ComposeHashInvalid", UpdateEnvsError::is_compose_hash_invalid),
        467 => ("TransactionVerificationFailed", UpdateEnvsError::is_transaction_verification_failed),
        468 => ("ComposeHashNotAllowed", UpdateEnvsError::is_compose_hash_not_allowed),
        500 => ("ServerError", UpdateEnvsError::is_server_error),
        _ => ("UnexpectedStatus", UpdateEnvsError::is_unexpected_status),
    }
}

fn header_request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

fn check_display(shown: &str, status: StatusCode) -> Result<(), TestCaseError> {
    prop_assert!(!shown.is_empty());
    prop_assert!(!shown.contains(LINE_BREAKS), "Display is not one line: {:?}", shown);
    prop_assert!(!shown.contains(char::is_control), "Display passes on control characters: {:?}", shown);
    prop_assert!(shown.len() <= MAX_DISPLAY, "Display is {} bytes long", shown.len());
    let prefix = format!("HTTP {}", status.as_u16());
    prop_assert!(shown.starts_with(&prefix), "{:?}", shown);
    Ok(())
}

/// Everything `classify` promises for one reply.
fn check_classify(status: StatusCode, headers: &HeaderMap, raw: &Bytes, truncated: bool) -> Result<(), TestCaseError> {
    let body: &[u8] = raw;
    let result = classify(status, headers.clone(), raw.clone(), truncated);
    let _ = format!("{result:?}");
    // Acceptance is proven: a 202 whatever its body, another 2xx only with a JSON object body
    // carrying a non-empty string `correlation_id`.
    let proven = status == StatusCode::ACCEPTED
        || (!truncated
            && matches!(serde_json::from_slice::<Value>(body),
                Ok(Value::Object(ref m)) if m.get("correlation_id").and_then(Value::as_str).is_some_and(|c| !c.is_empty())));
    match result {
        Err(phala_cloud::SdkError::InvalidReply(invalid)) => {
            prop_assert!(status.is_success() && !proven, "{} gave InvalidReply", status);
            prop_assert_eq!(invalid.status(), status);
            prop_assert_eq!(invalid.raw_body(), raw);
            prop_assert_eq!(invalid.body_truncated(), truncated);
            prop_assert_eq!(invalid.headers(), headers);
            tally(0);
        }
        Ok(ok) => {
            prop_assert!(status.is_success() && proven, "{} gave Ok", status);
            prop_assert_eq!(ok.http_status, status);
            prop_assert_eq!(&ok.raw_body, raw);
            prop_assert_eq!(ok.body_truncated, truncated);
            prop_assert_eq!(ok.request_id.as_deref(), header_request_id(headers));
            // Lenient parse: each known field is taken when it has the right type, and every
            // field of an object body ends up either taken or in `extra`.
            let object = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let text = |k: &str| object.get(k).and_then(Value::as_str);
            prop_assert_eq!(ok.status.as_deref(), text("status"));
            prop_assert_eq!(ok.message.as_deref(), text("message"));
            prop_assert_eq!(ok.correlation_id.as_deref(), text("correlation_id"));
            prop_assert_eq!(ok.allowed_envs_changed, object.get("allowed_envs_changed").and_then(Value::as_bool));
            let taken = [
                ok.status.is_some(),
                ok.message.is_some(),
                ok.correlation_id.is_some(),
                ok.allowed_envs_changed.is_some(),
            ];
            prop_assert_eq!(ok.extra.len() + taken.iter().filter(|t| **t).count(), object.len());
            tally(0);
            if taken.iter().any(|t| *t) {
                tally(1);
            }
        }
        Err(e) => {
            prop_assert!(!status.is_success(), "{} gave Err: {:?}", status, e);
            let (name, predicate) = expected_predicate(status.as_u16());
            prop_assert!(predicate(&e), "status {} should be {}, got {:?}", status, name, e);
            prop_assert_eq!(e.status(), Some(status));
            prop_assert_eq!(e.raw_body(), Some(raw));
            let http = e.http().expect("an HTTP variant");
            prop_assert_eq!(http.body_truncated(), truncated);
            prop_assert_eq!(http.headers(), headers);
            prop_assert!(!e.is_not_sent() && !e.is_maybe_sent());
            // A gateway's 502/504: the service behind it may have acted.
            prop_assert_eq!(e.may_have_been_applied(), matches!(status.as_u16(), 502 | 504));
            prop_assert!(!e.is_invalid_input());
            prop_assert_eq!(e.is_retryable(), status == 409);

            // Envelope: never parsed from a cut body; otherwise what the parser says.
            let envelope = e.envelope().unwrap();
            tally(2);
            match envelope {
                ErrorEnvelope::Structured(_) => tally(3),
                ErrorEnvelope::Detail(_) => tally(4),
                ErrorEnvelope::Validation(_) => tally(5),
                _ => {}
            }
            if truncated {
                prop_assert_eq!(envelope, &ErrorEnvelope::Unrecognized);
            } else {
                prop_assert_eq!(envelope, &ErrorEnvelope::parse(body));
            }
            if !e.validation_errors().is_empty() {
                prop_assert_eq!(status.as_u16(), 422);
            }

            // Request id: the body's top-level `request_id`, else the header.
            let body_rid = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) if !truncated => {
                    map.get("request_id").and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            };
            prop_assert_eq!(e.request_id(), body_rid.as_deref().or(header_request_id(headers)));

            // 465: phase-1 data exactly when the whole body parses.
            if status.as_u16() == 465 {
                let parsed = if truncated { None } else { Phase1Data::parse(body).ok() };
                prop_assert_eq!(e.phase1(), parsed.as_ref());
                tally(6);
                if parsed.is_some() {
                    tally(7);
                }
                if let Some(data) = e.phase1() {
                    prop_assert!(e.to_string().contains(&data.compose_hash.to_string()));
                    prop_assert!(e.to_string().contains(&data.app_id.to_string()));
                }
            } else {
                prop_assert!(e.phase1().is_none());
            }

            // Retry-After garbage: no panic, in the header or in the retry policy.
            let asked = http.retry_after();
            let delay = ConflictRetry::default().delay(1, asked, 0.5);
            if let Some(d) = delay {
                prop_assert!(d <= ConflictRetry::default().max_backoff);
            }

            check_display(&e.to_string(), status)?;
            check_display(&http.to_string(), status)?;
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let _ = s.to_string();
                source = s.source();
            }
            let debug = format!("{e:?}");
            prop_assert!(!debug.is_empty());
        }
    }
    Ok(())
}

/// A runner with proptest's configuration (`PROPTEST_CASES` and the rest) and, unless
/// `PROPTEST_RNG_SEED` is set, a fixed seed; it writes no regression files.
fn runner() -> TestRunner {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x00c1_a551_f1ed);
    }
    TestRunner::new(config)
}

/// Runs a property, then prints how many cases ran and for how long.
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = runner();
    let count = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        count.set(count.get() + 1);
        test(input)
    });
    eprintln!(
        "{name}: {} cases executed (shrinking included) in {:.2?}, seed {}",
        count.get(),
        started.elapsed(),
        runner.config().rng_seed
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn classify_is_total_and_keeps_status_and_bytes() {
    // Half the fixture-derived bodies come with the status they were written for, so that
    // mutated 465 bodies meet the 465 parser.
    let inputs = (status(), any::<bool>(), headers(), body_with_status(), prop::bool::weighted(0.125));
    run("classify", inputs, |(status, use_fixture_status, headers, (fixture_status, body), truncated)| {
        let status = match fixture_status {
            Some(s) if use_fixture_status => StatusCode::from_u16(s).unwrap(),
            _ => status,
        };
        check_classify(status, &headers, &body, truncated)
    });
    print_tally("classify");
}

#[test]
fn classify_arbitrary_bytes_any_status() {
    // The plainest form: a uniform status and uniform bytes, no structure at all.
    run(
        "classify_bytes",
        (100u16..=599, vec(any::<u8>(), 0..512).prop_map(Bytes::from), any::<bool>()),
        |(status, body, truncated)| {
            check_classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), &body, truncated)
        },
    );
    print_tally("classify_bytes");
}

#[test]
fn phase1_parser_is_total() {
    run("phase1_parse", body(), |body| {
        match Phase1Data::parse(&body) {
            Ok(data) => {
                // Whatever parsed is well-formed.
                prop_assert_eq!(data.compose_hash.to_string().len(), 66);
                prop_assert_eq!(data.app_id.to_string().len(), 42);
                if let Some(device) = &data.device_id {
                    prop_assert!(!device.starts_with("0x"));
                    prop_assert_eq!(device, &device.to_ascii_lowercase());
                }
                let _ = serde_json::to_string(&data).unwrap();
            }
            Err(why) => {
                let why = why.to_string();
                prop_assert!(!why.is_empty());
                prop_assert!(!why.contains(LINE_BREAKS), "{:?}", why);
            }
        }
        Ok(())
    });
}

/// Mutations that leave the compose hash and app id alone: odd `kms_info`, `device_id`,
/// envelope fields, extra fields. Phase-1 data must survive them (kms_info is informative).
#[derive(Debug, Clone)]
enum Benign {
    KmsInfo(Value),
    KmsField(String, Value),
    DeviceId(Value),
    Envelope(&'static str, Value),
    Extra(String, Value),
    ExtraDetail(Value),
}

fn benign() -> impl Strategy<Value = Benign> {
    let kms_field = prop::sample::select(vec![
        "id",
        "slug",
        "url",
        "version",
        "chain_id",
        "kms_contract_address",
        "gateway_app_id",
        "k256_pubkey",
        "other",
    ])
    .prop_map(str::to_owned);
    let envelope =
        prop::sample::select(vec!["error_code", "message", "request_id", "suggestions", "links", "detail", "status"]);
    let extra_key = json_key().prop_filter("not the hash or app id", |k| k != "compose_hash" && k != "app_id");
    prop_oneof![
        json_value().prop_map(Benign::KmsInfo),
        (kms_field, json_value()).prop_map(|(k, v)| Benign::KmsField(k, v)),
        json_value().prop_map(Benign::DeviceId),
        (envelope, json_value()).prop_map(|(k, v)| Benign::Envelope(k, v)),
        (extra_key, json_value()).prop_map(|(k, v)| Benign::Extra(k, v)),
        json_value().prop_map(Benign::ExtraDetail),
    ]
}

/// The phase-1 data in a 465 fixture: as details (structured) or at the top (legacy).
fn set_phase1_field(v: &mut Value, structured: bool, key: &str, value: Value) {
    if structured {
        let details = v["details"].as_array_mut().unwrap();
        match details.iter_mut().find(|d| d["field"] == key) {
            Some(d) => d["value"] = value,
            None => details.push(serde_json::json!({ "field": key, "value": value })),
        }
    } else {
        v[key] = value;
    }
}

#[test]
fn phase1_survives_odd_informative_fields() {
    let fixtures: Vec<(bool, Value)> = ["465_structured.json", "465_legacy_flat.json"]
        .iter()
        .map(|name| {
            let (_, v) = JSON_FIXTURES.iter().find(|(n, _)| n == name).unwrap();
            (name.contains("structured"), v.clone())
        })
        .collect();
    let expected = Phase1Data::parse(&FIXTURES.iter().find(|(n, _)| n == "465_structured.json").unwrap().1).unwrap();
    run("phase1_benign", (0..2usize, vec(benign(), 1..5)), |(which, changes)| {
        let (structured, mut v) = fixtures[which].clone();
        for change in changes {
            match change {
                Benign::KmsInfo(value) => set_phase1_field(&mut v, structured, "kms_info", value),
                Benign::KmsField(key, value) => {
                    let kms = if structured {
                        let details = v["details"].as_array_mut().unwrap();
                        &mut details.iter_mut().find(|d| d["field"] == "kms_info").unwrap()["value"]
                    } else {
                        &mut v["kms_info"]
                    };
                    if kms.is_object() {
                        kms[key.as_str()] = value;
                    }
                }
                Benign::DeviceId(value) => set_phase1_field(&mut v, structured, "device_id", value),
                Benign::Envelope(key, value) => v[key] = value,
                Benign::Extra(key, value) => {
                    if key != "details" {
                        v[key.as_str()] = value;
                    }
                }
                Benign::ExtraDetail(value) => {
                    // A detail entry that is not a {field: compose_hash|app_id} pair.
                    let harmless =
                        !matches!(value.get("field").and_then(Value::as_str), Some("compose_hash" | "app_id"));
                    if structured && harmless {
                        v["details"].as_array_mut().unwrap().push(value);
                    }
                }
            }
        }
        let body = serde_json::to_vec(&v).unwrap();
        let e = classify(StatusCode::from_u16(465).unwrap(), HeaderMap::new(), Bytes::from(body.clone()), false)
            .unwrap_err();
        let data = e.phase1();
        prop_assert!(data.is_some(), "phase-1 data lost: {:?} from {}", e, String::from_utf8_lossy(&body));
        let data = data.unwrap();
        prop_assert_eq!(data.compose_hash, expected.compose_hash);
        prop_assert_eq!(data.app_id, expected.app_id);
        check_display(&e.to_string(), StatusCode::from_u16(465).unwrap())?;
        Ok(())
    });
}

/// Named cases the properties found or that are worth pinning.
#[test]
fn pinned_hostile_cases() {
    let s = |n| StatusCode::from_u16(n).unwrap();
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (465, br#"{"error_code":"ERR-01-005\nInjected: line","message":"m"}"#.to_vec()),
        (404, format!(r#"{{"error_code":"{}"}}"#, "E".repeat(100_000)).into_bytes()),
        (466, "{\"error_code\":\"A\u{2028}B\",\"message\":\"x\"}".as_bytes().to_vec()),
        (409, br#"{"detail":"\u001b[2J\u001b]0;owned\u0007 \u001b[31m\u0000"}"#.to_vec()),
        (500, b"[".repeat(100_000)),
        (465, br#"{"compose_hash":"\ud800","app_id":"00"}"#.to_vec()),
        (465, format!(r#"{{"compose_hash":"{}","app_id":"x"}}"#, "é".repeat(32)).into_bytes()),
        (465, br#"{"details":[{"field":"kms_info","value":{"chain_id":1e400}}]}"#.to_vec()),
        (100, b"".to_vec()),
        (599, vec![0xff, 0xfe, 0x00]),
    ];
    for (status, body) in cases {
        let body = Bytes::from(body);
        check_classify(s(status), &HeaderMap::new(), &body, false).unwrap_or_else(|e| panic!("{status}: {e}"));
        check_classify(s(status), &HeaderMap::new(), &body, true).unwrap_or_else(|e| panic!("{status}: {e}"));
    }
    // Retry-After at the edges.
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("18446744073709551615"));
    headers.insert("x-request-id", HeaderValue::from_bytes(b"r\xffid").unwrap());
    check_classify(s(409), &headers, &Bytes::new(), false).unwrap();
    let e = classify(s(409), headers, Bytes::new(), false).unwrap_err();
    assert_eq!(e.http().unwrap().retry_after(), Some(std::time::Duration::from_secs(u64::MAX)));
    assert_eq!(e.request_id(), None, "a request id that is not text is not shown");
}
