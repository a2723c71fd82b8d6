//! The generation pipeline: OpenAPI document in, formatted Rust client out.
//!
//! `build.rs` runs it on `openapi.json`; `tests/it/normalizer.rs` runs it too. Both include this
//! file and `build/normalize.rs` by path as sibling modules (`mod normalize; mod generate;`),
//! so this module reaches the converter as `super::normalize`.
//!
//! Steps: name the operations (shortened FastAPI ids, collisions disambiguated), set aside the
//! operations progenitor cannot generate, keep the selected operations and what they reach by
//! `$ref`, convert that to OpenAPI 3.0.3 ([`super::normalize`]), run progenitor with the
//! settings the handwritten layer relies on, and format the result with prettyplease. Selecting
//! before converting means a shape the converter refuses in an operation the crate does not
//! use cannot break the default build.

use super::normalize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Which operations to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every operation of the document (what cannot be generated is listed in
    /// [`Generated::skipped`]).
    All,
    /// Only these operations, by shortened operationId (e.g. `update_cvm_envs`), and only the
    /// components they reach. Each must be in the document and generatable.
    Only(&'static [&'static str]),
}

/// An operation that was not generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// HTTP method, upper case (`PUT`).
    pub method: String,
    /// Path template as the document writes it (`/api/v1/profiles/me/avatar`).
    pub path: String,
    /// Shortened operationId (the method name it would have had).
    pub operation_id: String,
    /// Why it was not generated.
    pub reason: String,
}

/// What [`generate`] produced.
#[derive(Debug, Clone)]
pub struct Generated {
    /// prettyplease-formatted Rust: the client and its `types` module.
    pub code: String,
    /// Each generated operation: (METHOD, path, Rust method name), in document order.
    pub operations: Vec<(String, String, String)>,
    /// Operations not generated, each with why.
    pub skipped: Vec<Skipped>,
    /// One line each: renamed operations, dropped request or response bodies, and the like.
    pub warnings: Vec<String>,
    /// Every operation of the whole document (generated or not) whose responses include 465,
    /// in document order: see [`two_phase_operations`].
    pub two_phase: Vec<TwoPhaseOp>,
}

/// An operation whose responses include 465 (a compose hash must be allowed on-chain first),
/// and how the spec says it carries phase 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoPhaseOp {
    /// HTTP method, upper case.
    pub method: String,
    /// Path template.
    pub path: String,
    /// Shortened operationId (its method name when generated).
    pub operation_id: String,
    /// Which of 465, 466, 467, 468 its responses list.
    pub statuses: Vec<u16>,
    /// The `Phase2Carrier` variant the spec implies: `BodyFields` (request-body properties
    /// `compose_hash` and `transaction_hash`), `Headers` (header parameters `X-Compose-Hash`
    /// and `X-Transaction-Hash`), `TransactionQuery` (a query parameter `transaction_hash`
    /// only), or `NotCarried` (nothing in the request names a registration).
    pub carrier: &'static str,
}

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The reason given for every operation with a `multipart/form-data` request body.
pub const MULTIPART_REASON: &str = "multipart/form-data request body (progenitor 0.15 cannot generate multipart)";
/// Why a cookie parameter cannot be generated.
pub const COOKIE_REASON: &str = "progenitor 0.15 cannot send cookie parameters";

