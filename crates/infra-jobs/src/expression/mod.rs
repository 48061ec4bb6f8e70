//! Expressions: the subset of CEL (Common Expression Language) Inngest documents for matching
//! events and computing keys — `event.data.userId == async.data.userId`,
//! `async.data.amount > 100 && async.data.currency == "EUR"`, `event.data.a + "-" + event.data.b`.
//!
//! Grammar: `||`, `&&`, `!`, comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`), `+` (numbers and
//! strings) and `-`, unary `-`, parentheses; literals (double- or single-quoted strings, numbers,
//! `true`, `false`, `null`, lists `[…]`, maps `{"k": …}`); variables (`event`, `async`) with
//! field access (`.name`, `["name"]`, `[0]`). CEL's functions and macros are not part of it.
//!
//! Safety: an expression is at most [`MAX_EXPRESSION_LEN`] bytes and nests at most
//! [`MAX_DEPTH`] deep, so parsing and evaluation are bounded and never recurse without limit;
//! bad input is a typed error, never a panic. Evaluation is strict as CEL's: a missing field
//! or mismatched types make the expression fail, which a match reads as "no match".
//!
//! Why not a CEL crate: the maintained one parses with an ANTLR runtime (a large build on every
//! target) for a language whose functions and macros Inngest's matching does not need.

use std::fmt;

use infra_core::{Error, Result};
use serde_json::{Map, Number, Value};

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// The deepest nesting accepted (parentheses, operators, literals).
pub const MAX_DEPTH: usize = 64;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Value),
    /// A variable and the fields read from it: `event.data.userId` is `("event", ["data", "userId"])`.
    Path(String, Vec<Segment>),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

/// One field access.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Field(String),
    Index(usize),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Or => "||",
            Op::And => "&&",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Add => "+",
            Op::Sub => "-",
        }
    }
}

/// The variables an expression reads: `event` (the run's event) and `async` (an arriving one).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bindings<'a> {
    pub(crate) event: Option<&'a Value>,
    pub(crate) async_event: Option<&'a Value>,
}

/// Why an evaluation failed (a match reads any failure as "no match").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError(String);

impl Expr {
    /// Parses `source`; refuses anything outside the subset with an `InvalidInput` error
    /// naming `field`.
    pub(crate) fn parse(source: &str, field: &str) -> Result<Expr> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(Error::invalid_input(
                field,
                format!("is longer than {MAX_EXPRESSION_LEN} bytes"),
            ));
        }
        let mut parser = Parser {
            src: source.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let expr = parser
            .expr()
            .and_then(|e| {
                parser.skip_ws();
                if parser.pos == parser.src.len() {
                    Ok(e)
                } else {
                    Err(parser.error("unexpected input"))
                }
            })
            .map_err(|e| Error::invalid_input(field, format!("is not a valid expression: {e}")))?;
        Ok(expr)
    }

    /// Evaluates the expression.
    pub(crate) fn eval(&self, vars: Bindings<'_>) -> std::result::Result<Value, EvalError> {
        eval(self, vars, 0)
    }

    /// Whether it evaluates to `true`; any failure or other value is `false`.
    pub(crate) fn matches(&self, vars: Bindings<'_>) -> bool {
        matches!(self.eval(vars), Ok(Value::Bool(true)))
    }

    /// Whether it reads the variable `name`.
    #[cfg(test)]
    pub(crate) fn reads(&self, name: &str) -> bool {
        match self {
            Expr::Literal(_) => false,
            Expr::Path(root, _) => root == name,
            Expr::List(items) => items.iter().any(|e| e.reads(name)),
            Expr::Map(entries) => entries.iter().any(|(_, e)| e.reads(name)),
            Expr::Not(e) | Expr::Neg(e) => e.reads(name),
            Expr::Binary(_, a, b) => a.reads(name) || b.reads(name),
        }
    }

    /// The conjuncts of a chain of `&&`.
    pub(crate) fn conjuncts(self) -> Vec<Expr> {
        match self {
            Expr::Binary(Op::And, a, b) => {
                let mut out = a.conjuncts();
                out.extend(b.conjuncts());
                out
            }
            other => vec![other],
        }
    }

    /// Joins conjuncts back with `&&`; `None` for none.
    pub(crate) fn all(conjuncts: Vec<Expr>) -> Option<Expr> {
        conjuncts
            .into_iter()
            .reduce(|a, b| Expr::Binary(Op::And, Box::new(a), Box::new(b)))
    }

    /// The expression with every read of `name` replaced by its value in `value` (a read that
    /// fails is left as it is, and fails later).
    pub(crate) fn bind(self, name: &str, value: &Value) -> Expr {
        match self {
            Expr::Path(root, segments) if root == name => match read(value, &segments) {
                Some(v) => Expr::Literal(v.clone()),
                None => Expr::Path(root, segments),
            },
            Expr::List(items) => {
                Expr::List(items.into_iter().map(|e| e.bind(name, value)).collect())
            }
            Expr::Map(entries) => Expr::Map(
                entries
                    .into_iter()
                    .map(|(k, e)| (k, e.bind(name, value)))
                    .collect(),
            ),
            Expr::Not(e) => Expr::Not(Box::new(e.bind(name, value))),
            Expr::Neg(e) => Expr::Neg(Box::new(e.bind(name, value))),
            Expr::Binary(op, a, b) => Expr::Binary(
                op,
                Box::new(a.bind(name, value)),
                Box::new(b.bind(name, value)),
            ),
            other => other,
        }
    }
}

