//! [`Audience`]: a parsed, validated audience expression, and the ways to build one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::attributes::DeviceAttributes;
use crate::display::canonical_length;
use crate::error::{LimitError, ParseError};
use crate::expr::{Comparison, Expr, Field, Operator};
use crate::parser::{Dialect, parse};
use crate::syntax::{
    MAX_AUDIENCE_CHARS, MAX_NESTING, MAX_TERMS, MAX_VALUE_CHARS, first_non_word_char,
};

/// Who a message is for: `everyone`, a tag expression (`vip and (cn or us) and not churned`),
/// a segment (`platform = ios and app_version >= 2.3 and locale starts with zh`) or a topic
/// (`topic = news`).
///
/// Every value is within the language's limits and has one canonical text (its `Display`),
/// which parses back to an equal value; serde reads and writes that text. Two audiences are
/// equal when their canonical texts are, which is a matter of form, not of meaning: `a and b`
/// and `b and a` are different audiences that match the same devices.
///
/// ```
/// use ringpush_audience::{Audience, DeviceAttributes};
///
/// let audience = Audience::parse("platform=ios and (app_version >= 2.3 or vip)")?;
/// assert_eq!(audience.to_string(), "platform = ios and (app_version >= 2.3 or vip)");
///
/// let device = DeviceAttributes {
///     platform: Some("ios".into()),
///     app_version: Some("2.10.1".into()),
///     ..DeviceAttributes::default()
/// };
/// assert!(audience.matches(&device));
///
/// let in_tokyo = audience.and(Audience::timezone_is("Asia/Tokyo")?)?;
/// assert_eq!(
///     in_tokyo.to_string(),
///     "platform = ios and (app_version >= 2.3 or vip) and timezone = \"Asia/Tokyo\""
/// );
/// assert!(!in_tokyo.matches(&device));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Audience {
    expr: Expr,
}

impl Audience {
    /// Parses the full language: tags, comparisons, `and`/`or`/`not`, parentheses and
    /// `everyone` (the `segment` target, and every stored canonical text).
    pub fn parse(text: &str) -> Result<Audience, ParseError> {
        Audience::parse_in(text, Dialect::Full)
    }

    /// Parses a tag expression: tag names with `and`, `or`, `not` and parentheses only (the
    /// `tags` target). Comparisons and `everyone` are errors. Here every word other than a
    /// keyword is a tag, including field names such as `platform`.
    pub fn parse_tags(text: &str) -> Result<Audience, ParseError> {
        Audience::parse_in(text, Dialect::TagsOnly)
    }

    fn parse_in(text: &str, dialect: Dialect) -> Result<Audience, ParseError> {
        let expr = parse(text, dialect)?;
        // Reachable only by texts near the limit that canonical form lengthens (a space
        // before a parenthesis, quotes): the canonical text must parse too.
        let length = canonical_length(&expr);
        if length > MAX_AUDIENCE_CHARS {
            let message = format!(
                "the audience is longer than {MAX_AUDIENCE_CHARS} characters in canonical form ({length})"
            );
            return Err(ParseError::new(0, message));
        }
        Ok(Audience { expr })
    }

    /// Every device: the audience of a broadcast.
    pub fn everyone() -> Audience {
        Audience {
            expr: Expr::Everyone,
        }
    }

    /// The devices that follow the topic `name` (`topic = <name>`). Topic names are words:
    /// letters, digits and `_ . : -`, at most 128 characters.
    pub fn topic(name: &str) -> Result<Audience, ParseError> {
        if name.is_empty() {
            return Err(ParseError::new(0, "topic name is empty"));
        }
        if let Some((position, character)) = first_non_word_char(name) {
            let message = format!(
                "topic names use only letters, digits and _ . : -, found \"{}\"",
                character.escape_debug()
            );
            return Err(ParseError::new(position, message));
        }
        if name.len() > MAX_VALUE_CHARS {
            let message = format!("topic name is longer than {MAX_VALUE_CHARS} characters");
            return Err(ParseError::new(0, message));
        }
        Ok(Audience {
            expr: Expr::Topic(name.into()),
        })
    }

