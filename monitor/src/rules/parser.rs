//! Conditions → syntax trees (names not yet resolved; see `compile`).
//!
//! ```text
//! expr      := and (("||" | "or") and)*
//! and       := unary (("&&" | "and") unary)*
//! unary     := ("!" | "not") unary | predicate
//! predicate := "(" expr ")" | value [cmp value | "in" set | "." method "(" value ")"]
//! value     := primary ("&" primary)*
//! primary   := word | string | number | "true" | "false" | list | "cidr" "(" string ")"
//! set       := list | word | "cidr" "(" string ")"
//! list      := "[" [item ("," item)* [","]] "]"      (bare words in lists are strings)
//! ```
//!
//! A word such as `process.path.contains` followed by `(` is a method call on the field
//! `process.path`. `!` applies to a whole predicate: `!a == b` is `!(a == b)`.

use std::ops::Range;

use super::lexer::{SyntaxError, Tok, Token, tokenize};

pub type Span = Range<usize>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The same test with its operands swapped (`3 < x` is `x > 3`).
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `a <op> b`.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Contains => "contains",
            Method::StartsWith => "startswith",
            Method::EndsWith => "endswith",
            Method::Matches => "matches",
        }
    }

    fn from_name(name: &str) -> Option<Method> {
        match name {
            "contains" => Some(Method::Contains),
            "startswith" => Some(Method::StartsWith),
            "endswith" => Some(Method::EndsWith),
            "matches" => Some(Method::Matches),
            _ => None,
        }
    }
}

/// A value-producing piece of a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A field, macro or list name (resolved by the compiler).
    Name(String, Span),
    Str(String, Span),
    Int(i64, Span),
    Float(f64, Span),
    Bool(bool, Span),
    List(Vec<Operand>, Span),
    Cidr(String, Span),
    /// `value & mask`.
    BitAnd(Box<Operand>, Box<Operand>, Span),
}

