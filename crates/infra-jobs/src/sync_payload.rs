//! What a sync tells Inngest: the app's functions as the SDK specification's registration
//! payload (github.com/inngest/inngest, `docs/SDK_SPEC.md` §4.3.2), and the in-band sync's
//! request and reply as the official `inngest` npm SDK (v4) speaks them.

use std::sync::Arc;

use infra_core::{Error, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::function::{Function, Trigger};

/// `X-Inngest-Sdk` of every request and reply: `<sdk name>:v<semver>` (§4.1.1).
pub const SDK_HEADER_VALUE: &str = concat!("infra-jobs:v", env!("CARGO_PKG_VERSION"));
/// The framework the handler is served with (`X-Inngest-Framework`).
pub(crate) const FRAMEWORK: &str = "axum";

/// The registration of `functions` under `app` at `url` (§4.3.2): the body of an
/// out-of-band sync's `POST /fn/register`.
pub(crate) fn register_payload(app: &str, functions: &[Arc<Function>], url: &url::Url) -> Value {
    json!({
        "url": url.as_str(),
        "deployType": "ping",
        "appName": app,
        "sdk": SDK_HEADER_VALUE,
        "v": "0.1",
        "framework": FRAMEWORK,
        "functions": function_configs(app, functions, url),
    })
}

/// The reply to an in-band sync: the registration itself, which Inngest reads from the
/// (signed) response instead of waiting for a `POST /fn/register`. `inspection` is the
/// introspection body of a verified request; `env` the `X-Inngest-Env` the request named.
pub(crate) fn in_band_reply(
    app: &str,
    functions: &[Arc<Function>],
    url: &url::Url,
    inspection: Value,
    env: Option<&str>,
) -> Value {
    json!({
        "app_id": app,
        "url": url.as_str(),
        "env": env,
        "framework": FRAMEWORK,
        "functions": function_configs(app, functions, url),
        "inspection": inspection,
        "capabilities": {},
        "platform": Value::Null,
        "sdk": SDK_HEADER_VALUE,
        "sdk_author": "infra",
        "sdk_language": "rust",
        "sdk_version": env!("CARGO_PKG_VERSION"),
    })
}

/// An in-band sync request's body: only the URL Inngest reached the app at.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InBandRequest {
    url: String,
}

/// Parses an in-band sync request's body into the URL to register; every refusal is an
/// invalid-input error naming the field.
pub(crate) fn parse_in_band_request(body: &[u8]) -> Result<url::Url> {
    let request: InBandRequest = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_input(
            "body",
            format_args!("must be an in-band sync request `{{\"url\": \"…\"}}`: {e}"),
        )
    })?;
    let url = url::Url::parse(&request.url)
        .map_err(|e| Error::invalid_input("url", format_args!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::invalid_input(
            "url",
            "must be an http(s) URL with a host",
        ));
    }
    Ok(url)
}

/// Each function's configuration (§4.3.2), its single step called at `url`.
fn function_configs(app: &str, functions: &[Arc<Function>], url: &url::Url) -> Vec<Value> {
    functions
        .iter()
        .map(|f| {
            let composite = format!("{app}-{}", f.id());
            let mut step_url = url.clone();
            step_url
                .query_pairs_mut()
                .append_pair("fnId", &composite)
                .append_pair("stepId", "step");
            let triggers: Vec<Value> = f
                .triggers()
                .iter()
                .map(|t| match t {
                    Trigger::Event(name) => json!({"event": name}),
                    Trigger::Cron(schedule) => json!({"cron": schedule.expression()}),
                })
                .collect();
            let mut function = json!({
                "id": composite,
                "name": f.name(),
                "triggers": triggers,
                "steps": {"step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": step_url.as_str()},
                    "retries": {"attempts": f.options().max_attempts()},
                }},
            });
            add_flow_control(&mut function, f);
            function
        })
        .collect()
}

/// The function's concurrency, idempotency, `cancel_on` and debounce options in the sync payload's terms
/// (§4.3.2), so Inngest applies the limits our runtime would. Keys become CEL expressions.
/// Inngest's idempotency window is its own (24 hours); priority has no static equivalent.
fn add_flow_control(function: &mut Value, f: &Function) {
    let options = f.options();
    if !options.concurrency.is_empty() {
        let limits: Vec<Value> = options
            .concurrency
            .iter()
            .map(|c| match &c.key {
                Some(key) => json!({"limit": c.limit, "key": key.to_expression()}),
                None => json!({"limit": c.limit}),
            })
            .collect();
        function["concurrency"] = Value::Array(limits);
    }
    if let Some(idempotency) = &options.idempotency {
        function["idempotency"] = Value::String(idempotency.key.to_expression());
    }
    if !options.cancel_on.is_empty() {
        let cancel: Vec<Value> = options
            .cancel_on
            .iter()
            .map(|c| match c.matching.expression_text() {
                Some(expression) => json!({"event": c.event, "if": expression}),
                None => json!({"event": c.event}),
            })
            .collect();
        function["cancel"] = Value::Array(cancel);
    }
    if let Some(debounce) = &options.debounce {
        let mut value = json!({"period": time_string(debounce.period)});
        if let Some(key) = &debounce.key {
            value["key"] = Value::String(key.to_expression());
        }
        if let Some(max_wait) = debounce.max_wait {
            value["timeout"] = Value::String(time_string(max_wait));
        }
        function["debounce"] = value;
    }
    let keyed = |mut value: Value, key: &Option<crate::flow_control::KeyExpression>| {
        if let Some(key) = key {
            value["key"] = Value::String(key.text().to_owned());
        }
        value
    };
    if let Some(t) = &options.throttle {
        function["throttle"] = keyed(
            json!({"limit": t.limit, "period": time_string(t.period), "burst": t.burst}),
            &t.key,
        );
    }
    if let Some(r) = &options.rate_limit {
        function["rateLimit"] = keyed(
            json!({"limit": r.limit, "period": time_string(r.period)}),
            &r.key,
        );
    }
    if let Some(b) = &options.batch_events {
        function["batchEvents"] = keyed(
            json!({"maxSize": b.max_size, "timeout": time_string(b.timeout)}),
            &b.key,
        );
    }
    if let Some(single) = &options.singleton {
        let mode = match single.mode {
            infra_core::SingletonMode::Skip => "skip",
            infra_core::SingletonMode::Cancel => "cancel",
        };
        function["singleton"] = keyed(json!({"mode": mode}), &single.key);
    }
}

/// A Time String (§1.3.2): whole seconds as `5s`, anything finer in milliseconds.
fn time_string(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;

    #[test]
    fn in_band_requests_are_checked() {
        let url =
            parse_in_band_request(br#"{"url":"https://app.example.com/api/inngest"}"#).unwrap();
        assert_eq!(url.as_str(), "https://app.example.com/api/inngest");
        for (body, field) in [
            (&b""[..], "body"),
            (b"[]", "body"),
            (br#"{"url":"x","more":1}"#, "body"),
            (br#"{"url":"not a url"}"#, "url"),
            (br#"{"url":"file:///etc/passwd"}"#, "url"),
        ] {
            let err = parse_in_band_request(body).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert_eq!(
                err.field(),
                Some(field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
