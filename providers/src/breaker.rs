//! The expression language of Traefik's `circuitBreaker` middleware.
//!
//! `NetworkErrorRatio() > 0.30 || ResponseCodeRatio(500, 600, 0, 600) > 0.25 &&
//! LatencyAtQuantileMS(50.0) > 100`: metric functions compared with numbers, combined with
//! `&&` (binds tighter) and `||`, parentheses allowed. Parsed when the configuration is merged,
//! so a typo is reported with the middleware's key; evaluated by the proxy over its own window of
//! recent requests ([`Window`]).

use std::fmt;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// A metric compared with a number.
    Compare(Metric, Op, f64),
}

/// A metric over the recent requests.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// Share of requests that failed at the network level (answered 502 or 504).
    NetworkErrorRatio,
    /// Requests with a status in `[from, to)` divided by those in `[divided_from, divided_to)`.
    ResponseCodeRatio(u16, u16, u16, u16),
    /// The latency at this quantile (0–100), in milliseconds.
    LatencyAtQuantileMs(f64),
    /// How many requests the window holds.
    RequestThreshold,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// What an expression is evaluated over.
pub trait Window {
    /// See [`Metric::NetworkErrorRatio`].
    fn network_error_ratio(&self) -> f64;
    /// See [`Metric::ResponseCodeRatio`].
    fn response_code_ratio(&self, from: u16, to: u16, divided_from: u16, divided_to: u16) -> f64;
    /// See [`Metric::LatencyAtQuantileMs`].
    fn latency_at_quantile_ms(&self, quantile: f64) -> f64;
    /// See [`Metric::RequestThreshold`].
    fn requests(&self) -> f64;
}

