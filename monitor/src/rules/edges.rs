//! The bytes a regex's matches can begin and end with, for regexes anchored at the start of
//! the text (`^…`) or at its end (`…$`): one byte of the haystack checked against a table
//! turns most haystacks away before the regex runs.
//!
//! Why: the pack's anchored regexes (`^[^a-z0-9]?(kworker|…)` on every process name,
//! `(?i)[.](kdbx|…)$` on every opened path, the `^…` command-line patterns of the exec rules)
//! fail on almost every event, yet each call into the regex engine cost ~230 instructions,
//! a tenth of the rule engine's work per event. Most paths and names fail on their first or
//! last byte.
//!
//! The sets are supersets: every byte a match can have there is in them (non-ASCII
//! characters add every lead or continuation byte of UTF-8), so the check can only turn
//! away haystacks the regex would not match.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A set of bytes, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    const FULL: ByteSet = ByteSet([u64::MAX; 4]);

    fn insert_range(&mut self, low: u8, high: u8) {
        for byte in low..=high {
            self.0[usize::from(byte / 64)] |= 1 << (byte % 64);
        }
    }

    fn union(&mut self, other: ByteSet) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine |= theirs;
        }
    }

    pub fn contains(&self, byte: u8) -> bool {
        self.0[usize::from(byte / 64)] & (1 << (byte % 64)) != 0
    }
}

/// Which end of a match.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    First,
    Last,
}

/// For an anchored regex, the bytes its matches can begin and end with (`None`: any byte, or
/// the regex is not anchored at that end, or it can match the empty text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edges {
    pub first: Option<ByteSet>,
    pub last: Option<ByteSet>,
}

impl Edges {
    /// `None` when neither end gives a test.
    pub fn of(hir: &Hir) -> Option<Edges> {
        let props = hir.properties();
        let at = |anchored: bool, end: End| {
            anchored
                .then(|| edge_bytes(hir, end))
                .filter(|&(_, can_be_empty)| !can_be_empty)
                .map(|(set, _)| set)
                .filter(|&set| set != ByteSet::FULL)
        };
        let edges = Edges {
            first: at(props.look_set_prefix().contains(Look::Start), End::First),
            last: at(props.look_set_suffix().contains(Look::End), End::Last),
        };
        (edges.first.is_some() || edges.last.is_some()).then_some(edges)
    }

    /// Whether `haystack` can hold a match: `false` only when the regex cannot match it.
    pub fn allow(&self, haystack: &[u8]) -> bool {
        let fits = |set: &Option<ByteSet>, byte: Option<&u8>| match set {
            None => true,
            Some(set) => byte.is_some_and(|&b| set.contains(b)),
        };
        fits(&self.first, haystack.first()) && fits(&self.last, haystack.last())
    }
}

/// The bytes a non-empty match of `hir` can have at `end`, and whether `hir` can match
/// the empty text (then what follows or precedes it can supply that byte too).
fn edge_bytes(hir: &Hir, end: End) -> (ByteSet, bool) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => (ByteSet::default(), true),
        HirKind::Literal(literal) => {
            let byte = match end {
                End::First => literal.0.first(),
                End::Last => literal.0.last(),
            };
            let mut set = ByteSet::default();
            if let Some(&byte) = byte {
                set.insert_range(byte, byte);
            }
            (set, byte.is_none())
        }
        HirKind::Class(class) => (class_bytes(class, end), false),
        HirKind::Repetition(rep) => {
            let (set, can_be_empty) = edge_bytes(&rep.sub, end);
            (set, can_be_empty || rep.min == 0)
        }
        HirKind::Capture(capture) => edge_bytes(&capture.sub, end),
        HirKind::Concat(items) => {
            let mut set = ByteSet::default();
            let ordered: Box<dyn Iterator<Item = &Hir>> = match end {
                End::First => Box::new(items.iter()),
                End::Last => Box::new(items.iter().rev()),
            };
            for item in ordered {
                let (item_set, can_be_empty) = edge_bytes(item, end);
                set.union(item_set);
                if !can_be_empty {
                    return (set, false);
                }
            }
            (set, true)
        }
        HirKind::Alternation(items) => {
            let mut set = ByteSet::default();
            let mut can_be_empty = false;
            for item in items {
                let (item_set, empty) = edge_bytes(item, end);
                set.union(item_set);
                can_be_empty |= empty;
            }
            (set, can_be_empty)
        }
    }
}

