//! Making untrusted text safe to show on a terminal.
//!
//! Everything secmon reports (file names, argv, comm, user names) is chosen by whoever runs on the
//! watched machine. Written raw to a terminal, such text can move the cursor, rewrite what is on the
//! screen, set the clipboard (OSC 52), change the window title, or reorder what the reader sees
//! (bidirectional overrides, zero-width characters). [`for_terminal`] turns every such character into
//! visible escape text, and [`lossy`] turns a kernel's NUL-terminated byte buffer into a `String`.
//!
//! The escaping is injective: a backslash is itself written as `\\`, so a file literally named
//! `\x1b` can never be mistaken for one that contains an ESC byte.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a byte may start a character that [`needs_escape`] accepts: every ASCII control byte,
/// DEL, the backslash, and the UTF-8 lead bytes of the non-ASCII characters listed there. Text
/// without any of these bytes is returned as is without decoding a single character.
static MAY_NEED_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x5c] = true; // '\\'
    table[0x7f] = true; // DEL
    table[0xc2] = true; // U+0080..U+00BF: C1 controls, U+00AD
    table[0xd8] = true; // U+0600..U+063F: U+061C
    table[0xe1] = true; // U+1000..U+1FFF: U+115F, U+1160, U+180E
    table[0xe2] = true; // U+2000..U+2FFF: U+200B.., U+2028.., U+2060..
    table[0xe3] = true; // U+3000..U+3FFF: U+3164
    table[0xef] = true; // U+F000..U+FFFF: U+FEFF, U+FFA0, U+FFF9..
    table[0xf3] = true; // U+C0000..U+FFFFF: U+E0000..U+E007F
    table
};

/// Characters that must not reach a terminal as they are.
///
/// - C0 controls, DEL and C1 controls (U+0080–U+009F; U+009B is a one-character CSI on some
///   terminals);
/// - the backslash, so that the escaping stays unambiguous;
/// - invisible and bidirectional formatting characters: soft hyphen (U+00AD), Arabic letter mark
///   (U+061C), Mongolian vowel separator (U+180E), zero-width space/joiners and LRM/RLM
///   (U+200B–U+200F), line/paragraph separators and the bidi embeddings/overrides
///   (U+2028–U+202E), word joiner, invisible operators, bidi isolates and the deprecated format
///   characters (U+2060–U+206F), BOM/zero-width no-break space (U+FEFF), interlinear annotation
///   controls (U+FFF9–U+FFFB), and the Unicode tag characters (U+E0000–U+E007F, used to smuggle
///   hidden text);
/// - Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), which render as blank but count as letters.
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\\'
            | '\x7f'..='\u{9f}'
            | '\u{ad}'
            | '\u{61c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// Escapes `s` so that writing it to a terminal shows exactly what it contains and does nothing else.
///
/// Tab, newline and carriage return become `\t`, `\n`, `\r`; other ASCII controls and DEL become
/// `\xHH` (ESC is `\x1b`); the backslash becomes `\\`; every other character listed in
/// [`needs_escape`] becomes `\u{H..}` (e.g. `\u{202e}`, `\u{9b}`). All other text, including
/// non-ASCII letters, is unchanged.
///
/// Returns the input borrowed when nothing needs escaping, which is decided by a byte scan for
/// ordinary ASCII text.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    let Some(candidate) = s.bytes().position(|b| MAY_NEED_ESCAPE[usize::from(b)]) else {
        return Cow::Borrowed(s);
    };
    // Every byte in the table is ASCII or a UTF-8 lead byte, so `candidate` is a char boundary;
    // fall back to a full scan should that ever not hold.
    let scan_from = if s.is_char_boundary(candidate) {
        candidate
    } else {
        0
    };
    let tail = &s[scan_from..];
    let Some(offset) = tail.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let start = scan_from + offset;

    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..start]);
    for c in s[start..].chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        // Writing to a String cannot fail.
        c if c.is_ascii() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// The line the binary prints for an error that ends it: `secmon: error: ` and the message
/// with its causes (`{:#}`), escaped. Error messages quote files and peers (a config key, a
/// recording's line, a control reply), so they are as untrusted as the files themselves.
///
/// A message of several lines (the probe groups a kernel refused, say) keeps them, each
/// escaped and indented, so no quoted text can start a line of its own that would pass for
/// one of secmon's.
pub fn error_line(error: &dyn std::fmt::Display) -> String {
    let text = format!("{error:#}");
    let lines: Vec<_> = text.lines().map(for_terminal).collect();
    format!("secmon: error: {}", lines.join("\n  "))
}

