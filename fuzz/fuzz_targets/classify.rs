//! `update_envs::classify` (and through it the envelope and 465 parsers) on any status,
//! headers and body. Run with `cargo +nightly fuzz run classify` from the crate root (see
//! `fuzz/README.md`).
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use phala_cloud::Phase1Data;
use phala_cloud::__internals::classify;

const LINE_BREAKS: [char; 7] = ['\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{2028}', '\u{2029}'];

#[derive(Arbitrary, Debug)]
struct Reply {
    status: u16,
    truncated: bool,
    request_id: Option<Vec<u8>>,
    retry_after: Option<Vec<u8>>,
    other: Option<(String, Vec<u8>)>,
    /// The rest of the input.
    body: Vec<u8>,
}

fuzz_target!(|reply: Reply| {
    let status = StatusCode::from_u16(100 + reply.status % 500).unwrap();
    let mut headers = HeaderMap::new();
    let value = |v: Option<Vec<u8>>| v.and_then(|v| HeaderValue::from_bytes(&v).ok());
    if let Some(v) = value(reply.request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = value(reply.retry_after) {
        headers.insert("retry-after", v);
    }
    if let Some((name, v)) = reply.other {
        if let (Ok(name), Some(v)) = (HeaderName::from_bytes(name.as_bytes()), value(Some(v))) {
            headers.append(name, v);
        }
    }
    let body = Bytes::from(reply.body);
    let _ = Phase1Data::parse(&body);
    match classify(status, headers.clone(), body.clone(), reply.truncated) {
        Ok(ok) => {
            assert!(status.is_success());
            assert_eq!(ok.http_status, status);
            assert_eq!(ok.raw_body, body);
            assert_eq!(ok.body_truncated, reply.truncated);
        }
        // A 2xx other than 202 that does not prove acceptance: status and raw body kept.
        Err(phala_cloud::SdkError::InvalidReply(invalid)) => {
            assert!(status.is_success() && status != StatusCode::ACCEPTED);
            assert_eq!(invalid.status(), status);
            assert_eq!(invalid.raw_body(), &body);
            assert_eq!(invalid.body_truncated(), reply.truncated);
        }
        Err(e) => {
            assert!(!status.is_success());
            assert_eq!(e.status(), Some(status));
            assert_eq!(e.raw_body(), Some(&body));
            let http = e.http().unwrap();
            assert_eq!(http.headers(), &headers);
            assert_eq!(http.body_truncated(), reply.truncated);
            // Only a gateway's 502/504 may have been applied.
            assert_eq!(e.may_have_been_applied(), matches!(status.as_u16(), 502 | 504));
            // The error statuses the spec lists for the operation.
            let known = [401, 403, 404, 409, 422, 465, 466, 467, 468, 500].contains(&status.as_u16());
            assert_eq!(e.is_unexpected_status(), !known);
            assert_eq!(e.is_registration_required(), status == 465);
            let _ = http.retry_after();
            let _ = e.request_id();
            let _ = e.validation_errors();
            let shown = e.to_string();
            assert!(!shown.is_empty() && !shown.contains(LINE_BREAKS), "{shown:?}");
            assert!(!shown.contains(char::is_control), "{shown:?}");
            assert!(shown.len() <= 1500, "{} bytes", shown.len());
            let _ = format!("{e:?}");
        }
    }
});
