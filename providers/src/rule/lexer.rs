//! Splits rule text into tokens, tracking 1-based character columns for error messages.

use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

use super::RuleError;

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A matcher name such as `Host`.
    Ident(String),
    /// A quoted value, escapes already resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    Eof,
}

/// A token and the column of its first character.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub column: usize,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(name) => write!(f, "`{name}`"),
            TokenKind::Str(value) => write!(f, "string {value:?}"),
            TokenKind::LParen => f.write_str("`(`"),
            TokenKind::RParen => f.write_str("`)`"),
            TokenKind::Comma => f.write_str("`,`"),
            TokenKind::And => f.write_str("`&&`"),
            TokenKind::Or => f.write_str("`||`"),
            TokenKind::Not => f.write_str("`!`"),
            TokenKind::Eof => f.write_str("end of rule"),
        }
    }
}

/// A streaming lexer: tokens are produced on demand, so the first error in reading order wins.
pub(crate) struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    /// Column of the next character to be read.
    column: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer {
            chars: src.chars().peekable(),
            column: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.column += 1;
        Some(c)
    }

    pub(crate) fn next_token(&mut self) -> Result<Token, RuleError> {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.bump();
        }
        let column = self.column;
        let token = |kind| Ok(Token { kind, column });
        let Some(c) = self.bump() else {
            return token(TokenKind::Eof);
        };
        match c {
            '(' => token(TokenKind::LParen),
            ')' => token(TokenKind::RParen),
            ',' => token(TokenKind::Comma),
            '!' => token(TokenKind::Not),
            '&' | '|' => {
                if self.chars.peek() == Some(&c) {
                    self.bump();
                    token(if c == '&' { TokenKind::And } else { TokenKind::Or })
                } else {
                    Err(RuleError::new(column, format!("expected `{c}{c}`, found a single `{c}`")))
                }
            }
            '`' => self.raw_string(column).map(|s| Token {
                kind: TokenKind::Str(s),
                column,
            }),
            '"' => self.quoted_string(column).map(|s| Token {
                kind: TokenKind::Str(s),
                column,
            }),
            '\'' => Err(RuleError::new(
                column,
                "single quotes are not allowed; quote values with backticks (`value`) or double \
                 quotes (\"value\")",
            )),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some(&c) = self.chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    self.bump();
                }
                token(TokenKind::Ident(name))
            }
            '=' if self.chars.peek() == Some(&'=') => Err(RuleError::new(
                column,
                "`==` is not an operator in rules; compare with a matcher such as \
                 Header(`name`, `value`)",
            )),
            c => Err(RuleError::new(
                column,
                format!("unexpected character {c:?}; expected a matcher, `!`, `(`, `)`, `&&` or `||`"),
            )),
        }
    }

    /// A backtick string: everything up to the next backtick, verbatim.
    fn raw_string(&mut self, start: usize) -> Result<String, RuleError> {
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('`') => return Ok(value),
                Some(c) => value.push(c),
                None => return Err(RuleError::new(start, "unterminated string: this backtick is never closed")),
            }
        }
    }

    /// A double-quoted string with `\"` and `\\` escapes.
    fn quoted_string(&mut self, start: usize) -> Result<String, RuleError> {
        let mut value = String::new();
        loop {
            let escape_column = self.column;
            match self.bump() {
                Some('"') => return Ok(value),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some(c) => {
                        return Err(RuleError::new(
                            escape_column,
                            format!(
                                "unsupported escape `\\{c}` in double-quoted string; only `\\\"` \
                                 and `\\\\` are allowed (use backticks for regular expressions)"
                            ),
                        ))
                    }
                    None => return Err(RuleError::new(start, "unterminated string: this double quote is never closed")),
                },
                Some(c) => value.push(c),
                None => return Err(RuleError::new(start, "unterminated string: this double quote is never closed")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let token = lexer.next_token().expect("test input lexes");
            let done = token.kind == TokenKind::Eof;
            out.push(token.kind);
            if done {
                return out;
            }
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let mut lexer = Lexer::new("Host(`é`) &&");
        let cols: Vec<usize> = (0..5).map(|_| lexer.next_token().expect("lexes").column).collect();
        assert_eq!(cols, vec![1, 5, 6, 9, 11]);
    }

    #[test]
    fn escapes_in_double_quotes() {
        assert_eq!(kinds(r#""a\"b\\c""#), vec![TokenKind::Str(r#"a"b\c"#.into()), TokenKind::Eof]);
    }
}
