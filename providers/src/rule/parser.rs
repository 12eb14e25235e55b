//! Recursive-descent parser for rule expressions; see the grammar in the module above.

use std::marker::PhantomData;

use super::lexer::{Lexer, Token, TokenKind};
use super::matcher::{Arg, Kind};
use super::{Expr, Matcher, RuleError};

/// The matchers of one rule language (HTTP or TCP): names, arity, arguments.
pub(crate) trait Language: Sized {
    /// A matcher name, checked before its arguments are read.
    type Kind: Copy;
    /// A rule to show in the message for an empty one.
    const EXAMPLE: &'static str;
    /// Looks a matcher name up, or explains why it is not one.
    fn kind(name: &str, column: usize) -> Result<Self::Kind, RuleError>;
    /// Checks the arguments and builds the matcher; `open` is the column of `(`.
    fn build(kind: Self::Kind, args: Vec<Arg>, open: usize) -> Result<Self, RuleError>;
}

impl Language for Matcher {
    type Kind = Kind;
    const EXAMPLE: &'static str = "Host(`example.com`)";

    fn kind(name: &str, column: usize) -> Result<Kind, RuleError> {
        Kind::from_name(name, column)
    }

    fn build(kind: Kind, args: Vec<Arg>, open: usize) -> Result<Self, RuleError> {
        kind.build(args, open)
    }
}

/// Deepest allowed nesting of parentheses and `!`.
const MAX_NESTING: usize = 100;
/// Most `&&`/`||` operators in one rule; chains are left-deep trees, so this bounds their depth.
const MAX_OPERATORS: usize = 1000;

pub(crate) struct Parser<'a, M> {
    language: PhantomData<M>,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// The kind of the last token consumed, for "after `&&`" in messages.
    previous: Option<TokenKind>,
    nesting: usize,
    operators: usize,
}

impl<'a, M: Language> Parser<'a, M> {
    pub(crate) fn new(src: &'a str) -> Self {
        Parser {
            language: PhantomData,
            lexer: Lexer::new(src),
            peeked: None,
            previous: None,
            nesting: 0,
            operators: 0,
        }
    }

    fn peek(&mut self) -> Result<&Token, RuleError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("peeked was filled just above"))
    }

    fn next(&mut self) -> Result<Token, RuleError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        self.previous = Some(token.kind.clone());
        Ok(token)
    }

    /// Consumes the next token if it is `kind`.
    fn eat(&mut self, kind: &TokenKind) -> Result<Option<Token>, RuleError> {
        if &self.peek()?.kind == kind {
            self.next().map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn parse(mut self) -> Result<Expr<M>, RuleError> {
        if self.peek()?.kind == TokenKind::Eof {
            return Err(RuleError::new(1, format!("empty rule; write a rule such as {}", M::EXAMPLE)));
        }
        let expr = self.or()?;
        let token = self.next()?;
        match token.kind {
            TokenKind::Eof => Ok(expr),
            TokenKind::RParen => Err(RuleError::new(token.column, "unmatched `)`: there is no `(` for it to close")),
            found => Err(RuleError::new(
                token.column,
                format!("expected `&&`, `||` or end of rule, found {found}"),
            )),
        }
    }

    fn or(&mut self) -> Result<Expr<M>, RuleError> {
        let mut left = self.and()?;
        while let Some(op) = self.eat(&TokenKind::Or)? {
            self.count_operator(&op)?;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr<M>, RuleError> {
        let mut left = self.unary()?;
        while let Some(op) = self.eat(&TokenKind::And)? {
            self.count_operator(&op)?;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn count_operator(&mut self, op: &Token) -> Result<(), RuleError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(RuleError::new(
                op.column,
                format!("rule has more than {MAX_OPERATORS} `&&`/`||` operators; split it into several routers"),
            ));
        }
        Ok(())
    }

    fn enter(&mut self, token: &Token) -> Result<(), RuleError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(RuleError::new(
                token.column,
                format!("rule nests `(` and `!` more than {MAX_NESTING} deep"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr<M>, RuleError> {
        if let Some(not) = self.eat(&TokenKind::Not)? {
            self.enter(&not)?;
            let inner = self.unary()?;
            self.nesting -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr<M>, RuleError> {
        let previous = self.previous.clone();
        let token = self.next()?;
        match token.kind {
            TokenKind::LParen => {
                self.enter(&token)?;
                let inner = self.or()?;
                let close = self.next()?;
                if close.kind != TokenKind::RParen {
                    return Err(RuleError::new(
                        close.column,
                        format!("expected `)` to close the `(` at column {}, found {}", token.column, close.kind),
                    ));
                }
                self.nesting -= 1;
                Ok(inner)
            }
            TokenKind::Ident(name) => self.matcher(&name, token.column),
            TokenKind::Str(value) => Err(RuleError::new(
                token.column,
                format!(
                    "expected a matcher, found string {}; values go inside a matcher, as in \
                     {}",
                    super::display::quote(&value),
                    M::EXAMPLE
                ),
            )),
            found => {
                let after = match previous {
                    Some(op @ (TokenKind::And | TokenKind::Or | TokenKind::Not)) => {
                        format!(" after {op}")
                    }
                    Some(TokenKind::LParen) => " after `(`".to_owned(),
                    _ => String::new(),
                };
                Err(RuleError::new(
                    token.column,
                    format!("expected a matcher, `!` or `(`{after}, found {found}"),
                ))
            }
        }
    }

    fn matcher(&mut self, name: &str, column: usize) -> Result<Expr<M>, RuleError> {
        let kind = M::kind(name, column)?;
        let open = self.next()?;
        if open.kind != TokenKind::LParen {
            return Err(RuleError::new(
                open.column,
                format!("expected `(` after matcher name `{name}`, found {}", open.kind),
            ));
        }
        let mut args = Vec::new();
        if self.eat(&TokenKind::RParen)?.is_none() {
            loop {
                let token = self.next()?;
                match token.kind {
                    TokenKind::Str(value) => args.push(Arg {
                        value,
                        column: token.column,
                    }),
                    found => {
                        return Err(RuleError::new(
                            token.column,
                            format!(
                                "expected a quoted value (`value` or \"value\") as an argument of \
                                 {name}, found {found}"
                            ),
                        ))
                    }
                }
                let token = self.next()?;
                match token.kind {
                    TokenKind::Comma => continue,
                    TokenKind::RParen => break,
                    found => {
                        return Err(RuleError::new(
                            token.column,
                            format!("expected `)` after matcher arguments, found {found}"),
                        ))
                    }
                }
            }
        }
        M::build(kind, args, open.column).map(Expr::Matcher)
    }
}
