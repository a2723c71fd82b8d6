//! A general OpenAPI 3.1 → 3.0.3 down-converter, run by `build.rs` before progenitor.
//!
//! progenitor (through `openapiv3`) reads OpenAPI 3.0 only, and panics on a few shapes that
//! are legal in either version. This module rewrites a 3.1 document into the 3.0.3 form that
//! progenitor accepts, and fails with the JSON pointer of anything it cannot express, so that
//! a spec update breaks the build with a message instead of a panic inside the generator.
//!
//! It is compiled twice: by `build.rs` (`#[path = "build/normalize.rs"] mod normalize;`) and by
//! `tests/normalizer.rs`, so the unit tests at the bottom run under `cargo test`.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
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
pub fn normalize(mut doc: Value) -> Result<Value> {
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
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
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
            let short = convert_operation(op, &op_ptr, path, method, &shared_responses)?;
            if let Some(previous) = ids.insert(short.clone(), op_ptr.clone()) {
                return err(
                    &format!("{op_ptr}/operationId"),
                    format!("operationId {short:?} collides with the one at {previous} once shortened"),
                );
            }
        }
    }
    Ok(doc)
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
) -> Result<String> {
    let Some(op) = op.as_object_mut() else {
        return err(ptr, "an operation must be an object");
    };
    let Some(id) = op.get("operationId").and_then(Value::as_str) else {
        return err(ptr, "operation has no operationId (progenitor names methods after it)");
    };
    let short = shorten_operation_id(id, path, method).unwrap_or_else(|| id.to_owned());
    op.insert("operationId".into(), json!(short));

    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for (i, p) in params.iter_mut().enumerate() {
            convert_parameter_like(p, &format!("{ptr}/parameters/{i}"))?;
        }
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
        convert_responses(responses, &format!("{ptr}/responses"), shared)?;
    }
    Ok(short)
}

/// Converts each response, drops error responses without a JSON body, and checks that the
/// success responses share one body type and the error responses another (progenitor asserts
/// both and panics otherwise).
fn convert_responses(responses: &mut Map<String, Value>, ptr: &str, shared: &Map<String, Value>) -> Result<()> {
    for (status, response) in responses.iter_mut() {
        convert_response(response, &child(ptr, status))?;
    }
    responses
        .retain(|status, response| !is_error_status(status) || response_kind(response, shared).starts_with("json:"));
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
fn convert_parameter_like(item: &mut Value, ptr: &str) -> Result<()> {
    if let Some(schema) = item.get_mut("schema") {
        convert_schema(schema, &format!("{ptr}/schema"))?;
    }
    convert_content_holder(item, ptr)
}

/// Keywords of JSON Schema 2020-12 that OpenAPI 3.0 cannot express.
const UNSUPPORTED: [&str; 12] = [
    "prefixItems",
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
    "propertyNames",
];

/// Annotations 3.0 does not know and that change nothing about the data.
const DROPPED: [&str; 6] = ["$schema", "$id", "$comment", "$anchor", "$defs", "contentSchema"];

/// `{"type": "null"}`, as written or as [`convert_schema`] leaves it (`nullable` + `enum: [null]`),
/// with at most annotations beside it.
fn is_null_schema(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else { return false };
    let written = obj.get("type").and_then(Value::as_str) == Some("null");
    let converted = obj.get("nullable") == Some(&json!(true)) && obj.get("enum") == Some(&json!([null]));
    (written || converted)
        && obj.keys().all(|k| matches!(k.as_str(), "type" | "nullable" | "enum" | "title" | "description"))
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
        let mut s = json!({"properties": {"p~/q": {"prefixItems": [{"type": "string"}]}}});
        let e = convert_schema(&mut s, "/components/schemas/S").unwrap_err();
        assert_eq!(e.pointer, "/components/schemas/S/properties/p~0~1q/prefixItems");
        assert!(e.to_string().contains("prefixItems"));
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
    fn differing_error_bodies_fail_with_pointer() {
        let e = normalize(doc_with_responses(json!({
            "200": {"description": "ok"},
            "400": {"description": "a", "content": {"application/json": {"schema": {"type": "object"}}}},
            "422": {"description": "b", "content": {"application/json": {"schema": {"type": "string"}}}}
        })))
        .unwrap_err();
        assert_eq!(e.pointer, "/paths/~1a~1{id}/get/responses/422");
        let e = normalize(doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
            "201": {"description": "created"}
        })))
        .unwrap_err();
        assert_eq!(e.pointer, "/paths/~1a~1{id}/get/responses/201");
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
        let e = normalize(collide).unwrap_err();
        assert_eq!(e.pointer, "/paths/~1b/get/operationId");
        assert!(e.message.contains("/paths/~1a/get"));
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
        assert_eq!(a["parameters"][0]["schema"], json!({"type": "string", "nullable": true}));
        assert_eq!(a["post"]["parameters"][0]["schema"], json!({"enum": ["v"]}));
        assert_eq!(a["post"]["requestBody"]["content"]["application/json"]["schema"], json!({"example": 1}));
        let two = json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"post": {"operationId": "p", "requestBody": {"content": {"application/json": {}, "text/plain": {}}}, "responses": {}}}}
        });
        assert_eq!(normalize(two).unwrap_err().pointer, "/paths/~1a/post/requestBody/content");
    }
}