/// Runs the pipeline: name operations → select → prune → normalize → progenitor → syn parse →
/// prettyplease.
///
/// Errors carry the JSON pointer of what could not be converted, or the operation progenitor
/// failed on; a panic inside progenitor is caught and reported as an error.
pub fn generate(mut spec: Value, selection: &Selection) -> Result<Generated, String> {
    let mut warnings = normalize::assign_operation_ids(&mut spec).map_err(|e| e.to_string())?;
    let all = operations(&spec);
    let two_phase = two_phase_operations(&spec, &all);

    let mut skipped = Vec::new();
    let mut keep: BTreeSet<(String, String)> = BTreeSet::new();
    for op in &all {
        if let Some(reason) = unsupported(&spec, op) {
            skipped.push(Skipped {
                method: op.method.to_uppercase(),
                path: op.path.clone(),
                operation_id: op.id.clone(),
                reason,
            });
        } else {
            keep.insert((op.method.clone(), op.path.clone()));
        }
    }
    if let Selection::Only(names) = selection {
        let mut chosen = BTreeSet::new();
        for name in *names {
            let Some(op) = all.iter().find(|op| op.id == *name) else {
                return Err(format!(
                    "openapi.json has no operation {name}, which the handwritten layer wraps; \
                     if the spec renamed or removed it, the crate must be changed"
                ));
            };
            if let Some(s) = skipped.iter().find(|s| s.operation_id == *name) {
                return Err(format!(
                    "{name} ({} {}), which the handwritten layer wraps, cannot be generated: {}",
                    s.method, s.path, s.reason
                ));
            }
            chosen.insert((op.method.clone(), op.path.clone()));
        }
        // Operations the selection leaves out are not "skipped": they were not asked for; nor
        // does a rename among them concern this build.
        skipped.clear();
        let chosen_names: Vec<String> = all
            .iter()
            .filter(|op| chosen.contains(&(op.method.clone(), op.path.clone())))
            .map(|op| op.id.clone())
            .collect();
        warnings.retain(|w| chosen_names.iter().any(|name| w.contains(&format!(" as {name}"))));
        keep = chosen;
    }

    retain_operations(&mut spec, &keep);
    if matches!(selection, Selection::Only(_)) {
        prune_components(&mut spec);
    }

    let (normalized, normalize_warnings) = normalize::normalize_with_warnings(spec).map_err(|e| e.to_string())?;
    warnings.extend(normalize_warnings);

    let tokens = match run_progenitor(&normalized) {
        Ok(tokens) => tokens,
        Err(whole) => return Err(blame(&normalized, whole)),
    };
    let mut file: syn::File = syn::parse2(tokens).map_err(|e| format!("progenitor produced invalid Rust: {e}"))?;
    let operations: Vec<_> = operations(&normalized)
        .into_iter()
        .map(|op| (op.method.to_uppercase(), op.path, rust_method_name(&op.id)))
        .collect();
    let dropped = drop_api_version_header(&mut file);
    if dropped != operations.len() {
        return Err(format!(
            "progenitor's output changed: build/generate.rs drops the `api-version` header it adds to each \
             operation, and found it in {dropped} of {} operations; update drop_api_version_header",
            operations.len()
        ));
    }
    let code = prettyplease::unparse(&file);
    Ok(Generated { code, operations, skipped, warnings, two_phase })
}

/// Removes, from every generated operation, the `api-version` request header progenitor adds
/// (the spec's `info.version`): the service reads `X-Phala-Version`, which the crate sets on the
/// `reqwest::Client`, and a header made only to be removed costs every call a map. An operation
/// left with no header of its own loses its empty map too. Returns how many operations had it.
///
/// progenitor 0.15 writes, as statements of each operation's body:
/// `let mut header_map = HeaderMap::with_capacity(n);`,
/// `header_map.append(HeaderName::from_static("api-version"), …);`, one `header_map.append(…)`
/// per header parameter, and `let mut request = self.client.…(…).headers(header_map).build()?;`.
fn drop_api_version_header(file: &mut syn::File) -> usize {
    let mut dropped = 0;
    for item in &mut file.items {
        let syn::Item::Impl(block) = item else { continue };
        for member in &mut block.items {
            let syn::ImplItem::Fn(function) = member else { continue };
            let stmts = &mut function.block.stmts;
            let before = stmts.len();
            stmts.retain(|stmt| !is_api_version_append(stmt));
            if stmts.len() == before {
                continue;
            }
            dropped += 1;
            // Declared, and handed to the request: nothing else (a header parameter, optional
            // ones inside an `if let`) uses the map.
            if stmts.iter().filter(|stmt| mentions_header_map(stmt)).count() == 2 {
                stmts.retain(|stmt| !declares_header_map(stmt));
                for stmt in stmts.iter_mut() {
                    if let syn::Stmt::Local(syn::Local { init: Some(init), .. }) = stmt {
                        remove_headers_call(&mut init.expr);
                    }
                }
            }
        }
    }
    dropped
}