/// A key's text: a string's own characters, anything else its JSON (`7`, `true`); `None` for
/// null, as a missing field.
pub(crate) fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn read<'v>(mut value: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    for segment in segments {
        value = match segment {
            Segment::Field(name) => value.as_object()?.get(name)?,
            Segment::Index(i) => value.as_array()?.get(*i)?,
        };
    }
    Some(value)
}

fn eval(expr: &Expr, vars: Bindings<'_>, depth: usize) -> std::result::Result<Value, EvalError> {
    // The parser bounds nesting, but a long chain of `+` or `&&` is as deep as it is long:
    // the length bound keeps this recursion finite.
    if depth > MAX_EXPRESSION_LEN {
        return Err(EvalError("expression nests too deep".into()));
    }
    let depth = depth + 1;
    Ok(match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Path(root, segments) => {
            let base = match root.as_str() {
                "event" => vars.event,
                "async" => vars.async_event,
                _ => None,
            }
            .ok_or_else(|| EvalError(format!("no variable `{root}`")))?;
            read(base, segments)
                .cloned()
                .ok_or_else(|| EvalError(format!("no such field in `{root}`")))?
        }
        Expr::List(items) => Value::Array(
            items
                .iter()
                .map(|e| eval(e, vars, depth))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Expr::Map(entries) => {
            let mut map = Map::new();
            for (k, e) in entries {
                map.insert(k.clone(), eval(e, vars, depth)?);
            }
            Value::Object(map)
        }
        Expr::Not(e) => match eval(e, vars, depth)? {
            Value::Bool(b) => Value::Bool(!b),
            _ => return Err(EvalError("`!` needs a boolean".into())),
        },
        Expr::Neg(e) => match eval(e, vars, depth)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) => i
                    .checked_neg()
                    .map(Value::from)
                    .ok_or_else(|| EvalError("integer overflow".into()))?,
                None => number(-n.as_f64().unwrap_or(f64::NAN))?,
            },
            _ => return Err(EvalError("`-` needs a number".into())),
        },
        Expr::Binary(Op::Or, a, b) => {
            // CEL's commutative logic: an error on one side is absorbed by `true` on the other.
            match (eval(a, vars, depth), eval(b, vars, depth)) {
                (Ok(Value::Bool(true)), _) | (_, Ok(Value::Bool(true))) => Value::Bool(true),
                (Ok(Value::Bool(false)), Ok(Value::Bool(false))) => Value::Bool(false),
                _ => return Err(EvalError("`||` needs booleans".into())),
            }
        }
        Expr::Binary(Op::And, a, b) => match (eval(a, vars, depth), eval(b, vars, depth)) {
            (Ok(Value::Bool(false)), _) | (_, Ok(Value::Bool(false))) => Value::Bool(false),
            (Ok(Value::Bool(true)), Ok(Value::Bool(true))) => Value::Bool(true),
            _ => return Err(EvalError("`&&` needs booleans".into())),
        },
        Expr::Binary(op, a, b) => binary(*op, eval(a, vars, depth)?, eval(b, vars, depth)?)?,
    })
}

fn number(n: f64) -> std::result::Result<Value, EvalError> {
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| EvalError("the result is not a finite number".into()))
}