impl Operand {
    pub fn span(&self) -> Span {
        match self {
            Operand::Name(_, s)
            | Operand::Str(_, s)
            | Operand::Int(_, s)
            | Operand::Float(_, s)
            | Operand::Bool(_, s)
            | Operand::List(_, s)
            | Operand::Cidr(_, s)
            | Operand::BitAnd(_, _, s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Or(Vec<Ast>),
    And(Vec<Ast>),
    Not(Box<Ast>),
    Cmp {
        lhs: Operand,
        op: CmpOp,
        op_span: Span,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        in_span: Span,
        set: Operand,
    },
    Call {
        target: Operand,
        method: Method,
        method_span: Span,
        arg: Operand,
    },
    /// An operand on its own: a macro name or `true`/`false`.
    Value(Operand),
}

pub fn parse(text: &str) -> Result<Ast, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0 };
    let ast = parser.expr(0)?;
    let token = parser.peek();
    if token.tok != Tok::Eof {
        let expected = if matches!(token.tok, Tok::RParen) {
            "expected `&&`, `||` or the end of the condition (unbalanced `)`)"
        } else {
            "expected `&&`, `||` or the end of the condition"
        };
        return Err(SyntaxError::new(
            token.span.clone(),
            format!("{expected}, found {}", token.tok),
        ));
    }
    Ok(ast)
}

/// Parentheses deeper than this are refused (bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_tok(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn expected(&self, what: &str) -> SyntaxError {
        let token = self.peek();
        SyntaxError::new(
            token.span.clone(),
            format!("expected {what}, found {}", token.tok),
        )
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<Token, SyntaxError> {
        if self.peek().tok == *tok {
            Ok(self.bump())
        } else {
            Err(self.expected(what))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Ast, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.expected("at most 64 levels of nesting"));
        }
        let mut terms = vec![self.and(depth)?];
        while self.peek().tok == Tok::Or {
            self.bump();
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Ast::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Ast, SyntaxError> {
        let mut terms = vec![self.unary(depth)?];
        while self.peek().tok == Tok::And {
            self.bump();
            terms.push(self.unary(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Ast::And(terms)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Ast, SyntaxError> {
        if self.peek().tok == Tok::Not {
            if depth > MAX_DEPTH {
                return Err(self.expected("at most 64 levels of nesting"));
            }
            self.bump();
            return Ok(Ast::Not(Box::new(self.unary(depth + 1)?)));
        }
        self.predicate(depth)
    }

    fn predicate(&mut self, depth: usize) -> Result<Ast, SyntaxError> {
        if self.peek().tok == Tok::LParen {
            self.bump();
            let inner = self.expr(depth + 1)?;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(inner);
        }
        if let Some(call) = self.method_call()? {
            return Ok(call);
        }
        let lhs = self.value()?;
        let op = match self.peek().tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            let op_span = self.bump().span;
            let rhs = self.value()?;
            return Ok(Ast::Cmp {
                lhs,
                op,
                op_span,
                rhs,
            });
        }
        if self.peek().tok == Tok::In {
            let in_span = self.bump().span;
            let set = self.set()?;
            return Ok(Ast::In { lhs, in_span, set });
        }
        if self.peek().tok == Tok::Dot {
            // `field .method(...)` with a space before the dot.
            let dot = self.bump();
            let Tok::Word(name) = self.peek().tok.clone() else {
                return Err(self.expected("a method name after `.`"));
            };
            let name_token = self.bump();
            let method = Method::from_name(&name)
                .ok_or_else(|| unknown_method(&name, name_token.span.clone()))?;
            let _ = dot;
            return self.finish_call(lhs, method, name_token.span);
        }
        match &lhs {
            Operand::Name(..) | Operand::Bool(..) => Ok(Ast::Value(lhs)),
            _ => Err(self.expected("a comparison (`==`, `!=`, `<`, ...), `in` or a method call")),
        }
    }

    /// `field.method(arg)` written as one dotted word.
    fn method_call(&mut self) -> Result<Option<Ast>, SyntaxError> {
        let token = self.peek().clone();
        let Tok::Word(word) = &token.tok else {
            return Ok(None);
        };
        if *self.peek_tok(1) != Tok::LParen {
            return Ok(None);
        }
        let Some(dot) = word.rfind('.') else {
            if word == "cidr" {
                return Ok(None);
            }
            return Err(SyntaxError::new(
                token.span.clone(),
                format!("expected a field before a method call, found `{word}(`"),
            ));
        };
        let method_span = token.span.start + dot + 1..token.span.end;
        let method = Method::from_name(&word[dot + 1..])
            .ok_or_else(|| unknown_method(&word[dot + 1..], method_span.clone()))?;
        self.bump();
        let target = Operand::Name(
            word[..dot].to_string(),
            token.span.start..token.span.start + dot,
        );
        self.finish_call(target, method, method_span).map(Some)
    }

    fn finish_call(
        &mut self,
        target: Operand,
        method: Method,
        method_span: Span,
    ) -> Result<Ast, SyntaxError> {
        self.expect(&Tok::LParen, "`(`")?;
        let arg = self.value()?;
        self.expect(&Tok::RParen, "`)` (a method takes one argument)")?;
        Ok(Ast::Call {
            target,
            method,
            method_span,
            arg,
        })
    }

    fn value(&mut self) -> Result<Operand, SyntaxError> {
        let mut value = self.primary(false)?;
        while self.peek().tok == Tok::Amp {
            self.bump();
            let mask = self.primary(false)?;
            let span = value.span().start..mask.span().end;
            value = Operand::BitAnd(Box::new(value), Box::new(mask), span);
        }
        Ok(value)
    }

    fn set(&mut self) -> Result<Operand, SyntaxError> {
        match &self.peek().tok {
            Tok::LBracket | Tok::Word(_) => self.primary(false),
            _ => Err(self.expected("a list `[...]`, a list name or `cidr(\"...\")` after `in`")),
        }
    }

    fn primary(&mut self, in_list: bool) -> Result<Operand, SyntaxError> {
        let token = self.bump();
        let span = token.span.clone();
        Ok(match token.tok {
            Tok::Word(word) if word == "cidr" && self.peek().tok == Tok::LParen => {
                self.bump();
                let arg = self.bump();
                let Tok::Str(text) = arg.tok else {
                    self.pos -= usize::from(arg.tok != Tok::Eof);
                    return Err(self.expected("a quoted network such as \"10.0.0.0/8\""));
                };
                let close = self.expect(&Tok::RParen, "`)`")?;
                let _ = arg.span;
                Operand::Cidr(text, span.start..close.span.end)
            }
            Tok::Word(word) if in_list => Operand::Str(word, span),
            Tok::Word(word) => Operand::Name(word, span),
            Tok::Str(s) => Operand::Str(s, span),
            Tok::Int(i) => Operand::Int(i, span),
            Tok::Float(x) => Operand::Float(x, span),
            Tok::True => Operand::Bool(true, span),
            Tok::False => Operand::Bool(false, span),
            Tok::LBracket if !in_list => self.list(span.start)?,
            _ => {
                self.pos -= usize::from(token.tok != Tok::Eof);
                return Err(self.expected(if in_list {
                    "a list item (a string, number, word or cidr(...))"
                } else {
                    "a field, a value or `(`"
                }));
            }
        })
    }

    fn list(&mut self, start: usize) -> Result<Operand, SyntaxError> {
        let mut items = Vec::new();
        loop {
            if self.peek().tok == Tok::RBracket {
                let end = self.bump().span.end;
                return Ok(Operand::List(items, start..end));
            }
            items.push(self.primary(true)?);
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBracket => {}
                _ => return Err(self.expected("`,` or `]`")),
            }
        }
    }
}

fn unknown_method(name: &str, span: Span) -> SyntaxError {
    SyntaxError::new(
        span,
        format!("expected a method (contains, startswith, endswith, matches), found `{name}`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str, span: Span) -> Operand {
        Operand::Name(s.to_string(), span)
    }

    fn err(text: &str) -> SyntaxError {
        parse(text).expect_err("should not parse")
    }

    /// A compact rendering of the tree, to test shape and precedence.
    fn show(ast: &Ast) -> String {
        fn op(o: &Operand) -> String {
            match o {
                Operand::Name(n, _) => n.clone(),
                Operand::Str(s, _) => format!("{s:?}"),
                Operand::Int(i, _) => i.to_string(),
                Operand::Float(x, _) => x.to_string(),
                Operand::Bool(b, _) => b.to_string(),
                Operand::List(items, _) => {
                    format!("[{}]", items.iter().map(op).collect::<Vec<_>>().join(","))
                }
                Operand::Cidr(c, _) => format!("cidr({c})"),
                Operand::BitAnd(a, b, _) => format!("({}&{})", op(a), op(b)),
            }
        }
        match ast {
            Ast::Or(t) => format!("or({})", t.iter().map(show).collect::<Vec<_>>().join(" ")),
            Ast::And(t) => format!("and({})", t.iter().map(show).collect::<Vec<_>>().join(" ")),
            Ast::Not(a) => format!("not({})", show(a)),
            Ast::Cmp {
                lhs, op: o, rhs, ..
            } => format!("{}{}{}", op(lhs), o.as_str(), op(rhs)),
            Ast::In { lhs, set, .. } => format!("{} in {}", op(lhs), op(set)),
            Ast::Call {
                target,
                method,
                arg,
                ..
            } => format!("{}.{}({})", op(target), method.as_str(), op(arg)),
            Ast::Value(v) => op(v),
        }
    }

    fn shape(text: &str) -> String {
        show(&parse(text).expect("parses"))
    }

    #[test]
    fn seed_condition() {
        let ast = parse("process.path.contains('/tmp/')").expect("parses");
        assert_eq!(
            ast,
            Ast::Call {
                target: name("process.path", 0..12),
                method: Method::Contains,
                method_span: 13..21,
                arg: Operand::Str("/tmp/".to_string(), 22..29),
            }
        );
    }

    #[test]
    fn every_comparison() {
        for (text, op) in [
            ("a == 1", CmpOp::Eq),
            ("a != 1", CmpOp::Ne),
            ("a < 1", CmpOp::Lt),
            ("a <= 1", CmpOp::Le),
            ("a > 1", CmpOp::Gt),
            ("a >= 1", CmpOp::Ge),
        ] {
            let Ast::Cmp {
                op: got, op_span, ..
            } = parse(text).expect("parses")
            else {
                panic!("{text}: not a comparison");
            };
            assert_eq!(got, op, "{text}");
            assert_eq!(op_span.start, 2, "{text}");
        }
    }

    #[test]
    fn methods_and_sets() {
        assert_eq!(shape("a.b.startswith('x')"), "a.b.startswith(\"x\")");
        assert_eq!(shape("a.b.endswith(\"x\")"), "a.b.endswith(\"x\")");
        assert_eq!(shape("a.matches('^x$')"), "a.matches(\"^x$\")");
        assert_eq!(shape("a .contains('x')"), "a.contains(\"x\")");
        assert_eq!(
            shape("a in [sh, 'b c', 3, -1,]"),
            "a in [\"sh\",\"b c\",3,-1]"
        );
        assert_eq!(shape("a in shells"), "a in shells");
        assert_eq!(shape("a in cidr(\"10.0.0.0/8\")"), "a in cidr(10.0.0.0/8)");
        assert_eq!(
            shape("a in [cidr('10.0.0.0/8'), '::1']"),
            "a in [cidr(10.0.0.0/8),\"::1\"]"
        );
        assert_eq!(shape("a in []"), "a in []");
        assert_eq!(shape("m & 0o4000 != 0"), "(m&2048)!=0");
        assert_eq!(shape("m & 0o4000 & 7 == 0"), "((m&2048)&7)==0");
    }

    #[test]
    fn precedence() {
        assert_eq!(shape("a || b && c"), "or(a and(b c))");
        assert_eq!(shape("a && b || c"), "or(and(a b) c)");
        assert_eq!(shape("(a || b) && c"), "and(or(a b) c)");
        assert_eq!(shape("!a && b"), "and(not(a) b)");
        assert_eq!(shape("!a == 1"), "not(a==1)");
        assert_eq!(
            shape("not a.contains('x') or b"),
            "or(not(a.contains(\"x\")) b)"
        );
        assert_eq!(shape("a and b and c"), "and(a b c)");
        assert_eq!(shape("!!a"), "not(not(a))");
        assert_eq!(shape("true || false"), "or(true false)");
        assert_eq!(
            shape("x == 1 && y != 'z' || w in [a]"),
            "or(and(x==1 y!=\"z\") w in [\"a\"])"
        );
    }

    #[test]
    fn error_positions() {
        let e = err("a == ");
        assert_eq!(e.span, 5..5);
        assert_eq!(
            e.message,
            "expected a field, a value or `(`, found the end of the condition"
        );

        let e = err("(a == 1");
        assert_eq!(e.span, 7..7);
        assert_eq!(e.message, "expected `)`, found the end of the condition");

        let e = err("a == 1)");
        assert_eq!(e.span, 6..7);
        assert_eq!(
            e.message,
            "expected `&&`, `||` or the end of the condition (unbalanced `)`), found `)`"
        );

        let e = err("a == 1 b");
        assert_eq!(e.span, 7..8);
        assert_eq!(
            e.message,
            "expected `&&`, `||` or the end of the condition, found `b`"
        );

        let e = err("process.name.has('x')");
        assert_eq!(e.span, 13..16);
        assert_eq!(
            e.message,
            "expected a method (contains, startswith, endswith, matches), found `has`"
        );

        let e = err("a.contains('x', 'y')");
        assert_eq!(e.span, 14..15);
        assert_eq!(
            e.message,
            "expected `)` (a method takes one argument), found `,`"
        );

        let e = err("a in 3");
        assert_eq!(e.span, 5..6);
        assert_eq!(
            e.message,
            "expected a list `[...]`, a list name or `cidr(\"...\")` after `in`, found number 3"
        );

        let e = err("a in [b c]");
        assert_eq!(e.span, 8..9);
        assert_eq!(e.message, "expected `,` or `]`, found `c`");

        let e = err("a in cidr(10)");
        assert_eq!(e.span, 10..12);

        let e = err("'x'");
        assert_eq!(e.span, 3..3);
        assert_eq!(
            e.message,
            "expected a comparison (`==`, `!=`, `<`, ...), `in` or a method call, found the end of the condition"
        );

        let e = err("a == 1 == 2");
        assert_eq!(e.span, 7..9);

        let e = err("&& a");
        assert_eq!(e.span, 0..2);
        assert_eq!(e.message, "expected a field, a value or `(`, found `&&`");

        let e = err("contains('x')");
        assert_eq!(e.span, 0..8);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&text).is_err());
        let text = format!("{}a", "!".repeat(200));
        assert!(parse(&text).is_err());
    }
}
