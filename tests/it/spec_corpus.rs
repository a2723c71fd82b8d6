//! Runs the client generator (`build/generate.rs`, included by path like `build/normalize.rs`) over
//! every FastAPI-written OpenAPI 3.1 document in `tests/fixtures/specs/`.
//!
//! Each document must generate Rust that parses, with every operation either generated or
//! skipped with a reason, and every multipart operation skipped. The documents come from
//! `scripts/fastapi-spec-corpus.py`; see `tests/fixtures/specs/README.md` for what each covers.

use crate::generate;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/specs");

/// The documents `scripts/fastapi-spec-corpus.py` writes (its `APPS`), without `.json`.
const EXPECTED: [&str; 6] = ["forms", "models", "params", "responses", "routers", "unions"];

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The corpus files, sorted by name.
fn corpus() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(SPECS)
        .unwrap_or_else(|e| panic!("reading {SPECS}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
            let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, doc)
        })
        .collect()
}

/// Every operation under `paths`, as (lowercase method, path).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// The operations whose request body is `multipart/form-data`.
fn multipart_operations(doc: &Value) -> Vec<(String, String)> {
    operations(doc)
        .into_iter()
        .filter(|(method, path)| {
            doc["paths"][path][method]["requestBody"]["content"]
                .as_object()
                .is_some_and(|content| content.keys().any(|mt| mt.starts_with("multipart/form-data")))
        })
        .collect()
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[test]
fn corpus_is_the_expected_documents() {
    let docs = corpus();
    assert!(!docs.is_empty(), "no documents in {SPECS}");
    let found: BTreeSet<String> = docs.iter().map(|(name, _)| name.clone()).collect();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|n| format!("{n}.json")).collect();
    assert_eq!(
        found, expected,
        "tests/fixtures/specs/ should hold exactly these documents (rerun scripts/fastapi-spec-corpus.py, \
         and list a new one in EXPECTED)"
    );
    for (name, doc) in &docs {
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1."), "{name}: openapi {version:?}, expected FastAPI's 3.1.x");
        assert!(!operations(doc).is_empty(), "{name}: no operations under paths");
    }
    // The corpus keeps the shapes the generator has to cope with.
    let forms = &docs.iter().find(|(n, _)| n == "forms.json").expect("forms.json").1;
    assert!(!multipart_operations(forms).is_empty(), "forms.json has no multipart operation");
}

#[test]
fn every_document_generates() {
    let docs = corpus();
    assert!(!docs.is_empty(), "no documents in {SPECS}");
    let mut failures: Vec<String> = Vec::new();
    let mut warned: Vec<String> = Vec::new();
    for (name, doc) in docs {
        let ops = operations(&doc);
        let multipart = multipart_operations(&doc);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate::generate(doc.clone(), &generate::Selection::All)
        }));
        let generated = match outcome {
            Ok(Ok(generated)) => generated,
            Ok(Err(e)) => {
                failures.push(format!("{name}: generate failed: {e}"));
                continue;
            }
            Err(payload) => {
                failures.push(format!("{name}: generate panicked: {}", panic_message(payload)));
                continue;
            }
        };

        let accounted = generated.operations.len() + generated.skipped.len();
        if accounted != ops.len() {
            failures.push(format!(
                "{name}: {} generated + {} skipped = {accounted}, but the document has {} operations",
                generated.operations.len(),
                generated.skipped.len(),
                ops.len()
            ));
        }
        for skip in &generated.skipped {
            if skip.reason.trim().is_empty() {
                failures.push(format!(
                    "{name}: {} {} ({}) skipped without a reason",
                    skip.method, skip.path, skip.operation_id
                ));
            }
            let in_doc = ops.iter().any(|(m, p)| skip.method.eq_ignore_ascii_case(m) && skip.path == *p);
            if !in_doc {
                failures
                    .push(format!("{name}: skipped {} {}, which the document does not have", skip.method, skip.path));
            }
        }
        for (method, path) in &multipart {
            let skipped = generated.skipped.iter().any(|s| s.method.eq_ignore_ascii_case(method) && s.path == *path);
            if !skipped {
                failures.push(format!(
                    "{name}: multipart operation {} {path} is not among the skips",
                    method.to_uppercase()
                ));
            }
        }
        if let Err(e) = syn::parse_file(&generated.code) {
            failures.push(format!("{name}: generated code does not parse as Rust: {e}"));
        }
        if !generated.warnings.is_empty() {
            warned.push(format!("{name}: {}", generated.warnings.join("; ")));
        }
    }
    if warned.is_empty() {
        failures.push(
            "no document produced a warning (routers.json has operationIds that collide once shortened)".to_owned(),
        );
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}
