//! The syntax tree of an audience and its evaluation against one device.
//!
//! The tree is kept in a normal form so that equal audiences have equal trees and one
//! canonical text: `and`/`or` nodes are n-ary with at least two children, none of which is
//! a node of the same kind (`a and (b and c)` is `and[a, b, c]`); `tag = x` is the tag `x`
//! and `tag != x` is `not x` (likewise for topics); `everyone` only ever stands alone. The
//! parser and the combinators build trees in this form, and the printer relies on it.

use std::cmp::Ordering;

use crate::attributes::DeviceAttributes;
use crate::version::compare_values;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// Every device (the audience of a broadcast).
    Everyone,
    /// The device has this tag.
    Tag(Box<str>),
    /// The device follows this topic.
    Topic(Box<str>),
    /// An attribute compared with a value; boxed to keep the tree's nodes small.
    Compare(Box<Comparison>),
    Not(Box<Expr>),
    /// All of the children match (at least two, none an `All`).
    All(Box<[Expr]>),
    /// Any of the children matches (at least two, none an `Any`).
    Any(Box<[Expr]>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Comparison {
    pub(crate) field: Field,
    pub(crate) operator: Operator,
    pub(crate) value: Box<str>,
    /// Whether `value` is a dotted number, computed once so that matching does not redo it.
    pub(crate) value_is_dotted: bool,
}

/// The attributes a comparison can read (tags and topics are tree nodes of their own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Platform,
    OsVersion,
    AppVersion,
    Locale,
    Timezone,
    /// `attr.<key>`: the app's own key/values.
    Custom(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Operator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    StartsWith,
}

impl Field {
    /// The field named by a word, other than `tag` and `topic`.
    pub(crate) fn from_word(word: &str) -> Option<Field> {
        Some(match word {
            "platform" => Field::Platform,
            "os_version" => Field::OsVersion,
            "app_version" => Field::AppVersion,
            "locale" => Field::Locale,
            "timezone" => Field::Timezone,
            _ => Field::Custom(word.strip_prefix(crate::syntax::ATTR_PREFIX)?.into()),
        })
    }

    fn value_of<'device>(&self, device: &'device DeviceAttributes) -> Option<&'device str> {
        match self {
            Field::Platform => device.platform.as_deref(),
            Field::OsVersion => device.os_version.as_deref(),
            Field::AppVersion => device.app_version.as_deref(),
            Field::Locale => device.locale.as_deref(),
            Field::Timezone => device.timezone.as_deref(),
            Field::Custom(key) => device.custom.get(&**key).map(String::as_str),
        }
    }
}

impl Operator {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Operator::Equal => "=",
            Operator::NotEqual => "!=",
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::StartsWith => "starts with",
        }
    }
}

impl Comparison {
    pub(crate) fn new(field: Field, operator: Operator, value: Box<str>) -> Comparison {
        let value_is_dotted = crate::version::is_dotted_number(&value);
        Comparison {
            field,
            operator,
            value,
            value_is_dotted,
        }
    }

    fn matches(&self, device: &DeviceAttributes) -> bool {
        let Some(device_value) = self.field.value_of(device) else {
            // A device that never reported the attribute differs from every value and
            // satisfies nothing else.
            return self.operator == Operator::NotEqual;
        };
        let value = &*self.value;
        match self.operator {
            Operator::Equal => device_value == value,
            Operator::NotEqual => device_value != value,
            Operator::StartsWith => device_value.starts_with(value),
            Operator::Less => self.order(device_value) == Ordering::Less,
            Operator::LessOrEqual => self.order(device_value) != Ordering::Greater,
            Operator::Greater => self.order(device_value) == Ordering::Greater,
            Operator::GreaterOrEqual => self.order(device_value) != Ordering::Less,
        }
    }

    fn order(&self, device_value: &str) -> Ordering {
        compare_values(device_value, &self.value, self.value_is_dotted)
    }
}

impl Expr {
    /// Whether the device is in the audience. Allocates nothing; recursion is bounded by the
    /// nesting limit.
    pub(crate) fn matches(&self, device: &DeviceAttributes) -> bool {
        match self {
            Expr::Everyone => true,
            Expr::Tag(name) => device.tags.contains(&**name),
            Expr::Topic(name) => device.topics.contains(&**name),
            Expr::Compare(comparison) => comparison.matches(device),
            Expr::Not(inner) => !inner.matches(device),
            Expr::All(children) => children.iter().all(|child| child.matches(device)),
            Expr::Any(children) => children.iter().any(|child| child.matches(device)),
        }
    }

    /// The `and` of two trees, in normal form (children of `and` nodes are spliced in).
    pub(crate) fn all_of(left: Expr, right: Expr) -> Expr {
        Expr::All(splice(left, right, |expr| match expr {
            Expr::All(children) => Ok(children),
            other => Err(other),
        }))
    }

    /// The `or` of two trees, in normal form.
    pub(crate) fn any_of(left: Expr, right: Expr) -> Expr {
        Expr::Any(splice(left, right, |expr| match expr {
            Expr::Any(children) => Ok(children),
            other => Err(other),
        }))
    }

