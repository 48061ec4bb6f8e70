//! How a wait matches an arriving event, and how that match becomes an indexed key.
//!
//! A match is Inngest's: a field that must be equal in the run's event and the arriving one
//! (`match: "data.userId"`, i.e. `event.data.userId == async.data.userId`) or an `if`
//! expression over `event` (the run's event) and `async` (the arriving one). When the wait is
//! made, `event` is bound to the run's event; the first conjunct of the form
//! `async.<fields> == <value>` becomes the wait's indexed [`WaitKey`](infra_core::WaitKey) (which narrows the
//! candidates), and the bound expression its condition, which the runtime checks on the events
//! the index finds ([`ExpressionCondition`]).

use infra_core::{Error, Event, Result, WaitCondition, WaitKind, WaitSpec};
use serde_json::Value;

use crate::expression::{Bindings, Expr, Op, Segment, key_text};

/// What an event must be to end a wait: Inngest's `match` or `if`.
///
/// ```
/// use infra_jobs::Match;
/// assert_eq!(
///     Match::field("data.userId").expression_text().as_deref(),
///     Some("event.data.userId == async.data.userId")
/// );
/// assert_eq!(
///     Match::expression("async.data.ok == true").expression_text().as_deref(),
///     Some("async.data.ok == true")
/// );
/// assert_eq!(Match::Any.expression_text(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Any event of the name.
    Any,
    /// The field (such as `data.userId`) is equal in the run's event and the arriving one.
    Field(String),
    /// An expression over `event` (the run's event) and `async` (the arriving one).
    Expression(String),
}

impl Match {
    /// Equal values of `path` (such as `data.userId`) in both events.
    pub fn field(path: impl Into<String>) -> Self {
        Match::Field(path.into())
    }

    /// An `if` expression, such as `event.data.userId == async.data.userId && async.data.ok`.
    pub fn expression(expression: impl Into<String>) -> Self {
        Match::Expression(expression.into())
    }

    /// The match as one expression, as Inngest's SDKs send it (`None` for [`Match::Any`]).
    pub fn expression_text(&self) -> Option<String> {
        match self {
            Match::Any => None,
            Match::Field(path) => {
                let path = path.strip_prefix("event.").unwrap_or(path);
                Some(format!("event.{path} == async.{path}"))
            }
            Match::Expression(e) => Some(e.clone()),
        }
    }

    /// The wait for an event named `name` that a run on `event` makes, doing `kind`.
    pub(crate) fn wait_for(&self, name: &str, event: &Event, kind: WaitKind) -> Result<WaitSpec> {
        let spec = WaitSpec::new(name, kind);
        let Some(text) = self.expression_text() else {
            return Ok(spec);
        };
        let expr = Expr::parse(&text, "if")?;
        let run_event = serde_json::to_value(event)?;
        let conjuncts = expr.bind("event", &run_event).conjuncts();
        // The key only narrows the candidates: the equality stays in the condition, since key
        // texts can coincide across types (`"1"` and `1`) where CEL's `==` does not.
        let spec = match conjuncts.iter().find_map(indexed_key) {
            Some((path, value)) => spec.with_key(path, value),
            None => spec,
        };
        Ok(match Expr::all(conjuncts) {
            Some(rest) => spec.with_condition(rest.to_string()),
            None => spec,
        })
    }
}

/// `async.<fields> == <literal>` (either way round) as (dotted path, key text).
fn indexed_key(conjunct: &Expr) -> Option<(String, String)> {
    let Expr::Binary(Op::Eq, a, b) = conjunct else {
        return None;
    };
    let (path, literal) = match (a.as_ref(), b.as_ref()) {
        (Expr::Path(root, segments), Expr::Literal(v))
        | (Expr::Literal(v), Expr::Path(root, segments))
            if root == "async" =>
        {
            (segments, v)
        }
        _ => return None,
    };
    let mut fields = Vec::with_capacity(path.len());
    for segment in path {
        match segment {
            Segment::Field(f) if !f.is_empty() && !f.contains('.') => fields.push(f.as_str()),
            _ => return None,
        }
    }
    // Numbers keep their own text in the store's index, so only exact forms are keyed.
    if matches!(literal, Value::Number(n) if !n.is_i64() && !n.is_u64()) {
        return None;
    }
    Some((fields.join("."), key_text(literal)?))
}

