//! The canonical text of an audience: one text per tree, which parses back to the same tree.
//!
//! Terms are separated by single spaces, parentheses appear only where precedence needs them
//! (`or` inside `and`, `and`/`or` inside `not`), values are quoted only when they are not
//! plain words (or are the keywords `and`, `or`, `not`), and tags whose name the parser would
//! read as a keyword or a field are written `tag = <name>`. This text is what the timeline
//! stores and what the controller sends to connectors.

use std::fmt::{self, Write};

use crate::expr::{Comparison, Expr, Field};
use crate::syntax::{ATTR_PREFIX, EVERYONE, needs_quotes, needs_tag_prefix};

impl fmt::Display for Expr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Everyone => formatter.write_str(EVERYONE),
            Expr::Tag(name) if needs_tag_prefix(name) => {
                formatter.write_str("tag = ")?;
                write_value(formatter, name)
            }
            Expr::Tag(name) => formatter.write_str(name),
            Expr::Topic(name) => {
                formatter.write_str("topic = ")?;
                write_value(formatter, name)
            }
            Expr::Compare(comparison) => comparison.fmt(formatter),
            Expr::Not(inner) => {
                formatter.write_str("not ")?;
                write_operand(
                    formatter,
                    inner,
                    matches!(**inner, Expr::All(_) | Expr::Any(_)),
                )
            }
            Expr::All(children) => write_joined(formatter, children, " and ", |child| {
                matches!(child, Expr::All(_) | Expr::Any(_))
            }),
            Expr::Any(children) => write_joined(formatter, children, " or ", |child| {
                matches!(child, Expr::Any(_))
            }),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Field::Platform => formatter.write_str("platform")?,
            Field::OsVersion => formatter.write_str("os_version")?,
            Field::AppVersion => formatter.write_str("app_version")?,
            Field::Locale => formatter.write_str("locale")?,
            Field::Timezone => formatter.write_str("timezone")?,
            Field::Custom(key) => {
                formatter.write_str(ATTR_PREFIX)?;
                formatter.write_str(key)?;
            }
        }
        write!(formatter, " {} ", self.operator.symbol())?;
        write_value(formatter, &self.value)
    }
}

/// Writes the children with `separator` between them, parenthesising those that
/// `needs_parentheses` says would otherwise bind differently.
fn write_joined(
    formatter: &mut fmt::Formatter<'_>,
    children: &[Expr],
    separator: &str,
    needs_parentheses: fn(&Expr) -> bool,
) -> fmt::Result {
    for (index, child) in children.iter().enumerate() {
        if index > 0 {
            formatter.write_str(separator)?;
        }
        write_operand(formatter, child, needs_parentheses(child))?;
    }
    Ok(())
}

fn write_operand(
    formatter: &mut fmt::Formatter<'_>,
    expr: &Expr,
    parenthesise: bool,
) -> fmt::Result {
    if parenthesise {
        write!(formatter, "({expr})")
    } else {
        fmt::Display::fmt(expr, formatter)
    }
}

/// Writes a value as a word when it is one, quoted with `\"` and `\\` escapes otherwise.
fn write_value(formatter: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    if !needs_quotes(value) {
        return formatter.write_str(value);
    }
    formatter.write_char('"')?;
    for character in value.chars() {
        if matches!(character, '"' | '\\') {
            formatter.write_char('\\')?;
        }
        formatter.write_char(character)?;
    }
    formatter.write_char('"')
}

/// The length in characters of the canonical text, without building it.
pub(crate) fn canonical_length(expr: &Expr) -> usize {
    struct CharCounter(usize);
    impl Write for CharCounter {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            self.0 += text.chars().count();
            Ok(())
        }
    }
    let mut counter = CharCounter(0);
    // Writing into a counter cannot fail: `CharCounter::write_str` always succeeds.
    let _ = write!(counter, "{expr}");
    counter.0
}
