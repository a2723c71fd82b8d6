//! A general OpenAPI 3.1 → 3.0.3 down-converter, run by `build.rs` before progenitor.
//!
//! progenitor (through `openapiv3`) reads OpenAPI 3.0 only, and panics on a few shapes that
//! are legal in either version. This module rewrites a 3.1 document into the 3.0.3 form that
//! progenitor accepts, and fails with the JSON pointer of anything it cannot express, so that
//! a spec update breaks the build with a message instead of a panic inside the generator.
//!
//! It is compiled twice: by `build.rs` (`#[path = "build/normalize.rs"] mod normalize;`) and by
//! `tests/it/normalizer.rs`, so the unit tests at the bottom run under `cargo test`.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Something in the document that cannot be converted, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError {
    /// RFC 6901 pointer into the input document.
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "openapi.json#{}: {}", self.pointer, self.message)
    }
}

impl std::error::Error for NormalizeError {}

type Result<T> = std::result::Result<T, NormalizeError>;

fn err<T>(pointer: &str, message: impl Into<String>) -> Result<T> {
    Err(NormalizeError { pointer: pointer.to_owned(), message: message.into() })
}

/// Escapes one reference token (RFC 6901 §3).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", escape_token(token))
}

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Converts `doc` (OpenAPI 3.0.x or 3.1.x) into OpenAPI 3.0.3 that progenitor accepts.
///
/// The same as [`normalize_with_warnings`], without the warnings.
pub fn normalize(doc: Value) -> Result<Value> {
    normalize_with_warnings(doc).map(|(doc, _)| doc)
}

/// Converts `doc` (OpenAPI 3.0.x or 3.1.x) into OpenAPI 3.0.3 that progenitor accepts, and
/// says, one line each, what it changed beyond a lossless rewrite: renamed operations, dropped
/// request or response bodies, dropped responses.
pub fn normalize_with_warnings(mut doc: Value) -> Result<(Value, Vec<String>)> {
    let mut warnings = assign_operation_ids(&mut doc)?;
    let root = doc.as_object_mut().ok_or_else(|| NormalizeError {
        pointer: String::new(),
        message: "the document is not a JSON object".into(),
    })?;
    let version = root.get("openapi").and_then(Value::as_str).unwrap_or_default();
    if !(version.starts_with("3.1.") || version.starts_with("3.0.")) {
        return err("/openapi", format!("unsupported OpenAPI version {version:?} (expected 3.0.x or 3.1.x)"));
    }
    root.insert("openapi".into(), json!("3.0.3"));
    // 3.1-only top-level and info fields that 3.0 does not have.
    root.remove("webhooks");
    root.remove("jsonSchemaDialect");
    if let Some(info) = root.get_mut("info").and_then(Value::as_object_mut) {
        info.remove("summary");
        if let Some(license) = info.get_mut("license").and_then(Value::as_object_mut) {
            license.remove("identifier");
        }
    }
    root.entry("paths").or_insert_with(|| json!({}));
    if let Some(components) = root.get_mut("components").and_then(Value::as_object_mut) {
        components.remove("pathItems");
        if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
            for (name, schema) in schemas.iter_mut() {
                convert_schema(schema, &child("/components/schemas", name))?;
            }
        }
        for kind in ["parameters", "headers"] {
            if let Some(items) = components.get_mut(kind).and_then(Value::as_object_mut) {
                for (name, item) in items.iter_mut() {
                    convert_parameter_like(item, &child(&child("/components", kind), name))?;
                }
            }
        }
        if let Some(items) = components.get_mut("requestBodies").and_then(Value::as_object_mut) {
            for (name, item) in items.iter_mut() {
                convert_content_holder(item, &child("/components/requestBodies", name))?;
            }
        }
        if let Some(items) = components.get_mut("responses").and_then(Value::as_object_mut) {
            for (name, item) in items.iter_mut() {
                convert_response(item, &child("/components/responses", name))?;
            }
        }
    }

    // Shared responses, converted above, for resolving `$ref` responses.
    let shared_responses =
        root.get("components").and_then(|c| c.get("responses")).and_then(Value::as_object).cloned().unwrap_or_default();
    let paths = root.get_mut("paths").and_then(Value::as_object_mut);
    for (path, item) in paths.into_iter().flatten() {
        let item_ptr = child("/paths", path);
        let Some(item) = item.as_object_mut() else {
            return err(&item_ptr, "a path item must be an object");
        };
        if let Some(params) = item.get_mut("parameters").and_then(Value::as_array_mut) {
            for (i, p) in params.iter_mut().enumerate() {
                convert_parameter_like(p, &format!("{item_ptr}/parameters/{i}"))?;
            }
        }
        for method in HTTP_METHODS {
            let Some(op) = item.get_mut(method) else { continue };
            let op_ptr = child(&item_ptr, method);
            convert_operation(op, &op_ptr, path, method, &shared_responses, &mut warnings)?;
        }
    }
    warnings.extend(drop_colliding_titles(&mut doc));
    Ok((doc, warnings))
}

/// Keywords that make typify give an inline schema a Rust type of its own, named after the
/// schema's `title` when it has one.
const NAMED_TYPE_KEYS: [&str; 11] = [
    "properties",
    "enum",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "pattern",
    "minLength",
    "maxLength",
    "items",
    "additionalProperties",
];

/// Drops the `title` of inline schemas whose titles would give two different Rust types one
/// name. typify names an inline type after its title and, meeting a second type of a name it
/// has seen, silently reuses the first (or fails checking a `default` against it); two inline
/// `object_type` schemas titled "Object Type" with different `const`s are the case in point.
/// Titles are compared as typify spells them (case and punctuation ignored), against each other
/// and against the component schemas' names. A schema that loses its title is named after
/// where it is (`{Parent}{Property}`). Returns one warning listing the titles, if any.
fn drop_colliding_titles(doc: &mut Value) -> Option<String> {
    fn key(name: &str) -> String {
        name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
    }
    fn collect(value: &Value, ptr: &str, inline: bool, out: &mut BTreeMap<String, Vec<(String, Value)>>) {
        match value {
            Value::Object(obj) => {
                if inline
                    && let Some(title) = obj.get("title").and_then(Value::as_str)
                    && NAMED_TYPE_KEYS.iter().any(|k| obj.contains_key(*k))
                {
                    out.entry(key(title)).or_default().push((ptr.to_owned(), value.clone()));
                }
                for (k, v) in obj {
                    // Values, not schemas.
                    if !matches!(k.as_str(), "example" | "examples" | "default" | "enum") {
                        collect(v, &child(ptr, k), true, out);
                    }
                }
            }
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    collect(v, &format!("{ptr}/{i}"), true, out);
                }
            }
            _ => {}
        }
    }
    let mut by_title: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut component_names = std::collections::BTreeSet::new();
    if let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) {
        for (name, schema) in schemas {
            component_names.insert(key(name));
            // The component itself is named after its key; only what is inside is inline.
            collect(schema, &child("/components/schemas", name), false, &mut by_title);
        }
    }
    for section in ["/paths", "/components/responses", "/components/requestBodies", "/components/parameters"] {
        if let Some(value) = doc.pointer(section) {
            collect(value, section, true, &mut by_title);
        }
    }
    let mut dropped: Vec<String> = Vec::new();
    for (title_key, uses) in by_title {
        let distinct = uses.iter().skip(1).any(|(_, v)| *v != uses[0].1);
        if !distinct && !component_names.contains(&title_key) {
            continue;
        }
        let mut title = String::new();
        for (ptr, _) in &uses {
            if let Some(removed) = doc.pointer_mut(ptr).and_then(Value::as_object_mut).and_then(|o| o.remove("title")) {
                title = removed.as_str().unwrap_or_default().to_owned();
            }
        }
        dropped.push(format!("{title:?} ({})", uses.len()));
    }
    (!dropped.is_empty()).then(|| {
        format!(
            "dropped the title of inline schemas whose Rust type names would collide (named after their place instead): {}",
            dropped.join(", ")
        )
    })
}

