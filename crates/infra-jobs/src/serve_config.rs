//! Settings of the `/api/inngest` serve handler, read from the environment.

use std::time::Duration;

use infra_core::{Env, Error, Result, parse_url};
use url::Url;

use crate::config::INNGEST_DEV_SERVER;
use crate::signing::SigningKeys;

/// Inngest Cloud's API origin, where apps sync.
pub const INNGEST_CLOUD_API: &str = "https://api.inngest.com";
/// Where the serve handler is mounted unless `INNGEST_SERVE_PATH` says otherwise.
pub const DEFAULT_SERVE_PATH: &str = "/api/inngest";
/// The variable bounding a call request's body, in bytes.
pub const SERVE_MAX_BODY_VAR: &str = "INFRA_JOBS_SERVE_MAX_BODY_BYTES";
/// The call request body bound unless `INFRA_JOBS_SERVE_MAX_BODY_BYTES` says otherwise: 8 MiB,
/// room for an event at Inngest's largest event size (3 MiB) twice over (`event` and
/// `events`); Inngest sends larger runs trimmed, for the SDK to fetch (`ctx.use_api`).
pub const DEFAULT_SERVE_MAX_BODY: usize = 8 * 1024 * 1024;

/// Which kind of Inngest server the app talks to (SDK specification §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeMode {
    /// Inngest Cloud: every request must carry a valid signature.
    Cloud,
    /// The Inngest dev server (`INNGEST_DEV`): requests are not signed and not verified.
    Dev,
}

impl ServeMode {
    /// `cloud` or `dev`, as the introspection reply spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServeMode::Cloud => "cloud",
            ServeMode::Dev => "dev",
        }
    }
}

/// How the serve handler verifies requests and syncs the app.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The app's id: the `appName` of the sync and the prefix of every function's composite
    /// id (`{app_id}-{function_id}`).
    pub app_id: String,
    /// `INNGEST_SIGNING_KEY` and `INNGEST_SIGNING_KEY_FALLBACK`; required in cloud mode.
    pub signing_keys: Option<SigningKeys>,
    /// Cloud unless `INNGEST_DEV` is set.
    pub mode: ServeMode,
    /// Where syncs go: `INNGEST_API_BASE_URL`, else `INNGEST_BASE_URL`, else the dev server
    /// (`INNGEST_DEV`), else Inngest Cloud's API.
    pub api_base_url: Url,
    /// The app's public origin (`INNGEST_SERVE_ORIGIN`): the handler's URL is it + the path.
    /// Required for out-of-band syncs (a plain `PUT`); in-band syncs register the URL
    /// Inngest signed unless this is set. Never derived from a request's headers.
    pub serve_origin: Option<Url>,
    /// The handler's path (`INNGEST_SERVE_PATH`, default `/api/inngest`).
    pub serve_path: String,
    /// Whether `INNGEST_EVENT_KEY` is set (reported by introspection).
    pub has_event_key: bool,
    /// Deadline of the sync call to Inngest (`INNGEST_TIMEOUT`, default 10s).
    pub timeout: Duration,
    /// The largest call request accepted, in bytes (`INFRA_JOBS_SERVE_MAX_BODY_BYTES`,
    /// default 8 MiB); a larger one is refused with 413 before it is read.
    pub max_body_bytes: usize,
}

impl ServeConfig {
    /// A cloud-mode config for `app_id` verifying with `signing_keys`, syncing with Inngest
    /// Cloud.
    pub fn new(app_id: impl Into<String>, signing_keys: Option<SigningKeys>) -> Self {
        ServeConfig {
            app_id: app_id.into(),
            signing_keys,
            mode: ServeMode::Cloud,
            api_base_url: Url::parse(INNGEST_CLOUD_API).expect("constant URL"),
            serve_origin: None,
            serve_path: DEFAULT_SERVE_PATH.to_owned(),
            has_event_key: false,
            timeout: Duration::from_secs(10),
            max_body_bytes: DEFAULT_SERVE_MAX_BODY,
        }
    }

