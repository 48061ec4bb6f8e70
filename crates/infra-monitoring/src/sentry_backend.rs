//! The Sentry backend: the `sentry` crate's client, scrubbed before anything is sent.

use std::time::Duration;

use infra_core::{Breadcrumb, Context, DynError, Error, Level, Probe, Result, User};
use sentry::protocol::Context as SentryContext;

use crate::config::{DSN_VARIABLES, MonitoringConfig};
use crate::envelope_probe::EnvelopeProbe;
use crate::sentry_scrub::{ScrubbingTransportFactory, scrub_breadcrumb, scrub_event};
use crate::tracking::Tracking;

/// How long the last `Monitoring` clone waits for queued events when dropped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct SentryBackend {
    /// `None` when the app initialised Sentry itself and we only report through it.
    guard: Option<sentry::ClientInitGuard>,
    /// Probes our own client's DSN; `None` when attached (the probe then asks the hub).
    probe: Option<EnvelopeProbe>,
    /// Names the variable in errors about the app's client when attached.
    variable: &'static str,
}

fn level(level: Level) -> sentry::Level {
    match level {
        Level::Debug => sentry::Level::Debug,
        Level::Info => sentry::Level::Info,
        Level::Warning => sentry::Level::Warning,
        Level::Error => sentry::Level::Error,
        Level::Fatal => sentry::Level::Fatal,
    }
}

/// The sentry `ClientOptions` for `config`: DSN, release, environment, sample rates,
/// `send_default_pii` off, the scrubbers installed as `before_send`/`before_breadcrumb` and
/// around the transport (for transactions, which `before_send` never sees), and
/// the default integrations (panics, contexts, backtraces) already in `integrations` with
/// `default_integrations` off, so `sentry::init` and `sentry::Client::from` both end with each
/// integration once. Use it to initialise Sentry yourself (then
/// [`Monitoring::attach`](crate::Monitoring::attach)); rates outside 0.0–1.0 are a `Config`
/// error naming their variable.
pub fn sentry_options(config: &MonitoringConfig) -> Result<sentry::ClientOptions> {
    let Some(dsn) = &config.dsn else {
        return Err(Error::config("SENTRY_DSN", "is not set"));
    };
    for (variable, rate) in [
        ("SENTRY_SAMPLE_RATE", config.sample_rate),
        ("SENTRY_TRACES_SAMPLE_RATE", config.traces_sample_rate),
    ] {
        // The sentry builders panic outside 0.0–1.0; a config built by hand gets an error.
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::config(
                variable,
                format_args!("must be between 0.0 and 1.0, got {rate}"),
            ));
        }
    }
    let mut options = sentry::ClientOptions::new()
        .release(config.release.clone())
        .environment(config.environment.clone())
        .sample_rate(config.sample_rate)
        .traces_sample_rate(config.traces_sample_rate)
        .debug(config.debug)
        .send_default_pii(false)
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .before_send(|event| Some(scrub_event(event)))
        .before_breadcrumb(|mut crumb| {
            scrub_breadcrumb(&mut crumb);
            Some(crumb)
        });
    options.dsn = Some(dsn.sentry_dsn().clone());
    let mut options = sentry::apply_defaults(options);
    // sentry has no `before_send_transaction`: transactions (and anything else an envelope
    // carries) are scrubbed on their way into the transport instead.
    options.transport = options
        .transport
        .take()
        .map(|inner| std::sync::Arc::new(ScrubbingTransportFactory::new(inner)) as _);
    // apply_defaults has put the default integrations (panics, contexts, backtraces) into
    // `integrations`; with the flag left on, `sentry::init` would add them a second time.
    options.default_integrations = false;
    Ok(options)
}

/// Puts the caller's context map on the event as the `context` context.
fn set_event_context(scope: &mut sentry::Scope, context: &Context) {
    if !context.is_empty() {
        scope.set_context(
            "context",
            SentryContext::Other(context.clone().into_iter().collect()),
        );
    }
}

