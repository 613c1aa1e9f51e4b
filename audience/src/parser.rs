//! Recursive descent over the tokens, following the grammar in docs/audiences.md:
//!
//! ```text
//! expr       := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" expr ")" | comparison | tag
//! comparison := field op value
//! ```
//!
//! A word followed by an operator starts a comparison; a word alone is a tag. Errors name
//! what was expected and where, in words a marketer can act on. The limits are enforced while
//! parsing, so that no input can recurse deeply or build a large tree.

use crate::error::ParseError;
use crate::expr::{Comparison, Expr, Field, Operator};
use crate::lexer::{Token, TokenKind, tokenize};
use crate::syntax::{
    AND, EVERYONE, FIELD_LIST, MAX_AUDIENCE_CHARS, MAX_NESTING, MAX_TERMS, MAX_VALUE_CHARS, NOT,
    OR, STARTS, WITH, is_field_name, is_word,
};

/// Which language a text is parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Tags, comparisons, topics and `everyone` (segments, and stored canonical texts).
    Full,
    /// Only tag names with `and`, `or`, `not` and parentheses (the `tags` target).
    TagsOnly,
}

pub(crate) fn parse(text: &str, dialect: Dialect) -> Result<Expr, ParseError> {
    if let Some((offset, _)) = text.char_indices().nth(MAX_AUDIENCE_CHARS) {
        let message = format!("the audience is longer than {MAX_AUDIENCE_CHARS} characters");
        return Err(ParseError::new(offset, message));
    }
    parse_any_length(text, dialect)
}

/// [`parse`] without the length limit (which makes the term limit unreachable: a term takes
/// at least five characters with its `and`/`or`), so that tests can reach the other limits.
fn parse_any_length(text: &str, dialect: Dialect) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        text_length: text.len(),
        dialect,
        nesting: 0,
        open_parentheses: 0,
        terms: 0,
    };
    parser.audience()
}

struct Parser<'text> {
    tokens: Vec<Token<'text>>,
    /// Index of the next token to read.
    next: usize,
    text_length: usize,
    dialect: Dialect,
    /// Parentheses and `not`s around the current point: bounds the parser's recursion.
    nesting: usize,
    /// Parentheses open around the current point, to tell a stray `)` from an early one.
    open_parentheses: usize,
    terms: usize,
}