/// Sets every operation's `operationId` to its shortened form ([`shorten_operation_id`]), and
/// returns a warning for each group of operations that shortening made share one name.
///
/// Each operation of such a group gets a suffix of its path's literal segments (after
/// `/api/v1/`, if the path starts so), e.g. `handle_replicate_cvm_cvms_replicas` and
/// `handle_replicate_cvm_apps_cvms_replicas`: the names depend on the paths only, not on the
/// document's order. Running it again changes nothing. Fails, with the pointer, on an operation
/// without `operationId`, or when even the suffixed names collide.
pub fn assign_operation_ids(doc: &mut Value) -> Result<Vec<String>> {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return Ok(Vec::new());
    };
    // Shortened name → (method, path) of each operation that shortens to it.
    let mut by_name: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (path, item) in paths.iter() {
        for method in HTTP_METHODS {
            let Some(op) = item.get(method) else { continue };
            let op_ptr = child(&child("/paths", path), method);
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                return err(&op_ptr, "operation has no operationId (progenitor names methods after it)");
            };
            let short = shorten_operation_id(id, path, method).unwrap_or_else(|| id.to_owned());
            by_name.entry(short).or_default().push((method.to_owned(), path.clone()));
        }
    }
    let mut warnings = Vec::new();
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    for (short, ops) in &by_name {
        if let [(method, path)] = ops.as_slice() {
            names.insert((method.clone(), path.clone()), short.clone());
            continue;
        }
        let mut renamed = Vec::with_capacity(ops.len());
        for (method, path) in ops {
            let name = format!("{short}_{}", path_suffix(path));
            renamed.push(format!("{} {path} as {name}", method.to_uppercase()));
            names.insert((method.clone(), path.clone()), name);
        }
        warnings.push(format!(
            "operationId {short} is shared by {} operations once shortened; generated {}",
            ops.len(),
            renamed.join(" and ")
        ));
    }
    let mut taken: BTreeMap<&String, &(String, String)> = BTreeMap::new();
    for (key, name) in &names {
        if let Some((method, path)) = taken.insert(name, key) {
            return err(
                &format!("{}/operationId", child(&child("/paths", &key.1), &key.0)),
                format!(
                    "operationId {name:?} is also the name of {} {path} once shortened and disambiguated",
                    method.to_uppercase()
                ),
            );
        }
    }
    for ((method, path), name) in names {
        if let Some(op) = paths.get_mut(&path).and_then(|item| item.get_mut(&method)).and_then(Value::as_object_mut) {
            op.insert("operationId".into(), json!(name));
        }
    }
    Ok(warnings)
}

/// The literal segments of `path` after `/api/v1/` (or all of them), joined by `_`, with every
/// character that cannot be in a Rust identifier replaced by `_`.
fn path_suffix(path: &str) -> String {
    let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
    let literal: Vec<String> = rest
        .split('/')
        .filter(|seg| !seg.is_empty() && !seg.starts_with('{'))
        .map(|seg| seg.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect())
        .collect();
    literal.join("_")
}

/// FastAPI's default operationId is `{function}{path}` with every non-word character replaced
/// by `_`, then `_{method}`. Returns the function name when `id` has that form.
pub fn shorten_operation_id(id: &str, path: &str, method: &str) -> Option<String> {
    let mangled: String = path.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let suffix = format!("{mangled}_{method}");
    id.strip_suffix(&suffix).filter(|name| !name.is_empty()).map(str::to_owned)
}

fn convert_operation(
    op: &mut Value,
    ptr: &str,
    path: &str,
    method: &str,
    shared: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let Some(op) = op.as_object_mut() else {
        return err(ptr, "an operation must be an object");
    };
    // `assign_operation_ids` has set every operationId.
    let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let what = format!("{} {path} ({id})", method.to_uppercase());

    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for (i, p) in params.iter_mut().enumerate() {
            convert_parameter_like(p, &format!("{ptr}/parameters/{i}"))?;
        }
        // progenitor cannot send cookies; an optional one is left for the caller to set (an
        // operation with a required one is not generated at all, see build/generate.rs).
        params.retain(|p| {
            let cookie = p.get("in").and_then(Value::as_str) == Some("cookie");
            if cookie {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
                warnings.push(format!(
                    "{what}: dropped optional cookie parameter {name:?} (progenitor cannot send cookies)"
                ));
            }
            !cookie
        });
    }
    if matches!(method, "get" | "head") && op.remove("requestBody").is_some() {
        // RFC 9110 gives a GET or HEAD body no meaning; progenitor would send it.
        warnings.push(format!("{what}: dropped its request body (a {method} request carries none)"));
    }
    if let Some(body) = op.get_mut("requestBody") {
        let body_ptr = format!("{ptr}/requestBody");
        convert_content_holder(body, &body_ptr)?;
        if let Some(content) = body.get("content").and_then(Value::as_object)
            && content.len() > 1
        {
            return err(&format!("{body_ptr}/content"), "more than one request media type (progenitor takes one)");
        }
    }
    op.remove("callbacks");
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        if method == "head" {
            // A HEAD reply has no body (RFC 9110 §9.3.2); parsing one would fail on every call.
            for (status, response) in responses.iter_mut() {
                if let Some(r) = response.as_object_mut()
                    && r.remove("content").is_some()
                {
                    warnings.push(format!("{what}: dropped the body of response {status} (a HEAD reply carries none)"));
                }
            }
        }
        convert_responses(responses, &format!("{ptr}/responses"), shared, &what, warnings)?;
    }
    Ok(())
}