    /// Reads the variables above for the app `app_id`. In cloud mode a missing
    /// `INNGEST_SIGNING_KEY` is a configuration error: the SDK specification has every
    /// request refused without it.
    pub fn from_env(env: &Env, app_id: impl Into<String>) -> Result<Self> {
        let app_id = app_id.into();
        if app_id.trim().is_empty() {
            return Err(Error::invalid_input("app_id", "must not be empty"));
        }
        let dev = match env.get("INNGEST_DEV") {
            None => None,
            Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
                Some(parse_url("INNGEST_DEV", &v)?)
            }
            Some(_) => match env.bool("INNGEST_DEV")? {
                Some(true) => Some(Url::parse(INNGEST_DEV_SERVER).expect("constant URL")),
                _ => None,
            },
        };
        let signing_keys = SigningKeys::from_env(env)?;
        let mode = if dev.is_some() {
            ServeMode::Dev
        } else {
            ServeMode::Cloud
        };
        if mode == ServeMode::Cloud && signing_keys.is_none() {
            return Err(Error::config(
                crate::signing::SIGNING_KEY_VAR,
                "is not set: Inngest Cloud's requests cannot be verified (set INNGEST_DEV to use the dev server)",
            ));
        }
        let api_base_url = match env.url("INNGEST_API_BASE_URL")? {
            Some(url) => url,
            None => match env.url("INNGEST_BASE_URL")? {
                Some(url) => url,
                None => dev.unwrap_or_else(|| Url::parse(INNGEST_CLOUD_API).expect("constant URL")),
            },
        };
        let serve_path = env
            .get("INNGEST_SERVE_PATH")
            .unwrap_or_else(|| DEFAULT_SERVE_PATH.to_owned());
        if !serve_path.starts_with('/') {
            return Err(Error::config("INNGEST_SERVE_PATH", "must start with `/`"));
        }
        Ok(ServeConfig {
            app_id,
            signing_keys,
            mode,
            api_base_url,
            serve_origin: env.url("INNGEST_SERVE_ORIGIN")?,
            serve_path,
            has_event_key: env.is_set("INNGEST_EVENT_KEY"),
            timeout: env
                .duration("INNGEST_TIMEOUT")?
                .unwrap_or(Duration::from_secs(10)),
            max_body_bytes: match env.integer::<usize>(SERVE_MAX_BODY_VAR)? {
                Some(0) => return Err(Error::config(SERVE_MAX_BODY_VAR, "must be at least 1")),
                Some(max) => max,
                None => DEFAULT_SERVE_MAX_BODY,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_mode_needs_a_signing_key_and_dev_mode_does_not() {
        let err = ServeConfig::from_env(&Env::empty(), "app").unwrap_err();
        assert_eq!(err.variable(), Some("INNGEST_SIGNING_KEY"));

        let cfg = ServeConfig::from_env(&Env::from_pairs([("INNGEST_DEV", "1")]), "app").unwrap();
        assert_eq!(cfg.mode, ServeMode::Dev);
        assert_eq!(cfg.api_base_url.as_str(), "http://127.0.0.1:8288/");

        let cfg = ServeConfig::from_env(
            &Env::from_pairs([
                ("INNGEST_SIGNING_KEY", "signkey-prod-00ff"),
                ("INNGEST_SERVE_ORIGIN", "https://app.example.com"),
                ("INNGEST_SERVE_PATH", "/hooks/inngest"),
            ]),
            "app",
        )
        .unwrap();
        assert_eq!(cfg.mode, ServeMode::Cloud);
        assert_eq!(cfg.api_base_url.as_str(), "https://api.inngest.com/");
        assert_eq!(cfg.serve_path, "/hooks/inngest");
        assert!(!format!("{cfg:?}").contains("00ff"));

        let err = ServeConfig::from_env(
            &Env::from_pairs([("INNGEST_DEV", "1"), ("INNGEST_SERVE_PATH", "api")]),
            "app",
        )
        .unwrap_err();
        assert_eq!(err.variable(), Some("INNGEST_SERVE_PATH"));
    }
}
