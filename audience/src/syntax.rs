//! The lexical rules shared by the parser, the canonical printer and attribute validation:
//! what a word is, which words are reserved, and the limits.

/// At most this many characters in an audience's text (as written, and in canonical form).
pub const MAX_AUDIENCE_CHARS: usize = 1024;
/// At most this many nested `and`/`or`/`not` levels (and parentheses).
pub const MAX_NESTING: usize = 64;
/// At most this many terms (tags, topics and comparisons).
pub const MAX_TERMS: usize = 256;
/// At most this many characters in one value, name or key, in an audience and in a device's
/// attributes (a longer value in an audience could never match).
pub const MAX_VALUE_CHARS: usize = 128;

/// The keywords of the language (always lowercase).
pub(crate) const AND: &str = "and";
pub(crate) const OR: &str = "or";
pub(crate) const NOT: &str = "not";
pub(crate) const EVERYONE: &str = "everyone";
pub(crate) const STARTS: &str = "starts";
pub(crate) const WITH: &str = "with";

/// The prefix of custom attribute fields: `attr.<key>`.
pub(crate) const ATTR_PREFIX: &str = "attr.";

/// The field names, in the order error messages list them.
pub(crate) const FIELD_LIST: &str =
    "platform, os_version, app_version, locale, timezone, tag, topic, attr.<key>";

/// A byte that may appear in a word: `[A-Za-z0-9_.:-]`.
pub(crate) fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-')
}

/// Whether `text` is a word (`[A-Za-z0-9_.:-]+`): the form of tag names, topic names, custom
/// attribute keys and unquoted values.
pub fn is_word(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_word_byte)
}

/// The byte offset and character of the first character of `text` that may not appear in a
/// word, if any.
pub(crate) fn first_non_word_char(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|&(_, character)| !u8::try_from(character).is_ok_and(is_word_byte))
}

/// Words that a bare tag cannot be written as, because the parser reads them as a keyword or
/// as the start of a comparison; such tags are written `tag = <name>`.
pub(crate) fn needs_tag_prefix(name: &str) -> bool {
    matches!(name, AND | OR | NOT | EVERYONE) || is_field_name(name)
}

/// Whether a word names a field (so that, written alone, it is a comparison missing its
/// operator rather than a tag).
pub(crate) fn is_field_name(word: &str) -> bool {
    matches!(
        word,
        "platform" | "os_version" | "app_version" | "locale" | "timezone" | "tag" | "topic"
    ) || word.starts_with(ATTR_PREFIX)
}

/// Whether a value needs quotes: it is not a word, or it is a keyword that an unquoted value
/// may not be (so that a typo like `platform = and vip` is an error, not a comparison).
pub(crate) fn needs_quotes(value: &str) -> bool {
    !is_word(value) || matches!(value, AND | OR | NOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_documented_characters() {
        assert!(is_word("vip"));
        assert!(is_word("zh-CN"));
        assert!(is_word("2.10"));
        assert!(is_word("a_b:c.d-e"));
        assert!(!is_word(""));
        assert!(!is_word("a b"));
        assert!(!is_word("Asia/Tokyo"));
        assert!(!is_word("café"));
        assert_eq!(first_non_word_char("ab/c"), Some((2, '/')));
        assert_eq!(first_non_word_char("é"), Some((0, 'é')));
        assert_eq!(first_non_word_char("abc"), None);
    }

    #[test]
    fn keywords_and_fields_need_the_tag_prefix() {
        for name in [
            "and", "or", "not", "everyone", "platform", "tag", "topic", "attr.x",
        ] {
            assert!(needs_tag_prefix(name), "{name}");
        }
        for name in ["vip", "AND", "starts", "with", "attr", "platforms"] {
            assert!(!needs_tag_prefix(name), "{name}");
        }
    }
}
