//! Any text either fails to parse with a position inside it, or parses (in both dialects) to
//! an audience whose canonical text parses back to it; matching never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringpush_audience::{Audience, DeviceAttributes};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for result in [Audience::parse(text), Audience::parse_tags(text)] {
        match result {
            Ok(audience) => {
                let canonical = audience.to_string();
                assert_eq!(
                    Audience::parse(&canonical).as_ref(),
                    Ok(&audience),
                    "{text:?}"
                );
                let _ = audience.matches(&DeviceAttributes::default());
            }
            Err(error) => {
                assert!(text.is_char_boundary(error.position()), "{text:?}: {error}");
            }
        }
    }
});