/// Converts each response, drops error responses without a JSON body, and checks that the
/// success responses share one body type and the error responses another (progenitor asserts
/// both and panics otherwise).
///
/// Two shapes are made to fit, each with a warning:
/// - a response that offers JSON with the empty schema beside other media types (FastAPI adds
///   that JSON to every response) loses the JSON: progenitor would pick JSON and then fail to
///   parse the file the server sends; the body is raw bytes instead.
/// - success responses where exactly one body type is declared and the others have no body:
///   the body-less ones are dropped, so the typed body stays typed and a reply with a dropped
///   status reaches the caller as progenitor's unexpected response (status, headers and body
///   intact) rather than as a parse error.
fn convert_responses(
    responses: &mut Map<String, Value>,
    ptr: &str,
    shared: &Map<String, Value>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for (status, response) in responses.iter_mut() {
        convert_response(response, &child(ptr, status))?;
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
            && content.len() > 1
            && content.keys().any(|mt| !is_json_media_type(mt))
        {
            let untyped: Vec<String> = content
                .iter()
                .filter(|(mt, media)| {
                    is_json_media_type(mt)
                        && media.get("schema").is_none_or(|s| s.as_object().is_some_and(Map::is_empty))
                })
                .map(|(mt, _)| mt.clone())
                .collect();
            for mt in untyped {
                content.remove(&mt);
                warnings.push(format!(
                    "{what}: response {status} offers {mt} without a schema beside other media types; dropped it, the body is raw bytes"
                ));
            }
        }
    }
    responses
        .retain(|status, response| !is_error_status(status) || response_kind(response, shared).starts_with("json:"));

    // progenitor counts `default` as a success and as an error: beside explicit 2xx replies it
    // would be a second success type. Dropped there; such a reply is returned whole.
    if responses.contains_key("default") && responses.keys().any(|s| s.starts_with('2')) {
        responses.remove("default");
        warnings.push(format!(
            "{what}: dropped response `default` beside explicit 2xx responses (progenitor would take it for a success)"
        ));
    }
    // Success bodies of different JSON types: all typed as untyped JSON (progenitor takes one
    // type); error bodies of different types: all dropped, so each error reply is returned
    // whole (status, headers, raw body) as an unexpected response.
    let json_kinds = |responses: &Map<String, Value>, success: bool| -> BTreeSet<String> {
        responses
            .iter()
            .filter(|(s, _)| is_error_status(s) != success)
            .map(|(_, r)| response_kind(r, shared))
            .filter(|k| k.starts_with("json:"))
            .collect()
    };
    if json_kinds(responses, true).len() > 1 {
        let statuses: Vec<String> = responses.keys().filter(|s| !is_error_status(s)).cloned().collect();
        for status in &statuses {
            if let Some(media) = responses
                .get_mut(status)
                .and_then(|r| r.get_mut("content"))
                .and_then(Value::as_object_mut)
                .and_then(|c| c.iter_mut().find(|(mt, _)| is_json_media_type(mt)).map(|(_, m)| m))
                .and_then(Value::as_object_mut)
            {
                media.insert("schema".into(), json!({}));
            }
        }
        warnings.push(format!(
            "{what}: success responses {} have different JSON body types; all typed as untyped JSON (serde_json::Value)",
            statuses.join(", ")
        ));
    }
    if json_kinds(responses, false).len() > 1 {
        let statuses: Vec<String> = responses.keys().filter(|s| is_error_status(s)).cloned().collect();
        responses.retain(|s, _| !is_error_status(s));
        warnings.push(format!(
            "{what}: error responses {} have different body types; left untyped (each error reply is kept whole)",
            statuses.join(", ")
        ));
    }

    let success: Vec<(String, String)> = responses
        .iter()
        .filter(|(s, _)| !is_error_status(s))
        .map(|(s, r)| (s.clone(), response_kind(r, shared)))
        .collect();
    let with_body: Vec<&(String, String)> = success.iter().filter(|(_, kind)| kind != "none").collect();
    let bodiless: Vec<&String> = success.iter().filter(|(_, kind)| kind == "none").map(|(s, _)| s).collect();
    if let Some((typed_status, typed_kind)) = with_body.first()
        && !bodiless.is_empty()
        && with_body.iter().all(|(_, kind)| kind == typed_kind)
    {
        for status in &bodiless {
            responses.remove(*status);
            warnings.push(format!(
                "{what}: dropped body-less success response {status} beside {typed_status}'s body (a {status} reply is returned as an unexpected response)"
            ));
        }
    }

    for success in [true, false] {
        let mut first: Option<(&String, String)> = None;
        for (status, response) in responses.iter().filter(|(s, _)| is_error_status(s) != success) {
            let kind = response_kind(response, shared);
            match &first {
                None => first = Some((status, kind)),
                Some((first_status, first_kind)) if *first_kind != kind => {
                    let what = if success { "success" } else { "error" };
                    return err(
                        &child(ptr, status),
                        format!(
                            "{what} responses {first_status} and {status} have different body types (progenitor needs one)"
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn is_error_status(status: &str) -> bool {
    status == "default" || status.starts_with('4') || status.starts_with('5')
}

/// How progenitor classifies a response body: the JSON schema (compared by value), "raw" for
/// other media types, "none" without content. `$ref` responses are looked up in `shared`
/// (`components/responses`).
fn response_kind(response: &Value, shared: &Map<String, Value>) -> String {
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        let target = r.strip_prefix("#/components/responses/").and_then(|name| shared.get(name));
        return match target {
            Some(resolved) if resolved.get("$ref").is_none() => response_kind(resolved, shared),
            _ => format!("ref:{r}"),
        };
    }
    let Some(content) = response.get("content").and_then(Value::as_object).filter(|c| !c.is_empty()) else {
        return "none".into();
    };
    match content.iter().find(|(mt, _)| is_json_media_type(mt)) {
        Some((_, media)) => format!("json:{}", media.get("schema").unwrap_or(&Value::Null)),
        None => "raw".into(),
    }
}

fn is_json_media_type(mt: &str) -> bool {
    mt == "application/json" || mt.starts_with("application/json;")
}

fn convert_response(response: &mut Value, ptr: &str) -> Result<()> {
    convert_content_holder(response, ptr)?;
    if let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) {
        for (name, h) in headers.iter_mut() {
            convert_parameter_like(h, &child(&format!("{ptr}/headers"), name))?;
        }
    }
    Ok(())
}

/// A request body or response: converts each media type's schema and gives a JSON media type
/// without a schema the empty schema (progenitor hits a `todo!` otherwise).
fn convert_content_holder(holder: &mut Value, ptr: &str) -> Result<()> {
    let Some(content) = holder.get_mut("content").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for (mt, media) in content.iter_mut() {
        let media_ptr = child(&format!("{ptr}/content"), mt);
        let Some(media) = media.as_object_mut() else {
            return err(&media_ptr, "a media type must be an object");
        };
        if media.get("encoding").and_then(Value::as_object).is_some_and(|e| !e.is_empty()) {
            return err(&format!("{media_ptr}/encoding"), "media type encoding is not supported by progenitor");
        }
        media.remove("encoding");
        match media.get_mut("schema") {
            Some(schema) => convert_schema(schema, &format!("{media_ptr}/schema"))?,
            None if is_json_media_type(mt) => {
                media.insert("schema".into(), json!({}));
            }
            None => {}
        }
    }
    Ok(())
}

/// A parameter or header object: its schema, if any.
///
/// An optional parameter's schema loses `nullable`: leaving the parameter out already says
/// "none", and progenitor emits code that does not compile for an optional header whose
/// schema is nullable (`Option<Option<_>>` handled as one `Option`).
fn convert_parameter_like(item: &mut Value, ptr: &str) -> Result<()> {
    let optional_parameter = item.get("in").is_some() && item.get("required").and_then(Value::as_bool) != Some(true);
    if let Some(schema) = item.get_mut("schema") {
        convert_schema(schema, &format!("{ptr}/schema"))?;
        if optional_parameter
            && let Some(obj) = schema.as_object_mut()
            && obj.get("enum") != Some(&json!([null]))
        {
            obj.remove("nullable");
        }
    }
    convert_content_holder(item, ptr)
}

/// Keywords of JSON Schema 2020-12 that OpenAPI 3.0 cannot express.
const UNSUPPORTED: [&str; 10] = [
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "patternProperties",
    "contains",
];

/// Annotations that describe a schema without constraining it.
const ANNOTATIONS: [&str; 4] = ["title", "description", "example", "deprecated"];

/// Annotations 3.0 does not know and that change nothing about the data.
const DROPPED: [&str; 6] = ["$schema", "$id", "$comment", "$anchor", "$defs", "contentSchema"];

/// `{"type": "null"}`, as written or as [`convert_schema`] leaves it (`nullable` + `enum: [null]`),
/// with at most annotations beside it.
/// Two of the schemas declare one type other than `object` (`items` alone says `array`).
fn shares_a_non_object_type(schemas: &[Value]) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    for schema in schemas {
        let declared = schema.get("type").and_then(Value::as_str);
        let Some(kind) = declared.or_else(|| schema.get("items").map(|_| "array")) else { continue };
        if kind != "object" {
            if seen.contains(&kind) {
                return true;
            }
            seen.push(kind);
        }
    }
    false
}

fn is_null_schema(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else { return false };
    let written = obj.get("type").and_then(Value::as_str) == Some("null");
    let converted = obj.get("nullable") == Some(&json!(true)) && obj.get("enum") == Some(&json!([null]));
    (written || converted)
        && obj.keys().all(|k| matches!(k.as_str(), "type" | "nullable" | "enum" | "title" | "description"))
}

/// The single `enum` schema equal to the union of `members` when each is an `enum` (with an
/// optional `type`, the same for all, and annotations only) and there are at least two.
fn merge_enums(members: &[Value]) -> Option<Value> {
    if members.len() < 2 {
        return None;
    }
    let mut values: Vec<Value> = Vec::new();
    let mut typ: Option<&Value> = None;
    for member in members {
        let obj = member.as_object()?;
        if !obj.keys().all(|k| k == "type" || k == "enum" || ANNOTATIONS.contains(&k.as_str())) {
            return None;
        }
        if let Some(t) = obj.get("type") {
            if typ.is_some_and(|seen| seen != t) {
                return None;
            }
            typ = Some(t);
        }
        for v in obj.get("enum")?.as_array()? {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
    }
    let mut merged = Map::new();
    if let Some(t) = typ {
        merged.insert("type".into(), t.clone());
    }
    merged.insert("enum".into(), Value::Array(values));
    Some(Value::Object(merged))
}

/// When `members` are one bare `{"type": T}` (annotations aside) and enums of type `T`, the
/// free member already admits every enum value, so the union is the free member; returns it with
/// the enum values (rendered as JSON), which the caller keeps in the description. typify would
/// otherwise make an untagged enum where a value matches two variants, and reject a `default`.
fn absorb_enums(members: &[Value]) -> Option<(Value, Vec<String>)> {
    let is_bare = |m: &Value| {
        m.as_object().is_some_and(|o| {
            o.get("type").is_some_and(Value::is_string)
                && o.keys().all(|k| k == "type" || ANNOTATIONS.contains(&k.as_str()))
        })
    };
    let free = members.iter().find(|m| is_bare(m))?;
    let typ = free.get("type")?;
    let mut values = Vec::new();
    for member in members.iter().filter(|m| *m != free) {
        let obj = member.as_object()?;
        if obj.get("type") != Some(typ)
            || !obj.keys().all(|k| k == "type" || k == "enum" || ANNOTATIONS.contains(&k.as_str()))
        {
            return None;
        }
        values.extend(obj.get("enum")?.as_array()?.iter().map(Value::to_string));
    }
    (members.len() > 1).then(|| (free.clone(), values))
}

/// Converts one schema in place (recursively).
pub fn convert_schema(schema: &mut Value, ptr: &str) -> Result<()> {
    // 2020-12 boolean schemas.
    match schema {
        Value::Bool(true) => {
            *schema = json!({});
            return Ok(());
        }
        Value::Bool(false) => {
            *schema = json!({"not": {}});
            return Ok(());
        }
        Value::Object(_) => {}
        _ => return err(ptr, "a schema must be an object or a boolean"),
    }
    let obj = schema.as_object_mut().expect("checked above");

    for key in UNSUPPORTED {
        if obj.contains_key(key) {
            return err(&child(ptr, key), format!("`{key}` cannot be expressed in OpenAPI 3.0"));
        }
    }
    for key in DROPPED {
        obj.remove(key);
    }
    // `propertyNames` constrains a map's keys; 3.0 map keys are plain strings, so the
    // constraint is lost (the generated map accepts any key).
    obj.remove("propertyNames");
    // `prefixItems` (a tuple) has no 3.0 form: it becomes an array of the union of the tuple's
    // members and of what may follow them (`items`, or anything when `items` is absent and
    // `maxItems` does not stop at the tuple's length), with the tuple's length as `minItems`
    // unless one is set, and as `maxItems` when `items: false` forbids more. What is lost: the
    // type of each position (`[int, string]` accepts `["a", 1]`).
    if let Some(prefix) = obj.remove("prefixItems") {
        let Value::Array(mut members) = prefix else {
            return err(&child(ptr, "prefixItems"), "`prefixItems` must be an array");
        };
        let length = members.len();
        let bounded = obj.get("maxItems").and_then(Value::as_u64).is_some_and(|max| max <= length as u64);
        let closed = match obj.remove("items") {
            Some(Value::Bool(false)) => true,
            Some(rest) if !bounded => {
                members.push(rest);
                false
            }
            Some(_) => false,
            None if !bounded => {
                members.push(json!({}));
                false
            }
            None => false,
        };
        let mut union: Vec<Value> = Vec::with_capacity(members.len());
        for member in members {
            if !union.contains(&member) {
                union.push(member);
            }
        }
        let items = match union.len() {
            0 => json!({}),
            1 => union.pop().unwrap_or_default(),
            _ if union.iter().any(|m| m == &json!({}) || m == &json!(true)) => json!({}),
            _ => json!({ "anyOf": union }),
        };
        obj.insert("items".into(), items);
        obj.entry("type").or_insert_with(|| json!("array"));
        obj.entry("minItems").or_insert_with(|| json!(length));
        if closed {
            obj.entry("maxItems").or_insert_with(|| json!(length));
        }
    }

    // Recurse first, so that the rewrites below see converted subschemas.
    for key in ["properties"] {
        if let Some(props) = obj.get_mut(key).and_then(Value::as_object_mut) {
            for (name, sub) in props.iter_mut() {
                convert_schema(sub, &child(&child(ptr, key), name))?;
            }
        }
    }
    for key in ["items", "not"] {
        if let Some(sub) = obj.get_mut(key) {
            if sub.is_array() {
                return err(&child(ptr, key), "tuple-form `items` cannot be expressed in OpenAPI 3.0");
            }
            convert_schema(sub, &child(ptr, key))?;
        }
    }
    if let Some(sub) = obj.get_mut("additionalProperties").filter(|s| s.is_object()) {
        convert_schema(sub, &child(ptr, "additionalProperties"))?;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = obj.get_mut(key) {
            let Some(list) = list.as_array_mut() else {
                return err(&child(ptr, key), format!("`{key}` must be an array"));
            };
            for (i, sub) in list.iter_mut().enumerate() {
                convert_schema(sub, &format!("{}/{i}", child(ptr, key)))?;
            }
            // A member listed twice adds nothing; typify would make two equal variants.
            let mut unique: Vec<Value> = Vec::with_capacity(list.len());
            for sub in list.drain(..) {
                if !unique.contains(&sub) {
                    unique.push(sub);
                }
            }
            *list = unique;
        }
    }

    // `type: [..]` → one type, `nullable`, or an `anyOf` of single types.
    if let Some(Value::Array(types)) = obj.get("type").cloned() {
        let mut names = Vec::with_capacity(types.len());
        for t in &types {
            match t.as_str() {
                Some(name) => names.push(name.to_owned()),
                None => return err(&child(ptr, "type"), "`type` array members must be strings"),
            }
        }
        let nullable = names.iter().any(|n| n == "null");
        names.retain(|n| n != "null");
        obj.remove("type");
        match names.as_slice() {
            // `["null"]`: only null.
            [] if nullable => {
                obj.insert("enum".into(), json!([null]));
            }
            [] => {}
            [one] => {
                obj.insert("type".into(), json!(one));
            }
            _ if obj.contains_key("anyOf") => {
                return err(&child(ptr, "type"), "a `type` array beside `anyOf` cannot be expressed in OpenAPI 3.0");
            }
            many => {
                let alternatives: Vec<Value> = many.iter().map(|t| json!({ "type": t })).collect();
                obj.insert("anyOf".into(), Value::Array(alternatives));
            }
        }
        if nullable {
            obj.insert("nullable".into(), json!(true));
        }
    }
    if obj.get("type").and_then(Value::as_str) == Some("null") {
        // A schema that only admits null.
        obj.remove("type");
        obj.insert("nullable".into(), json!(true));
        obj.insert("enum".into(), json!([null]));
    }

    // `anyOf`/`oneOf` of enums of one type (`const`s, as converted above) → one `enum`: the same
    // values, and one Rust enum instead of an untagged union of one-variant enums.
    for key in ["anyOf", "oneOf"] {
        let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) else { continue };
        let (nulls, members): (Vec<Value>, Vec<Value>) = list.drain(..).partition(is_null_schema);
        let mut known_values = None;
        let members = if let Some(one) = merge_enums(&members) {
            vec![one]
        } else if let Some((free, values)) = absorb_enums(&members) {
            known_values = Some(values);
            vec![free]
        } else {
            members
        };
        let no_nulls = nulls.is_empty();
        *list = members;
        list.extend(nulls);
        if let Some(values) = known_values {
            let note = format!("Known values: {}.", values.join(", "));
            let description = match obj.get("description").and_then(Value::as_str) {
                Some(d) => format!("{d}\n\n{note}"),
                None => note,
            };
            obj.insert("description".into(), json!(description));
        }
        // One member left and no null: the union is that member.
        if no_nulls
            && let Some(Value::Array(list)) = obj.get(key)
            && let [Value::Object(only)] = list.as_slice()
            && only.get("$ref").is_none()
            && only.keys().all(|k| !obj.contains_key(k) || ANNOTATIONS.contains(&k.as_str()))
        {
            let only = only.clone();
            obj.remove(key);
            for (k, v) in only {
                obj.entry(k).or_insert(v);
            }
        }
    }

    // `anyOf`/`oneOf` with a null member → `nullable`.
    for key in ["anyOf", "oneOf"] {
        let Some(list) = obj.get(key).and_then(Value::as_array) else { continue };
        if !list.iter().any(is_null_schema) {
            continue;
        }
        let mut rest: Vec<Value> = list.iter().filter(|s| !is_null_schema(s)).cloned().collect();
        obj.remove(key);
        obj.insert("nullable".into(), json!(true));
        match rest.len() {
            0 => {
                obj.insert("enum".into(), json!([null]));
            }
            1 => {
                let only = rest.pop().expect("one member");
                if only.get("$ref").is_some() {
                    // 3.0 ignores siblings of `$ref`, so the reference goes under `allOf`.
                    let all_of = obj.entry("allOf").or_insert_with(|| json!([]));
                    match all_of.as_array_mut() {
                        Some(list) => list.insert(0, only),
                        None => return err(&child(ptr, "allOf"), "`allOf` must be an array"),
                    }
                } else if let Value::Object(members) = only {
                    for (k, v) in members {
                        if k != "nullable" && obj.contains_key(&k) && obj[&k] != v {
                            if ANNOTATIONS.contains(&k.as_str()) {
                                // The outer annotation describes the (nullable) whole; keep it.
                                continue;
                            }
                            return err(&child(ptr, key), format!("`{k}` is set both beside and inside `{key}`"));
                        }
                        obj.insert(k, v);
                    }
                }
            }
            _ => {
                obj.insert(key.into(), Value::Array(rest));
            }
        }
    }

    // An `anyOf` with two members of one type other than `object` → `oneOf`. typify makes an
    // `anyOf` whose members may overlap a struct of `#[serde(flatten)]` options, one per member,
    // which only a JSON object can fill: the `anyOf` of two array types that `GET /api/v1/cvms`
    // answers would parse nothing. As a `oneOf` it is an untagged enum, whose first member that
    // parses wins, which is what `anyOf` means to a reader. (Members of different types typify
    // finds exclusive and makes that enum itself; objects may well overlap, and merge.)
    if !obj.contains_key("oneOf")
        && obj.get("anyOf").and_then(Value::as_array).is_some_and(|list| shares_a_non_object_type(list))
        && let Some(list) = obj.remove("anyOf")
    {
        obj.insert("oneOf".into(), list);
    }

    // `const` → one-value `enum`.
    if let Some(value) = obj.remove("const") {
        if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
            && !allowed.contains(&value)
        {
            return err(&child(ptr, "const"), "`const` is not among the schema's `enum` values: nothing validates");
        }
        obj.insert("enum".into(), json!([value]));
    }
    // `examples` (an array in JSON Schema) → `example`.
    if let Some(examples) = obj.remove("examples")
        && let Some(first) = examples.as_array().and_then(|a| a.first())
    {
        obj.entry("example").or_insert_with(|| first.clone());
    }
    // Numeric exclusive bounds → boolean form.
    for (excl, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        let Some(limit) = obj.get(excl).filter(|v| v.is_number()).cloned() else { continue };
        let lower = excl == "exclusiveMinimum";
        let keep_inclusive = obj.get(bound).and_then(Value::as_f64).is_some_and(|b| {
            let l = limit.as_f64().unwrap_or(f64::NAN);
            if lower { b > l } else { b < l }
        });
        if keep_inclusive {
            obj.remove(excl);
        } else {
            obj.insert(bound.into(), limit);
            obj.insert(excl.into(), json!(true));
        }
    }
    // Binary strings.
    if let Some(media) = obj.remove("contentMediaType")
        && obj.get("type").and_then(Value::as_str) == Some("string")
        && media.as_str().is_some_and(|m| !m.starts_with("text/") && !is_json_media_type(m))
        && !obj.contains_key("contentEncoding")
    {
        obj.entry("format").or_insert_with(|| json!("binary"));
    }
    if let Some(encoding) = obj.remove("contentEncoding")
        && encoding.as_str() == Some("base64")
    {
        obj.entry("format").or_insert_with(|| json!("byte"));
    }
    // A `default` beside a union: typify checks the default against the Rust type it makes of
    // the union and rejects what it cannot match ("value does not conform to the given
    // schema"), e.g. `"listed"` beside `anyOf [enum [listed, all], string]`. The default is
    // dropped (the field is then an `Option` rather than defaulted).
    if ["anyOf", "oneOf"].iter().any(|k| obj.get(*k).and_then(Value::as_array).is_some_and(|l| l.len() > 1)) {
        obj.remove("default");
    }
    // A `$ref` with siblings: 3.0 ignores the siblings, so move the reference into `allOf`.
    if obj.contains_key("$ref") && obj.len() > 1 {
        let reference = obj.remove("$ref").expect("present");
        let mut all_of = obj.remove("allOf").and_then(|v| v.as_array().cloned()).unwrap_or_default();
        all_of.insert(0, json!({ "$ref": reference }));
        obj.insert("allOf".into(), Value::Array(all_of));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(input: Value) -> Value {
        let mut s = input;
        convert_schema(&mut s, "/s").unwrap();
        s
    }

    fn doc_with_responses(responses: Value) -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "summary": "s", "license": {"name": "MIT", "identifier": "MIT"}},
            "paths": {"/a/{id}": {"get": {"operationId": "get_a_a__id__get", "responses": responses}}}
        })
    }

    #[test]
    fn version_and_info() {
        let out = normalize(doc_with_responses(json!({"200": {"description": "ok"}}))).unwrap();
        assert_eq!(out["openapi"], "3.0.3");
        assert!(out["info"].get("summary").is_none());
        assert!(out["info"]["license"].get("identifier").is_none());
        assert_eq!(out["paths"]["/a/{id}"]["get"]["operationId"], "get_a");
    }

    #[test]
    fn rejects_other_versions() {
        let e = normalize(json!({"openapi": "2.0"})).unwrap_err();
        assert_eq!(e.pointer, "/openapi");
        assert!(normalize(json!([])).is_err());
    }

    #[test]
    fn webhooks_and_missing_paths() {
        let out =
            normalize(json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "webhooks": {}})).unwrap();
        assert!(out.get("webhooks").is_none());
        assert_eq!(out["paths"], json!({}));
    }

    #[test]
    fn any_of_null_with_ref_wraps_in_all_of() {
        let out = schema(json!({"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}], "description": "d"}));
        assert_eq!(out, json!({"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": true, "description": "d"}));
        let out = schema(json!({"anyOf": [{"$ref": "#/X"}, {"type": "null"}], "allOf": [{"required": ["a"]}]}));
        assert_eq!(out, json!({"allOf": [{"$ref": "#/X"}, {"required": ["a"]}], "nullable": true}));
    }

    #[test]
    fn one_of_null_with_inline_schema_merges() {
        let out = schema(json!({"oneOf": [{"type": "integer", "format": "int64"}, {"type": "null"}], "title": "T"}));
        assert_eq!(out, json!({"type": "integer", "format": "int64", "nullable": true, "title": "T"}));
    }

    #[test]
    fn any_of_null_with_several_members_stays_any_of() {
        let out = schema(json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}));
        assert_eq!(out, json!({"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": true}));
    }

    #[test]
    fn conflicting_merge_is_an_error() {
        let mut s = json!({"anyOf": [{"type": "integer"}, {"type": "null"}], "type": "string"});
        let e = convert_schema(&mut s, "/s").unwrap_err();
        assert_eq!(e.pointer, "/s/anyOf");
    }

    #[test]
    fn type_arrays() {
        assert_eq!(schema(json!({"type": ["string", "null"]})), json!({"type": "string", "nullable": true}));
        assert_eq!(schema(json!({"type": ["string"]})), json!({"type": "string"}));
        assert_eq!(
            schema(json!({"type": ["string", "integer"]})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        assert_eq!(schema(json!({"type": "null"})), json!({"nullable": true, "enum": [null]}));
        assert_eq!(schema(json!({"type": ["null"]})), json!({"nullable": true, "enum": [null]}));
        let mut s = json!({"type": ["string", "integer"], "anyOf": [{"minLength": 1}]});
        assert_eq!(convert_schema(&mut s, "/s").unwrap_err().pointer, "/s/type");
    }

    #[test]
    fn const_examples_and_bounds() {
        assert_eq!(schema(json!({"const": "x"})), json!({"enum": ["x"]}));
        assert_eq!(schema(json!({"const": "x", "enum": ["x", "y"]})), json!({"enum": ["x"]}));
        let mut s = json!({"const": "z", "enum": ["x"]});
        assert_eq!(convert_schema(&mut s, "/s").unwrap_err().pointer, "/s/const");
        assert_eq!(schema(json!({"type": "integer", "examples": [3, 4]})), json!({"type": "integer", "example": 3}));
        assert_eq!(
            schema(json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10})),
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true})
        );
        // An inclusive bound that is stricter than the exclusive one wins.
        assert_eq!(
            schema(json!({"type": "number", "minimum": 5, "exclusiveMinimum": 1})),
            json!({"type": "number", "minimum": 5})
        );
        // The 3.0 boolean form is left alone.
        assert_eq!(
            schema(json!({"minimum": 1, "exclusiveMinimum": true})),
            json!({"minimum": 1, "exclusiveMinimum": true})
        );
    }

    #[test]
    fn nested_schemas_are_converted() {
        let out = schema(json!({
            "type": "object",
            "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": "array", "items": {"const": 1}}},
            "additionalProperties": {"examples": ["e"]},
            "allOf": [{"$comment": "c", "type": "object"}],
            "not": true
        }));
        assert_eq!(out["properties"]["a"], json!({"type": "integer", "nullable": true}));
        assert_eq!(out["properties"]["b"]["items"], json!({"enum": [1]}));
        assert_eq!(out["additionalProperties"], json!({"example": "e"}));
        assert_eq!(out["allOf"][0], json!({"type": "object"}));
        assert_eq!(out["not"], json!({}));
    }

    #[test]
    fn boolean_schemas_and_binary() {
        assert_eq!(schema(json!(true)), json!({}));
        assert_eq!(schema(json!(false)), json!({"not": {}}));
        assert_eq!(
            schema(json!({"type": "string", "contentMediaType": "application/octet-stream"})),
            json!({"type": "string", "format": "binary"})
        );
        assert_eq!(
            schema(json!({"type": "string", "contentEncoding": "base64"})),
            json!({"type": "string", "format": "byte"})
        );
    }

    #[test]
    fn ref_with_siblings_moves_into_all_of() {
        assert_eq!(
            schema(json!({"$ref": "#/components/schemas/X", "description": "d"})),
            json!({"allOf": [{"$ref": "#/components/schemas/X"}], "description": "d"})
        );
        assert_eq!(schema(json!({"$ref": "#/components/schemas/X"})), json!({"$ref": "#/components/schemas/X"}));
    }

    #[test]
    fn unsupported_keywords_name_the_pointer() {
        let mut s = json!({"properties": {"p~/q": {"patternProperties": {"^a": {"type": "string"}}}}});
        let e = convert_schema(&mut s, "/components/schemas/S").unwrap_err();
        assert_eq!(e.pointer, "/components/schemas/S/properties/p~0~1q/patternProperties");
        assert!(e.to_string().contains("patternProperties"));
        let mut s = json!({"items": [{"type": "string"}]});
        assert_eq!(convert_schema(&mut s, "/s").unwrap_err().pointer, "/s/items");
    }

    #[test]
    fn json_content_without_schema_gets_empty_schema() {
        let out =
            normalize(doc_with_responses(json!({"200": {"description": "ok", "content": {"application/json": {}}}})))
                .unwrap();
        assert_eq!(
            out["paths"]["/a/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
            json!({})
        );
    }

    #[test]
    fn error_responses_without_json_body_are_dropped() {
        let out = normalize(doc_with_responses(json!({
            "200": {"description": "ok"},
            "404": {"description": "nf"},
            "422": {"description": "v", "content": {"application/json": {"schema": {"type": "object"}}}},
            "502": {"description": "html", "content": {"text/html": {}}},
            "default": {"description": "d"}
        })))
        .unwrap();
        let responses = out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap();
        let kept: Vec<&str> = responses.keys().map(String::as_str).collect();
        // 404 and default have no body; 502 has no JSON body (progenitor would type it as raw,
        // unlike 422's JSON).
        assert_eq!(kept, ["200", "422"]);
    }

    #[test]
    fn ref_responses_are_resolved() {
        let mut doc = doc_with_responses(json!({
            "200": {"description": "ok"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "422": {"$ref": "#/components/responses/Invalid"}
        }));
        doc["components"] = json!({"responses": {
            "NotFound": {"description": "nf"},
            "Invalid": {"description": "v", "content": {"application/json": {"schema": {"type": ["object", "null"]}}}}
        }});
        let out = normalize(doc).unwrap();
        let responses = out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["200", "422"]);
        assert_eq!(
            out["components"]["responses"]["Invalid"]["content"]["application/json"]["schema"],
            json!({"type": "object", "nullable": true})
        );
    }

    #[test]
    fn differing_bodies_are_left_untyped() {
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "ok"},
            "400": {"description": "a", "content": {"application/json": {"schema": {"type": "object"}}}},
            "422": {"description": "b", "content": {"application/json": {"schema": {"type": "string"}}}}
        })))
        .unwrap();
        let responses = out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["200"]);
        assert_eq!(
            warnings,
            [
                "GET /a/{id} (get_a): error responses 400, 422 have different body types; left untyped (each error reply is kept whole)"
            ]
        );
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
            "201": {"description": "created", "content": {"application/json": {"schema": {"type": "string"}}}}
        })))
        .unwrap();
        let responses = &out["paths"]["/a/{id}"]["get"]["responses"];
        assert_eq!(responses["200"]["content"]["application/json"]["schema"], json!({}));
        assert_eq!(responses["201"]["content"]["application/json"]["schema"], json!({}));
        assert!(warnings[0].contains("success responses 200, 201 have different JSON body types"), "{warnings:?}");
        // A raw body beside a JSON one still cannot be expressed.
        let e = normalize(doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
            "201": {"description": "file", "content": {"application/pdf": {}}}
        })))
        .unwrap_err();
        assert_eq!(e.pointer, "/paths/~1a~1{id}/get/responses/201");
    }

    #[test]
    fn default_beside_2xx_is_dropped() {
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
            "default": {"description": "e", "content": {"application/json": {"schema": {"type": "string"}}}}
        })))
        .unwrap();
        let responses = out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["200"]);
        assert!(warnings[0].contains("dropped response `default`"), "{warnings:?}");
    }

    #[test]
    fn cookie_parameters() {
        let doc = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"get": {"operationId": "get_a", "responses": {},
                "parameters": [{"name": "c", "in": "cookie", "schema": {"type": "string"}}, {"name": "q", "in": "query", "schema": {"type": "string"}}]}}}
        });
        let (out, warnings) = normalize_with_warnings(doc).unwrap();
        assert_eq!(out["paths"]["/a"]["get"]["parameters"].as_array().unwrap().len(), 1);
        assert_eq!(
            warnings,
            ["GET /a (get_a): dropped optional cookie parameter \"c\" (progenitor cannot send cookies)"]
        );
    }

    #[test]
    fn mixed_success_keeps_the_typed_body() {
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {"schema": {}}}},
            "307": {"description": "redirect"},
            "422": {"description": "v", "content": {"application/json": {"schema": {"type": "object"}}}}
        })))
        .unwrap();
        let responses = out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["200", "422"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("GET /a/{id} (get_a): dropped body-less success response 307"), "{warnings:?}");
        // Only body-less successes go; all body-less stays as it is.
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "ok"}, "202": {"description": "accepted"}
        })))
        .unwrap();
        assert_eq!(out["paths"]["/a/{id}"]["get"]["responses"].as_object().unwrap().len(), 2);
        assert!(warnings.is_empty());
    }

    #[test]
    fn untyped_json_beside_files_is_dropped() {
        let (out, warnings) = normalize_with_warnings(doc_with_responses(json!({
            "200": {"description": "file", "content": {"application/json": {"schema": {}}, "application/pdf": {}}}
        })))
        .unwrap();
        let content = out["paths"]["/a/{id}"]["get"]["responses"]["200"]["content"].as_object().unwrap();
        assert_eq!(content.keys().collect::<Vec<_>>(), ["application/pdf"]);
        assert!(warnings[0].contains("response 200 offers application/json without a schema"), "{warnings:?}");
        // A typed JSON body beside another media type stays (progenitor picks JSON).
        let out = normalize(doc_with_responses(json!({
            "200": {"description": "x", "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {}}}
        })))
        .unwrap();
        assert_eq!(out["paths"]["/a/{id}"]["get"]["responses"]["200"]["content"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn get_and_head_lose_bodies() {
        let doc = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/f": {
                "head": {
                    "operationId": "check_f_head",
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {"200": {"description": "exists", "content": {"application/json": {"schema": {}}}}}
                },
                "get": {
                    "operationId": "get_f",
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}}
                }
            }}
        });
        let (out, warnings) = normalize_with_warnings(doc).unwrap();
        let f = &out["paths"]["/f"];
        assert!(f["head"].get("requestBody").is_none());
        assert!(f["get"].get("requestBody").is_none());
        assert!(f["head"]["responses"]["200"].get("content").is_none());
        assert_eq!(f["get"]["responses"]["200"]["content"]["application/json"]["schema"], json!({}));
        assert_eq!(
            warnings,
            [
                "GET /f (get_f): dropped its request body (a get request carries none)",
                "HEAD /f (check): dropped its request body (a head request carries none)",
                "HEAD /f (check): dropped the body of response 200 (a HEAD reply carries none)",
            ]
        );
    }

    #[test]
    fn optional_parameters_are_not_nullable() {
        let doc = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a/{id}": {"patch": {
                "operationId": "p",
                "parameters": [
                    {"name": "X-Hash", "in": "header", "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                    {"name": "id", "in": "path", "required": true, "schema": {"type": ["string", "null"]}}
                ],
                "responses": {}
            }}}
        });
        let out = normalize(doc).unwrap();
        let params = &out["paths"]["/a/{id}"]["patch"]["parameters"];
        assert_eq!(params[0]["schema"], json!({"type": "string"}));
        assert_eq!(params[1]["schema"], json!({"type": "string", "nullable": true}));
    }

    #[test]
    fn prefix_items_become_arrays() {
        // A closed tuple: the union of its members, its length as both bounds.
        assert_eq!(
            schema(
                json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}], "minItems": 2, "maxItems": 2})
            ),
            json!({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2})
        );
        assert_eq!(
            schema(json!({"prefixItems": [{"type": "integer"}, {"type": ["string", "null"]}], "items": false})),
            json!({"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string", "nullable": true}]}, "minItems": 2, "maxItems": 2})
        );
        // More items may follow: of `items`, or of anything.
        assert_eq!(
            schema(json!({"prefixItems": [{"type": "integer"}], "items": {"type": "string"}})),
            json!({"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "minItems": 1})
        );
        assert_eq!(
            schema(json!({"prefixItems": [{"type": "integer"}]})),
            json!({"type": "array", "items": {}, "minItems": 1})
        );
        let mut s = json!({"prefixItems": {"type": "integer"}});
        assert_eq!(convert_schema(&mut s, "/s").unwrap_err().pointer, "/s/prefixItems");
    }

    #[test]
    fn property_names_are_dropped() {
        assert_eq!(
            schema(
                json!({"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"enum": ["cpu"]}})
            ),
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        );
    }

    #[test]
    fn an_any_of_of_one_non_object_type_is_a_one_of() {
        // Two arrays (GET /api/v1/cvms), two strings of different formats.
        let arrays = json!({"anyOf": [{"type": "array", "items": {"$ref": "#/A"}}, {"type": "array", "items": {"$ref": "#/B"}}]});
        assert_eq!(schema(arrays.clone()), json!({"oneOf": arrays["anyOf"]}));
        let strings = json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string"}]});
        assert_eq!(schema(strings.clone()), json!({"oneOf": strings["anyOf"]}));
        let items_only =
            json!({"anyOf": [{"items": {"type": "string"}}, {"type": "array", "items": {"type": "integer"}}]});
        assert_eq!(schema(items_only.clone()), json!({"oneOf": items_only["anyOf"]}));
        // Different types, objects, references: as they were.
        for same in [
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "object"}]}),
            json!({"anyOf": [{"$ref": "#/A"}, {"$ref": "#/B"}]}),
            json!({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}),
        ] {
            assert_eq!(schema(same.clone()), same);
        }
    }

    #[test]
    fn duplicate_union_members_are_dropped() {
        assert_eq!(
            schema(json!({"anyOf": [{"$ref": "#/A"}, {"$ref": "#/B"}, {"$ref": "#/A"}]})),
            json!({"anyOf": [{"$ref": "#/A"}, {"$ref": "#/B"}]})
        );
        // Down to one member: the union is that member.
        assert_eq!(
            schema(json!({"anyOf": [{"type": "integer"}, {"type": "integer"}], "title": "T"})),
            json!({"type": "integer", "title": "T"})
        );
    }

    #[test]
    fn unions_of_enums() {
        // `const`s of one type → one enum (and the default beside it stays).
        assert_eq!(
            schema(
                json!({"anyOf": [{"type": "string", "const": "ext4"}, {"type": "string", "const": "zfs"}, {"type": "null"}], "default": "zfs"})
            ),
            json!({"type": "string", "enum": ["ext4", "zfs"], "nullable": true, "default": "zfs"})
        );
        // An enum beside the free string of its type is the free string; the values are noted.
        assert_eq!(
            schema(
                json!({"anyOf": [{"type": "string", "enum": ["listed", "all"]}, {"type": "string"}], "default": "listed", "description": "Mode."})
            ),
            json!({"type": "string", "default": "listed", "description": "Mode.\n\nKnown values: \"listed\", \"all\"."})
        );
        // A default beside a union that stays a union is dropped.
        assert_eq!(
            schema(json!({"anyOf": [{"type": "string"}, {"type": "integer"}], "default": "a"})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        // Outer annotations win over inner ones when a nullable union collapses.
        assert_eq!(
            schema(json!({"anyOf": [{"type": "string", "title": "Inner"}, {"type": "null"}], "title": "Outer"})),
            json!({"type": "string", "nullable": true, "title": "Outer"})
        );
    }

    #[test]
    fn colliding_inline_titles_are_dropped() {
        let doc = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {},
            "components": {"schemas": {
                "NodeRef": {"type": "object", "properties": {
                    "object_type": {"type": "string", "const": "node", "title": "Object Type", "default": "node"}}},
                "UserRef": {"type": "object", "properties": {
                    "object_type": {"type": "string", "const": "user", "title": "Object Type", "default": "user"},
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "title": "Location"},
                    "ref": {"type": "object", "properties": {}, "title": "Node Ref"}}}
            }}
        });
        let (out, warnings) = normalize_with_warnings(doc).unwrap();
        let schemas = &out["components"]["schemas"];
        assert!(schemas["NodeRef"]["properties"]["object_type"].get("title").is_none());
        assert!(schemas["UserRef"]["properties"]["object_type"].get("title").is_none());
        // A unique title stays; one spelling a component's name goes.
        assert_eq!(schemas["UserRef"]["properties"]["loc"]["title"], "Location");
        assert!(schemas["UserRef"]["properties"]["ref"].get("title").is_none());
        assert_eq!(
            warnings,
            [
                "dropped the title of inline schemas whose Rust type names would collide (named after their place instead): \"Node Ref\" (1), \"Object Type\" (2)"
            ]
        );
    }

    #[test]
    fn operation_ids() {
        assert_eq!(
            shorten_operation_id(
                "update_cvm_envs_api_v1_cvms__cvm_id__envs_patch",
                "/api/v1/cvms/{cvm_id}/envs",
                "patch"
            ),
            Some("update_cvm_envs".into())
        );
        assert_eq!(shorten_operation_id("listThings", "/things", "get"), None);
        assert_eq!(shorten_operation_id("_things_get", "/things", "get"), None);
        let collide = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {
                "/a": {"get": {"operationId": "f_a_get", "responses": {}}},
                "/b": {"get": {"operationId": "f_b_get", "responses": {}}}
            }
        });
        let (out, warnings) = normalize_with_warnings(collide.clone()).unwrap();
        assert_eq!(out["paths"]["/a"]["get"]["operationId"], "f_a");
        assert_eq!(out["paths"]["/b"]["get"]["operationId"], "f_b");
        assert_eq!(
            warnings,
            ["operationId f is shared by 2 operations once shortened; generated GET /a as f_a and GET /b as f_b"]
        );
        // The names do not depend on the document's order.
        let mut reversed = collide.clone();
        let paths: Map<String, Value> =
            collide["paths"].as_object().unwrap().iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        reversed["paths"] = Value::Object(paths);
        let out = normalize(reversed).unwrap();
        assert_eq!(out["paths"]["/a"]["get"]["operationId"], "f_a");
        assert_eq!(path_suffix("/api/v1/apps/{app_id}/cvms/{vm_uuid}/replicas"), "apps_cvms_replicas");
        assert_eq!(path_suffix("/x/pre-launch/{id}"), "x_pre_launch");
        // Disambiguated names that still collide are an error.
        let clash = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {
                "/a": {"get": {"operationId": "f_a_get", "responses": {}}},
                "/b/a": {"get": {"operationId": "f_b_a_get", "responses": {}}},
                "/{x}/a": {"get": {"operationId": "f__x__a_get", "responses": {}}}
            }
        });
        let e = normalize(clash).unwrap_err();
        assert!(e.message.contains("f_a"), "{e}");
        let missing = json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/a": {"get": {"responses": {}}}}});
        assert_eq!(normalize(missing).unwrap_err().pointer, "/paths/~1a/get");
    }

    #[test]
    fn parameters_and_request_bodies() {
        let doc = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a": {
                "parameters": [{"name": "q", "in": "query", "schema": {"type": ["string", "null"]}}],
                "post": {
                    "operationId": "post_a",
                    "parameters": [{"name": "h", "in": "header", "schema": {"const": "v"}}],
                    "requestBody": {"content": {"application/json": {"schema": {"examples": [1]}}}},
                    "responses": {}
                }
            }}
        });
        let out = normalize(doc).unwrap();
        let a = &out["paths"]["/a"];
        // An optional parameter is not nullable: leaving it out says "none".
        assert_eq!(a["parameters"][0]["schema"], json!({"type": "string"}));
        assert_eq!(a["post"]["parameters"][0]["schema"], json!({"enum": ["v"]}));
        assert_eq!(a["post"]["requestBody"]["content"]["application/json"]["schema"], json!({"example": 1}));
        let two = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"post": {"operationId": "p", "requestBody": {"content": {"application/json": {}, "text/plain": {}}}, "responses": {}}}}
        });
        assert_eq!(normalize(two).unwrap_err().pointer, "/paths/~1a/post/requestBody/content");
    }
}