impl SentryBackend {
    pub(crate) fn init(config: &MonitoringConfig) -> Result<Self> {
        let options = sentry_options(config)?;
        let dsn = config
            .dsn
            .as_ref()
            .ok_or_else(|| Error::config("SENTRY_DSN", "is not set"))?;
        let probe = EnvelopeProbe::new(dsn.sentry_dsn().clone(), dsn.variable())?;
        let guard = Some(sentry::init(options));
        Ok(SentryBackend {
            guard,
            probe: Some(probe),
            variable: dsn.variable(),
        })
    }

    /// Reports through whatever client the current hub has (the app initialised Sentry).
    pub(crate) fn attach(config: &MonitoringConfig) -> Self {
        SentryBackend {
            guard: None,
            probe: None,
            variable: config
                .dsn
                .as_ref()
                .map_or(DSN_VARIABLES[0], |dsn| dsn.variable()),
        }
    }

    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        match &self.guard {
            Some(guard) => guard.flush(Some(timeout)),
            None => sentry::Hub::current()
                .client()
                .is_none_or(|c| c.flush(Some(timeout))),
        }
    }

    pub(crate) fn capture_error_with(
        &self,
        error: &DynError,
        context: &Context,
        tracking: &Tracking,
    ) -> String {
        sentry::with_scope(
            |scope| {
                set_event_context(scope, context);
                for (key, value) in &tracking.tags {
                    scope.set_tag(key, value);
                }
                if !tracking.fingerprint.is_empty() {
                    let parts: Vec<&str> =
                        tracking.fingerprint.iter().map(String::as_str).collect();
                    scope.set_fingerprint(Some(&parts));
                }
                scope.set_level(Some(level(tracking.level)));
            },
            || sentry::capture_error(error),
        )
        .to_string()
    }

    pub(crate) fn capture_message(&self, message: &str, at: Level, context: &Context) -> String {
        sentry::with_scope(
            |scope| set_event_context(scope, context),
            || sentry::capture_message(message, level(at)),
        )
        .to_string()
    }

    pub(crate) fn add_breadcrumb(&self, breadcrumb: Breadcrumb) {
        sentry::add_breadcrumb(sentry::Breadcrumb {
            message: Some(breadcrumb.message),
            category: breadcrumb.category,
            level: level(breadcrumb.level),
            data: breadcrumb.data.into_iter().collect(),
            ..Default::default()
        });
    }

    pub(crate) fn set_user(&self, user: Option<User>, send_emails: bool) {
        sentry::configure_scope(|scope| match user {
            None => {
                scope.set_user(None);
                scope.remove_tag("workspace");
            }
            Some(user) => {
                if let Some(workspace) = &user.workspace {
                    scope.set_tag("workspace", workspace);
                }
                scope.set_user(Some(sentry::User {
                    id: user.id,
                    email: if send_emails { user.email } else { None },
                    username: user.username,
                    ..Default::default()
                }));
            }
        });
    }

    /// Our client's DSN, or when attached the DSN of the client the hub reports through:
    /// its envelope endpoint must accept the key (see [`EnvelopeProbe`]).
    pub(crate) async fn probe(&self) -> Result<Probe> {
        if let Some(probe) = &self.probe {
            return probe.run().await;
        }
        let Some(client) = sentry::Hub::current().client() else {
            return Err(Error::config(
                self.variable,
                "is not in use: Monitoring::attach found no Sentry client bound to the hub \
                 (call sentry::init with sentry_options(&config) first); events are dropped",
            ));
        };
        let Some(dsn) = client.dsn().cloned() else {
            return Err(Error::config(
                self.variable,
                "is not in use: the app's Sentry client has no DSN; events are dropped",
            ));
        };
        EnvelopeProbe::new(dsn, self.variable)?.run().await
    }
}