/// Converts a fixed-size, NUL-terminated buffer filled by the kernel into a `String`.
///
/// Stops at the first NUL (or the end of the buffer when there is none) and replaces invalid UTF-8
/// with U+FFFD. The result may still contain control characters: pass it through [`for_terminal`]
/// before showing it.
pub fn lossy(bytes: &[u8]) -> String {
    lossy_str(bytes).into_owned()
}

/// [`lossy`] without a copy when the bytes are valid UTF-8 (nearly always): for text that is
/// only read, such as a path about to be resolved into a new string anyway.
pub fn lossy_str(bytes: &[u8]) -> Cow<'_, str> {
    let text = &bytes[..memchr::memchr(0, bytes).unwrap_or(bytes.len())];
    // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy`'s chunks go byte by byte
    // (this runs for every path and name from the kernel).
    match std::str::from_utf8(text) {
        Ok(valid) => Cow::Borrowed(valid),
        Err(_) => String::from_utf8_lossy(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(s: &str) -> String {
        match for_terminal(s) {
            Cow::Borrowed(_) => panic!("expected a change for {s:?}"),
            Cow::Owned(o) => o,
        }
    }

    fn borrowed(s: &str) {
        assert!(
            matches!(for_terminal(s), Cow::Borrowed(b) if std::ptr::eq(b, s)),
            "expected {s:?} to be borrowed unchanged"
        );
    }

    #[test]
    fn plain_text_is_borrowed() {
        borrowed("");
        borrowed("/usr/bin/ls -la /tmp");
        borrowed("naïve café — 日本語 ümlaut €5 ✓ 🦀");
        // Lead bytes that may need escaping but whose characters do not.
        borrowed("’quotes’ “double” … • ‰ ™ ⚠"); // E2
        borrowed("\u{1000}\u{1e00} \u{3042}\u{30a2} \u{fb01}\u{ff21}"); // E1, E3, EF
        borrowed("\u{0627}\u{0644}"); // D8 (Arabic letters)
        borrowed("\u{a0}\u{a9}\u{b5}"); // C2, printable
        borrowed("\u{f0000}"); // F3, private use
    }

    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(
            owned("\x1b[31mred\x1b[0m"),
            "\\x1b[31mred\\x1b[0m".to_string()
        );
        // Clear screen and move home.
        assert_eq!(owned("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        // Window title (OSC 0) terminated by BEL.
        assert_eq!(owned("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
    }

    #[test]
    fn osc52_clipboard_write_is_defused() {
        let evil = "file\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x1b\\name";
        let out = owned(evil);
        assert_eq!(
            out,
            "file\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\\x1b\\\\name"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn c1_controls_are_escaped() {
        // U+009B is CSI and U+009D is OSC on terminals that honour 8-bit controls.
        assert_eq!(owned("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(owned("\u{9d}52;c;AA==\u{9c}"), "\\u{9d}52;c;AA==\\u{9c}");
        assert_eq!(owned("\u{80}\u{85}\u{9f}"), "\\u{80}\\u{85}\\u{9f}");
    }

    #[test]
    fn whitespace_controls_and_del() {
        assert_eq!(owned("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(owned("\0\x01\x08\x7f"), "\\x00\\x01\\x08\\x7f");
        assert_eq!(owned("bell\x07"), "bell\\x07");
    }

    #[test]
    fn bidi_and_invisible_characters() {
        // "invoice\u{202e}fdp.exe" shows as "invoiceexe.pdf" in a bidi-aware terminal.
        assert_eq!(owned("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(owned("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(owned("ro\u{200b}ot"), "ro\\u{200b}ot");
        assert_eq!(owned("\u{feff}bom"), "\\u{feff}bom");
        assert_eq!(owned("soft\u{ad}hyphen"), "soft\\u{ad}hyphen");
        assert_eq!(owned("\u{200e}\u{200f}"), "\\u{200e}\\u{200f}");
        assert_eq!(owned("\u{202a}\u{202d}"), "\\u{202a}\\u{202d}");
        assert_eq!(owned("tag\u{e0041}\u{e007f}"), "tag\\u{e0041}\\u{e007f}");
        assert_eq!(owned("\u{3164}"), "\\u{3164}");
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(owned("C:\\temp"), "C:\\\\temp");
        assert_ne!(for_terminal("\\x1b"), for_terminal("\x1b"));
        assert_ne!(for_terminal("\\n"), for_terminal("\n"));
    }

    #[test]
    fn prefix_before_first_escape_is_kept() {
        assert_eq!(owned("日本語 — \x1b!"), "日本語 — \\x1b!");
        assert_eq!(owned("— \u{202e}"), "— \\u{202e}");
    }

    #[test]
    fn every_char_is_made_safe() {
        for c in (0..=0x10_ffff_u32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            let out = for_terminal(s);
            assert!(
                out.chars().all(|o| o == '\\' || !needs_escape(o)),
                "{c:?} escaped to {out:?}"
            );
            // The table must catch every character that needs an escape.
            if needs_escape(c) {
                assert!(
                    MAY_NEED_ESCAPE[usize::from(s.as_bytes()[0])],
                    "lead byte of {c:?}"
                );
                assert!(matches!(out, Cow::Owned(_)), "{c:?} not escaped");
            } else {
                assert!(matches!(out, Cow::Borrowed(_)), "{c:?} changed");
            }
        }
    }

    #[test]
    fn lossy_stops_at_nul() {
        assert_eq!(lossy(b"bash\0\0\0\0garbage"), "bash");
        assert_eq!(lossy(b"\0abc"), "");
        assert_eq!(lossy(b""), "");
        assert_eq!(lossy(b"no terminator"), "no terminator");
    }

    #[test]
    fn lossy_replaces_invalid_utf8() {
        assert_eq!(lossy(b"ab\xffc\0junk"), "ab\u{fffd}c");
        // A multi-byte character cut by the kernel's buffer size.
        assert_eq!(lossy(b"caf\xc3"), "caf\u{fffd}");
        // Overlong encoding of '/' stays replaced, never decoded to '/'.
        assert_eq!(lossy(b"a\xc0\xafb"), "a\u{fffd}\u{fffd}b");
    }

    #[test]
    fn lossy_then_for_terminal() {
        let raw = b"evil\x1b[2J\xfe\0";
        assert_eq!(for_terminal(&lossy(raw)), "evil\\x1b[2J\u{fffd}");
    }

    /// Characters that stress the escaping: controls, C1, the backslash, bidi and invisible
    /// formatting characters, and their neighbours; mixed with arbitrary characters.
    fn tricky_char() -> impl proptest::strategy::Strategy<Value = char> {
        use proptest::prelude::*;
        prop_oneof![
            any::<char>(),
            proptest::char::range('\0', '\u{a0}'),
            proptest::sample::select(vec![
                '\\',
                'x',
                'u',
                '{',
                '}',
                '\u{ad}',
                '\u{61c}',
                '\u{180e}',
                '\u{200b}',
                '\u{200f}',
                '\u{2028}',
                '\u{202e}',
                '\u{2066}',
                '\u{feff}',
                '\u{fffb}',
                '\u{e0041}',
                '\u{3164}',
                '\u{1f980}',
                'é',
            ]),
        ]
    }

    /// Reverses [`for_terminal`], to check that nothing is lost or ambiguous.
    fn unescape(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                't' => out.push('\t'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                }
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    proptest::proptest! {
        /// The quick path for valid text gives what `from_utf8_lossy` gives, up to the NUL.
        #[test]
        fn lossy_is_from_utf8_lossy_up_to_the_nul(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    0x20u8..0x7f,
                    proptest::sample::select(vec![0u8, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f]),
                ],
                0..40,
            )
        ) {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(lossy_str(&bytes), String::from_utf8_lossy(&bytes[..end]));
        }

        /// Whatever the input, the escaped text holds no character that needs escaping other
        /// than the backslashes of the escapes, and decodes back to the input exactly.
        #[test]
        fn sanitised_text_is_always_safe_and_lossless(
            chars in proptest::collection::vec(tricky_char(), 0..64)
        ) {
            let input: String = chars.into_iter().collect();
            let out = for_terminal(&input);
            proptest::prop_assert!(
                out.chars().all(|c| c == '\\' || !needs_escape(c)),
                "{:?} escaped to {:?}", input, out
            );
            proptest::prop_assert!(!out.chars().any(char::is_control), "{:?}", out);
            proptest::prop_assert_eq!(unescape(&out), Some(input.clone()));
        }

        /// Kernel byte buffers: whatever the bytes, lossy + for_terminal is safe.
        #[test]
        fn kernel_bytes_are_always_safe(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let out = for_terminal(&lossy(&bytes)).into_owned();
            proptest::prop_assert!(out.chars().all(|c| c == '\\' || !needs_escape(c)), "{:?}", out);
        }
    }
}
