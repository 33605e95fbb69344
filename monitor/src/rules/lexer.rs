//! Condition tokens.
//!
//! Offsets are byte offsets into the condition text; the loader maps them back to the file.

use std::fmt;
use std::ops::Range;

/// A problem at a byte range of the condition text ("expected X, found Y").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

impl SyntaxError {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            span,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name, possibly dotted: `process.path`, `process.path.contains`, `shell_binaries`.
    Word(String),
    Str(String),
    Int(i64),
    Float(f64),
    True,
    False,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `&&` or `and`.
    And,
    /// `||` or `or`.
    Or,
    /// `!` or `not`.
    Not,
    /// `&` (bit test).
    Amp,
    In,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Int(i) => write!(f, "number {i}"),
            Tok::Float(x) => write!(f, "number {x}"),
            Tok::True => f.write_str("`true`"),
            Tok::False => f.write_str("`false`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Eq => f.write_str("`==`"),
            Tok::Ne => f.write_str("`!=`"),
            Tok::Lt => f.write_str("`<`"),
            Tok::Le => f.write_str("`<=`"),
            Tok::Gt => f.write_str("`>`"),
            Tok::Ge => f.write_str("`>=`"),
            Tok::And => f.write_str("`&&`"),
            Tok::Or => f.write_str("`||`"),
            Tok::Not => f.write_str("`!`"),
            Tok::Amp => f.write_str("`&`"),
            Tok::In => f.write_str("`in`"),
            Tok::Eof => f.write_str("the end of the condition"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Splits a condition into tokens (the last one is [`Tok::Eof`]).
pub fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let end = token.tok == Tok::Eof;
        tokens.push(token);
        if end {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn found_here(&self) -> String {
        match self.peek() {
            None => "the end of the condition".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn next_token(&mut self) -> Result<Token, SyntaxError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token {
                tok: Tok::Eof,
                span: start..start,
            });
        };
        let two = |l: &mut Self, tok| {
            l.pos += 2;
            Ok(tok)
        };
        let one = |l: &mut Self, tok| {
            l.pos += 1;
            Ok(tok)
        };
        let next = self.peek_at(1);
        let tok: Result<Tok, SyntaxError> = match c {
            '(' => one(self, Tok::LParen),
            ')' => one(self, Tok::RParen),
            '[' => one(self, Tok::LBracket),
            ']' => one(self, Tok::RBracket),
            ',' => one(self, Tok::Comma),
            '.' => one(self, Tok::Dot),
            '=' if next == Some('=') => two(self, Tok::Eq),
            '=' => Err(SyntaxError::new(
                start..start + 1,
                "expected `==` (comparison), found `=`",
            )),
            '!' if next == Some('=') => two(self, Tok::Ne),
            '!' => one(self, Tok::Not),
            '<' if next == Some('=') => two(self, Tok::Le),
            '<' => one(self, Tok::Lt),
            '>' if next == Some('=') => two(self, Tok::Ge),
            '>' => one(self, Tok::Gt),
            '&' if next == Some('&') => two(self, Tok::And),
            '&' => one(self, Tok::Amp),
            '|' if next == Some('|') => two(self, Tok::Or),
            '|' => Err(SyntaxError::new(
                start..start + 1,
                "expected `||`, found `|`",
            )),
            '\'' | '"' => self.string(c),
            '0'..='9' => self.number(false),
            '-' if next.is_some_and(|d| d.is_ascii_digit()) => {
                self.pos += 1;
                self.number(true)
            }
            c if is_word_start(c) => Ok(self.word()),
            _ => Err(SyntaxError::new(
                start..start + c.len_utf8(),
                format!(
                    "expected a field, value, operator or parenthesis, found {}",
                    self.found_here()
                ),
            )),
        };
        Ok(Token {
            tok: tok?,
            span: start..self.pos,
        })
    }

    fn word(&mut self) -> Tok {
        let start = self.pos;
        loop {
            while self.peek().is_some_and(is_word_char) {
                self.pos += 1;
            }
            // A dot continues the word only when a word character follows it.
            if self.peek() == Some('.') && self.peek_at(1).is_some_and(is_word_char) {
                self.pos += 1;
            } else {
                break;
            }
        }
        match &self.text[start..self.pos] {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "in" => Tok::In,
            "true" => Tok::True,
            "false" => Tok::False,
            word => Tok::Word(word.to_string()),
        }
    }

    /// Quoted strings. Recognised escapes: `\\ \' \" \n \t \r \0`; a backslash before any
    /// other character is kept as written, so regexes read naturally (`'\.sh$'`).
    fn string(&mut self, quote: char) -> Result<Tok, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(SyntaxError::new(
                    start..self.pos,
                    format!(
                        "expected `{quote}` to close the string, found the end of the condition"
                    ),
                ));
            };
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(Tok::Str(out));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                continue;
            };
            self.pos += e.len_utf8();
            match e {
                '\\' | '\'' | '"' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn number(&mut self, negative: bool) -> Result<Tok, SyntaxError> {
        let start = if negative { self.pos - 1 } else { self.pos };
        let digits_start = self.pos;
        let radix = match (self.peek(), self.peek_at(1)) {
            (Some('0'), Some('x' | 'X')) => 16,
            (Some('0'), Some('o' | 'O')) => 8,
            (Some('0'), Some('b' | 'B')) => 2,
            _ => 10,
        };
        let bad = |l: &mut Self, what: &str| {
            while l.peek().is_some_and(|c| is_word_char(c) || c == '.') {
                l.pos += 1;
            }
            Err(SyntaxError::new(
                start..l.pos,
                format!("expected {what}, found `{}`", &l.text[start..l.pos]),
            ))
        };
        if radix != 10 {
            self.pos += 2;
            let body_start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.pos += 1;
            }
            let body: String = self.text[body_start..self.pos]
                .chars()
                .filter(|&c| c != '_')
                .collect();
            let what = match radix {
                16 => "a hexadecimal number",
                8 => "an octal number",
                _ => "a binary number",
            };
            let value = i64::from_str_radix(&body, radix).map_err(|_| {
                SyntaxError::new(
                    start..self.pos,
                    format!("expected {what}, found `{}`", &self.text[start..self.pos]),
                )
            })?;
            return Ok(Tok::Int(if negative { -value } else { value }));
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let mut float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if let Some('e' | 'E') = self.peek() {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                float = true;
                self.pos += 1 + sign;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
        }
        if self.peek().is_some_and(|c| is_word_char(c) || c == '.') {
            return bad(self, "a number");
        }
        let text = &self.text[start..self.pos];
        if float {
            return text.parse::<f64>().map(Tok::Float).map_err(|_| {
                SyntaxError::new(
                    start..self.pos,
                    format!("expected a number, found `{text}`"),
                )
            });
        }
        let digits = &self.text[digits_start..self.pos];
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(SyntaxError::new(
                start..self.pos,
                format!(
                    "expected a number without leading zeros (write octal as 0o{}), found `{text}`",
                    &digits[1..]
                ),
            ));
        }
        text.parse::<i64>().map(Tok::Int).map_err(|_| {
            SyntaxError::new(
                start..self.pos,
                format!("expected a number that fits in 64 bits, found `{text}`"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text)
            .expect("tokenizes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn err(text: &str) -> SyntaxError {
        tokenize(text).expect_err("should not tokenize")
    }

    #[test]
    fn operators() {
        assert_eq!(
            toks("== != < <= > >= && || ! & and or not in ( ) [ ] , ."),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::And,
                Tok::Or,
                Tok::Not,
                Tok::Amp,
                Tok::And,
                Tok::Or,
                Tok::Not,
                Tok::In,
                Tok::LParen,
                Tok::RParen,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Comma,
                Tok::Dot,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn dotted_words_and_keywords() {
        assert_eq!(
            toks("process.path.contains('/tmp/')"),
            vec![
                Tok::Word("process.path.contains".to_string()),
                Tok::LParen,
                Tok::Str("/tmp/".to_string()),
                Tok::RParen,
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("x-ui python3.11 true false andy"),
            vec![
                Tok::Word("x-ui".to_string()),
                Tok::Word("python3.11".to_string()),
                Tok::True,
                Tok::False,
                Tok::Word("andy".to_string()),
                Tok::Eof
            ]
        );
        // A trailing dot is its own token.
        assert_eq!(
            toks("a. b"),
            vec![
                Tok::Word("a".to_string()),
                Tok::Dot,
                Tok::Word("b".to_string()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("0 42 -7 0o755 0x1F 0b101 0.5 1e3 2.5E-1 0o4_000"),
            vec![
                Tok::Int(0),
                Tok::Int(42),
                Tok::Int(-7),
                Tok::Int(0o755),
                Tok::Int(0x1f),
                Tok::Int(5),
                Tok::Float(0.5),
                Tok::Float(1000.0),
                Tok::Float(0.25),
                Tok::Int(0o4000),
                Tok::Eof
            ]
        );
        let e = err("file.mode == 0755");
        assert_eq!(e.span, 13..17);
        assert_eq!(
            e.message,
            "expected a number without leading zeros (write octal as 0o755), found `0755`"
        );
        assert_eq!(
            err("x == 0o9").message,
            "expected an octal number, found `0o9`"
        );
        assert_eq!(err("x == 12ab").message, "expected a number, found `12ab`");
        assert!(tokenize("x == 99999999999999999999").is_err());
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            toks(r#"'a\'b' "c\"d" 'e\\f' 'g\nh' '\.sh$' "it's""#),
            vec![
                Tok::Str("a'b".to_string()),
                Tok::Str("c\"d".to_string()),
                Tok::Str("e\\f".to_string()),
                Tok::Str("g\nh".to_string()),
                Tok::Str("\\.sh$".to_string()),
                Tok::Str("it's".to_string()),
                Tok::Eof
            ]
        );
        let e = err("x == 'abc");
        assert_eq!(e.span, 5..9);
        assert_eq!(
            e.message,
            "expected `'` to close the string, found the end of the condition"
        );
    }

    #[test]
    fn bad_characters() {
        let e = err("a = 'b'");
        assert_eq!(e.span, 2..3);
        assert_eq!(e.message, "expected `==` (comparison), found `=`");
        let e = err("a | b");
        assert_eq!(e.message, "expected `||`, found `|`");
        let e = err("a == $x");
        assert_eq!(e.span, 5..6);
        assert_eq!(
            e.message,
            "expected a field, value, operator or parenthesis, found `$`"
        );
    }

    #[test]
    fn spans() {
        let tokens = tokenize("  ab <= 'x'").expect("ok");
        assert_eq!(tokens[0].span, 2..4);
        assert_eq!(tokens[1].span, 5..7);
        assert_eq!(tokens[2].span, 8..11);
        assert_eq!(tokens[3].span, 11..11);
    }
}
