//! The canonical text of audiences written in many ways, and the constructors and
//! combinators that build audiences without text.

use ringpush_audience::{Audience, LimitError};

fn canonical(text: &str) -> String {
    match Audience::parse(text) {
        Ok(audience) => audience.to_string(),
        Err(error) => panic!("{text:?}: {error}"),
    }
}

#[test]
fn canonical_text_has_single_spaces_and_only_needed_parentheses() {
    let cases = [
        ("everyone", "everyone"),
        ("  vip ", "vip"),
        (
            "vip and (cn or us) and not churned",
            "vip and (cn or us) and not churned",
        ),
        (
            "((vip))and(cn   or us)and AND_x",
            "vip and (cn or us) and AND_x",
        ),
        ("a and (b and c)", "a and b and c"),
        ("(a and b) and c", "a and b and c"),
        ("a or (b or c)", "a or b or c"),
        ("(a and b) or c", "a and b or c"),
        ("a and (b or c)", "a and (b or c)"),
        ("not (a and b)", "not (a and b)"),
        ("not (a or b)", "not (a or b)"),
        ("not (not a)", "not not a"),
        ("(not a) and b", "not a and b"),
        ("not platform = ios", "not platform = ios"),
        (
            "platform=ios and app_version>=2.3 and locale starts   with zh",
            "platform = ios and app_version >= 2.3 and locale starts with zh",
        ),
        (
            "os_version < 17 or os_version <= 16.4 or os_version > 1",
            "os_version < 17 or os_version <= 16.4 or os_version > 1",
        ),
        ("app_version != 2.3.0", "app_version != 2.3.0"),
    ];
    for (text, expected) in cases {
        assert_eq!(canonical(text), expected, "{text:?}");
    }
}

#[test]
fn tags_and_topics_are_membership() {
    assert_eq!(canonical("tag = vip"), "vip");
    assert_eq!(canonical("tag = \"vip\""), "vip");
    assert_eq!(canonical("tag != vip"), "not vip");
    assert_eq!(canonical("topic = news"), "topic = news");
    assert_eq!(canonical("topic != news"), "not topic = news");
    // Tags named like keywords or fields cannot be bare.
    assert_eq!(canonical("tag = platform"), "tag = platform");
    assert_eq!(canonical("tag = attr.x"), "tag = attr.x");
    assert_eq!(canonical("tag = everyone"), "tag = everyone");
    assert_eq!(
        canonical("tag = \"and\" or tag = \"not\""),
        "tag = \"and\" or tag = \"not\""
    );
    // Words the parser only reads as keywords in other positions are plain tags.
    assert_eq!(canonical("starts or with or AND"), "starts or with or AND");
}

