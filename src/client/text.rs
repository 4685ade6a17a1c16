//! Text from hosts made safe to show, shared by the CLI and the desktop
//! client.
//!
//! Anything an agent sends (output, host names, OS names, process command
//! lines, error messages) is written by someone on the managed host, not by
//! the operator. Shown raw inside vigie's own framing, an escape sequence
//! would be obeyed by the operator's terminal (set its title, clear it,
//! write the clipboard with OSC 52), a carriage return would overwrite the
//! host's prefix, and bidi overrides or zero-width characters would make a
//! line read differently from what it holds. [`visible`] turns every such
//! character into printable text and leaves everything else as it is:
//!
//! - C0 controls except TAB in caret notation (`^[` for ESC, `^G` BEL,
//!   `^M` CR, `^J` LF), DEL as `^?`;
//! - C1 controls (U+0080 to U+009F), bidi embeddings, overrides, isolates
//!   and marks, zero-width and other invisible format characters as
//!   `<U+202E>`;
//! - with [`visible_bytes`], bytes that are not UTF-8 as `\xNN`, so nothing
//!   is lost silently.
//!
//! The output never holds a character that would be escaped, so escaping
//! twice changes nothing.

use std::{borrow::Cow, fmt::Write};

/// `text` with every control, bidi and invisible character made visible;
/// borrowed, without a copy, when there is none (the common case: every
/// line of a fan-out passes here).
pub fn visible(text: &str) -> Cow<'_, str> {
    match first_hidden(text) {
        None => Cow::Borrowed(text),
        Some(start) => {
            let mut shown = String::with_capacity(text.len() + 16);
            shown.push_str(&text[..start]);
            push_visible(&mut shown, &text[start..]);
            Cow::Owned(shown)
        }
    }
}

/// Bytes as [`visible`] shows text, with every byte that is not part of
/// valid UTF-8 shown as `\xNN`.
pub fn visible_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return visible(text);
    }
    let mut shown = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        push_visible(&mut shown, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(shown, "\\x{byte:02x}");
        }
    }
    Cow::Owned(shown)
}

/// True when [`visible`] would show `text` exactly as it is.
pub fn shows_as_is(text: &str) -> bool {
    first_hidden(text).is_none()
}

/// True for the characters [`visible`] rewrites: C0 controls but TAB, DEL,
/// C1 controls, bidi controls, and zero-width or otherwise invisible format
/// characters.
pub fn is_hidden(c: char) -> bool {
    match c {
        '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Soft hyphen: usually drawn as nothing.
        '\u{ad}' => true,
        // Arabic letter mark (a bidi mark).
        '\u{61c}' => true,
        // Mongolian vowel separator: zero width.
        '\u{180e}' => true,
        // Zero-width space, non-joiner, joiner; LRM and RLM.
        '\u{200b}'..='\u{200f}' => true,
        // Line and paragraph separators (they break a one-line field),
        // bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO).
        '\u{2028}'..='\u{202e}' => true,
        // Word joiner, invisible operators, bidi isolates (LRI, RLI, FSI,
        // PDI) and the deprecated invisible format characters after them.
        '\u{2060}'..='\u{206f}' => true,
        // Zero-width no-break space (BOM).
        '\u{feff}' => true,
        // Interlinear annotation marks.
        '\u{fff9}'..='\u{fffb}' => true,
        // Tag characters: invisible, they can carry a hidden ASCII text.
        '\u{e0000}'..='\u{e007f}' => true,
        // Variation selectors: invisible, and like tags they can carry
        // hidden bytes, one per selector.
        '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' => true,
        // Other default-ignorable or blank-looking characters: the
        // combining grapheme joiner, Hangul fillers, Khmer inherent vowels,
        // Mongolian free variation selectors, the braille blank.
        '\u{34f}' | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' => true,
        '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180d}' | '\u{180f}' | '\u{2800}' => true,
        // Prepended concatenation marks and the Syriac abbreviation mark
        // (format characters), musical symbol format controls.
        '\u{600}'..='\u{605}' | '\u{6dd}' | '\u{70f}' | '\u{1d173}'..='\u{1d17a}' => true,
        _ => false,
    }
}

/// Bytes that start a character [`is_hidden`] may hold: ASCII controls
/// (but TAB), DEL, and the UTF-8 lead bytes of the hidden characters
/// beyond ASCII (0xC2: U+0080 to U+00BF, 0xCD: U+034F, 0xD8: U+0600 to
/// U+063F, 0xDB: U+06DD, 0xDC: U+070F, 0xE1: U+1000 to U+1FFF, 0xE2:
/// U+2000 to U+2FFF, 0xE3: U+3000 to U+3FFF, 0xEF: U+F000 to U+FFFF, 0xF0:
/// U+10000 to U+3FFFF, 0xF3: U+C0000 to U+FFFFF). Lead bytes are never
/// continuation bytes, so a scan may test every byte without tracking
/// character boundaries.
const SUSPECT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'\t' as usize] = false;
    table[0x7f] = true;
    table[0xc2] = true;
    table[0xcd] = true;
    table[0xd8] = true;
    table[0xdb] = true;
    table[0xdc] = true;
    table[0xe1] = true;
    table[0xe2] = true;
    table[0xe3] = true;
    table[0xef] = true;
    table[0xf0] = true;
    table[0xf3] = true;
    table
};

