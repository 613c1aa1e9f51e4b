//! Properties of the language checked against an independent model: texts generated from a
//! model tree (written in many equivalent ways) parse, match the devices the model says they
//! match, and have a canonical text that parses back to the same audience; the boolean
//! algebra holds; no input makes the parser panic.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use ringpush_audience::{Audience, DeviceAttributes, MAX_AUDIENCE_CHARS};

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone)]
enum Model {
    Tag(String),
    Topic(String),
    Compare(&'static str, &'static str, String),
    Not(Box<Model>),
    And(Vec<Model>),
    Or(Vec<Model>),
}

const FIELDS: [&str; 7] = [
    "platform",
    "os_version",
    "app_version",
    "locale",
    "timezone",
    "attr.plan",
    "attr.x",
];
const OPERATORS: [&str; 7] = ["=", "!=", "<", "<=", ">", ">=", "starts with"];
const TAGS: [&str; 7] = ["vip", "cn", "us", "churned", "and", "platform", "attr.plan"];
const TOPICS: [&str; 3] = ["news", "sport", "or"];
const VALUES: [&str; 11] = [
    "ios",
    "android",
    "",
    "zh",
    "zh-CN",
    "en",
    "Asia/Tokyo",
    "UTC",
    "gold",
    "New York",
    "\"q\" \\",
];
/// Values that devices report for versions, and that comparisons compare them with.
const VERSIONS: [&str; 7] = ["2.3", "2.10", "2.3.0", "10", "2.3-beta", "9.9.9", "ios"];

/// Dotted numbers numerically (missing trailing components are 0), anything else as text.
fn model_order(device: &str, value: &str) -> Ordering {
    let dotted = |text: &str| -> Option<Vec<u128>> {
        text.split('.')
            .map(|part| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse().unwrap())
            })
            .collect()
    };
    match (dotted(device), dotted(value)) {
        (Some(mut left), Some(mut right)) => {
            let length = left.len().max(right.len());
            left.resize(length, 0);
            right.resize(length, 0);
            left.cmp(&right)
        }
        _ => device.cmp(value),
    }
}

impl Model {
    fn matches(&self, device: &DeviceAttributes) -> bool {
        match self {
            Model::Tag(name) => device.tags.contains(name),
            Model::Topic(name) => device.topics.contains(name),
            Model::Compare(field, operator, value) => {
                let actual = match *field {
                    "platform" => device.platform.as_deref(),
                    "os_version" => device.os_version.as_deref(),
                    "app_version" => device.app_version.as_deref(),
                    "locale" => device.locale.as_deref(),
                    "timezone" => device.timezone.as_deref(),
                    custom => device
                        .custom
                        .get(&custom["attr.".len()..])
                        .map(String::as_str),
                };
                let Some(actual) = actual else {
                    return *operator == "!=";
                };
                let order = model_order(actual, value);
                match *operator {
                    "=" => actual == value,
                    "!=" => actual != value,
                    "<" => order.is_lt(),
                    "<=" => order.is_le(),
                    ">" => order.is_gt(),
                    ">=" => order.is_ge(),
                    _ => actual.starts_with(value.as_str()),
                }
            }
            Model::Not(inner) => !inner.matches(device),
            Model::And(children) => children.iter().all(|child| child.matches(device)),
            Model::Or(children) => children.iter().any(|child| child.matches(device)),
        }
    }

