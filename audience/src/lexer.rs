//! Splits an audience's text into tokens: words, quoted values, parentheses and comparison
//! symbols. Keywords are plain words here; the parser gives them meaning by position.

use std::fmt;

use crate::error::ParseError;
use crate::expr::Operator;
use crate::syntax::is_word_byte;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind<'text> {
    Word(&'text str),
    /// A `"quoted value"`, unescaped.
    Quoted(String),
    Open,
    Close,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=` (`starts with` is two words).
    Symbol(Operator),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'text> {
    pub(crate) kind: TokenKind<'text>,
    /// Byte offset of the token's first character.
    pub(crate) start: usize,
}

/// Quotes a token the way error messages show it: `"vip"`, `">="`, `"("`.
impl fmt::Display for TokenKind<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Word(word) => write!(formatter, "\"{word}\""),
            TokenKind::Quoted(value) => write!(formatter, "the quoted value {value:?}"),
            TokenKind::Open => formatter.write_str("\"(\""),
            TokenKind::Close => formatter.write_str("\")\""),
            TokenKind::Symbol(operator) => write!(formatter, "\"{}\"", operator.symbol()),
        }
    }
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some((start, character)) = rest.next() {
        let kind = match character {
            _ if character.is_whitespace() => continue,
            '(' => TokenKind::Open,
            ')' => TokenKind::Close,
            '=' if rest.next_if(|&(_, next)| next == '=').is_some() => {
                return Err(ParseError::new(start, "write = rather than =="));
            }
            '=' => TokenKind::Symbol(Operator::Equal),
            '!' if rest.next_if(|&(_, next)| next == '=').is_some() => {
                TokenKind::Symbol(Operator::NotEqual)
            }
            '<' if rest.next_if(|&(_, next)| next == '=').is_some() => {
                TokenKind::Symbol(Operator::LessOrEqual)
            }
            '<' => TokenKind::Symbol(Operator::Less),
            '>' if rest.next_if(|&(_, next)| next == '=').is_some() => {
                TokenKind::Symbol(Operator::GreaterOrEqual)
            }
            '>' => TokenKind::Symbol(Operator::Greater),
            '"' => TokenKind::Quoted(quoted_value(start, &mut rest)?),
            _ if u8::try_from(character).is_ok_and(is_word_byte) => {
                let mut end = start + 1;
                while let Some((index, _)) =
                    rest.next_if(|&(_, next)| u8::try_from(next).is_ok_and(is_word_byte))
                {
                    end = index + 1;
                }
                TokenKind::Word(&text[start..end])
            }
            _ => return Err(unexpected_character(start, character)),
        };
        tokens.push(Token { kind, start });
    }
    Ok(tokens)
}

/// Reads a quoted value whose opening quote is at `opening`; `rest` is just past it.
fn quoted_value(
    opening: usize,
    rest: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, ParseError> {
    let mut value = String::new();
    while let Some((index, character)) = rest.next() {
        match character {
            '"' => return Ok(value),
            '\\' => match rest.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                Some((_, escaped)) => {
                    return Err(ParseError::new(
                        index,
                        format!(
                            "unknown escape \"\\{}\" in a quoted value (only \\\" and \\\\ are allowed)",
                            escaped.escape_debug()
                        ),
                    ));
                }
                None => break,
            },
            _ if character.is_control() => {
                return Err(ParseError::new(
                    index,
                    "control characters (such as line breaks) are not allowed in a quoted value",
                ));
            }
            _ => value.push(character),
        }
    }
    Err(ParseError::new(
        opening,
        "quoted value is never closed (a closing \" is missing)",
    ))
}

fn unexpected_character(position: usize, character: char) -> ParseError {
    let hint = match character {
        '&' | '|' | '!' => " (write and, or, not; != compares)",
        '\'' => " (quote values with double quotes)",
        _ => " (words use letters, digits and _ . : -; put other values in double quotes)",
    };
    let shown = if character.is_control() {
        character.escape_debug().to_string()
    } else {
        character.to_string()
    };
    ParseError::new(position, format!("unexpected character \"{shown}\"{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind<'_>> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|token| token.kind)
            .collect()
    }

    fn error(text: &str) -> String {
        tokenize(text).unwrap_err().to_string()
    }

    #[test]
    fn splits_words_symbols_and_parentheses() {
        use TokenKind::*;
        assert_eq!(
            kinds("(vip)and platform>=2.3 != <x<=y>z=\"a b\""),
            vec![
                Open,
                Word("vip"),
                Close,
                Word("and"),
                Word("platform"),
                Symbol(Operator::GreaterOrEqual),
                Word("2.3"),
                Symbol(Operator::NotEqual),
                Symbol(Operator::Less),
                Word("x"),
                Symbol(Operator::LessOrEqual),
                Word("y"),
                Symbol(Operator::Greater),
                Word("z"),
                Symbol(Operator::Equal),
                Quoted("a b".into()),
            ]
        );
        let starts: Vec<usize> = tokenize(" a  (b)")
            .unwrap()
            .iter()
            .map(|token| token.start)
            .collect();
        assert_eq!(starts, [1, 4, 5, 6]);
    }

    #[test]
    fn unescapes_quoted_values() {
        assert_eq!(
            kinds(r#""say \"hi\" \\ é""#),
            vec![TokenKind::Quoted(r#"say "hi" \ é"#.into())]
        );
        assert_eq!(kinds(r#""""#), vec![TokenKind::Quoted(String::new())]);
        assert_eq!(
            kinds("\u{a0}a\t\nb"),
            vec![TokenKind::Word("a"), TokenKind::Word("b")]
        );
    }

    #[test]
    fn explains_what_it_cannot_read() {
        assert_eq!(
            error("a && b"),
            "unexpected character \"&\" (write and, or, not; != compares) at 2"
        );
        assert_eq!(
            error("!a"),
            "unexpected character \"!\" (write and, or, not; != compares) at 0"
        );
        assert_eq!(
            error("a = 'b'"),
            "unexpected character \"'\" (quote values with double quotes) at 4"
        );
        assert_eq!(
            error("timezone = Asia/Tokyo"),
            "unexpected character \"/\" (words use letters, digits and _ . : -; put other values in double quotes) at 15"
        );
        assert_eq!(error("a == b"), "write = rather than == at 2");
        assert_eq!(
            error("a = \"b"),
            "quoted value is never closed (a closing \" is missing) at 4"
        );
        assert_eq!(
            error("a = \"b\\"),
            "quoted value is never closed (a closing \" is missing) at 4"
        );
        assert_eq!(
            error("a = \"b\\n\""),
            "unknown escape \"\\n\" in a quoted value (only \\\" and \\\\ are allowed) at 6"
        );
        assert_eq!(
            error("a = \"b\nc\""),
            "control characters (such as line breaks) are not allowed in a quoted value at 6"
        );
    }
}
