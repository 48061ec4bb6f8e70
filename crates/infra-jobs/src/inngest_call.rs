//! Inngest's call requests for step functions (SDK spec §4.4, §5): the request's memoized
//! `steps` become the execution's memo, `stepId` and `ctx.disable_immediate_execution` say
//! whether a new step may run now, and the execution's end becomes the reply — `200` with the
//! function's output, `206` with the one step operation found (`StepRun`, `StepError`,
//! `StepPlanned`, `Sleep`, `WaitForEvent`, `InvokeFunction`), or the error replies of §4.4.3.

use std::collections::HashMap;

use infra_core::{Event, StepState};
use serde::Deserialize;
use serde_json::Value;

use crate::run_steps::InngestRun;

/// The body of a call request (§4.4.1).
#[derive(Deserialize)]
pub(crate) struct CallRequest {
    pub(crate) event: Option<Value>,
    #[serde(default)]
    pub(crate) events: Vec<Value>,
    #[serde(default)]
    pub(crate) steps: HashMap<String, Value>,
    #[serde(default)]
    pub(crate) ctx: CallContext,
}

#[derive(Deserialize, Default)]
pub(crate) struct CallContext {
    #[serde(default)]
    pub(crate) run_id: String,
    #[serde(default)]
    pub(crate) attempt: u32,
    #[serde(default)]
    pub(crate) use_api: bool,
    #[serde(default)]
    pub(crate) disable_immediate_execution: bool,
}

/// The memo of a request's `steps` (§5.2.1): `{data}` and `{error}` as they are, anything
/// else (a bare `null` for a sleep, from older servers) as its data.
pub(crate) fn memo_of(steps: HashMap<String, Value>) -> HashMap<String, StepState> {
    steps
        .into_iter()
        .map(|(id, value)| {
            let output = match &value {
                Value::Object(map)
                    if map.len() == 1
                        && (map.contains_key("data") || map.contains_key("error")) =>
                {
                    value
                }
                _ => serde_json::json!({ "data": value }),
            };
            (id, StepState::Done(output))
        })
        .collect()
}

/// The driver of one call request: `step_id` is the `stepId` query parameter.
pub(crate) fn inngest_run(
    step_id: Option<String>,
    ctx: &CallContext,
    app_id: &str,
    sender: Option<std::sync::Arc<dyn infra_core::EventSender>>,
) -> InngestRun {
    InngestRun {
        target: step_id.filter(|s| s != "step"),
        immediate: !ctx.disable_immediate_execution,
        app_id: app_id.to_owned(),
        sender,
    }
}

/// The request's event, checked to be one.
pub(crate) fn event_of(raw: Value) -> std::result::Result<Event, serde_json::Error> {
    serde_json::from_value(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memoized_steps_keep_data_and_errors() {
        let memo = memo_of(HashMap::from([
            ("a".to_owned(), json!({"data": 1})),
            (
                "b".to_owned(),
                json!({"error": {"name": "Error", "message": "x"}}),
            ),
            ("c".to_owned(), Value::Null),
        ]));
        assert_eq!(memo["a"], StepState::Done(json!({"data": 1})));
        assert_eq!(
            memo["b"],
            StepState::Done(json!({"error": {"name": "Error", "message": "x"}}))
        );
        assert_eq!(memo["c"], StepState::Done(json!({"data": null})));
    }
}