    /// Nesting depth: 0 for a term, one more than the deepest child for `and`, `or`, `not`.
    pub(crate) fn depth(&self) -> usize {
        match self {
            Expr::Everyone | Expr::Tag(_) | Expr::Topic(_) | Expr::Compare(_) => 0,
            Expr::Not(inner) => 1 + inner.depth(),
            Expr::All(children) | Expr::Any(children) => {
                1 + children.iter().map(Expr::depth).max().unwrap_or(0)
            }
        }
    }

    /// The number of terms (tags, topics, comparisons, `everyone`).
    pub(crate) fn terms(&self) -> usize {
        match self {
            Expr::Everyone | Expr::Tag(_) | Expr::Topic(_) | Expr::Compare(_) => 1,
            Expr::Not(inner) => inner.terms(),
            Expr::All(children) | Expr::Any(children) => children.iter().map(Expr::terms).sum(),
        }
    }
}

/// The children of `left op right`, splicing in the children of either side that is already
/// an `op` node (`children_if_same_kind` hands those children out, and any other node back).
fn splice(
    left: Expr,
    right: Expr,
    children_if_same_kind: fn(Expr) -> Result<Box<[Expr]>, Expr>,
) -> Box<[Expr]> {
    let mut children = Vec::new();
    for side in [left, right] {
        match children_if_same_kind(side) {
            Ok(grandchildren) => children.extend(grandchildren),
            Err(side) => children.push(side),
        }
    }
    children.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceAttributes {
        DeviceAttributes {
            platform: Some("ios".into()),
            app_version: Some("2.10".into()),
            locale: Some("zh-CN".into()),
            tags: ["vip".to_string()].into(),
            topics: ["news".to_string()].into(),
            custom: [("plan".to_string(), "gold".to_string())].into(),
            ..DeviceAttributes::default()
        }
    }

    fn compare(field: Field, operator: Operator, value: &str) -> Expr {
        Expr::Compare(Box::new(Comparison::new(field, operator, value.into())))
    }

    #[test]
    fn the_tree_stays_small() {
        assert!(
            std::mem::size_of::<Expr>() <= 24,
            "{}",
            std::mem::size_of::<Expr>()
        );
    }

    #[test]
    fn terms_match_membership() {
        let device = device();
        assert!(Expr::Everyone.matches(&device));
        assert!(Expr::Everyone.matches(&DeviceAttributes::default()));
        assert!(Expr::Tag("vip".into()).matches(&device));
        assert!(!Expr::Tag("VIP".into()).matches(&device));
        assert!(Expr::Topic("news".into()).matches(&device));
        assert!(!Expr::Topic("vip".into()).matches(&device));
    }

    #[test]
    fn comparisons_read_the_attribute() {
        let device = device();
        let cases = [
            (Field::Platform, Operator::Equal, "ios", true),
            (Field::Platform, Operator::Equal, "IOS", false),
            (Field::Platform, Operator::NotEqual, "android", true),
            (Field::AppVersion, Operator::Greater, "2.3", true),
            (Field::AppVersion, Operator::GreaterOrEqual, "2.10.0", true),
            (Field::AppVersion, Operator::LessOrEqual, "2.10.0", true),
            (Field::AppVersion, Operator::Equal, "2.10.0", false),
            (Field::AppVersion, Operator::Less, "2.9", false),
            (Field::Locale, Operator::StartsWith, "zh", true),
            (Field::Locale, Operator::StartsWith, "zh-CN-x", false),
            (Field::Locale, Operator::Greater, "zh", true),
            (Field::Custom("plan".into()), Operator::Equal, "gold", true),
            (Field::Custom("plan".into()), Operator::Less, "silver", true),
        ];
        for (field, operator, value, expected) in cases {
            let expr = compare(field.clone(), operator, value);
            assert_eq!(
                expr.matches(&device),
                expected,
                "{field:?} {operator:?} {value}"
            );
        }
    }

    #[test]
    fn a_missing_attribute_satisfies_only_not_equal() {
        let device = device();
        for operator in [
            Operator::Equal,
            Operator::Less,
            Operator::LessOrEqual,
            Operator::Greater,
            Operator::GreaterOrEqual,
            Operator::StartsWith,
        ] {
            assert!(
                !compare(Field::Timezone, operator, "").matches(&device),
                "{operator:?}"
            );
            assert!(!compare(Field::Custom("x".into()), operator, "1").matches(&device));
        }
        assert!(compare(Field::Timezone, Operator::NotEqual, "UTC").matches(&device));
        assert!(compare(Field::OsVersion, Operator::NotEqual, "17").matches(&device));
    }

    #[test]
    fn combinators_splice_same_kind_children() {
        let tag = |name: &str| Expr::Tag(name.into());
        let left = Expr::all_of(tag("a"), tag("b"));
        let right = Expr::all_of(tag("c"), Expr::any_of(tag("d"), tag("e")));
        let all = Expr::all_of(left, right);
        let Expr::All(children) = &all else {
            panic!("{all:?}")
        };
        assert_eq!(children.len(), 4);
        assert_eq!(all.depth(), 2);
        assert_eq!(all.terms(), 5);
        assert_eq!(Expr::Not(Box::new(all)).depth(), 3);
    }
}
