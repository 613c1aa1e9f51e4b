//! Errors of the expression language: what is wrong with a text, and where.

use crate::syntax::{MAX_AUDIENCE_CHARS, MAX_NESTING, MAX_TERMS};

/// Why a text is not an audience: a message written for whoever typed it, and the byte
/// offset in the text where the problem is. Displayed as `<message> at <position>`, e.g.
/// `expected a value after ">=" at 23`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {position}")]
pub struct ParseError {
    position: usize,
    message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            position,
            message: message.into(),
        }
    }

    /// The byte offset in the text where the problem is (the text's length when something
    /// is missing at its end).
    pub fn position(&self) -> usize {
        self.position
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// An audience that would exceed the language's limits (for example after narrowing an
/// audience that was already at the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the audience is longer than {MAX_AUDIENCE_CHARS} characters ({length})")]
    TooLong { length: usize },
    #[error("the audience has more than {MAX_NESTING} nesting levels")]
    TooDeep,
    #[error("the audience has more than {MAX_TERMS} terms ({terms})")]
    TooManyTerms { terms: usize },
}