impl<'text> Parser<'text> {
    fn audience(&mut self) -> Result<Expr, ParseError> {
        match (self.tokens.as_slice(), self.dialect) {
            ([], Dialect::Full) => {
                return Err(ParseError::new(
                    0,
                    "the audience is empty (write everyone to reach every device)",
                ));
            }
            ([], Dialect::TagsOnly) => return Err(ParseError::new(0, "no tags given")),
            (
                [
                    Token {
                        kind: TokenKind::Word(EVERYONE),
                        ..
                    },
                ],
                Dialect::Full,
            ) => {
                return Ok(Expr::Everyone);
            }
            _ => {}
        }
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(token) => Err(self.unexpected_after_term(token)),
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let start = self.position();
        let mut expr = self.and()?;
        while self.eat_keyword(OR) {
            let right = self.and()?;
            expr = Expr::any_of(expr, right);
        }
        self.check_depth(start, &expr)?;
        Ok(expr)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let start = self.position();
        let mut expr = self.unary()?;
        while self.eat_keyword(AND) {
            let right = self.unary()?;
            expr = Expr::all_of(expr, right);
        }
        self.check_depth(start, &expr)?;
        Ok(expr)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.advance() else {
            return Err(self.missing_term(None));
        };
        let start = token.start;
        match token.kind {
            TokenKind::Word(NOT) => {
                self.enter(start)?;
                let inner = self.unary()?;
                self.nesting -= 1;
                let expr = Expr::Not(Box::new(inner));
                self.check_depth(start, &expr)?;
                Ok(expr)
            }
            TokenKind::Open => {
                self.enter(start)?;
                self.open_parentheses += 1;
                let inner = self.or()?;
                match self.advance() {
                    Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) => {}
                    None => return Err(ParseError::new(start, "unbalanced parenthesis")),
                    Some(other) => return Err(self.unexpected_after_term(&other)),
                }
                self.open_parentheses -= 1;
                self.nesting -= 1;
                Ok(inner)
            }
            TokenKind::Word(EVERYONE) => Err(ParseError::new(
                start,
                match self.dialect {
                    Dialect::Full => "\"everyone\" must be the whole audience",
                    Dialect::TagsOnly => {
                        "\"everyone\" is not a tag (send a broadcast to reach every device)"
                    }
                },
            )),
            TokenKind::Word(AND | OR) => Err(self.missing_term(Some(&token))),
            TokenKind::Word(word) => self.term(word, start),
            TokenKind::Close if self.open_parentheses == 0 => {
                Err(ParseError::new(start, "unbalanced parenthesis"))
            }
            TokenKind::Close => Err(self.missing_term(Some(&token))),
            TokenKind::Quoted(_) => Err(ParseError::new(
                start,
                "a quoted value must follow a field and an operator, e.g. attr.city = \"New York\"",
            )),
            TokenKind::Symbol(operator) => Err(ParseError::new(
                start,
                format!("expected a field before \"{}\"", operator.symbol()),
            )),
        }
    }

    /// A tag or a comparison starting with `word`.
    fn term(&mut self, word: &'text str, start: usize) -> Result<Expr, ParseError> {
        // Implied by the length limit today; kept so that raising that limit cannot lift it.
        self.terms += 1;
        if self.terms > MAX_TERMS {
            let message = format!("the audience has more than {MAX_TERMS} terms");
            return Err(ParseError::new(start, message));
        }
        let operator_start = self.position();
        let Some(operator) = self.operator() else {
            return self.tag(word, start);
        };
        if self.dialect == Dialect::TagsOnly {
            let message = format!(
                "found a comparison (\"{word} {}\"): tags are only tag names with and, or, not \
                 and parentheses; send comparisons as a segment",
                operator.symbol()
            );
            return Err(ParseError::new(start, message));
        }
        let (value, value_start) = self.value(operator)?;
        if value.chars().count() > MAX_VALUE_CHARS {
            let message = format!("value is longer than {MAX_VALUE_CHARS} characters");
            return Err(ParseError::new(value_start, message));
        }
        match word {
            "tag" => membership(
                Expr::Tag,
                "tag",
                (operator, operator_start),
                (value, value_start),
            ),
            "topic" => membership(
                Expr::Topic,
                "topic",
                (operator, operator_start),
                (value, value_start),
            ),
            _ => match Field::from_word(word) {
                Some(Field::Custom(key)) if key.is_empty() => {
                    Err(ParseError::new(start, "attr. needs a key, e.g. attr.plan"))
                }
                Some(Field::Custom(key)) if key.chars().count() > MAX_VALUE_CHARS => {
                    let message =
                        format!("attribute key is longer than {MAX_VALUE_CHARS} characters");
                    Err(ParseError::new(start, message))
                }
                Some(field) => Ok(Expr::Compare(Box::new(Comparison::new(
                    field,
                    operator,
                    value.into(),
                )))),
                None => Err(ParseError::new(
                    start,
                    format!("unknown field \"{word}\" (fields: {FIELD_LIST})"),
                )),
            },
        }
    }

    fn tag(&self, word: &str, start: usize) -> Result<Expr, ParseError> {
        if self.dialect == Dialect::Full && is_field_name(word) {
            let message = format!(
                "expected an operator after \"{word}\" (=, !=, <, <=, >, >=, starts with; \
                 for a tag with this name write tag = {word})"
            );
            return Err(ParseError::new(self.position(), message));
        }
        if word.len() > MAX_VALUE_CHARS {
            let message = format!("tag name is longer than {MAX_VALUE_CHARS} characters");
            return Err(ParseError::new(start, message));
        }
        Ok(Expr::Tag(word.into()))
    }

    /// Reads a comparison operator if one comes next: a symbol, or the words `starts with`.
    fn operator(&mut self) -> Option<Operator> {
        match &self.peek()?.kind {
            TokenKind::Symbol(operator) => {
                let operator = *operator;
                self.next += 1;
                Some(operator)
            }
            TokenKind::Word(STARTS)
                if matches!(
                    self.tokens.get(self.next + 1),
                    Some(Token {
                        kind: TokenKind::Word(WITH),
                        ..
                    })
                ) =>
            {
                self.next += 2;
                Some(Operator::StartsWith)
            }
            _ => None,
        }
    }

    /// Reads the value after `operator`: a word other than a keyword, or a quoted value.
    fn value(&mut self, operator: Operator) -> Result<(String, usize), ParseError> {
        let position = self.position();
        let expected = format!("expected a value after \"{}\"", operator.symbol());
        match self.advance().map(|token| token.kind) {
            Some(TokenKind::Word(keyword @ (AND | OR | NOT))) => Err(ParseError::new(
                position,
                format!(
                    "{expected}, found \"{keyword}\" (to compare with this word, quote it: \"{keyword}\")"
                ),
            )),
            Some(TokenKind::Word(word)) => Ok((word.to_owned(), position)),
            Some(TokenKind::Quoted(value)) => Ok((value, position)),
            Some(other) => Err(ParseError::new(
                position,
                format!("{expected}, found {other}"),
            )),
            None => Err(ParseError::new(position, expected)),
        }
    }

    /// The error for a missing tag or comparison, at `found` or at the end of the text.
    fn missing_term(&self, found: Option<&Token<'_>>) -> ParseError {
        let position = found.map_or(self.text_length, |token| token.start);
        let before = self.next - usize::from(found.is_some());
        let mut message = String::from("expected a tag or a comparison");
        if let Some(previous) = before
            .checked_sub(1)
            .and_then(|index| self.tokens.get(index))
        {
            message.push_str(&format!(" after {}", previous.kind));
        }
        if let Some(found) = found {
            message.push_str(&format!(", found {}", found.kind));
        }
        ParseError::new(position, message)
    }

    /// The error for a token that follows a complete term but cannot continue the audience.
    fn unexpected_after_term(&self, token: &Token<'_>) -> ParseError {
        if token.kind == TokenKind::Close && self.open_parentheses == 0 {
            return ParseError::new(token.start, "unbalanced parenthesis");
        }
        let expected = if self.open_parentheses == 0 {
            "expected \"and\" or \"or\""
        } else {
            "expected \"and\", \"or\" or \")\""
        };
        let mut message = format!("{expected}, found {}", token.kind);
        if let TokenKind::Word(word) = token.kind
            && matches!(word.to_lowercase().as_str(), AND | OR | NOT)
        {
            message.push_str(" (keywords are lowercase)");
        }
        ParseError::new(token.start, message)
    }

    fn enter(&mut self, start: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(too_deep(start));
        }
        Ok(())
    }

    fn check_depth(&self, start: usize, expr: &Expr) -> Result<(), ParseError> {
        let is_node = matches!(expr, Expr::Not(_) | Expr::All(_) | Expr::Any(_));
        if is_node && expr.depth() > MAX_NESTING {
            return Err(too_deep(start));
        }
        Ok(())
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.peek(), Some(Token { kind: TokenKind::Word(word), .. }) if *word == keyword);
        self.next += usize::from(found);
        found
    }

    fn peek(&self) -> Option<&Token<'text>> {
        self.tokens.get(self.next)
    }

    fn advance(&mut self) -> Option<Token<'text>> {
        let token = self.tokens.get(self.next)?.clone();
        self.next += 1;
        Some(token)
    }

    /// Byte offset of the next token, or the end of the text.
    fn position(&self) -> usize {
        self.peek().map_or(self.text_length, |token| token.start)
    }
}