/// `header_map.append(…, …);` as a statement.
fn header_map_append(stmt: &syn::Stmt) -> Option<&syn::ExprMethodCall> {
    let syn::Stmt::Expr(syn::Expr::MethodCall(call), Some(_)) = stmt else { return None };
    let syn::Expr::Path(receiver) = &*call.receiver else { return None };
    (receiver.path.is_ident("header_map") && call.method == "append").then_some(call)
}

/// `header_map.append(HeaderName::from_static("api-version"), …);`
fn is_api_version_append(stmt: &syn::Stmt) -> bool {
    let Some(call) = header_map_append(stmt) else { return false };
    let Some(syn::Expr::Call(name)) = call.args.first() else { return false };
    matches!(name.args.first(), Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. })) if s.value() == "api-version")
}

/// The statement names `header_map` anywhere in it.
fn mentions_header_map(stmt: &syn::Stmt) -> bool {
    fn names(tokens: proc_macro2::TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => ident == "header_map",
            proc_macro2::TokenTree::Group(group) => names(group.stream()),
            _ => false,
        })
    }
    names(quote::ToTokens::to_token_stream(stmt))
}

/// `let mut header_map = …;`
fn declares_header_map(stmt: &syn::Stmt) -> bool {
    matches!(stmt, syn::Stmt::Local(syn::Local { pat: syn::Pat::Ident(p), .. }) if p.ident == "header_map")
}

/// Removes `.headers(header_map)` from a chain of method calls (through a trailing `?`).
fn remove_headers_call(expr: &mut syn::Expr) {
    match expr {
        syn::Expr::Try(e) => remove_headers_call(&mut e.expr),
        syn::Expr::MethodCall(call) => {
            let is_headers = call.method == "headers"
                && matches!(call.args.first(), Some(syn::Expr::Path(p)) if p.path.is_ident("header_map"));
            if is_headers {
                let receiver = std::mem::replace(&mut *call.receiver, syn::Expr::Verbatim(Default::default()));
                *expr = receiver;
                remove_headers_call(expr);
            } else {
                remove_headers_call(&mut call.receiver);
            }
        }
        _ => {}
    }
}

/// One operation of the document.
struct Operation {
    method: String,
    path: String,
    id: String,
}

/// Every operation, in document order, with its (already assigned) operationId.
fn operations(spec: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in spec.get("paths").and_then(Value::as_object).into_iter().flatten() {
        for method in HTTP_METHODS {
            let Some(op) = item.get(method) else { continue };
            let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned();
            out.push(Operation { method: method.to_owned(), path: path.clone(), id });
        }
    }
    out
}