    /// Writes the model as text, choosing among equivalent spellings with `style`.
    fn write(&self, style: &mut impl Iterator<Item = bool>, out: &mut String) {
        let mut pick = || style.next().unwrap_or(false);
        let space = |out: &mut String, wide: bool| out.push_str(if wide { " \t " } else { " " });
        if pick() && pick() {
            out.push('(');
            self.write(style, out);
            out.push(')');
            return;
        }
        match self {
            Model::Tag(name) => {
                let reserved = ["and", "or", "not", "everyone"].contains(&name.as_str())
                    || FIELDS.contains(&name.as_str())
                    || name.starts_with("attr.");
                if reserved || pick() {
                    out.push_str("tag");
                    out.push_str(if pick() { "=" } else { " = " });
                    write_value(name, style, out);
                } else {
                    out.push_str(name);
                }
            }
            Model::Topic(name) => {
                out.push_str("topic = ");
                write_value(name, style, out);
            }
            Model::Compare(field, operator, value) => {
                out.push_str(field);
                let wide = pick();
                space(out, wide);
                out.push_str(if *operator == "starts with" && pick() {
                    "starts \n with"
                } else {
                    operator
                });
                out.push(' ');
                write_value(value, style, out);
            }
            Model::Not(inner) => {
                out.push_str("not ");
                write_group(inner, style, out);
            }
            Model::And(children) | Model::Or(children) => {
                let keyword = if matches!(self, Model::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (index, child) in children.iter().enumerate() {
                    if index > 0 {
                        out.push_str(keyword);
                    }
                    write_group(child, style, out);
                }
            }
        }
    }
}

/// Writes an operand of `and`/`or`/`not`, in parentheses when it is itself a compound.
fn write_group(model: &Model, style: &mut impl Iterator<Item = bool>, out: &mut String) {
    if matches!(model, Model::And(_) | Model::Or(_) | Model::Not(_)) {
        out.push('(');
        model.write(style, out);
        out.push(')');
    } else {
        model.write(style, out);
    }
}

fn write_value(value: &str, style: &mut impl Iterator<Item = bool>, out: &mut String) {
    let is_word = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        && !["and", "or", "not"].contains(&value);
    if is_word && !style.next().unwrap_or(false) {
        out.push_str(value);
    } else {
        out.push('"');
        for character in value.chars() {
            if matches!(character, '"' | '\\') {
                out.push('\\');
            }
            out.push(character);
        }
        out.push('"');
    }
}

fn model() -> impl Strategy<Value = Model> {
    let term = prop_oneof![
        1 => prop::sample::select(TAGS.to_vec()).prop_map(|name| Model::Tag(name.into())),
        1 => prop::sample::select(TOPICS.to_vec()).prop_map(|name| Model::Topic(name.into())),
        4 => (
            prop::sample::select(FIELDS.to_vec()),
            prop::sample::select(OPERATORS.to_vec()),
            prop_oneof![prop::sample::select(VALUES.to_vec()), prop::sample::select(VERSIONS.to_vec())],
        )
            .prop_map(|(field, operator, value)| Model::Compare(field, operator, value.into())),
    ];
    term.prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|model| Model::Not(Box::new(model))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Model::And),
            prop::collection::vec(inner, 2..4).prop_map(Model::Or),
        ]
    })
}

fn text() -> impl Strategy<Value = String> {
    (model(), prop::collection::vec(any::<bool>(), 64)).prop_map(|(model, style)| {
        let mut out = String::new();
        model.write(&mut style.into_iter().cycle(), &mut out);
        out
    })
}

fn device() -> impl Strategy<Value = DeviceAttributes> {
    let optional = |values: &[&'static str]| {
        prop::option::of(prop::sample::select(values.to_vec()).prop_map(str::to_owned))
    };
    (
        (
            optional(&["ios", "android", "iosx"]),
            optional(&VERSIONS),
            optional(&VERSIONS),
        ),
        (
            optional(&["zh", "zh-CN", "en", "ZH"]),
            optional(&["Asia/Tokyo", "UTC", ""]),
        ),
        prop::sample::subsequence(TAGS.to_vec(), 0..=TAGS.len()),
        prop::sample::subsequence(TOPICS.to_vec(), 0..=TOPICS.len()),
        (
            optional(&["gold", "silver", "2.10", "New York"]),
            optional(&["", "\"q\" \\", "2.3"]),
        ),
    )
        .prop_map(
            |((platform, os_version, app_version), (locale, timezone), tags, topics, (plan, x))| {
                let mut custom = BTreeMap::new();
                custom.extend(plan.map(|value| ("plan".to_string(), value)));
                custom.extend(x.map(|value| ("x".to_string(), value)));
                DeviceAttributes {
                    platform,
                    os_version,
                    app_version,
                    locale,
                    timezone,
                    alias: None,
                    tags: tags.into_iter().map(str::to_owned).collect::<BTreeSet<_>>(),
                    topics: topics.into_iter().map(str::to_owned).collect(),
                    custom,
                }
            },
        )
}