impl Expr {
    /// Whether the expression holds over `w`.
    pub fn holds(&self, w: &dyn Window) -> bool {
        match self {
            Expr::And(a, b) => a.holds(w) && b.holds(w),
            Expr::Or(a, b) => a.holds(w) || b.holds(w),
            Expr::Compare(metric, op, n) => {
                let v = match metric {
                    Metric::NetworkErrorRatio => w.network_error_ratio(),
                    Metric::ResponseCodeRatio(a, b, c, d) => w.response_code_ratio(*a, *b, *c, *d),
                    Metric::LatencyAtQuantileMs(q) => w.latency_at_quantile_ms(*q),
                    Metric::RequestThreshold => w.requests(),
                };
                match op {
                    Op::Gt => v > *n,
                    Op::Ge => v >= *n,
                    Op::Lt => v < *n,
                    Op::Le => v <= *n,
                    Op::Eq => v == *n,
                    Op::Ne => v != *n,
                }
            }
        }
    }
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Op(Op),
    And,
    Or,
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, ExprError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = text.get(i..i + 2).unwrap_or("");
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Token::Open,
            b')' => Token::Close,
            b',' => Token::Comma,
            _ if two == "&&" => Token::And,
            _ if two == "||" => Token::Or,
            _ if two == ">=" => Token::Op(Op::Ge),
            _ if two == "<=" => Token::Op(Op::Le),
            _ if two == "==" => Token::Op(Op::Eq),
            _ if two == "!=" => Token::Op(Op::Ne),
            b'>' => Token::Op(Op::Gt),
            b'<' => Token::Op(Op::Lt),
            b'0'..=b'9' | b'.' | b'-' => {
                let end = text[i..]
                    .find(|ch: char| !(ch.is_ascii_digit() || ch == '.' || ch == '-' || ch == 'e' || ch == 'E'))
                    .map_or(text.len(), |n| i + n);
                let n = text[i..end]
                    .parse::<f64>()
                    .map_err(|_| ExprError(format!("column {}: `{}` is not a number", i + 1, &text[i..end])))?;
                i = end;
                out.push((start, Token::Number(n)));
                continue;
            }
            c if c.is_ascii_alphabetic() => {
                let end = text[i..].find(|ch: char| !ch.is_ascii_alphanumeric()).map_or(text.len(), |n| i + n);
                let ident = text[i..end].to_string();
                i = end;
                out.push((start, Token::Ident(ident)));
                continue;
            }
            _ => {
                return Err(ExprError(format!(
                    "column {}: unexpected `{}`",
                    i + 1,
                    text[i..].chars().next().unwrap_or(' ')
                )))
            }
        };
        i += if matches!(token, Token::And | Token::Or) || two.len() == 2 && matches!(token, Token::Op(Op::Ge | Op::Le | Op::Eq | Op::Ne)) {
            2
        } else {
            1
        };
        out.push((start, token));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.len + 1, |(c, _)| c + 1)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), ExprError> {
        let column = self.column();
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(ExprError(format!("column {column}: expected {what}"))),
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.atom()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn number(&mut self) -> Result<f64, ExprError> {
        let column = self.column();
        match self.next() {
            Some(Token::Number(n)) => Ok(n),
            _ => Err(ExprError(format!("column {column}: expected a number"))),
        }
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let column = self.column();
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                self.expect(Token::Close, "`)`")?;
                Ok(inner)
            }
            Some(Token::Ident(name)) => {
                self.expect(Token::Open, "`(` after the function name")?;
                let metric = match name.as_str() {
                    "NetworkErrorRatio" => Metric::NetworkErrorRatio,
                    "RequestThreshold" => Metric::RequestThreshold,
                    "LatencyAtQuantileMS" => Metric::LatencyAtQuantileMs(self.number()?),
                    "ResponseCodeRatio" => {
                        let mut codes = [0u16; 4];
                        for (i, code) in codes.iter_mut().enumerate() {
                            if i > 0 {
                                self.expect(Token::Comma, "`,`")?;
                            }
                            let n = self.number()?;
                            if !(0.0..=1000.0).contains(&n) || n.fract() != 0.0 {
                                return Err(ExprError(format!("ResponseCodeRatio: `{n}` is not a status code")));
                            }
                            *code = n as u16;
                        }
                        Metric::ResponseCodeRatio(codes[0], codes[1], codes[2], codes[3])
                    }
                    other => {
                        return Err(ExprError(format!(
                            "column {column}: unknown function `{other}` (NetworkErrorRatio, ResponseCodeRatio, LatencyAtQuantileMS, RequestThreshold)"
                        )))
                    }
                };
                self.expect(Token::Close, "`)`")?;
                let column = self.column();
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    _ => return Err(ExprError(format!("column {column}: expected a comparison (`>`, `<`, …)"))),
                };
                Ok(Expr::Compare(metric, op, self.number()?))
            }
            _ => Err(ExprError(format!("column {column}: expected a function or `(`"))),
        }
    }
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    if text.trim().is_empty() {
        return Err(ExprError("the expression is empty".into()));
    }
    let mut p = Parser {
        tokens: tokens(text)?,
        pos: 0,
        len: text.len(),
    };
    let expr = p.or()?;
    if p.pos < p.tokens.len() {
        return Err(ExprError(format!("column {}: unexpected text after the expression", p.column())));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct W;
    impl Window for W {
        fn network_error_ratio(&self) -> f64 {
            0.6
        }
        fn response_code_ratio(&self, from: u16, _: u16, _: u16, _: u16) -> f64 {
            if from == 500 {
                0.1
            } else {
                0.9
            }
        }
        fn latency_at_quantile_ms(&self, _: f64) -> f64 {
            120.0
        }
        fn requests(&self) -> f64 {
            10.0
        }
    }

    #[test]
    fn traefik_expressions_parse_and_evaluate() {
        assert!(parse("NetworkErrorRatio() > 0.5").unwrap().holds(&W));
        assert!(!parse("ResponseCodeRatio(500, 600, 0, 600) > 0.25").unwrap().holds(&W));
        assert!(
            parse("ResponseCodeRatio(500, 600, 0, 600) > 0.25 || LatencyAtQuantileMS(50.0) >= 100")
                .unwrap()
                .holds(&W)
        );
        assert!(!parse("(NetworkErrorRatio() > 0.5 && RequestThreshold() > 20)").unwrap().holds(&W));
    }

    #[test]
    fn errors_say_where() {
        assert!(parse("NetworkErrorRatio() >").unwrap_err().0.contains("expected a number"));
        assert!(parse("Foo() > 1").unwrap_err().0.contains("unknown function `Foo`"));
        assert!(parse("NetworkErrorRatio() > 1 junk").unwrap_err().0.contains("column 25"));
        assert!(parse("").is_err());
    }
}