/// Every operation of `all` whose responses include 465, with the registration statuses it
/// lists and how its request carries phase 2 (read from its parameters and its JSON body).
fn two_phase_operations(spec: &Value, all: &[Operation]) -> Vec<TwoPhaseOp> {
    let mut out = Vec::new();
    for op in all {
        let Some(item) = spec.get("paths").and_then(|p| p.get(&op.path)) else { continue };
        let Some(operation) = item.get(&op.method) else { continue };
        let Some(responses) = operation.get("responses").and_then(Value::as_object) else { continue };
        if !responses.contains_key("465") {
            continue;
        }
        let statuses = [465u16, 466, 467, 468].into_iter().filter(|s| responses.contains_key(&s.to_string())).collect();
        // Parameters by (location, lower-case name).
        let mut parameters = BTreeSet::new();
        for p in [item.get("parameters"), operation.get("parameters")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
        {
            let p = match p.get("$ref").and_then(Value::as_str) {
                Some(target) => resolve(spec, target).unwrap_or(p),
                None => p,
            };
            if let (Some(at), Some(name)) = (p.get("in").and_then(Value::as_str), p.get("name").and_then(Value::as_str))
            {
                parameters.insert((at.to_owned(), name.to_ascii_lowercase()));
            }
        }
        let has = |at: &str, name: &str| parameters.contains(&(at.to_owned(), name.to_owned()));
        let body_fields = json_body_properties(spec, operation);
        let carrier = if has("header", "x-compose-hash") && has("header", "x-transaction-hash") {
            "Headers"
        } else if body_fields.contains("compose_hash") && body_fields.contains("transaction_hash") {
            "BodyFields"
        } else if has("query", "transaction_hash") {
            "TransactionQuery"
        } else {
            "NotCarried"
        };
        out.push(TwoPhaseOp {
            method: op.method.to_uppercase(),
            path: op.path.clone(),
            operation_id: rust_method_name(&op.id),
            statuses,
            carrier,
        });
    }
    out
}

/// The top-level property names of an operation's `application/json` request body schema
/// (one `$ref` to a component followed).
fn json_body_properties(spec: &Value, operation: &Value) -> BTreeSet<String> {
    let mut body = operation.get("requestBody");
    if let Some(target) = body.and_then(|b| b.get("$ref")).and_then(Value::as_str) {
        body = resolve(spec, target);
    }
    let mut schema = body.and_then(|b| b.pointer("/content/application~1json/schema"));
    if let Some(target) = schema.and_then(|s| s.get("$ref")).and_then(Value::as_str) {
        schema = resolve(spec, target);
    }
    schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// Why progenitor cannot generate `op`, if it cannot: a multipart body, or a required cookie
/// parameter (optional cookie parameters are dropped by the normalizer, with a warning).
fn unsupported(spec: &Value, op: &Operation) -> Option<String> {
    let item = spec.get("paths")?.get(&op.path)?;
    let operation = item.get(&op.method)?;
    let parameters = [item.get("parameters"), operation.get("parameters")];
    for p in parameters.into_iter().flatten().filter_map(Value::as_array).flatten() {
        let p = match p.get("$ref").and_then(Value::as_str) {
            Some(target) => resolve(spec, target).unwrap_or(p),
            None => p,
        };
        if p.get("in").and_then(Value::as_str) == Some("cookie") && p.get("required") == Some(&Value::Bool(true)) {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
            return Some(format!("required cookie parameter {name:?} ({COOKIE_REASON})"));
        }
    }
    let mut body = operation.get("requestBody")?;
    // Follow a `$ref` to components/requestBodies (one level is all 3.0 allows there).
    if let Some(target) = body.get("$ref").and_then(Value::as_str) {
        body = resolve(spec, target)?;
    }
    let multipart = body
        .get("content")
        .and_then(Value::as_object)
        .is_some_and(|content| content.keys().any(|mt| mt.starts_with("multipart/form-data")));
    multipart.then(|| MULTIPART_REASON.to_owned())
}

/// The value a local `$ref` (`#/…`) points at.
fn resolve<'a>(spec: &'a Value, reference: &str) -> Option<&'a Value> {
    spec.pointer(reference.strip_prefix('#')?)
}

/// Removes every operation not in `keep` ((method, path)), and path items left without any.
fn retain_operations(spec: &mut Value, keep: &BTreeSet<(String, String)>) {
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for method in HTTP_METHODS {
            if !keep.contains(&(method.to_owned(), path.clone())) {
                item.remove(method);
            }
        }
    }
    paths.retain(|_, item| item.as_object().is_none_or(|item| HTTP_METHODS.iter().any(|m| item.contains_key(*m))));
}

/// Drops every component that no `$ref` reaches from the paths, transitively. Security schemes
/// (named by `security` requirements, not by `$ref`) stay when a requirement names them.
fn prune_components(spec: &mut Value) {
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = spec.get("paths") {
        collect_refs(paths, &mut pending);
    }
    while let Some(reference) = pending.pop() {
        if !reached.insert(reference.clone()) {
            continue;
        }
        if let Some(target) = resolve(spec, &reference) {
            collect_refs(target, &mut pending);
        }
    }
    let mut schemes: BTreeSet<String> = BTreeSet::new();
    collect_security(spec.get("security"), &mut schemes);
    for item in spec.get("paths").and_then(Value::as_object).into_iter().flatten().map(|(_, item)| item) {
        for method in HTTP_METHODS {
            collect_security(item.get(method).and_then(|op| op.get("security")), &mut schemes);
        }
    }
    let Some(components) = spec.get_mut("components").and_then(Value::as_object_mut) else { return };
    for (kind, items) in components.iter_mut() {
        let Some(items) = items.as_object_mut() else { continue };
        if kind == "securitySchemes" {
            items.retain(|name, _| schemes.contains(name));
        } else {
            let prefix = format!("#/components/{}/", normalize::escape_token(kind));
            items.retain(|name, _| reached.contains(&format!("{prefix}{}", normalize::escape_token(name))));
        }
    }
    components.retain(|_, items| items.as_object().is_none_or(|items| !items.is_empty()));
}

