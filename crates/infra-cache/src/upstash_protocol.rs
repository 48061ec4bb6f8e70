//! Upstash's REST protocol, as documented at <https://upstash.com/docs/redis/features/restapi>:
//!
//! - a command is a JSON array (`["SET", "k", "v", "PX", 1000]`) POSTed to the database's REST
//!   URL with `Authorization: Bearer <token>`; the reply is `{"result": …}` (HTTP 200) or
//!   `{"error": "ERR …"}` (HTTP 400); a missing or wrong token is HTTP 401;
//! - `/pipeline` takes an array of commands and answers an array of `{"result"}`/`{"error"}`
//!   in the same order (not atomic); `/multi-exec` does the same inside `MULTI`/`EXEC`
//!   (atomic), or answers one `{"error"}` when the whole transaction is discarded. Batches
//!   here use `/multi-exec`, so `set_many` is atomic as on `RedisCache`;
//! - with `Upstash-Encoding: base64` every string in a reply is base64, except the status
//!   reply `OK`: the only way to read values that are not UTF-8 byte for byte.
//!
//! Arguments are JSON strings, so they are UTF-8: callers send values that are not UTF-8 in
//! hex, to scripts that decode them inside Redis (`redis_scripts::set_many_hex`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use infra_core::{Error, Result, Secret};
use serde_json::Value;
use url::Url;

use crate::config::UpstashConfig;
use crate::upstash_error::{map_reply_error, map_status, map_transport_error};

/// One command's successful reply.
#[derive(Debug)]
pub(crate) struct Reply(Value);

impl Reply {
    /// A bulk string (base64 on the wire) or `null`.
    pub(crate) fn bytes(self, op: &str) -> Result<Option<Vec<u8>>> {
        match self.0 {
            Value::Null => Ok(None),
            Value::String(text) => decode(op, &text).map(Some),
            other => Err(unexpected(op, "a string or null", &other)),
        }
    }

    /// A bulk string holding a decimal number (a `SCAN` cursor).
    pub(crate) fn number_string(self, op: &str) -> Result<u64> {
        let bytes = self.bytes(op)?.unwrap_or_default();
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::backend(format!("upstash {op}: the cursor is not a number")))
    }

    /// An integer reply.
    pub(crate) fn int(self, op: &str) -> Result<i64> {
        match &self.0 {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| unexpected(op, "an integer", &self.0)),
            other => Err(unexpected(op, "an integer", other)),
        }
    }

    /// An array reply.
    pub(crate) fn array(self, op: &str) -> Result<Vec<Reply>> {
        match self.0 {
            Value::Array(items) => Ok(items.into_iter().map(Reply).collect()),
            other => Err(unexpected(op, "an array", &other)),
        }
    }
}

fn decode(op: &str, text: &str) -> Result<Vec<u8>> {
    BASE64.decode(text).map_err(|e| {
        Error::backend(format!(
            "upstash {op}: a reply string is not base64 although Upstash-Encoding: base64 was \
             asked for: {e}"
        ))
    })
}

fn unexpected(op: &str, wanted: &str, got: &Value) -> Error {
    let shape = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Error::backend(format!(
        "upstash {op}: expected {wanted} in the reply, got {shape}"
    ))
}

/// A command: its name and arguments, as Upstash takes them.
pub(crate) type Command = Vec<Value>;