/// `tag = x` is the tag `x`, `tag != x` is `not x` (likewise for topics).
fn membership(
    term: fn(Box<str>) -> Expr,
    field: &str,
    (operator, operator_start): (Operator, usize),
    (name, name_start): (String, usize),
) -> Result<Expr, ParseError> {
    if !matches!(operator, Operator::Equal | Operator::NotEqual) {
        let message = format!("\"{field}\" only takes = or != (whether the device has it)");
        return Err(ParseError::new(operator_start, message));
    }
    if !is_word(&name) {
        let message = format!("{field} names use only letters, digits and _ . : -");
        return Err(ParseError::new(name_start, message));
    }
    if operator == Operator::Equal {
        Ok(term(name.into()))
    } else {
        Ok(Expr::Not(Box::new(term(name.into()))))
    }
}

fn too_deep(position: usize) -> ParseError {
    ParseError::new(
        position,
        format!("the audience has more than {MAX_NESTING} nesting levels"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_term_and_nesting_limits_hold_without_the_length_limit() {
        let terms = vec!["t"; MAX_TERMS].join(" or ");
        assert_eq!(
            parse_any_length(&terms, Dialect::Full).unwrap().terms(),
            MAX_TERMS
        );
        let too_many = format!("{terms} or x");
        assert_eq!(
            parse_any_length(&too_many, Dialect::Full)
                .unwrap_err()
                .to_string(),
            format!(
                "the audience has more than 256 terms at {}",
                too_many.len() - 1
            )
        );

        let deep = format!("{}x{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse_any_length(&deep, Dialect::Full).is_ok());
        let too_deep = format!("{}x{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(
            parse_any_length(&too_deep, Dialect::Full)
                .unwrap_err()
                .to_string(),
            "the audience has more than 64 nesting levels at 64"
        );
    }
}
