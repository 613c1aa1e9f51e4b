//! Ordering of attribute values: dotted numbers (`2.10`, `17.4.1`) numerically, anything
//! else as text.
//!
//! Dotted numbers compare component by component as unbounded integers (leading zeros do not
//! count, so `2.01` orders like `2.1`), and missing trailing components count as 0, so
//! `2.3`, `2.3.0` and `2.3.0.0` order as equal: `app_version >= 2.3` matches `2.3.0`. Note that
//! `=` and `!=` stay exact text comparisons (`app_version = 2.3` does not match `2.3.0`).
//! Nothing here allocates: this runs for every device a broadcast is matched against.

use std::cmp::Ordering;

/// Whether `text` is a dotted number: digits, optionally followed by `.digits` groups.
pub(crate) fn is_dotted_number(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|component| !component.is_empty() && component.bytes().all(|b| b.is_ascii_digit()))
}

/// Orders a device's value against an expression's value: numerically when both are dotted
/// numbers, as text (byte order, which is code point order) otherwise.
///
/// `value_is_dotted` is `is_dotted_number(value)`, computed once when the expression is
/// parsed.
pub(crate) fn compare_values(device_value: &str, value: &str, value_is_dotted: bool) -> Ordering {
    if value_is_dotted && is_dotted_number(device_value) {
        compare_dotted_numbers(device_value, value)
    } else {
        device_value.cmp(value)
    }
}

/// Orders two dotted numbers; both must satisfy [`is_dotted_number`].
fn compare_dotted_numbers(left: &str, right: &str) -> Ordering {
    let mut left_components = left.split('.');
    let mut right_components = right.split('.');
    loop {
        let (left_component, right_component) =
            match (left_components.next(), right_components.next()) {
                (None, None) => return Ordering::Equal,
                (left_component, right_component) => (
                    left_component.unwrap_or("0"),
                    right_component.unwrap_or("0"),
                ),
            };
        let order = compare_digit_strings(left_component, right_component);
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// Orders two strings of ASCII digits as unbounded integers.
fn compare_digit_strings(left: &str, right: &str) -> Ordering {
    let left = left.trim_start_matches('0');
    let right = right.trim_start_matches('0');
    left.len().cmp(&right.len()).then_with(|| left.cmp(right))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recognises_dotted_numbers() {
        for text in [
            "0",
            "2",
            "2.3",
            "2.10.0",
            "007",
            "17.4.1.99999999999999999999999",
        ] {
            assert!(is_dotted_number(text), "{text}");
        }
        for text in [
            "", ".", "2.", ".2", "2..3", "2.3-beta", "v2", "2,3", "-1", "2.3 ",
        ] {
            assert!(!is_dotted_number(text), "{text}");
        }
    }

    #[test]
    fn orders_dotted_numbers_numerically() {
        let order = |left: &str, right: &str| compare_values(left, right, is_dotted_number(right));
        assert_eq!(order("2.10", "2.3"), Ordering::Greater);
        assert_eq!(order("2.3", "2.10"), Ordering::Less);
        assert_eq!(order("10", "9"), Ordering::Greater);
        assert_eq!(order("2.3", "2.3.0"), Ordering::Equal);
        assert_eq!(order("2.3.0.0", "2.3"), Ordering::Equal);
        assert_eq!(order("2.3.1", "2.3"), Ordering::Greater);
        assert_eq!(order("2.01", "2.1"), Ordering::Equal);
        assert_eq!(
            order(
                "99999999999999999999999999.1",
                "99999999999999999999999998.9"
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn orders_anything_else_as_text() {
        let order = |left: &str, right: &str| compare_values(left, right, is_dotted_number(right));
        // One side is not a dotted number: text order, where "2.10" < "2.3".
        assert_eq!(order("2.10-beta", "2.3"), Ordering::Less);
        assert_eq!(order("2.10", "2.3-beta"), Ordering::Less);
        assert_eq!(order("zh-CN", "zh"), Ordering::Greater);
        assert_eq!(order("B", "a"), Ordering::Less);
    }

    /// A plain reference: parse every component into a big enough integer.
    fn reference_order(left: &str, right: &str) -> Ordering {
        let parse =
            |text: &str| -> Vec<u128> { text.split('.').map(|c| c.parse().unwrap()).collect() };
        let (mut left, mut right) = (parse(left), parse(right));
        let length = left.len().max(right.len());
        left.resize(length, 0);
        right.resize(length, 0);
        left.cmp(&right)
    }

    proptest! {
        #[test]
        fn dotted_numbers_order_like_the_reference(
            left in "[0-9]{1,12}(\\.[0-9]{1,12}){0,4}",
            right in "[0-9]{1,12}(\\.[0-9]{1,12}){0,4}",
        ) {
            prop_assert_eq!(compare_values(&left, &right, true), reference_order(&left, &right));
            prop_assert_eq!(
                compare_values(&left, &right, true),
                compare_values(&right, &left, true).reverse()
            );
        }
    }
}