/// Pushes every `$ref` string found anywhere in `value`.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Adds the scheme names of a `security` requirement list.
fn collect_security(security: Option<&Value>, out: &mut BTreeSet<String>) {
    for requirement in security.and_then(Value::as_array).into_iter().flatten() {
        out.extend(requirement.as_object().into_iter().flat_map(Map::keys).cloned());
    }
}

/// progenitor's name for an operation's method: its operationId in snake case. The ids the
/// pipeline assigns are snake case already; this mirrors progenitor for anything else.
fn rust_method_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut previous_lower = false;
    for c in id.chars() {
        if c.is_ascii_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else if c.is_alphanumeric() {
            out.push(c);
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            previous_lower = false;
        }
    }
    out
}

/// The progenitor settings the handwritten layer is written against.
fn settings() -> progenitor::GenerationSettings {
    let mut settings = progenitor::GenerationSettings::new();
    settings
        .with_interface(progenitor::InterfaceStyle::Positional)
        .with_derive("PartialEq")
        .with_inner_type(quote::quote!(crate::client::Hooks))
        .with_hooks(progenitor::HooksMode::Expected);
    settings
}

/// Runs progenitor on a normalized document; a panic inside it becomes an error.
fn run_progenitor(normalized: &Value) -> Result<proc_macro2::TokenStream, String> {
    let openapi: openapiv3::OpenAPI = serde_json::from_value(normalized.clone())
        .map_err(|e| format!("the normalized document is not OpenAPI 3.0 as openapiv3 reads it: {e}"))?;
    let mut generator = progenitor::Generator::new(&settings());
    // Silence the default hook's backtrace while progenitor runs; the panic becomes an error.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| generator.generate_tokens(&openapi)));
    std::panic::set_hook(previous_hook);
    match result {
        Ok(Ok(tokens)) => Ok(tokens),
        Ok(Err(e)) => Err(format!("progenitor rejected it: {e}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            Err(format!("progenitor panicked: {what}"))
        }
    }
}

/// Builds the error for a failed progenitor run over the whole document, naming the first
/// operation that also fails alone (with only what it reaches), so that the message says
/// where to teach `build/normalize.rs` a new shape.
fn blame(normalized: &Value, whole: String) -> String {
    let hint = "teach build/normalize.rs this shape";
    for op in operations(normalized) {
        let mut alone = normalized.clone();
        retain_operations(&mut alone, &BTreeSet::from([(op.method.clone(), op.path.clone())]));
        prune_components(&mut alone);
        if let Err(e) = run_progenitor(&alone) {
            let pointer = format!("/paths/{}/{}", normalize::escape_token(&op.path), op.method);
            return format!(
                "openapi.json#{pointer} ({} {} ({})), after normalization: {e} ({hint})",
                op.method.to_uppercase(),
                op.path,
                op.id
            );
        }
    }
    // Not one operation fails alone: the failure comes from the components, or from several
    // operations together (two types given one name, say).
    let components_only = {
        let mut doc = normalized.clone();
        retain_operations(&mut doc, &BTreeSet::new());
        run_progenitor(&doc).err()
    };
    match components_only {
        Some(e) => format!("openapi.json#/components, after normalization: {e} ({hint})"),
        None => format!(
            "the normalized openapi.json: {whole}; every operation generates alone, so several fail together ({hint})"
        ),
    }
}