/// Equality as CEL's: numbers by value (`1 == 1.0`), everything else structurally.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn binary(op: Op, a: Value, b: Value) -> std::result::Result<Value, EvalError> {
    use std::cmp::Ordering;
    let order = || -> std::result::Result<Ordering, EvalError> {
        match (&a, &b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y))
                .ok_or_else(|| EvalError("numbers do not compare".into())),
            (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
            (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
            _ => Err(EvalError(format!(
                "`{}` needs two numbers, strings or booleans",
                op.symbol()
            ))),
        }
    };
    Ok(match op {
        Op::Eq => Value::Bool(equal(&a, &b)),
        Op::Ne => Value::Bool(!equal(&a, &b)),
        Op::Lt => Value::Bool(order()? == Ordering::Less),
        Op::Le => Value::Bool(order()? != Ordering::Greater),
        Op::Gt => Value::Bool(order()? == Ordering::Greater),
        Op::Ge => Value::Bool(order()? != Ordering::Less),
        Op::Add => match (&a, &b) {
            (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
            (Value::Array(x), Value::Array(y)) => {
                Value::Array(x.iter().chain(y).cloned().collect())
            }
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => x
                    .checked_add(y)
                    .map(Value::from)
                    .ok_or_else(|| EvalError("integer overflow".into()))?,
                _ => number(x.as_f64().unwrap_or(f64::NAN) + y.as_f64().unwrap_or(f64::NAN))?,
            },
            _ => return Err(EvalError("`+` needs two numbers, strings or lists".into())),
        },
        Op::Sub => match (&a, &b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => x
                    .checked_sub(y)
                    .map(Value::from)
                    .ok_or_else(|| EvalError("integer overflow".into()))?,
                _ => number(x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN))?,
            },
            _ => return Err(EvalError("`-` needs two numbers".into())),
        },
        Op::Or | Op::And => unreachable!("evaluated with short-circuit rules above"),
    })
}

struct Parser<'s> {
    src: &'s [u8],
    pos: usize,
    depth: usize,
}