    /// The devices that reported the time zone `zone` (`timezone = "<zone>"`), to narrow a
    /// local-time campaign's audience with [`Audience::and`].
    pub fn timezone_is(zone: &str) -> Result<Audience, ParseError> {
        if zone.is_empty() {
            return Err(ParseError::new(0, "time zone is empty"));
        }
        if let Some((position, _)) = zone.char_indices().find(|(_, c)| c.is_control()) {
            let message = "control characters are not allowed in a time zone";
            return Err(ParseError::new(position, message));
        }
        if zone.chars().count() > MAX_VALUE_CHARS {
            let message = format!("time zone is longer than {MAX_VALUE_CHARS} characters");
            return Err(ParseError::new(0, message));
        }
        let comparison = Comparison::new(Field::Timezone, Operator::Equal, zone.into());
        Ok(Audience {
            expr: Expr::Compare(Box::new(comparison)),
        })
    }

    /// The devices that reported no time zone, written `not timezone starts with ""` (every
    /// reported zone starts with the empty text; a missing attribute satisfies no
    /// `starts with`). A local-time campaign sends to them at the default zone's firing:
    /// `timezone_is(default)?.or(without_timezone())`.
    pub fn without_timezone() -> Audience {
        let comparison = Comparison::new(Field::Timezone, Operator::StartsWith, "".into());
        Audience {
            expr: Expr::Not(Box::new(Expr::Compare(Box::new(comparison)))),
        }
    }

    /// The devices in both audiences. `everyone and x` is `x`. Fails only if the result
    /// would exceed the limits.
    pub fn and(self, other: Audience) -> Result<Audience, LimitError> {
        match (self.expr, other.expr) {
            (Expr::Everyone, expr) | (expr, Expr::Everyone) => Ok(Audience { expr }),
            (left, right) => within_limits(Expr::all_of(left, right)),
        }
    }

    /// The devices in either audience. `everyone or x` is `everyone`. Fails only if the
    /// result would exceed the limits.
    pub fn or(self, other: Audience) -> Result<Audience, LimitError> {
        match (self.expr, other.expr) {
            (Expr::Everyone, _) | (_, Expr::Everyone) => Ok(Audience::everyone()),
            (left, right) => within_limits(Expr::any_of(left, right)),
        }
    }

    /// Whether the device is in the audience. Allocates nothing.
    pub fn matches(&self, device: &DeviceAttributes) -> bool {
        self.expr.matches(device)
    }

    /// Whether this is `everyone`.
    pub fn is_everyone(&self) -> bool {
        self.expr == Expr::Everyone
    }

    #[cfg(test)]
    pub(crate) fn from_expr(expr: Expr) -> Audience {
        Audience { expr }
    }

    #[cfg(test)]
    pub(crate) fn expr(&self) -> &Expr {
        &self.expr
    }
}

fn within_limits(expr: Expr) -> Result<Audience, LimitError> {
    if expr.depth() > MAX_NESTING {
        return Err(LimitError::TooDeep);
    }
    let terms = expr.terms();
    if terms > MAX_TERMS {
        return Err(LimitError::TooManyTerms { terms });
    }
    let length = canonical_length(&expr);
    if length > MAX_AUDIENCE_CHARS {
        return Err(LimitError::TooLong { length });
    }
    Ok(Audience { expr })
}

/// The canonical text.
impl fmt::Display for Audience {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(formatter)
    }
}

/// `Audience("vip and not churned")`: the canonical text says all there is to say.
impl fmt::Debug for Audience {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("Audience")
            .field(&self.to_string())
            .finish()
    }
}

/// [`Audience::parse`].
impl FromStr for Audience {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Audience, ParseError> {
        Audience::parse(text)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Audience, D::Error> {
        let text = String::deserialize(deserializer)?;
        Audience::parse(&text).map_err(serde::de::Error::custom)
    }
}
