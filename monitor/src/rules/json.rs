//! A small JSON reader that remembers where every value came from.
//!
//! Rule files are JSON, and errors must point at the offending token *inside* a condition
//! string as it appears in the file (`file:line:column`). serde_json keeps no positions, so
//! this module parses the (small) rule files itself: every value carries its byte span, and
//! every string can map an offset in its decoded text back to the byte in the file, across
//! escapes such as `\"` and `\\`.

use std::fmt;
use std::ops::Range;

/// Deeper nesting than this is refused (rule files are shallow; this bounds recursion).
const MAX_DEPTH: usize = 64;

/// A JSON value and the bytes of the file it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Json {
    pub span: Range<usize>,
    pub value: JsonValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue {
    Null,
    Bool(bool),
    /// The number's text as written (converted on use, so integers stay exact).
    Number(String),
    String(JsonString),
    Array(Vec<Json>),
    /// Members in file order (duplicate keys are a parse error).
    Object(Vec<(JsonString, Json)>),
}

impl JsonValue {
    /// What a value is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Number(_) => "a number",
            JsonValue::String(_) => "a string",
            JsonValue::Array(_) => "an array",
            JsonValue::Object(_) => "an object",
        }
    }
}

/// A decoded string and the map from its text back to the file.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonString {
    pub text: String,
    /// `(offset in text, offset in file)` at the start of the string's content and after each
    /// escape sequence; between two entries text and file advance together.
    anchors: Vec<(usize, usize)>,
}

impl JsonString {
    /// The file offset of the byte at `offset` in the decoded text.
    pub fn source_offset(&self, offset: usize) -> usize {
        let index = self.anchors.partition_point(|&(text, _)| text <= offset);
        let (text, file) = self.anchors[index.saturating_sub(1)];
        file + (offset - text.min(offset))
    }
}

impl fmt::Display for JsonString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A syntax error at a byte offset of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub message: String,
}

/// Parses a whole document (one value, surrounded by optional white space).
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos < parser.bytes.len() {
        return Err(parser.error_here("expected the end of the file"));
    }
    Ok(value)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A short rendering of what is at `offset`, for "found …" in messages.
