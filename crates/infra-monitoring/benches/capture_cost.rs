//! The caller's cost of capturing an error with context through `Monitoring` against bare
//! `sentry::capture_error`, with the same client and transport, in one run.
//!
//! `cargo bench -p infra-monitoring` (or `cargo xtask bench monitoring`). The transport is
//! the sentry crate's in-memory test transport: the caller never waits on the network either
//! way, so this measures what our API adds on the calling thread.

use std::time::Instant;

use infra_core::testkit::bench_report::{Goal, Row, Side};
use infra_core::{Context, Env, ErrorReporter};
use infra_monitoring::{Monitoring, MonitoringConfig, sentry_options};
use sentry::test::with_captured_events_options;

const CAPTURES: usize = 2000;
const ROUNDS: usize = 9;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    let config = MonitoringConfig::from_env(&Env::from_pairs([(
        "SENTRY_DSN",
        "https://public@sentry.example/1",
    )]))
    .unwrap();
    let monitoring = Monitoring::attach(config.clone()).unwrap();
    let err = std::io::Error::other("calendar provider refused the token");
    let mut context = Context::new();
    context.insert("calendar_id".into(), "cal-123".into());
    context.insert("attempt".into(), 2.into());

    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // Alternate sides; each round on a fresh test client so stored events don't pile up.
        let mut per_call = 0.0;
        with_captured_events_options(
            || {
                let started = Instant::now();
                for _ in 0..CAPTURES {
                    monitoring.capture_error(&err, &context);
                }
                per_call = started.elapsed().as_nanos() as f64 / CAPTURES as f64;
            },
            sentry_options(&config).unwrap(),
        );
        ours.push(per_call);
        with_captured_events_options(
            || {
                let started = Instant::now();
                for _ in 0..CAPTURES {
                    sentry::with_scope(
                        |scope| {
                            scope.set_context(
                                "context",
                                sentry::protocol::Context::Other(
                                    context.clone().into_iter().collect(),
                                ),
                            )
                        },
                        || sentry::capture_error(&err),
                    );
                }
                per_call = started.elapsed().as_nanos() as f64 / CAPTURES as f64;
            },
            sentry_options(&config).unwrap(),
        );
        bare.push(per_call);
    }
    let (ours, bare) = (median(ours), median(bare));
    println!("infra-monitoring benchmark (median of {ROUNDS} rounds of {CAPTURES} captures)");
    println!(
        "capture error with context          ours {:>8.1} µs   bare sentry {:>8.1} µs   ratio {:.3}",
        ours / 1000.0,
        bare / 1000.0,
        ours / bare
    );
    Row::new(
        "infra-monitoring",
        "capture an error with context (in-memory transport)",
        "µs/capture",
    )
    .ours(Side::new("Monitoring::capture_error", ours / 1000.0))
    .baseline(Side::new(
        "bare sentry::capture_error in a scope with the context",
        bare / 1000.0,
    ))
    .goal(Goal::ratio_at_most(1.2))
    .emit()
    .expect("bench report written");
}
