//! The expression language's parser, evaluator and printer, against CEL's rules.

use super::*;
use serde_json::json;

fn eval_with(src: &str, event: Value, async_event: Value) -> std::result::Result<Value, EvalError> {
    Expr::parse(src, "if").unwrap().eval(Bindings {
        event: Some(&event),
        async_event: Some(&async_event),
    })
}

#[test]
fn inngest_match_forms_evaluate() {
    let event = json!({"data": {"userId": "u1", "n": 3}});
    let ok = json!({"data": {"userId": "u1", "amount": 150, "tags": ["a"]}});
    let src = "event.data.userId == async.data.userId && async.data.amount > 100";
    assert_eq!(eval_with(src, event.clone(), ok.clone()), Ok(json!(true)));
    let other = json!({"data": {"userId": "u2", "amount": 150}});
    assert_eq!(eval_with(src, event.clone(), other), Ok(json!(false)));
    assert_eq!(
        eval_with(
            "event.data['userId'] + '-' + 'x'",
            event.clone(),
            ok.clone()
        ),
        Ok(json!("u1-x"))
    );
    assert_eq!(
        eval_with(
            "async.data.tags[0] == \"a\" || async.data.nope",
            event.clone(),
            ok.clone()
        ),
        Ok(json!(true))
    );
    assert!(
        Expr::parse("event.data.n * 2", "if").is_err(),
        "no `*` in the subset"
    );
    assert!(eval_with("event.data.n + 'x'", event.clone(), ok.clone()).is_err());
    assert!(eval_with("async.data.missing == 1", event.clone(), ok.clone()).is_err());
    assert_eq!(
        eval_with("1 == 1.0 && -2 < 1 && !false", event, ok),
        Ok(json!(true))
    );
}

#[test]
fn bad_expressions_are_typed_errors() {
    for bad in [
        "",
        "event.",
        "foo == 1",
        "(1",
        "'abc",
        "1 ==",
        "event.data[-1]",
        "{1: 2}",
    ] {
        let err = Expr::parse(bad, "if").unwrap_err();
        assert_eq!(err.field(), Some("if"), "{bad}");
    }
    let deep = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(Expr::parse(&deep, "if").is_err());
    assert!(Expr::parse(&"1+".repeat(MAX_EXPRESSION_LEN), "if").is_err());
}

#[test]
fn binding_the_event_leaves_a_condition_on_async() {
    let expr = Expr::parse(
        "event.data.a == async.data.b && event.data.o == async.data.o",
        "if",
    )
    .unwrap();
    let bound = expr.bind("event", &json!({"data": {"a": "x", "o": {"k": [1, -2]}}}));
    assert!(!bound.reads("event"));
    let text = bound.to_string();
    let reparsed = Expr::parse(&text, "if").unwrap();
    let arriving = json!({"data": {"b": "x", "o": {"k": [1, -2]}}});
    assert!(reparsed.matches(Bindings {
        event: None,
        async_event: Some(&arriving),
    }));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Expr> {
        prop_oneof![
            any::<i32>().prop_map(|n| Expr::Literal(json!(n))),
            "[a-z\"' \\\\]{0,6}".prop_map(|s| Expr::Literal(json!(s))),
            any::<bool>().prop_map(|b| Expr::Literal(json!(b))),
            Just(Expr::Literal(Value::Null)),
            prop_oneof![Just("event"), Just("async")].prop_flat_map(|root| {
                prop::collection::vec(prop_oneof![Just("data"), Just("a"), Just("b")], 0..3)
                    .prop_map(move |fields| {
                        Expr::Path(
                            root.into(),
                            fields
                                .into_iter()
                                .map(|f| Segment::Field(f.into()))
                                .collect(),
                        )
                    })
            }),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        leaf().prop_recursive(4, 32, 3, |inner| {
            let op = prop_oneof![
                Just(Op::Or),
                Just(Op::And),
                Just(Op::Eq),
                Just(Op::Ne),
                Just(Op::Lt),
                Just(Op::Ge),
                Just(Op::Add),
                Just(Op::Sub),
            ];
            prop_oneof![
                (op, inner.clone(), inner.clone()).prop_map(|(op, a, b)| Expr::Binary(
                    op,
                    Box::new(a),
                    Box::new(b)
                )),
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                inner.clone().prop_map(|e| Expr::Neg(Box::new(e))),
                prop::collection::vec(inner, 0..3).prop_map(Expr::List),
            ]
        })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i16>().prop_map(|n| json!(n)),
            "[a-c]{0,2}".prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!(b)),
        ]
    }

    proptest! {
        /// Any input is parsed or refused with an error, never a panic.
        #[test]
        fn parsing_never_panics(source in ".{0,80}") {
            let _ = Expr::parse(&source, "if");
        }

        /// Printed expressions parse back to expressions that evaluate the same.
        #[test]
        fn printing_keeps_the_meaning(
            e in expr(),
            a in value(),
            b in value(),
            x in value(),
        ) {
            let event = json!({"data": {"a": a, "b": b}, "a": x});
            let arriving = json!({"data": {"a": b, "b": a}, "b": x});
            let vars = Bindings { event: Some(&event), async_event: Some(&arriving) };
            let reparsed = Expr::parse(&e.to_string(), "if").unwrap();
            prop_assert_eq!(e.eval(vars).ok(), reparsed.eval(vars).ok(), "{}", e);
        }

        /// `==` is symmetric and agrees with `!=`.
        #[test]
        fn equality_is_symmetric(a in value(), b in value()) {
            let vars = Bindings::default();
            let lit = |v: &Value| Box::new(Expr::Literal(v.clone()));
            let ab = Expr::Binary(Op::Eq, lit(&a), lit(&b)).eval(vars).unwrap();
            let ba = Expr::Binary(Op::Eq, lit(&b), lit(&a)).eval(vars).unwrap();
            let ne = Expr::Binary(Op::Ne, lit(&a), lit(&b)).eval(vars).unwrap();
            prop_assert_eq!(&ab, &ba);
            prop_assert_eq!(ab.as_bool(), ne.as_bool().map(|x| !x));
        }
    }
}