pub fn describe_at(text: &str, offset: usize) -> String {
    match text.get(offset..).and_then(|rest| rest.chars().next()) {
        None => "the end of the file".to_string(),
        Some(c) if c.is_whitespace() || c.is_control() => format!("{c:?}"),
        Some(c) => format!("`{c}`"),
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error_here(&self, expected: &str) -> JsonError {
        JsonError {
            offset: self.pos,
            message: format!("{expected}, found {}", describe_at(self.text, self.pos)),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error_here("expected at most 64 levels of nesting"));
        }
        let start = self.pos;
        let value = match self.bytes.get(self.pos) {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => JsonValue::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') => self.keyword("true", JsonValue::Bool(true))?,
            Some(b'f') => self.keyword("false", JsonValue::Bool(false))?,
            Some(b'n') => self.keyword("null", JsonValue::Null)?,
            _ => return Err(self.error_here("expected a JSON value")),
        };
        Ok(Json {
            span: start..self.pos,
            value,
        })
    }

    fn keyword(&mut self, word: &str, value: JsonValue) -> Result<JsonValue, JsonError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error_here("expected a JSON value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<JsonValue, JsonError> {
        self.pos += 1;
        let mut members: Vec<(JsonString, Json)> = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(JsonValue::Object(members));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error_here("expected a string key"));
            }
            let key_start = self.pos;
            let key = self.string()?;
            if members.iter().any(|(k, _)| k.text == key.text) {
                return Err(JsonError {
                    offset: key_start,
                    message: format!("expected each key once, found `{}` again", key.text),
                });
            }
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error_here("expected `:`"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(JsonValue::Object(members));
                }
                _ => return Err(self.error_here("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<JsonValue, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(JsonValue::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(JsonValue::Array(items));
                }
                _ => return Err(self.error_here("expected `,` or `]`")),
            }
        }
    }

    fn number(&mut self) -> Result<JsonValue, JsonError> {
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.bytes.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - from
        };
        if digits(self) == 0 {
            return Err(self.error_here("expected a digit"));
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error_here("expected a digit after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error_here("expected a digit in the exponent"));
            }
        }
        Ok(JsonValue::Number(self.text[start..self.pos].to_string()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error_here("expected four hex digits after `\\u`"))?;
        let value = u32::from_str_radix(digits, 16)
            .map_err(|_| self.error_here("expected four hex digits after `\\u`"))?;
        self.pos += 4;
        Ok(value)
    }

    fn string(&mut self) -> Result<JsonString, JsonError> {
        self.pos += 1;
        let mut text = String::new();
        let mut anchors = vec![(0, self.pos)];
        let mut run_start = self.pos;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error_here("expected `\"` to close the string"));
            };
            match b {
                b'"' => {
                    text.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    return Ok(JsonString { text, anchors });
                }
                b'\\' => {
                    text.push_str(&self.text[run_start..self.pos]);
                    let escape_start = self.pos;
                    self.pos += 1;
                    let decoded = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape(escape_start)?;
                            self.pos -= 1;
                            c
                        }
                        _ => {
                            return Err(self.error_here(
                                "expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                            ));
                        }
                    };
                    self.pos += 1;
                    // The escape's first decoded byte maps to the backslash.
                    anchors.push((text.len(), escape_start));
                    text.push(decoded);
                    anchors.push((text.len(), self.pos));
                    run_start = self.pos;
                }
                0x00..=0x1f => {
                    return Err(self.error_here("expected no control characters in a string"));
                }
                _ => self.pos += 1,
            }
        }
    }

    fn unicode_escape(&mut self, escape_start: usize) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&first) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error_here("expected a low surrogate `\\uDC00`..`\\uDFFF`"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xdc00..0xe000).contains(&second) {
                return Err(JsonError {
                    offset: self.pos - 6,
                    message: "expected a low surrogate `\\uDC00`..`\\uDFFF`".to_string(),
                });
            }
            0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
        } else {
            first
        };
        char::from_u32(code).ok_or(JsonError {
            offset: escape_start,
            message: format!("expected a Unicode scalar value, found \\u{first:04x}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_of(json: &Json) -> &JsonString {
        match &json.value {
            JsonValue::String(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn parses_values_with_spans() {
        let text = r#" {"a": [1, -2.5e3, true, null], "b": "x"} "#;
        let json = parse(text).expect("valid");
        assert_eq!(json.span, 1..text.len() - 1);
        let JsonValue::Object(members) = &json.value else {
            panic!("object");
        };
        assert_eq!(members[0].0.text, "a");
        let JsonValue::Array(items) = &members[0].1.value else {
            panic!("array");
        };
        assert_eq!(items[1].value, JsonValue::Number("-2.5e3".to_string()));
        assert_eq!(&text[items[1].span.clone()], "-2.5e3");
        assert_eq!(items[2].value, JsonValue::Bool(true));
        assert_eq!(items[3].value, JsonValue::Null);
    }

    #[test]
    fn maps_decoded_offsets_back_across_escapes() {
        let text = r#""a\"b\\c\u00e9d""#;
        let json = parse(text).expect("valid");
        let s = string_of(&json);
        assert_eq!(s.text, "a\"b\\céd");
        // a
        assert_eq!(s.source_offset(0), 1);
        // the decoded quote maps to its backslash
        assert_eq!(s.source_offset(1), 2);
        // b
        assert_eq!(s.source_offset(2), 4);
        // c (after `\\`)
        assert_eq!(s.source_offset(4), 7);
        // d after the two-byte é written as \u00e9
        assert_eq!(s.source_offset(7), 14);
        assert_eq!(&text[14..15], "d");
    }

    #[test]
    fn surrogate_pairs_decode() {
        let json = parse(r#""\ud83d\ude00""#).expect("valid");
        assert_eq!(string_of(&json).text, "😀");
        assert!(parse(r#""\ud83d""#).is_err());
    }

    #[test]
    fn errors_have_offsets() {
        let err = parse("{\"a\": 1,}").expect_err("trailing comma");
        assert_eq!(err.offset, 8);
        assert_eq!(err.message, "expected a string key, found `}`");
        let err = parse("{\"a\": 1, \"a\": 2}").expect_err("duplicate");
        assert_eq!(err.offset, 9);
        let err = parse("[1] x").expect_err("trailing");
        assert_eq!(err.message, "expected the end of the file, found `x`");
        let err = parse("\"abc").expect_err("unterminated");
        assert_eq!(
            err.message,
            "expected `\"` to close the string, found the end of the file"
        );
        assert!(parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn line_and_column() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
    }
}
