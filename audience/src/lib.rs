//! Who a message is for: audience expressions and the device attributes they are matched
//! against.
//!
//! Owns: [`DeviceAttributes`] (what the SDK reports about a device) and its bounds, the
//! expression language (tag expressions like `vip and (cn or us) and not churned`, segment
//! filters like `platform = ios and app_version >= 2.3 and locale starts with zh`, topics,
//! everyone), its parser, its canonical text form (what is stored and sent between processes)
//! and its evaluation against one device's attributes. docs/audiences.md describes the
//! language. A pure library: no I/O, no async, and matching allocates nothing.
//!
//! Layout:
//! - `audience`: [`Audience`], its constructors, combinators and serde form;
//! - `syntax`: what a word is, reserved words, the limits;
//! - `lexer` and `parser`: text to tree, with errors a marketer can act on ([`ParseError`]);
//! - `expr`: the tree, kept in a normal form, and its evaluation;
//! - `display`: the canonical text;
//! - `version`: ordering of values (dotted numbers numerically, other text as text);
//! - `attributes`: [`DeviceAttributes`] and [`DeviceAttributes::validate`].
//!
//! Does not own: where attributes are stored (`ringpush_store`), nor which devices are
//! connected where (the connector keeps its own index and calls [`Audience::matches`]).

mod attributes;
mod audience;
mod display;
mod error;
mod expr;
mod lexer;
mod parser;
#[cfg(test)]
mod proptests;
mod syntax;
mod version;

pub use attributes::{AttributesError, DeviceAttributes, MAX_CUSTOM_KEYS, MAX_TAGS, MAX_TOPICS};
pub use audience::Audience;
pub use error::{LimitError, ParseError};
pub use syntax::{MAX_AUDIENCE_CHARS, MAX_NESTING, MAX_TERMS, MAX_VALUE_CHARS, is_word};
