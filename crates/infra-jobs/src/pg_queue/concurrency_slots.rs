//! A job's concurrency slots as the enqueue statements carry them: one JSON parameter per job,
//! unpacked in SQL into the `concurrency_scopes` and `concurrency_limits` columns. Both enqueue
//! paths (plain and with flow control) share it.

use infra_core::NewJob;

/// A job's concurrency slots as the JSON `[[scope, limit], …]` the insert statements unpack
/// into `concurrency_scopes` and `concurrency_limits`; `None` (both columns NULL) without
/// limits.
pub(super) fn encode_slots(job: &NewJob) -> Option<String> {
    if job.concurrency.is_empty() {
        return None;
    }
    let pairs: Vec<serde_json::Value> = job
        .concurrency
        .iter()
        .map(|s| serde_json::json!([s.scope, s.limit.max(1)]))
        .collect();
    Some(serde_json::Value::from(pairs).to_string())
}

/// SQL unpacking the slots' JSON `$s` (see [`encode_slots`]) into the two columns.
pub(super) const SCOPES_OF: &str = "CASE WHEN s IS NULL THEN NULL ELSE ARRAY(SELECT x->>0 FROM jsonb_array_elements(s::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o) END";
pub(super) const LIMITS_OF: &str = "CASE WHEN s IS NULL THEN NULL ELSE ARRAY(SELECT (x->>1)::integer FROM jsonb_array_elements(s::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o) END";