/// The byte offset of the first hidden character of `text`.
fn first_hidden(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes[from..].iter().position(|b| SUSPECT[usize::from(*b)]) {
        let at = from + offset;
        // A suspect byte is ASCII or a lead byte, so `at` is a boundary.
        let c = text[at..].chars().next()?;
        if is_hidden(c) {
            return Some(at);
        }
        from = at + c.len_utf8();
    }
    None
}

/// Appends `text` to `shown` with every hidden character made visible.
fn push_visible(shown: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = first_hidden(rest) {
        shown.push_str(&rest[..at]);
        let c = rest[at..]
            .chars()
            .next()
            .expect("a character at the offset");
        match c {
            '\u{0}'..='\u{1f}' => {
                shown.push('^');
                shown.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => shown.push_str("^?"),
            c => {
                let _ = write!(shown, "<U+{:04X}>", u32::from(c));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    shown.push_str(rest);
}

/// A host name as a file name of its own (a pull writes `DIR/HOST/…`):
/// None for a name that would climb out of the directory or hide in it
/// (`..`, `.`, empty, a `/`, a NUL, a leading dot).
pub fn safe_file_name(name: &str) -> Option<&str> {
    let fine = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.chars().all(|c| !c.is_control());
    fine.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_controls_and_del_are_shown_in_caret_notation() {
        assert_eq!(visible("\u{1b}]0;pwned\u{7}"), "^[]0;pwned^G");
        assert_eq!(visible("\u{1b}[2J"), "^[[2J");
        assert_eq!(visible("a\rb\nc\0d\u{1f}"), "a^Mb^Jc^@d^_");
        assert_eq!(visible("del\u{7f}"), "del^?");
        assert_eq!(visible("a\tb"), "a\tb", "tabs stay");
    }

    #[test]
    fn c1_bidi_and_invisible_characters_are_shown_as_code_points() {
        assert_eq!(visible("\u{9b}31m"), "<U+009B>31m");
        assert_eq!(visible("\u{80}\u{9f}"), "<U+0080><U+009F>");
        assert_eq!(visible("abc\u{202e}fed"), "abc<U+202E>fed");
        for (c, shown) in [
            ('\u{61c}', "<U+061C>"),
            ('\u{200e}', "<U+200E>"),
            ('\u{200f}', "<U+200F>"),
            ('\u{202a}', "<U+202A>"),
            ('\u{2066}', "<U+2066>"),
            ('\u{2069}', "<U+2069>"),
            ('\u{200b}', "<U+200B>"),
            ('\u{200d}', "<U+200D>"),
            ('\u{2060}', "<U+2060>"),
            ('\u{2064}', "<U+2064>"),
            ('\u{feff}', "<U+FEFF>"),
            ('\u{2028}', "<U+2028>"),
            ('\u{e0041}', "<U+E0041>"),
        ] {
            assert_eq!(visible(&format!("x{c}y")), format!("x{shown}y"), "{c:?}");
        }
    }

    #[test]
    fn printable_text_is_borrowed_unchanged() {
        for text in [
            "",
            "plain ascii, with a tab\tand symbols ~!@#$%^&*()[]{}<>",
            "Ünïcödé: 日本語, Ελληνικά, עברית, العربية, emoji 🎉",
            "neighbours of hidden ranges: \u{a0}\u{a9}\u{61b}\u{2010}\u{2030}\u{205f}\u{2070}\u{fefe}\u{fffd}\u{e0080}",
        ] {
            assert!(
                matches!(visible(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
            assert!(shows_as_is(text));
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_in_hex() {
        assert_eq!(visible_bytes(b"bad \xff utf8"), "bad \\xff utf8");
        assert_eq!(visible_bytes(b"\xe2\x82 cut"), "\\xe2\\x82 cut");
        assert_eq!(visible_bytes(b"\x1b[1m\xc0"), "^[[1m\\xc0");
        assert!(matches!(visible_bytes(b"fine"), Cow::Borrowed("fine")));
        assert_eq!(visible_bytes("é\u{202e}".as_bytes()), "é<U+202E>");
    }

    /// Every character, alone and between others: what comes out holds no
    /// hidden character, printable characters come out unchanged, and
    /// escaping twice changes nothing. Exhaustive over the code points
    /// rather than sampled.
    #[test]
    fn no_character_escapes_and_printable_ones_are_kept() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            let shown = visible(&text);
            assert!(!shown.chars().any(is_hidden), "{c:?} gave {shown:?}");
            if is_hidden(c) {
                assert_ne!(shown, text, "{c:?}");
                assert_eq!(visible(&shown), shown, "{c:?} twice");
            } else {
                assert_eq!(shown, text, "{c:?}");
            }
        }
    }
}