fn parse(text: &str) -> Result<Audience, TestCaseError> {
    Audience::parse(text).map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn texts_match_what_the_model_says(
        (model, style) in (model(), prop::collection::vec(any::<bool>(), 64)),
        devices in prop::collection::vec(device(), 8),
    ) {
        let mut text = String::new();
        model.write(&mut style.into_iter().cycle(), &mut text);
        prop_assume!(text.chars().count() <= MAX_AUDIENCE_CHARS);
        let audience = parse(&text)?;
        for device in &devices {
            prop_assert_eq!(audience.matches(device), model.matches(device), "{} on {:?}", text, device);
        }
    }

    #[test]
    fn canonical_text_is_a_fixed_point(text in text()) {
        prop_assume!(text.chars().count() <= MAX_AUDIENCE_CHARS);
        let audience = parse(&text)?;
        let canonical = audience.to_string();
        let reparsed = parse(&canonical)?;
        prop_assert_eq!(&reparsed, &audience, "{:?} -> {:?}", text, canonical);
        prop_assert_eq!(reparsed.to_string(), canonical);
        let json = serde_json::to_string(&audience).unwrap();
        prop_assert_eq!(serde_json::from_str::<Audience>(&json).unwrap(), audience);
    }

    #[test]
    fn the_boolean_algebra_holds(
        left in text(),
        right in text(),
        devices in prop::collection::vec(device(), 8),
    ) {
        prop_assume!(left.len() + right.len() < 400);
        let (a, b) = (parse(&left)?, parse(&right)?);
        let and = a.clone().and(b.clone()).unwrap();
        let or = a.clone().or(b.clone()).unwrap();
        let and_text = parse(&format!("({left}) and ({right})"))?;
        let or_text = parse(&format!("({left}) or ({right})"))?;
        let not_a = parse(&format!("not ({left})"))?;
        let not_not_a = parse(&format!("not not ({left})"))?;
        let not_and = parse(&format!("not (({left}) and ({right}))"))?;
        let de_morgan_and = parse(&format!("not ({left}) or not ({right})"))?;
        let not_or = parse(&format!("not (({left}) or ({right}))"))?;
        let de_morgan_or = parse(&format!("not ({left}) and not ({right})"))?;
        prop_assert_eq!(&and, &and_text);
        prop_assert_eq!(&or, &or_text);
        for device in &devices {
            let (in_a, in_b) = (a.matches(device), b.matches(device));
            prop_assert_eq!(and.matches(device), in_a && in_b);
            prop_assert_eq!(or.matches(device), in_a || in_b);
            prop_assert_eq!(not_a.matches(device), !in_a);
            prop_assert_eq!(not_not_a.matches(device), in_a);
            prop_assert_eq!(not_and.matches(device), de_morgan_and.matches(device));
            prop_assert_eq!(not_or.matches(device), de_morgan_or.matches(device));
            prop_assert_eq!(b.clone().and(a.clone()).unwrap().matches(device), in_a && in_b);
            prop_assert!(Audience::everyone().matches(device));
            prop_assert_eq!(Audience::everyone().and(a.clone()).unwrap().matches(device), in_a);
        }
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in "\\PC{0,64}|.{0,64}") {
        check_total(&text);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        check_total(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_parser_never_panics_on_token_soup(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "(", ")", " and ", " or ", "not ", "=", "!=", "<", "<=", ">", ">=", "!", "==",
                " starts with ", "starts", "with", "\"", "\\", "\"a b\"", "vip", "platform",
                "attr.", "attr.k", "tag", "topic", "everyone", "2.3", " ", "é", "/", "\n",
            ]),
            0..40,
        ),
    ) {
        check_total(&pieces.concat());
    }
}

/// Parsing any text either fails with a position inside it, or gives an audience whose
/// canonical text parses back to it, in both dialects.
fn check_total(text: &str) {
    for result in [Audience::parse(text), Audience::parse_tags(text)] {
        match result {
            Ok(audience) => {
                let canonical = audience.to_string();
                assert_eq!(
                    Audience::parse(&canonical).as_ref(),
                    Ok(&audience),
                    "{text:?}"
                );
            }
            Err(error) => {
                assert!(error.position() <= text.len(), "{text:?}: {error}");
                assert!(text.is_char_boundary(error.position()), "{text:?}: {error}");
                assert!(!error.message().is_empty());
            }
        }
    }
}
