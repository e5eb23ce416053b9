//! File names that are not UTF-8, carried losslessly in `String` paths.
//!
//! Paths inside strata are strings (`web/src/a.ts`): they are hashed, sorted
//! and compared. A name whose bytes are not UTF-8 (Latin-1 from an old
//! archive, say) is still a file a store holds, and is composed as it is.
//! Each byte that is not part of valid UTF-8 becomes one character of a
//! private-use range (U+F780 + byte, for bytes 0x80 to 0xFF), and
//! [`fs_path`] turns those characters back into the bytes. A name that
//! really holds a character of that range has that character's own bytes
//! escaped the same way, so every byte string has exactly one string, and
//! the string gives back exactly those bytes.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// U+F700 + byte: bytes that are not UTF-8 are all 0x80 or above.
const BASE: u32 = 0xF700;

fn is_escape(c: char) -> bool {
    (BASE + 0x80..=BASE + 0xFF).contains(&(c as u32))
}

fn escape(byte: u8) -> char {
    char::from_u32(BASE + u32::from(byte)).expect("U+F780..U+F7FF are characters")
}

fn push_valid(out: &mut String, text: &str) {
    for c in text.chars() {
        if is_escape(c) {
            let mut buf = [0; 4];
            out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
        } else {
            out.push(c);
        }
    }
}

/// The string standing for a name (or a relative path): itself when it is
/// UTF-8 (and holds no character of the escape range).
pub fn name_str(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes)
        && !text.chars().any(is_escape)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                push_valid(&mut out, text);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                push_valid(
                    &mut out,
                    std::str::from_utf8(valid).expect("checked valid up to here"),
                );
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(after[..bad].iter().copied().map(escape));
                rest = &after[bad..];
            }
        }
    }
    Cow::Owned(out)
}

/// The path a string from [`name_str`] stands for: the same text, unless
/// it holds escaped bytes.
pub fn fs_path(text: &str) -> Cow<'_, Path> {
    if !text.chars().any(is_escape) {
        return Cow::Borrowed(Path::new(text));
    }
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_escape(c) {
            bytes.push((c as u32 - BASE) as u8);
        } else {
            let mut buf = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(PathBuf::from(OsString::from_vec(bytes)))
}

/// The text to show a user for a string from [`name_str`]: escaped bytes
/// as `\xE9`.
pub fn display(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escape) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_escape(c) {
                    format!("\\x{:02X}", c as u32 - BASE)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_names_are_themselves() {
        assert_eq!(name_str(OsStr::new("café/a.ts")), "café/a.ts");
        assert!(matches!(name_str(OsStr::new("a")), Cow::Borrowed(_)));
        assert_eq!(fs_path("café/a.ts"), Path::new("café/a.ts"));
    }

    #[test]
    fn latin1_bytes_round_trip_and_display_escaped() {
        let name = OsStr::from_bytes(b"caf\xe9.html");
        let text = name_str(name);
        assert_eq!(fs_path(&text).as_os_str(), name);
        assert_eq!(display(&text), "caf\\xE9.html");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let name = OsStr::from_bytes(&bytes);
            let text = name_str(name);
            let back = fs_path(&text);
            prop_assert_eq!(back.as_os_str().as_bytes(), &bytes[..]);
        }

        #[test]
        fn names_in_the_escape_range_round_trip(text in "[a\u{f780}-\u{f7ff}é]{0,8}") {
            let name = OsStr::new(&text);
            let escaped = name_str(name);
            let back = fs_path(&escaped);
            prop_assert_eq!(back.as_os_str(), name);
        }
    }
}