/// The bytes a character of `class` can begin or end with in UTF-8.
fn class_bytes(class: &Class, end: End) -> ByteSet {
    let mut set = ByteSet::default();
    match class {
        Class::Bytes(bytes) => {
            for range in bytes.iter() {
                set.insert_range(range.start(), range.end());
            }
        }
        Class::Unicode(chars) => {
            for range in chars.iter() {
                let (start, last) = (u32::from(range.start()), u32::from(range.end()));
                if start < 0x80 {
                    // Both below 0x80 here: the casts cannot truncate.
                    set.insert_range(start as u8, last.min(0x7f) as u8);
                }
                if last >= 0x80 {
                    match end {
                        End::First => set.insert_range(0xc0, 0xff),
                        End::Last => set.insert_range(0x80, 0xbf),
                    }
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn edges(pattern: &str) -> Option<Edges> {
        Edges::of(&regex_syntax::Parser::new().parse(pattern).expect("valid"))
    }

    fn members(set: Option<ByteSet>) -> String {
        set.map(|set| {
            (0..=255u8)
                .filter(|&b| set.contains(b))
                .map(char::from)
                .collect()
        })
        .unwrap_or_default()
    }

    #[test]
    fn anchored_ends_give_their_bytes() {
        let e = edges("^(/usr)?/s?bin/[a-z]+$").expect("anchored");
        assert_eq!(members(e.first), "/");
        assert_eq!(members(e.last), "abcdefghijklmnopqrstuvwxyz");
        let e = edges("(?i)[.](kdbx|psafe3)$").expect("anchored at the end");
        assert_eq!(e.first, None);
        assert_eq!(members(e.last), "3Xx");
        // An optional first character: what follows it can come first too.
        let e = edges("^[^a-z0-9]?(kworker|cpuhp/)").expect("anchored at the start");
        let first = e.first.expect("a test");
        assert!(first.contains(b'k') && first.contains(b'c') && first.contains(b'['));
        assert!(!first.contains(b'b') && !first.contains(b'p') && !first.contains(b'0'));
        // Non-ASCII: every lead byte may begin, every continuation byte may end.
        let e = edges("^é$").expect("anchored");
        assert!(e.first.expect("first").contains(0xc3) && e.last.expect("last").contains(0xa9));
    }

    #[test]
    fn no_test_where_none_is_sound_or_useful() {
        for pattern in [
            "kworker",       // not anchored
            "(?m)^kworker$", // line anchors: any line may match
            "^a*$",          // matches the empty text
            "^a|b",          // one branch is not anchored
        ] {
            assert_eq!(edges(pattern), None, "{pattern}");
        }
    }

    /// Patterns of the shapes the pack uses, each with texts it matches.
    const PATTERNS: &[(&str, &[&str])] = &[
        (
            "^[^a-z0-9]?(kworker|kthreadd|migration/|rcu_(sched|bh))",
            &["kworker/0:1", "[kthreadd]", "rcu_bh"],
        ),
        (
            "(?i)[.](kdbx|kdb|psafe3|keychain-db)$",
            &["/a/b.KDBX", "x.kdb"],
        ),
        (
            "^/(usr/(local/)?)?s?bin/|^/(usr/)?lib(exec|32|64)?/|^/opt/",
            &["/usr/local/sbin/x", "/lib64/ld", "/opt/"],
        ),
        (
            "^([^ ]*/)?sudo( -[a-zA-Z]+)* (-l+|--list)( .*)?$",
            &["sudo -l", "/usr/bin/sudo -nu --list é"],
        ),
        ("^/proc/[0-9]+/(task/[0-9]+/)?mem$", &["/proc/12/mem"]),
        ("^(-[a-zA-Z]*a[a-zA-Z]*|--all)$", &["-fa", "--all"]),
        ("^é+ü?$", &["é", "ééü"]),
        ("^/[à-ÿ]+$", &["/é", "/ÿà"]),
        ("(?i)^k.*k$", &["kk", "K\u{212a}", "\u{212a}xk"]),
        ("^(a|)b$", &["b", "ab"]),
        ("^x?y?z$", &["z", "xyz"]),
    ];

    #[test]
    fn the_test_lets_every_example_through() {
        for (pattern, examples) in PATTERNS {
            let re = Regex::new(pattern).expect("valid");
            let e = edges(pattern).expect("anchored");
            for example in *examples {
                assert!(re.is_match(example), "{pattern} must match {example:?}");
                assert!(e.allow(example.as_bytes()), "{pattern} on {example:?}");
            }
        }
    }

    fn haystack() -> impl Strategy<Value = String> {
        let examples: Vec<String> = PATTERNS
            .iter()
            .flat_map(|(_, examples)| examples.iter().map(|e| e.to_string()))
            .collect();
        let piece = prop_oneof![
            proptest::sample::select(examples),
            Just("/".to_string()),
            Just("\u{212a}".to_string()), // the Kelvin sign: `(?i)k` matches it
            "[ -~]{0,3}",
            "\\PC{0,2}",
        ];
        proptest::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The byte test never turns away a haystack the regex matches.
        #[test]
        fn the_test_never_rejects_a_match(index in 0..PATTERNS.len(), text in haystack()) {
            let (pattern, _) = PATTERNS[index];
            let re = Regex::new(pattern).expect("valid");
            if let Some(e) = edges(pattern) && re.is_match(&text) {
                prop_assert!(e.allow(text.as_bytes()), "{pattern} on {text:?}");
            }
        }
    }
}
