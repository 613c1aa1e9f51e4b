//! Property tests over generated trees: the canonical text of every tree parses back to the
//! same tree, and its length is what the limit checks measure.

use proptest::prelude::*;

use crate::audience::Audience;
use crate::display::canonical_length;
use crate::expr::{Comparison, Expr, Field, Operator};

fn name() -> impl Strategy<Value = Box<str>> {
    prop_oneof![
        "[a-z]{1,3}",
        "[A-Za-z0-9_.:-]{1,12}",
        // Names that canonical text must write as `tag = <name>`, some quoted.
        prop::sample::select(vec![
            "and", "or", "not", "everyone", "platform", "tag", "attr.x"
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec!["starts", "with", "AND", "2.3", "-"]).prop_map(str::to_owned),
    ]
    .prop_map(String::into_boxed_str)
}

fn value() -> impl Strategy<Value = Box<str>> {
    prop_oneof![
        "[a-z0-9.]{0,6}",
        // Any text without control characters, including quotes and backslashes.
        "\\PC{0,16}",
        "[\"\\\\ ()=<>!a]{0,6}",
        prop::sample::select(vec!["and", "or", "not", "everyone", "starts"])
            .prop_map(str::to_owned),
    ]
    .prop_map(String::into_boxed_str)
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Platform),
        Just(Field::OsVersion),
        Just(Field::AppVersion),
        Just(Field::Locale),
        Just(Field::Timezone),
        "[A-Za-z0-9_.:-]{1,8}".prop_map(|key| Field::Custom(key.into())),
    ]
}

fn operator() -> impl Strategy<Value = Operator> {
    prop::sample::select(vec![
        Operator::Equal,
        Operator::NotEqual,
        Operator::Less,
        Operator::LessOrEqual,
        Operator::Greater,
        Operator::GreaterOrEqual,
        Operator::StartsWith,
    ])
}

fn term() -> impl Strategy<Value = Expr> {
    prop_oneof![
        name().prop_map(Expr::Tag),
        name().prop_map(Expr::Topic),
        (field(), operator(), value()).prop_map(|(field, operator, value)| {
            Expr::Compare(Box::new(Comparison::new(field, operator, value)))
        }),
    ]
}

/// Trees in normal form (as the parser and combinators build them).
pub(crate) fn expr() -> impl Strategy<Value = Expr> {
    let tree = term().prop_recursive(5, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|expr| Expr::Not(Box::new(expr))),
            prop::collection::vec(inner.clone(), 2..5)
                .prop_map(|children| children.into_iter().reduce(Expr::all_of).unwrap()),
            prop::collection::vec(inner, 2..5)
                .prop_map(|children| children.into_iter().reduce(Expr::any_of).unwrap()),
        ]
    });
    prop_oneof![1 => Just(Expr::Everyone), 20 => tree]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_text_parses_back_to_the_same_tree(expr in expr()) {
        let text = expr.to_string();
        prop_assert_eq!(canonical_length(&expr), text.chars().count());
        prop_assume!(text.chars().count() <= crate::MAX_AUDIENCE_CHARS);
        let parsed = match Audience::parse(&text) {
            Ok(parsed) => parsed,
            Err(error) => return Err(TestCaseError::fail(format!("{text:?}: {error}"))),
        };
        prop_assert_eq!(parsed.expr(), &expr, "{}", text);
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(Audience::from_expr(expr), parsed);
    }
}
