//! Text from other people (names, room names, messages, network names) made
//! safe to show, in a terminal and in the desktop app alike.
//!
//! Bidirectional formatting characters are the danger: a right-to-left
//! override (U+202E) makes `invoice<U+202E>fdp.exe` read "invoiceexe.pdf",
//! and one left unclosed reorders everything after it on the line (the
//! timestamp, the next field). They are replaced by a visible marker
//! (`<U+202E>`) rather than isolated with U+2068 FSI … U+2069 PDI: most
//! terminals (xterm, VTE, Alacritty, kitty, tmux) and egui implement no
//! bidi algorithm at all and draw isolates as nothing or as boxes, while the
//! few that do handle them unevenly; a marker in ASCII reads the same
//! everywhere, cannot reorder anything, and shows the reader that someone
//! tried. Right-to-left letters themselves (Arabic, Hebrew) are kept.

use std::borrow::Cow;

/// Whether `c` is a bidirectional formatting character: the marks (ALM,
/// LRM, RLM), the embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and the
/// isolates (LRI, RLI, FSI, PDI).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `s` ready to show: every bidi formatting character as a visible
/// `<U+XXXX>`, every other control character (escape sequences among them)
/// as U+FFFD; line breaks and tabs stay. Borrows when nothing changes.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_bidi_control(c) || (c.is_control() && c != '\n' && c != '\t');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_bidi_control(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else if unsafe_char(c) {
            out.push('\u{fffd}');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_is_shown_not_obeyed() {
        assert_eq!(sanitize("invoice\u{202E}fdp.exe"), "invoice<U+202E>fdp.exe");
        // Every kind: marks, embeddings, overrides, isolates.
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let input = format!("a{c}b");
            let shown = sanitize(&input);
            assert_eq!(shown, format!("a<U+{:04X}>b", c as u32));
        }
    }

    #[test]
    fn plain_and_right_to_left_text_is_kept_as_it_is() {
        for s in [
            "Base camp",
            "Ana 🏕",
            "שלום",
            "مرحبا بك",
            "two\nlines\tand a tab",
            "",
        ] {
            assert!(matches!(sanitize(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn other_control_characters_become_replacement_characters() {
        assert_eq!(
            sanitize("\u{1b}[2Jhi\r\u{7}"),
            "\u{fffd}[2Jhi\u{fffd}\u{fffd}"
        );
        assert_eq!(sanitize("a\u{85}b"), "a\u{fffd}b");
    }

    proptest::proptest! {
        /// Whatever comes in, nothing that reorders or controls the display
        /// goes out, and text without such characters is unchanged.
        #[test]
        fn nothing_unsafe_survives(s in "\\PC{0,64}|[\u{0}-\u{3f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{61c}a-z\u{5d0}-\u{5ea}]{0,64}") {
            let out = sanitize(&s);
            proptest::prop_assert!(!out.chars().any(|c| is_bidi_control(c) || (c.is_control() && c != '\n' && c != '\t')));
            if !s.chars().any(|c| is_bidi_control(c) || c.is_control()) {
                proptest::prop_assert_eq!(out.as_ref(), s.as_str());
            }
        }
    }
}