type Parsed<T> = std::result::Result<T, String>;

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.src.len() && self.src[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(self.error(&format!("nesting deeper than {MAX_DEPTH}")))
        } else {
            Ok(())
        }
    }

    fn expr(&mut self) -> Parsed<Expr> {
        self.enter()?;
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Expr::Binary(Op::Or, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Parsed<Expr> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            let right = self.comparison()?;
            left = Expr::Binary(Op::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Parsed<Expr> {
        let left = self.sum()?;
        // Two-character operators first, so `<=` is not read as `<`.
        for (token, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(token) {
                let right = self.sum()?;
                return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn sum(&mut self) -> Parsed<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("+") {
                Op::Add
            } else if self.peek() == Some(b'-') {
                self.pos += 1;
                Op::Sub
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Parsed<Expr> {
        self.enter()?;
        let expr = if self.peek() == Some(b'!') && self.src.get(self.pos + 1) != Some(&b'=') {
            self.pos += 1;
            Expr::Not(Box::new(self.unary()?))
        } else if self.peek() == Some(b'-') {
            self.pos += 1;
            match self.unary()? {
                Expr::Literal(Value::Number(n)) => match n.as_i64() {
                    Some(i) if i != i64::MIN => Expr::Literal(Value::from(-i)),
                    _ => Expr::Neg(Box::new(Expr::Literal(Value::Number(n)))),
                },
                other => Expr::Neg(Box::new(other)),
            }
        } else {
            self.primary()?
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        match self.peek() {
            None => Err(self.error("unexpected end")),
            Some(b'(') => {
                self.pos += 1;
                let e = self.expr()?;
                if !self.eat(")") {
                    return Err(self.error("expected `)`"));
                }
                Ok(e)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat("]") {
                            break;
                        }
                        if !self.eat(",") {
                            return Err(self.error("expected `,` or `]`"));
                        }
                    }
                }
                Ok(Expr::List(items))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                if !self.eat("}") {
                    loop {
                        let q = self.peek();
                        if q != Some(b'"') && q != Some(b'\'') {
                            return Err(self.error("a map key must be a string"));
                        }
                        let key = self.string()?;
                        if !self.eat(":") {
                            return Err(self.error("expected `:`"));
                        }
                        entries.push((key, self.expr()?));
                        if self.eat("}") {
                            break;
                        }
                        if !self.eat(",") {
                            return Err(self.error("expected `,` or `}`"));
                        }
                    }
                }
                Ok(Expr::Map(entries))
            }
            Some(b'"' | b'\'') => Ok(Expr::Literal(Value::String(self.string()?))),
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let name = self.ident();
                match name.as_str() {
                    "true" => return Ok(Expr::Literal(Value::Bool(true))),
                    "false" => return Ok(Expr::Literal(Value::Bool(false))),
                    "null" => return Ok(Expr::Literal(Value::Null)),
                    "event" | "async" => {}
                    other => return Err(self.error(&format!("unknown name `{other}`"))),
                }
                let mut segments = Vec::new();
                loop {
                    if self.peek() == Some(b'.') {
                        self.pos += 1;
                        self.skip_ws();
                        match self.src.get(self.pos) {
                            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                                segments.push(Segment::Field(self.ident()))
                            }
                            _ => return Err(self.error("expected a field name after `.`")),
                        }
                    } else if self.peek() == Some(b'[') {
                        self.pos += 1;
                        let segment = match self.peek() {
                            Some(b'"' | b'\'') => Segment::Field(self.string()?),
                            Some(c) if c.is_ascii_digit() => match self.number()? {
                                Expr::Literal(Value::Number(n)) if n.is_u64() => {
                                    Segment::Index(n.as_u64().unwrap_or_default() as usize)
                                }
                                _ => return Err(self.error("an index must be a whole number")),
                            },
                            _ => return Err(self.error("expected a string or an index")),
                        };
                        if !self.eat("]") {
                            return Err(self.error("expected `]`"));
                        }
                        segments.push(segment);
                    } else {
                        return Ok(Expr::Path(name, segments));
                    }
                }
            }
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.pos < self.src.len()
            && (self.src[self.pos].is_ascii_alphanumeric() || self.src[self.pos] == b'_')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn number(&mut self) -> Parsed<Expr> {
        let start = self.pos;
        while self.pos < self.src.len()
            && (self.src[self.pos].is_ascii_digit()
                || matches!(self.src[self.pos], b'.' | b'e' | b'E')
                || (matches!(self.src[self.pos], b'+' | b'-')
                    && matches!(self.src[self.pos - 1], b'e' | b'E')))
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Expr::Literal(Value::from(i)));
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Expr::Literal(Value::Number(n))),
            None => Err(self.error(&format!("`{text}` is not a number"))),
        }
    }

    /// A string literal in double or single quotes, with JSON's escapes.
    fn string(&mut self) -> Parsed<String> {
        let quote = self.src[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            if c == quote {
                break;
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = self.src.get(self.pos) else {
                return Err(self.error("unterminated escape"));
            };
            self.pos += 1;
            match e {
                b'"' | b'\'' | b'\\' | b'/' => out.push(e),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'u' => {
                    let hex = self
                        .src
                        .get(self.pos..self.pos + 4)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.error("bad `\\u` escape"))?;
                    self.pos += 4;
                    let mut buf = [0; 4];
                    out.extend_from_slice(hex.encode_utf8(&mut buf).as_bytes());
                }
                _ => return Err(self.error("unknown escape")),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string is not UTF-8"))
    }
}

/// Prints the expression back in the grammar it was parsed from (strings double-quoted).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(v) => write_literal(f, v),
            Expr::Path(root, segments) => {
                f.write_str(root)?;
                for s in segments {
                    match s {
                        Segment::Field(name) if is_ident(name) => write!(f, ".{name}")?,
                        Segment::Field(name) => write!(f, "[{}]", Value::String(name.clone()))?,
                        Segment::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                Ok(())
            }
            Expr::List(items) => {
                f.write_str("[")?;
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
            Expr::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, e)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {e}", Value::String(k.clone()))?;
                }
                f.write_str("}")
            }
            Expr::Not(e) => write!(f, "!({e})"),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Binary(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
        }
    }
}

fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(name, "true" | "false" | "null")
}

/// A JSON value as a literal of the grammar (objects as maps, arrays as lists).
fn write_literal(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Array(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_literal(f, item)?;
            }
            f.write_str("]")
        }
        Value::Object(map) => {
            f.write_str("{")?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}: ", Value::String(k.clone()))?;
                write_literal(f, item)?;
            }
            f.write_str("}")
        }
        Value::Number(n) if n.as_f64().is_some_and(|x| x < 0.0) => write!(f, "({n})"),
        other => write!(f, "{other}"),
    }
}

#[cfg(test)]
mod tests;
