//! Every way a text can fail to be an audience, with the message and position the person who
//! typed it sees.

use ringpush_audience::Audience;

fn error(text: &str) -> String {
    match Audience::parse(text) {
        Ok(audience) => panic!("{text:?} parsed as {audience}"),
        Err(error) => error.to_string(),
    }
}

fn tags_error(text: &str) -> String {
    match Audience::parse_tags(text) {
        Ok(audience) => panic!("{text:?} parsed as {audience}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn missing_values_operators_and_terms() {
    assert_eq!(
        error("platform = ios and app_version >="),
        "expected a value after \">=\" at 33"
    );
    assert_eq!(
        error("app_version >= )"),
        "expected a value after \">=\", found \")\" at 15"
    );
    assert_eq!(
        error("platform = and vip"),
        "expected a value after \"=\", found \"and\" (to compare with this word, quote it: \"and\") at 11"
    );
    assert_eq!(
        error("platform"),
        "expected an operator after \"platform\" (=, !=, <, <=, >, >=, starts with; for a tag with this name write tag = platform) at 8"
    );
    assert_eq!(
        error("locale starts zh"),
        "expected an operator after \"locale\" (=, !=, <, <=, >, >=, starts with; for a tag with this name write tag = locale) at 7"
    );
    assert_eq!(
        error("vip and"),
        "expected a tag or a comparison after \"and\" at 7"
    );
    assert_eq!(
        error("vip and not"),
        "expected a tag or a comparison after \"not\" at 11"
    );
    assert_eq!(
        error("and vip"),
        "expected a tag or a comparison, found \"and\" at 0"
    );
    assert_eq!(
        error("vip or or cn"),
        "expected a tag or a comparison after \"or\", found \"or\" at 7"
    );
    assert_eq!(
        error("()"),
        "expected a tag or a comparison after \"(\", found \")\" at 1"
    );
    assert_eq!(error("= ios"), "expected a field before \"=\" at 0");
    assert_eq!(
        error("\"vip\""),
        "a quoted value must follow a field and an operator, e.g. attr.city = \"New York\" at 0"
    );
}

#[test]
fn what_follows_a_complete_term() {
    assert_eq!(
        error("vip cn"),
        "expected \"and\" or \"or\", found \"cn\" at 4"
    );
    assert_eq!(
        error("vip AND cn"),
        "expected \"and\" or \"or\", found \"AND\" (keywords are lowercase) at 4"
    );
    assert_eq!(
        error("(vip cn)"),
        "expected \"and\", \"or\" or \")\", found \"cn\" at 5"
    );
    assert_eq!(
        error("platform = ios android"),
        "expected \"and\" or \"or\", found \"android\" at 15"
    );
    assert_eq!(
        error("vip (cn)"),
        "expected \"and\" or \"or\", found \"(\" at 4"
    );
}

#[test]
fn parentheses_must_balance() {
    assert_eq!(error("vip and (cn or us"), "unbalanced parenthesis at 8");
    assert_eq!(error("vip and cn) or us"), "unbalanced parenthesis at 10");
    assert_eq!(error(")"), "unbalanced parenthesis at 0");
    assert_eq!(error("vip and )"), "unbalanced parenthesis at 8");
    assert_eq!(error("((vip)"), "unbalanced parenthesis at 0");
}

#[test]
fn fields_and_their_operators() {
    assert_eq!(
        error("platfrom = ios"),
        "unknown field \"platfrom\" (fields: platform, os_version, app_version, locale, timezone, tag, topic, attr.<key>) at 0"
    );
    assert_eq!(
        error("vip and Platform starts with i"),
        "unknown field \"Platform\" (fields: platform, os_version, app_version, locale, timezone, tag, topic, attr.<key>) at 8"
    );
    assert_eq!(error("attr. = x"), "attr. needs a key, e.g. attr.plan at 0");
    assert_eq!(
        error(&format!("attr.{} = x", "k".repeat(129))),
        "attribute key is longer than 128 characters at 0"
    );
    assert_eq!(
        error("tag >= vip"),
        "\"tag\" only takes = or != (whether the device has it) at 4"
    );
    assert_eq!(
        error("topic starts with n"),
        "\"topic\" only takes = or != (whether the device has it) at 6"
    );
    assert_eq!(
        error("tag = \"v i p\""),
        "tag names use only letters, digits and _ . : - at 6"
    );
    assert_eq!(
        error("topic = \"\""),
        "topic names use only letters, digits and _ . : - at 8"
    );
}

#[test]
fn everyone_stands_alone() {
    assert_eq!(
        error("everyone and vip"),
        "\"everyone\" must be the whole audience at 0"
    );
    assert_eq!(
        error("not everyone"),
        "\"everyone\" must be the whole audience at 4"
    );
    assert_eq!(
        error("(everyone)"),
        "\"everyone\" must be the whole audience at 1"
    );
    assert_eq!(
        error(""),
        "the audience is empty (write everyone to reach every device) at 0"
    );
    assert_eq!(
        error(" \n\t"),
        "the audience is empty (write everyone to reach every device) at 0"
    );
}

#[test]
fn characters_and_quoting() {
    assert_eq!(
        error("timezone = Asia/Tokyo"),
        "unexpected character \"/\" (words use letters, digits and _ . : -; put other values in double quotes) at 15"
    );
    assert_eq!(
        error("vip && cn"),
        "unexpected character \"&\" (write and, or, not; != compares) at 4"
    );
    assert_eq!(
        error("locale = 'zh'"),
        "unexpected character \"'\" (quote values with double quotes) at 9"
    );
    assert_eq!(error("platform == ios"), "write = rather than == at 9");
    assert_eq!(
        error("attr.x = \"abc"),
        "quoted value is never closed (a closing \" is missing) at 9"
    );
    assert_eq!(
        error("vip\u{1}"),
        "unexpected character \"\\u{1}\" (words use letters, digits and _ . : -; put other values in double quotes) at 3"
    );
    // Positions are byte offsets.
    assert_eq!(
        error("attr.x = \"é\" and é"),
        "unexpected character \"é\" (words use letters, digits and _ . : -; put other values in double quotes) at 18"
    );
}

#[test]
fn limits() {
    let at_limit = format!("v{}", " or v".repeat(204));
    assert_eq!(at_limit.len(), 1021);
    Audience::parse(&at_limit).unwrap();
    let over = format!("{at_limit} or x");
    assert_eq!(
        error(&over),
        "the audience is longer than 1024 characters at 1024"
    );
    // Characters, not bytes.
    let accented = format!("attr.x = \"{}\"", "é".repeat(128));
    Audience::parse(&accented).unwrap();
    let accented_over = format!("{accented} or {}", "x".repeat(900));
    assert_eq!(accented_over.chars().count(), 1043);
    assert!(error(&accented_over).starts_with("the audience is longer than 1024 characters at "));

    assert_eq!(
        error(&format!("attr.x = \"{}\"", "é".repeat(129))),
        "value is longer than 128 characters at 9"
    );
    assert_eq!(
        error(&"t".repeat(129)),
        "tag name is longer than 128 characters at 0"
    );

    let nested = |levels: usize| format!("{}x{}", "(".repeat(levels), ")".repeat(levels));
    Audience::parse(&nested(64)).unwrap();
    assert_eq!(
        error(&nested(65)),
        "the audience has more than 64 nesting levels at 64"
    );
    let nots = |levels: usize| format!("{}x", "not ".repeat(levels));
    Audience::parse(&nots(64)).unwrap();
    assert_eq!(
        error(&nots(65)),
        "the audience has more than 64 nesting levels at 256"
    );
    // Alternating and/or nests deeper than the parentheses show: each group is two levels.
    let alternating =
        |levels: usize| format!("{}x{}", "(a or b and ".repeat(levels), ")".repeat(levels));
    Audience::parse(&alternating(32)).unwrap();
    assert_eq!(
        error(&alternating(33)),
        "the audience has more than 64 nesting levels at 6"
    );
}

#[test]
fn canonical_text_over_the_limit_is_refused() {
    // Canonical form puts spaces around parenthesised groups: 1014 characters as written,
    // 1197 in canonical form, which would not parse back.
    let text = format!("v {}", "and(v or v)".repeat(92));
    assert_eq!(text.len(), 1014);
    let error = Audience::parse(&text).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the audience is longer than 1024 characters in canonical form (1197) at 0"
    );
    assert_eq!(error.position(), 0);
    assert!(error.message().starts_with("the audience is longer"));
}

#[test]
fn tags_target_takes_only_tags() {
    assert_eq!(
        tags_error("vip and platform = ios"),
        "found a comparison (\"platform =\"): tags are only tag names with and, or, not and parentheses; send comparisons as a segment at 8"
    );
    assert_eq!(
        tags_error("locale starts with zh"),
        "found a comparison (\"locale starts with\"): tags are only tag names with and, or, not and parentheses; send comparisons as a segment at 0"
    );
    assert_eq!(
        tags_error("everyone"),
        "\"everyone\" is not a tag (send a broadcast to reach every device) at 0"
    );
    assert_eq!(tags_error(""), "no tags given at 0");
    assert_eq!(
        tags_error("vip and"),
        "expected a tag or a comparison after \"and\" at 7"
    );
}
