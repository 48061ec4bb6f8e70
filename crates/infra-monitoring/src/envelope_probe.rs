//! The Sentry backend's health probe: one harmless envelope to the DSN's envelope endpoint,
//! and what its HTTP status says about the DSN.
//!
//! A GET on the endpoint proves only that something answers HTTP; a wrong key or project
//! still answers. So the probe posts what the SDKs themselves send when they have nothing to
//! report: an envelope holding one `client_report` item with no discarded events
//! (<https://develop.sentry.dev/sdk/client-reports/>), authenticated with the
//! DSN's `X-Sentry-Auth` header (<https://develop.sentry.dev/sdk/overview/#authentication>).
//! It creates no event and no issue; Sentry checks the key and project on it like on any
//! envelope.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::{Error, ErrorKind, Probe, Result, Secret};

/// The probe's HTTP timeout; below the health check's own deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The content type of envelopes.
const ENVELOPE_CONTENT_TYPE: &str = "application/x-sentry-envelope";

/// Posts a probe envelope to one DSN's envelope endpoint.
pub(crate) struct EnvelopeProbe {
    http: reqwest::Client,
    dsn: Secret<sentry::types::Dsn>,
    /// The variable the DSN came from, named in every verdict.
    variable: &'static str,
}

impl EnvelopeProbe {
    pub(crate) fn new(dsn: sentry::types::Dsn, variable: &'static str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .build()
            .map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
        Ok(EnvelopeProbe {
            http,
            dsn: Secret::new(dsn),
            variable,
        })
    }

    pub(crate) async fn run(&self) -> Result<Probe> {
        let dsn = self.dsn.expose();
        let host = dsn.host().to_owned();
        let auth = dsn
            .to_auth(Some(concat!(
                "infra-monitoring/",
                env!("CARGO_PKG_VERSION")
            )))
            .to_string();
        let response = self
            .http
            .post(dsn.envelope_api_url())
            .header("X-Sentry-Auth", auth)
            .header(reqwest::header::CONTENT_TYPE, ENVELOPE_CONTENT_TYPE)
            .body(client_report_envelope())
            .send()
            .await
            .map_err(|e| {
                // The URL holds no key (it rides in the header), but keep errors uniform.
                let e = e.without_url();
                if e.is_timeout() {
                    Error::timeout(
                        &format!("Sentry envelope endpoint on {host}"),
                        PROBE_TIMEOUT,
                    )
                    .with_source(e)
                } else {
                    Error::unavailable(format!(
                        "cannot reach the Sentry envelope endpoint on {host}"
                    ))
                    .with_source(e)
                }
            })?;
        verdict(response.status().as_u16(), &host, self.variable)
    }
}

/// An envelope with one empty client report: `{}` header (the key is in `X-Sentry-Auth`),
/// item header, payload.
fn client_report_envelope() -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "{{}}\n{{\"type\":\"client_report\"}}\n{{\"timestamp\":{timestamp},\"discarded_events\":[]}}\n"
    )
}

/// What the envelope endpoint's status says about the DSN in `variable`.
///
/// 2xx: the key and project are accepted. 429: accepted but over quota, events are being
/// dropped (degraded). Everything else is unhealthy, with the usual cause: 401 a key Sentry
/// does not know, 403 a key not allowed for the project (or a disabled project or key), 404
/// a project id or host/path that is not a Sentry project's endpoint, 5xx Sentry or a proxy
/// in front of it failing.
pub(crate) fn verdict(status: u16, host: &str, variable: &'static str) -> Result<Probe> {
    let unhealthy = |kind: ErrorKind, meaning: &str| {
        Err(Error::new(
            kind,
            format!(
                "{variable}: the envelope endpoint on {host} answered HTTP {status}: {meaning}"
            ),
        )
        .with_context("variable", variable)
        .with_context("status", status.to_string()))
    };
    match status {
        200..=299 => Ok(Probe::healthy(format!(
            "the envelope endpoint on {host} accepted the DSN's key (HTTP {status})"
        ))),
        429 => Ok(Probe::degraded(format!(
            "the envelope endpoint on {host} answered HTTP 429: over quota or rate limited, \
             events are dropped until it lifts"
        ))),
        401 => unhealthy(
            ErrorKind::Config,
            "unauthorized, the DSN's public key is wrong (not a key Sentry knows)",
        ),
        403 => unhealthy(
            ErrorKind::Config,
            "forbidden, wrong key for this project, wrong project, or the key or project is disabled",
        ),
        404 => unhealthy(
            ErrorKind::Config,
            "not found, wrong project id or wrong host (not a Sentry envelope endpoint)",
        ),
        500..=599 => unhealthy(
            ErrorKind::Unavailable,
            "server error, Sentry (or a proxy in front of it) is failing",
        ),
        _ => unhealthy(
            ErrorKind::Backend,
            "unexpected answer, check that the DSN's host is a Sentry server",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_their_meaning() {
        assert_eq!(
            verdict(200, "h", "SENTRY_DSN").unwrap().status,
            infra_core::HealthStatus::Healthy
        );
        assert_eq!(
            verdict(429, "h", "SENTRY_DSN").unwrap().status,
            infra_core::HealthStatus::Degraded
        );
        for (status, kind, words) in [
            (401, ErrorKind::Config, "wrong"),
            (403, ErrorKind::Config, "wrong project"),
            (404, ErrorKind::Config, "wrong host"),
            (500, ErrorKind::Unavailable, "server error"),
            (503, ErrorKind::Unavailable, "server error"),
            (302, ErrorKind::Backend, "unexpected"),
        ] {
            let err = verdict(status, "sentry.example", "NEXT_PUBLIC_SENTRY_DSN").unwrap_err();
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.variable(), Some("NEXT_PUBLIC_SENTRY_DSN"));
            assert_eq!(err.context("status"), Some(status.to_string().as_str()));
            let text = err.to_string();
            assert!(text.contains(&format!("HTTP {status}")), "{text}");
            assert!(text.contains(words), "{text}");
        }
    }

    #[test]
    fn the_probe_envelope_is_one_empty_client_report() {
        let body = client_report_envelope();
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["type"], "client_report");
        assert_eq!(lines[2]["discarded_events"], serde_json::json!([]));
    }
}