/// A function's `cancel_on`: an event that cancels its sleeping and waiting runs when it
/// matches their event (Inngest's `cancelOn`).
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOn {
    /// The event's name.
    pub event: String,
    /// How it must match the run's event.
    pub matching: Match,
}

impl CancelOn {
    /// The cancelling wait of a run on `event`; `None` when its expression cannot be bound.
    pub(crate) fn wait_for(&self, event: &Event) -> Option<WaitSpec> {
        self.matching
            .wait_for(&self.event, event, WaitKind::Cancel)
            .ok()
    }
}

/// Checks waits' conditions with the expression evaluator.
pub(crate) struct ExpressionCondition;

impl WaitCondition for ExpressionCondition {
    fn accepts(&self, condition: &str, event: &Event) -> bool {
        let Ok(expr) = Expr::parse(condition, "condition") else {
            return false;
        };
        let Ok(arriving) = serde_json::to_value(event) else {
            return false;
        };
        expr.matches(Bindings {
            event: None,
            async_event: Some(&arriving),
        })
    }
}

/// Checks a match expression when a function is built, so a typo fails at start-up.
pub(crate) fn check_expression(text: &str, field: &str) -> Result<()> {
    Expr::parse(text, field).map(|_| ()).map_err(|e: Error| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_equality_on_async_becomes_the_key_and_the_rest_the_condition() {
        let event = Event::new("t/start", json!({"userId": "u1", "min": 100}));
        let spec = Match::expression(
            "async.data.amount > event.data.min && event.data.userId == async.data.userId",
        )
        .wait_for("t/paid", &event, WaitKind::Step("s".into()))
        .unwrap();
        let key = spec.key.clone().unwrap();
        assert_eq!(
            (key.path.as_str(), key.value.as_str()),
            ("data.userId", "u1")
        );
        let condition = spec.condition.clone().unwrap();
        let paid = |amount: i64| Event::new("t/paid", json!({"userId": "u1", "amount": amount}));
        assert!(ExpressionCondition.accepts(&condition, &paid(150)));
        assert!(!ExpressionCondition.accepts(&condition, &paid(50)));

        let field = Match::field("data.userId")
            .wait_for("t/paid", &event, WaitKind::Cancel)
            .unwrap();
        assert_eq!(field.key.unwrap().value, "u1");
        let kept = field.condition.unwrap();
        assert!(ExpressionCondition.accepts(&kept, &paid(1)));
        let numeric = Event::new("t/paid", json!({"userId": 1}));
        let one = Match::field("data.userId")
            .wait_for(
                "t/paid",
                &Event::new("t/start", json!({"userId": "1"})),
                WaitKind::Cancel,
            )
            .unwrap();
        assert!(
            !ExpressionCondition.accepts(&one.condition.unwrap(), &numeric),
            "\"1\" is not 1"
        );
        assert!(
            Match::expression("async.data.x ==")
                .wait_for("t", &event, WaitKind::Cancel)
                .is_err()
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<i16>().prop_map(|n| json!(n)),
                "[a-c1]{0,2}".prop_map(|s| json!(s)),
                any::<bool>().prop_map(|b| json!(b)),
            ]
        }

        proptest! {
            /// The indexed key and the residual condition accept exactly the events the whole
            /// expression accepts.
            #[test]
            fn the_key_and_condition_match_as_the_expression(
                mine in scalar(),
                theirs in scalar(),
                amount in any::<i16>(),
                min in any::<i16>(),
            ) {
                let text = "event.data.k == async.data.k && async.data.amount >= event.data.min";
                let run = Event::new("t/start", json!({"k": mine, "min": min}));
                let arriving = Event::new("t/x", json!({"k": theirs, "amount": amount}));
                let spec = Match::expression(text)
                    .wait_for("t/x", &run, WaitKind::Cancel)
                    .unwrap();
                let keyed = match &spec.key {
                    Some(key) => crate::expression::key_text(&arriving.data["k"]).as_deref() == Some(key.value.as_str()),
                    None => true,
                };
                let checked = spec
                    .condition
                    .as_deref()
                    .is_none_or(|c| ExpressionCondition.accepts(c, &arriving));
                let whole = Expr::parse(text, "if").unwrap().matches(Bindings {
                    event: Some(&serde_json::to_value(&run).unwrap()),
                    async_event: Some(&serde_json::to_value(&arriving).unwrap()),
                });
                prop_assert_eq!(keyed && checked, whole);
            }
        }
    }
}