/// A string argument.
pub(crate) fn arg(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A number argument.
pub(crate) fn num(n: u64) -> Value {
    Value::from(n)
}

/// An HTTP client for one database's REST endpoint.
pub(crate) struct RestClient {
    http: reqwest::Client,
    base: Url,
    multi_exec: Url,
    token: Secret<String>,
    url_variable: &'static str,
    token_variable: &'static str,
    timeout: Duration,
}

impl RestClient {
    /// Builds the client (no connection is opened until the first call).
    pub(crate) fn new(config: &UpstashConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.command_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| Error::backend(format!("cannot build the HTTP client: {e}")))?;
        let endpoint = |path: &str| {
            let mut url = config.url.clone();
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}/{path}"));
            url
        };
        Ok(RestClient {
            http,
            base: config.url.clone(),
            multi_exec: endpoint("multi-exec"),
            token: config.token.clone(),
            url_variable: config.url_variable,
            token_variable: config.token_variable,
            timeout: config.command_timeout,
        })
    }

    /// The REST endpoint (it holds no credentials: the token travels in a header).
    pub(crate) fn url(&self) -> &Url {
        &self.base
    }

    /// Runs one command.
    pub(crate) async fn command(&self, op: &str, command: Command) -> Result<Reply> {
        let body = self.post(op, &self.base, &Value::Array(command)).await?;
        one_outcome(op, body)
    }

    /// Runs `commands` in one `/multi-exec` request, atomically; each command's outcome in
    /// order. (`/pipeline` is the same without atomicity; every batch here wants atomicity.)
    pub(crate) async fn transaction(
        &self,
        op: &str,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Reply>>> {
        let sent = commands.len();
        let body = self
            .post(
                op,
                &self.multi_exec,
                &Value::Array(commands.into_iter().map(Value::Array).collect()),
            )
            .await?;
        let items = match body {
            Value::Array(items) => items,
            // A discarded transaction answers one error for the whole batch.
            other => {
                return Err(one_outcome(op, other).err().unwrap_or_else(|| {
                    Error::backend(format!("upstash {op}: a batch reply that is not an array"))
                }));
            }
        };
        if items.len() != sent {
            return Err(Error::backend(format!(
                "upstash {op}: {} replies to {sent} commands",
                items.len()
            )));
        }
        Ok(items
            .into_iter()
            .map(|item| one_outcome(op, item))
            .collect())
    }

    /// POSTs `body` and returns the JSON reply of a 200 or 400; maps everything else.
    async fn post(&self, op: &str, url: &Url, body: &Value) -> Result<Value> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| Error::backend(format!("upstash {op}: cannot encode the request: {e}")))?;
        let response = self
            .http
            .post(url.clone())
            .bearer_auth(self.token.expose())
            .header("Upstash-Encoding", "base64")
            .header("Content-Type", "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|e| map_transport_error(op, e, self.timeout))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| map_transport_error(op, e, self.timeout))?;
        if matches!(status, 200 | 400)
            && let Ok(json) = serde_json::from_slice::<Value>(&bytes)
        {
            return Ok(json);
        }
        Err(map_status(
            op,
            status,
            &String::from_utf8_lossy(&bytes),
            self.url_variable,
            self.token_variable,
        ))
    }
}

/// `{"result": …}` or `{"error": "…"}`.
fn one_outcome(op: &str, body: Value) -> Result<Reply> {
    match body {
        Value::Object(mut fields) => {
            if let Some(Value::String(message)) = fields.remove("error") {
                return Err(map_reply_error(op, &message));
            }
            match fields.remove("result") {
                Some(result) => Ok(Reply(result)),
                None => Err(Error::backend(format!(
                    "upstash {op}: a reply with neither `result` nor `error`"
                ))),
            }
        }
        other => Err(unexpected(op, "an object", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;
    use serde_json::json;

    #[test]
    fn replies_decode_base64_and_keep_integers() {
        let reply = one_outcome("GET", json!({"result": "AP8="})).unwrap();
        assert_eq!(reply.bytes("GET").unwrap(), Some(vec![0, 255]));
        let reply = one_outcome("GET", json!({"result": null})).unwrap();
        assert_eq!(reply.bytes("GET").unwrap(), None);
        let reply = one_outcome("EVALSHA", json!({"result": [1, 4, 900]})).unwrap();
        let ints: Vec<i64> = reply
            .array("EVALSHA")
            .unwrap()
            .into_iter()
            .map(|r| r.int("EVALSHA").unwrap())
            .collect();
        assert_eq!(ints, [1, 4, 900]);
        let cursor = one_outcome("SCAN", json!({"result": "MTc="})).unwrap();
        assert_eq!(cursor.number_string("SCAN").unwrap(), 17);
    }

    #[test]
    fn error_replies_keep_the_redis_code() {
        let err = one_outcome(
            "EVALSHA",
            json!({"error": "NOSCRIPT No matching script. Please use EVAL."}),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert_eq!(err.context("redis_code"), Some("NOSCRIPT"));
        assert!(err.to_string().contains("No matching script"), "{err}");
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        for body in [json!([1]), json!({"other": 1}), json!({"result": 5})] {
            let outcome = one_outcome("GET", body).and_then(|r| r.bytes("GET"));
            assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Backend);
        }
        let not_base64 = one_outcome("GET", json!({"result": "%%%"})).unwrap();
        assert!(
            not_base64
                .bytes("GET")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
    }
}