#[test]
fn values_are_quoted_only_when_they_are_not_plain_words() {
    assert_eq!(
        canonical("attr.city = \"New York\""),
        "attr.city = \"New York\""
    );
    assert_eq!(canonical("locale = \"zh\""), "locale = zh");
    assert_eq!(
        canonical("timezone = \"Asia/Tokyo\""),
        "timezone = \"Asia/Tokyo\""
    );
    assert_eq!(
        canonical(r#"attr.q = "say \"hi\" \\ é""#),
        r#"attr.q = "say \"hi\" \\ é""#
    );
    assert_eq!(canonical("attr.empty = \"\""), "attr.empty = \"\"");
    assert_eq!(canonical("platform = \"and\""), "platform = \"and\"");
    // Keywords other than and/or/not are plain values.
    assert_eq!(canonical("platform = everyone"), "platform = everyone");
    assert_eq!(canonical("attr.a.b:c = -1"), "attr.a.b:c = -1");
}

#[test]
fn parse_tags_reads_every_non_keyword_word_as_a_tag() {
    let audience = Audience::parse_tags("platform and (vip or cn) and not tag").unwrap();
    assert_eq!(
        audience.to_string(),
        "tag = platform and (vip or cn) and not tag = tag"
    );
    // The canonical text parses in the full language to the same audience.
    assert_eq!(Audience::parse(&audience.to_string()).unwrap(), audience);
}

#[test]
fn display_from_str_and_serde_agree() {
    let audience: Audience = "vip and app_version >= \"2.3\"".parse().unwrap();
    assert_eq!(audience.to_string(), "vip and app_version >= 2.3");
    assert_eq!(
        format!("{audience:?}"),
        "Audience(\"vip and app_version >= 2.3\")"
    );
    let json = serde_json::to_string(&audience).unwrap();
    assert_eq!(json, "\"vip and app_version >= 2.3\"");
    assert_eq!(serde_json::from_str::<Audience>(&json).unwrap(), audience);
    let error = serde_json::from_str::<Audience>("\"vip and\"").unwrap_err();
    assert_eq!(
        error.to_string(),
        "expected a tag or a comparison after \"and\" at 7"
    );
}

#[test]
fn constructors_build_valid_audiences() {
    assert!(Audience::everyone().is_everyone());
    assert_eq!(Audience::everyone(), Audience::parse("everyone").unwrap());
    assert!(!Audience::parse("vip").unwrap().is_everyone());

    assert_eq!(
        Audience::topic("news").unwrap(),
        Audience::parse("topic = news").unwrap()
    );
    assert_eq!(Audience::topic("tag").unwrap().to_string(), "topic = tag");
    assert_eq!(
        Audience::topic("world news").unwrap_err().to_string(),
        "topic names use only letters, digits and _ . : -, found \" \" at 5"
    );
    assert_eq!(
        Audience::topic("").unwrap_err().to_string(),
        "topic name is empty at 0"
    );
    assert_eq!(
        Audience::topic(&"n".repeat(129)).unwrap_err().to_string(),
        "topic name is longer than 128 characters at 0"
    );

    let tokyo = Audience::timezone_is("Asia/Tokyo").unwrap();
    assert_eq!(tokyo.to_string(), "timezone = \"Asia/Tokyo\"");
    assert_eq!(Audience::parse(&tokyo.to_string()).unwrap(), tokyo);
    assert_eq!(
        Audience::timezone_is("").unwrap_err().to_string(),
        "time zone is empty at 0"
    );
    assert_eq!(
        Audience::timezone_is("a\nb").unwrap_err().to_string(),
        "control characters are not allowed in a time zone at 1"
    );
    assert_eq!(
        Audience::without_timezone().to_string(),
        "not timezone starts with \"\""
    );
}

#[test]
fn and_narrows_and_or_widens() {
    let campaign = Audience::parse("vip or cn").unwrap();
    let narrowed = campaign
        .clone()
        .and(Audience::timezone_is("Asia/Tokyo").unwrap())
        .unwrap();
    assert_eq!(
        narrowed.to_string(),
        "(vip or cn) and timezone = \"Asia/Tokyo\""
    );
    assert_eq!(Audience::parse(&narrowed.to_string()).unwrap(), narrowed);

    let flat = Audience::parse("a and b")
        .unwrap()
        .and(Audience::parse("c and d").unwrap())
        .unwrap();
    assert_eq!(flat, Audience::parse("a and b and c and d").unwrap());

    let broadcast = Audience::everyone()
        .and(Audience::timezone_is("UTC").unwrap())
        .unwrap();
    assert_eq!(broadcast.to_string(), "timezone = UTC");
    assert_eq!(
        campaign.clone().and(Audience::everyone()).unwrap(),
        campaign
    );

    let default_zone = Audience::timezone_is("UTC")
        .unwrap()
        .or(Audience::without_timezone())
        .unwrap();
    assert_eq!(
        default_zone.to_string(),
        "timezone = UTC or not timezone starts with \"\""
    );
    let narrowed = campaign.clone().and(default_zone).unwrap();
    assert_eq!(
        narrowed.to_string(),
        "(vip or cn) and (timezone = UTC or not timezone starts with \"\")"
    );
    assert_eq!(Audience::parse(&narrowed.to_string()).unwrap(), narrowed);

    assert!(
        campaign
            .clone()
            .or(Audience::everyone())
            .unwrap()
            .is_everyone()
    );
}

#[test]
fn combinators_refuse_to_exceed_the_limits() {
    // (256 terms cannot fit in 1024 characters, so only length and depth can be exceeded.)
    let deep = format!("{}x{}", "not (a or ".repeat(32), ")".repeat(32));
    let deep = Audience::parse(&deep).unwrap();
    assert_eq!(
        deep.clone().and(Audience::parse("y").unwrap()),
        Err(LimitError::TooDeep)
    );

    let long_value = format!("\"{}\"", "v ".repeat(63));
    let mut long = (0..7)
        .map(|i| format!("attr.k{i} = {long_value}"))
        .collect::<Vec<_>>();
    long.push("abcdefghij".into());
    let long = Audience::parse(&long.join(" or ")).unwrap();
    assert_eq!(long.to_string().len(), 1004);
    let error = long
        .and(Audience::timezone_is("Asia/Tokyo").unwrap())
        .unwrap_err();
    assert!(
        matches!(error, LimitError::TooLong { length } if length > 1024),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("the audience is longer than 1024 characters (")
    );
}
