//! Syntax trees → evaluable [`Node`]s: names resolved (fields, macros, lists), types checked,
//! regexes and networks compiled, `event.type` tests folded into type masks.

use std::collections::{HashMap, HashSet};

use super::eval::{IpNet, Node, NumExpr, Number, Pattern, StrSet, StrTest, Substring};
use super::fields::{self, ALL_TYPES, Field, IpField, StrField, TextField, TypeMask, type_bit};
use super::parser::{Ast, CmpOp, Method, Operand, Span};
use crate::event::EventType;

/// Which text a span belongs to (a rule's condition or a macro's body); the loader knows
/// the file and position of each.
pub type SourceId = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub source: SourceId,
    pub span: Span,
    pub message: String,
}

/// A value of a named list.
#[derive(Clone, Debug, PartialEq)]
pub enum ListItem {
    Str(String),
    Num(Number),
}

pub struct MacroDef {
    pub source: SourceId,
    pub ast: Ast,
}

enum MacroState {
    InProgress,
    /// The compiled body and its memo slot.
    Done(Node, u32),
    /// Its error was reported when it was compiled; users of it stay quiet.
    Failed,
}

/// Compiles conditions against the global lists and macros, compiling each macro once.
pub struct Compiler<'a> {
    lists: &'a HashMap<String, Vec<ListItem>>,
    macros: &'a HashMap<String, MacroDef>,
    done: HashMap<String, MacroState>,
    /// Errors found in macro bodies (each reported once).
    pub macro_errors: Vec<CompileError>,
    /// Whether any compiled condition reads `parent.path`.
    pub uses_parent_path: bool,
    /// Memo slots handed out (one per compiled macro).
    pub memo_slots: u32,
    /// Macros being compiled inside one another right now.
    depth: usize,
}

/// Macros may use macros this deep (bounds recursion in compiling and evaluating).
const MAX_MACRO_DEPTH: usize = 32;

/// `Err(None)`: the condition uses a macro whose error was already reported.
type Result<T> = std::result::Result<T, Option<CompileError>>;

impl<'a> Compiler<'a> {
    pub fn new(
        lists: &'a HashMap<String, Vec<ListItem>>,
        macros: &'a HashMap<String, MacroDef>,
    ) -> Compiler<'a> {
        Compiler {
            lists,
            macros,
            done: HashMap::new(),
            macro_errors: Vec::new(),
            uses_parent_path: false,
            memo_slots: 0,
            depth: 0,
        }
    }

    /// Compiles a condition; `Ok(None)` when it failed only because a macro it uses is broken.
    pub fn compile(
        &mut self,
        ast: &Ast,
        source: SourceId,
    ) -> std::result::Result<Option<Node>, CompileError> {
        match self.node(ast, source) {
            Ok(node) => Ok(Some(simplify(node))),
            Err(Some(e)) => Err(e),
            Err(None) => Ok(None),
        }
    }

    /// Compiles every macro, so errors in unused ones are reported too.
    pub fn compile_all_macros(&mut self) {
        let mut names: Vec<&String> = self.macros.keys().collect();
        names.sort();
        for name in names {
            let _ = self.macro_node(name, 0, 0..0);
        }
    }

    fn err(source: SourceId, span: Span, message: impl Into<String>) -> Option<CompileError> {
        Some(CompileError {
            source,
            span,
            message: message.into(),
        })
    }

    fn node(&mut self, ast: &Ast, src: SourceId) -> Result<Node> {
        Ok(match ast {
            Ast::Or(terms) => Node::Any(self.nodes(terms, src)?),
            Ast::And(terms) => Node::All(self.nodes(terms, src)?),
            Ast::Not(inner) => Node::Not(Box::new(self.node(inner, src)?)),
            Ast::Value(Operand::Bool(b, _)) => Node::Const(*b),
            Ast::Value(Operand::Name(name, span)) => {
                if let Some((field, _)) = fields::lookup(name) {
                    return Err(Self::err(
                        src,
                        span.clone(),
                        format!(
                            "expected a condition, found {} field `{name}` on its own (compare it, test it with `in`, or call a method on it)",
                            field.kind()
                        ),
                    ));
                }
                if self.lists.contains_key(name) {
                    return Err(Self::err(
                        src,
                        span.clone(),
                        format!(
                            "expected a condition, found list `{name}` (write `field in {name}`)"
                        ),
                    ));
                }
                self.macro_node(name, src, span.clone())?
            }
            Ast::Value(other) => {
                return Err(Self::err(
                    src,
                    other.span(),
                    "expected a condition, found a value",
                ));
            }
            Ast::Cmp {
                lhs,
                op,
                op_span,
                rhs,
            } => self.comparison(lhs, *op, op_span, rhs, src)?,
            Ast::In { lhs, in_span, set } => self.membership(lhs, in_span, set, src)?,
            Ast::Call {
                target,
                method,
                method_span,
                arg,
            } => self.call(target, *method, method_span, arg, src)?,
        })
    }

    fn nodes(&mut self, asts: &[Ast], src: SourceId) -> Result<Box<[Node]>> {
        asts.iter().map(|a| self.node(a, src)).collect()
    }

    fn macro_node(&mut self, name: &str, src: SourceId, span: Span) -> Result<Node> {
        match self.done.get(name) {
            Some(MacroState::Done(node, slot)) => return Ok(memoized(*slot, node.clone())),
            Some(MacroState::Failed) => return Err(None),
            Some(MacroState::InProgress) => {
                return Err(Self::err(
                    src,
                    span,
                    format!(
                        "expected a macro that does not use itself, found a cycle through `{name}`"
                    ),
                ));
            }
            None => {}
        }
        let Some(def) = self.macros.get(name) else {
            let hint = fields::suggest(name)
                .map(|s| format!(" (did you mean the field `{s}`?)"))
                .unwrap_or_default();
            return Err(Self::err(
                src,
                span,
                format!("expected a field or macro, found unknown name `{name}`{hint}"),
            ));
        };
        if self.depth >= MAX_MACRO_DEPTH {
            return Err(Self::err(
                src,
                span,
                format!(
                    "expected macros nested at most {MAX_MACRO_DEPTH} deep, found `{name}` deeper"
                ),
            ));
        }
        self.done.insert(name.to_string(), MacroState::InProgress);
        self.depth += 1;
        let result = self.node(&def.ast, def.source);
        self.depth -= 1;
        match result {
            Ok(node) => {
                let node = simplify(node);
                let slot = self.memo_slots;
                self.memo_slots += 1;
                self.done
                    .insert(name.to_string(), MacroState::Done(node.clone(), slot));
                Ok(memoized(slot, node))
            }
            Err(e) => {
                self.done.insert(name.to_string(), MacroState::Failed);
                if let Some(e) = e {
                    self.macro_errors.push(e);
                }
                Err(None)
            }
        }
    }

    /// A field name in value position.
    fn field(&mut self, name: &str, span: &Span, src: SourceId) -> Result<Field> {
        if let Some((field, _)) = fields::lookup(name) {
            if field == Field::Str(StrField::ParentPath) {
                self.uses_parent_path = true;
            }
            return Ok(field);
        }
        let what = if self.macros.contains_key(name) {
            format!("macro `{name}` (a macro is a whole condition, not a value)")
        } else if self.lists.contains_key(name) {
            format!("list `{name}` (write `field in {name}`)")
        } else {
            let hint = fields::suggest(name)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!("unknown field `{name}`{hint}")
        };
        Err(Self::err(
            src,
            span.clone(),
            format!("expected a field, found {what}"),
        ))
    }

    fn value(&mut self, operand: &Operand, src: SourceId) -> Result<Val> {
        Ok(match operand {
            Operand::Name(name, span) => Val::Field(self.field(name, span, src)?),
            Operand::Str(s, _) => Val::Str(s.clone()),
            Operand::Int(i, _) => Val::Num(Number::Int(*i)),
            Operand::Float(x, _) => Val::Num(Number::Float(*x)),
            Operand::BitAnd(a, b, _) => {
                let lhs = self.num_expr(a, src)?;
                let Operand::Int(mask, _) = **b else {
                    return Err(Self::err(
                        src,
                        b.span(),
                        format!("expected an integer mask after `&`, found {}", describe(b)),
                    ));
                };
                Val::BitAnd(NumExpr::BitAnd(Box::new(lhs), mask))
            }
            Operand::Bool(..) | Operand::List(..) | Operand::Cidr(..) => {
                return Err(Self::err(
                    src,
                    operand.span(),
                    format!(
                        "expected a field or a single value, found {}",
                        describe(operand)
                    ),
                ));
            }
        })
    }

    fn num_expr(&mut self, operand: &Operand, src: SourceId) -> Result<NumExpr> {
        match self.value(operand, src)? {
            Val::Field(Field::Int(f)) => Ok(NumExpr::Field(f)),
            Val::Field(Field::Risk) => Ok(NumExpr::Risk),
            Val::BitAnd(e) => Ok(e),
            Val::Num(Number::Int(i)) => Ok(NumExpr::Const(Number::Int(i))),
            Val::Field(f) => Err(Self::err(
                src,
                operand.span(),
                format!(
                    "expected an integer field before `&`, found {} field",
                    f.kind()
                ),
            )),
            _ => Err(Self::err(
                src,
                operand.span(),
                format!(
                    "expected an integer field before `&`, found {}",
                    describe(operand)
                ),
            )),
        }
    }

    fn comparison(
        &mut self,
        lhs: &Operand,
        op: CmpOp,
        op_span: &Span,
        rhs: &Operand,
        src: SourceId,
    ) -> Result<Node> {
        let mut a = (self.value(lhs, src)?, lhs);
        let mut b = (self.value(rhs, src)?, rhs);
        let mut op = op;
        // Put the field first: `0 < x` is `x > 0`.
        if !a.0.is_field_like() && b.0.is_field_like() {
            std::mem::swap(&mut a, &mut b);
            op = op.flipped();
        }
        let ((a, a_op), (b, b_op)) = (a, b);
        let text_op = |op: CmpOp| -> Result<bool> {
            match op {
                CmpOp::Eq => Ok(true),
                CmpOp::Ne => Ok(false),
                other => Err(Self::err(
                    src,
                    op_span.clone(),
                    format!(
                        "expected `==` or `!=` to compare text, found `{}`",
                        other.as_str()
                    ),
                )),
            }
        };
        if let (Val::Field(x), Val::Field(y)) = (&a, &b)
            && let (Some(x), Some(y)) = (text_field(*x), text_field(*y))
        {
            return Ok(Node::StrPair(x, y, text_op(op)?));
        }
        Ok(match (a, b) {
            (Val::Field(Field::Str(StrField::EventType)), Val::Str(name)) => {
                let equal = text_op(op)?;
                let bit = event_type_bit(&name, b_op.span(), src)?;
                Node::Types(if equal { bit } else { ALL_TYPES & !bit })
            }
            (Val::Field(Field::Str(f)), Val::Str(s)) => {
                let s = s.into_boxed_str();
                Node::Str(
                    f,
                    if text_op(op)? {
                        StrTest::Eq(s)
                    } else {
                        StrTest::Ne(s)
                    },
                )
            }
            // Text that is no address (a typo, `"localhost"`) stays accepted, as when addresses
            // were compared as text: it equals no address.
            (Val::Field(Field::Ip(f)), Val::Str(s)) => Node::IpEq(f, s.parse().ok(), text_op(op)?),

            (Val::Field(Field::List(_)), _) | (_, Val::Field(Field::List(_))) => {
                return Err(Self::err(
                    src,
                    op_span.clone(),
                    format!(
                        "expected `.contains(x)`, `.matches(re)` or `in [...]` on a list field, found `{}`",
                        op.as_str()
                    ),
                ));
            }
            (a, b) if a.is_numeric() && b.is_numeric() => {
                let (Some(a), Some(b)) = (a.into_num(), b.into_num()) else {
                    return Err(Self::err(src, op_span.clone(), "expected numbers"));
                };
                if let (NumExpr::Const(x), NumExpr::Const(y)) = (&a, &b) {
                    Node::Const(x.compare(op, *y))
                } else {
                    Node::Num(a, op, b)
                }
            }
            (a, _) if !a.is_field_like() => {
                return Err(Self::err(
                    src,
                    a_op.span(),
                    format!(
                        "expected a field on one side of `{}`, found {}",
                        op.as_str(),
                        describe(a_op)
                    ),
                ));
            }
            (a, _) => {
                let expected = if a.is_numeric() {
                    "a number"
                } else {
                    "a string"
                };
                return Err(Self::err(
                    src,
                    b_op.span(),
                    format!(
                        "expected {expected} to compare with {} field `{}`, found {}",
                        a.kind(),
                        field_name(a_op),
                        describe(b_op)
                    ),
                ));
            }
        })
    }

    fn call(
        &mut self,
        target: &Operand,
        method: Method,
        method_span: &Span,
        arg: &Operand,
        src: SourceId,
    ) -> Result<Node> {
        let Operand::Name(name, span) = target else {
            return Err(Self::err(
                src,
                target.span(),
                "expected a field before a method call",
            ));
        };
        let field = self.field(name, span, src)?;
        let Operand::Str(text, arg_span) = arg else {
            return Err(Self::err(
                src,
                arg.span(),
                format!(
                    "expected a string argument to `.{}`, found {}",
                    method.as_str(),
                    describe(arg)
                ),
            ));
        };
        let test = match method {
            Method::Contains => StrTest::Contains(Substring::new(text)),
            Method::StartsWith => StrTest::StartsWith(text.as_str().into()),
            Method::EndsWith => StrTest::EndsWith(text.as_str().into()),
            Method::Matches => StrTest::Matches(Pattern::new(text).map_err(|e| {
                let detail = e.to_string();
                let detail = detail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                Self::err(
                    src,
                    arg_span.clone(),
                    format!("expected a valid regular expression, found {text:?} ({detail})"),
                )
            })?),
        };
        Ok(match field {
            Field::Str(StrField::EventType) => {
                let mask = EventType::ALL
                    .into_iter()
                    .filter(|t| test.test(t.as_str()))
                    .fold(0, |m, t| m | type_bit(t));
                Node::Types(mask)
            }
            Field::Str(f) => Node::Str(f, test),
            Field::Ip(f) => Node::IpText(f, test),
            // On a list, `contains(x)` means an element equals x.
            Field::List(f) => match test {
                StrTest::Contains(v) => Node::List(f, StrTest::Eq(v.into_text())),
                other => Node::List(f, other),
            },
            Field::Int(_) | Field::Risk => {
                return Err(Self::err(
                    src,
                    method_span.clone(),
                    format!(
                        "expected a text or list field before `.{}`, found number field `{name}`",
                        method.as_str()
                    ),
                ));
            }
        })
    }

    fn membership(
        &mut self,
        lhs: &Operand,
        in_span: &Span,
        set: &Operand,
        src: SourceId,
    ) -> Result<Node> {
        let lhs_val = self.value(lhs, src)?;
        if !lhs_val.is_field_like() {
            return Err(Self::err(
                src,
                lhs.span(),
                format!("expected a field before `in`, found {}", describe(lhs)),
            ));
        }
        // Items with the span to blame for each, and a label for messages.
        let (items, origin): (Vec<(SetItem, Span)>, String) = match set {
            Operand::List(items, _) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let v = match item {
                        Operand::Str(s, _) => SetItem::Str(s.clone()),
                        Operand::Int(i, _) => SetItem::Num(Number::Int(*i)),
                        Operand::Float(x, _) => SetItem::Num(Number::Float(*x)),
                        Operand::Cidr(c, _) => SetItem::Cidr(c.clone()),
                        other => {
                            return Err(Self::err(
                                src,
                                other.span(),
                                format!("expected a list item, found {}", describe(other)),
                            ));
                        }
                    };
                    out.push((v, item.span()));
                }
                (out, "the list".to_string())
            }
            Operand::Cidr(c, span) => (
                vec![(SetItem::Cidr(c.clone()), span.clone())],
                "cidr(...)".to_string(),
            ),
            Operand::Name(name, span) => {
                let Some(items) = self.lists.get(name) else {
                    let what = if fields::lookup(name).is_some() {
                        format!("field `{name}`")
                    } else if self.macros.contains_key(name) {
                        format!("macro `{name}`")
                    } else {
                        format!("unknown name `{name}`")
                    };
                    return Err(Self::err(
                        src,
                        span.clone(),
                        format!("expected a list name, found {what}"),
                    ));
                };
                let items = items
                    .iter()
                    .map(|i| {
                        let v = match i {
                            ListItem::Str(s) => SetItem::Str(s.clone()),
                            ListItem::Num(n) => SetItem::Num(*n),
                        };
                        (v, span.clone())
                    })
                    .collect();
                (items, format!("list `{name}`"))
            }
            other => {
                return Err(Self::err(
                    src,
                    other.span(),
                    format!(
                        "expected a list, a list name or cidr(...) after `in`, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        let mismatch = |expected: &str, item: &SetItem, span: &Span| {
            Self::err(
                src,
                span.clone(),
                format!(
                    "expected {expected} in {origin} (for `{}`), found {}",
                    field_name(lhs),
                    item.describe()
                ),
            )
        };
        let cidr_misuse = |item: &SetItem, span: &Span| -> Result<()> {
            if let SetItem::Cidr(_) = item {
                return Err(Self::err(
                    src,
                    span.clone(),
                    format!(
                        "expected an IP address field (net.dst_ip, net.src_ip) before `in cidr(...)`, found `{}`",
                        field_name(lhs)
                    ),
                ));
            }
            Ok(())
        };
        let _ = in_span;
        Ok(match lhs_val {
            Val::Field(Field::Str(StrField::EventType)) => {
                let mut mask = 0;
                for (item, span) in &items {
                    cidr_misuse(item, span)?;
                    let SetItem::Str(name) = item else {
                        return Err(mismatch("event type names", item, span));
                    };
                    mask |= event_type_bit(name, span.clone(), src)?;
                }
                Node::Types(mask)
            }
            Val::Field(Field::Ip(f)) => {
                let mut nets = Vec::with_capacity(items.len());
                for (item, span) in &items {
                    let (SetItem::Str(text) | SetItem::Cidr(text)) = item else {
                        return Err(mismatch("IP addresses or networks", item, span));
                    };
                    let net = IpNet::parse(text).ok_or_else(|| {
                        Self::err(
                            src,
                            span.clone(),
                            format!("expected an IP address or network such as \"10.0.0.0/8\" in {origin}, found {text:?}"),
                        )
                    })?;
                    nets.push(net);
                }
                Node::Ip(f, nets.into_boxed_slice())
            }
            Val::Field(Field::Str(f)) => Node::Str(
                f,
                StrTest::In(self.strings(&items, &mismatch, &cidr_misuse)?),
            ),
            Val::Field(Field::List(f)) => Node::List(
                f,
                StrTest::In(self.strings(&items, &mismatch, &cidr_misuse)?),
            ),
            numeric => {
                let mut nums = Vec::with_capacity(items.len());
                for (item, span) in &items {
                    cidr_misuse(item, span)?;
                    let SetItem::Num(n) = item else {
                        return Err(mismatch("numbers", item, span));
                    };
                    nums.push(*n);
                }
                let Some(expr) = numeric.into_num() else {
                    return Err(Self::err(src, lhs.span(), "expected a field before `in`"));
                };
                Node::NumIn(expr, nums.into_boxed_slice())
            }
        })
    }

    fn strings(
        &self,
        items: &[(SetItem, Span)],
        mismatch: &dyn Fn(&str, &SetItem, &Span) -> Option<CompileError>,
        cidr_misuse: &dyn Fn(&SetItem, &Span) -> Result<()>,
    ) -> Result<StrSet> {
        let mut out = Vec::with_capacity(items.len());
        for (item, span) in items {
            cidr_misuse(item, span)?;
            let SetItem::Str(s) = item else {
                return Err(mismatch("strings", item, span));
            };
            out.push(s.clone());
        }
        Ok(StrSet::new(out))
    }
}

fn event_type_bit(name: &str, span: Span, src: SourceId) -> Result<TypeMask> {
    match EventType::from_name(name) {
        Some(t) => Ok(type_bit(t)),
        None => Err(Compiler::err(
            src,
            span,
            format!(
                "expected an event type ({}), found {name:?}",
                EventType::NAMES.join(", ")
            ),
        )),
    }
}

/// Gives each text search (`.contains()`, `.matches()`) that the conditions of `roots` make
/// more than once per event its own memo slot, numbered from `next_slot`; returns the next
/// free slot.
///
/// Why: the pack's macros repeat searches (`file.path.contains('/.')` opens three of the
/// credential-path macros), and each is a substring search or a regex run over the field
/// for every event of the type; a memo lookup is a fraction of that. A search inside a macro
/// counts once however many rules use the macro, since the macro's own memo already shares
/// it; a search made once is left as it is.
pub(crate) fn share_repeated_searches(roots: &mut [&mut Node], next_slot: usize) -> usize {
    let mut uses: HashMap<SearchKey, usize> = HashMap::new();
    let mut seen_macros = HashSet::new();
    for root in roots.iter() {
        count_searches(root, &mut uses, &mut seen_macros);
    }
    let mut slots: HashMap<SearchKey, u32> = HashMap::new();
    let mut next = next_slot;
    for (key, n) in uses {
        if n > 1 {
            slots.insert(key, next as u32);
            next += 1;
        }
    }
    if !slots.is_empty() {
        for root in roots.iter_mut() {
            memoize_searches(root, &slots);
        }
    }
    next
}

/// A text search: its field, and the text or regex it looks for.
#[derive(PartialEq, Eq, Hash)]
enum SearchKey {
    Contains(StrField, Box<str>),
    Matches(StrField, Box<str>),
}

fn search_key(node: &Node) -> Option<SearchKey> {
    match node {
        Node::Str(f, StrTest::Contains(v)) => Some(SearchKey::Contains(*f, v.as_str().into())),
        Node::Str(f, StrTest::Matches(p)) => Some(SearchKey::Matches(*f, p.as_str().into())),
        _ => None,
    }
}

fn count_searches(
    node: &Node,
    uses: &mut HashMap<SearchKey, usize>,
    seen_macros: &mut HashSet<u32>,
) {
    match node {
        Node::All(nodes) | Node::Any(nodes) => nodes
            .iter()
            .for_each(|n| count_searches(n, uses, seen_macros)),
        Node::Not(inner) => count_searches(inner, uses, seen_macros),
        Node::Memo(slot, inner) => {
            if seen_macros.insert(*slot) {
                count_searches(inner, uses, seen_macros);
            }
        }
        leaf => {
            if let Some(key) = search_key(leaf) {
                *uses.entry(key).or_default() += 1;
            }
        }
    }
}

fn memoize_searches(node: &mut Node, slots: &HashMap<SearchKey, u32>) {
    match node {
        Node::All(nodes) | Node::Any(nodes) => {
            nodes.iter_mut().for_each(|n| memoize_searches(n, slots))
        }
        Node::Not(inner) | Node::Memo(_, inner) => memoize_searches(inner, slots),
        leaf => {
            if let Some(&slot) = search_key(leaf).and_then(|key| slots.get(&key)) {
                let search = std::mem::replace(leaf, Node::Const(false));
                *leaf = Node::Memo(slot, Box::new(search));
            }
        }
    }
}

/// A macro's body behind its memo slot (not for results too cheap to be worth remembering).
fn memoized(slot: u32, node: Node) -> Node {
    match node {
        cheap @ (Node::Const(_) | Node::Types(_) | Node::Memo(..)) => cheap,
        other => Node::Memo(slot, Box::new(other)),
    }
}

/// The field as text, for comparing two fields (numbers and lists are not text).
fn text_field(field: Field) -> Option<TextField> {
    match field {
        Field::Str(f) => Some(TextField::Str(f)),
        Field::Ip(f) => Some(TextField::Ip(f)),
        Field::Int(_) | Field::List(_) | Field::Risk => None,
    }
}

fn field_name(operand: &Operand) -> String {
    match operand {
        Operand::Name(n, _) => n.clone(),
        Operand::BitAnd(a, _, _) => format!("{} & ...", field_name(a)),
        _ => "value".to_string(),
    }
}

fn describe(operand: &Operand) -> String {
    match operand {
        Operand::Name(n, _) => format!("`{n}`"),
        Operand::Str(s, _) => format!("string {s:?}"),
        Operand::Int(i, _) => format!("number {i}"),
        Operand::Float(x, _) => format!("number {x}"),
        Operand::Bool(b, _) => format!("`{b}`"),
        Operand::List(..) => "a list".to_string(),
        Operand::Cidr(c, _) => format!("cidr({c:?})"),
        Operand::BitAnd(..) => "a bit test".to_string(),
    }
}

enum SetItem {
    Str(String),
    Num(Number),
    Cidr(String),
}

impl SetItem {
    fn describe(&self) -> String {
        match self {
            SetItem::Str(s) => format!("string {s:?}"),
            SetItem::Num(Number::Int(i)) => format!("number {i}"),
            SetItem::Num(Number::Float(x)) => format!("number {x}"),
            SetItem::Cidr(c) => format!("cidr({c:?})"),
        }
    }
}

/// A resolved operand.
enum Val {
    Field(Field),
    Str(String),
    Num(Number),
    BitAnd(NumExpr),
}

impl Val {
    fn is_field_like(&self) -> bool {
        matches!(self, Val::Field(_) | Val::BitAnd(_))
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Val::Field(Field::Int(_) | Field::Risk) | Val::Num(_) | Val::BitAnd(_)
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Val::Field(f) => f.kind(),
            Val::Str(_) => "text",
            Val::Num(_) | Val::BitAnd(_) => "number",
        }
    }

    fn into_num(self) -> Option<NumExpr> {
        match self {
            Val::Field(Field::Int(f)) => Some(NumExpr::Field(f)),
            Val::Field(Field::Risk) => Some(NumExpr::Risk),
            Val::Num(n) => Some(NumExpr::Const(n)),
            Val::BitAnd(e) => Some(e),
            _ => None,
        }
    }
}

/// Flattens nested and/or, folds constants.
pub(crate) fn simplify(node: Node) -> Node {
    match node {
        Node::All(nodes) => {
            let mut out = Vec::new();
            for n in nodes.into_vec() {
                match simplify(n) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::All(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.remove(0),
                _ => Node::All(out.into_boxed_slice()),
            }
        }
        Node::Any(nodes) => {
            let mut out = Vec::new();
            for n in nodes.into_vec() {
                match simplify(n) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Any(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::Const(false),
                1 => out.remove(0),
                _ => Node::Any(out.into_boxed_slice()),
            }
        }
        Node::Not(inner) => match simplify(*inner) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(n) => *n,
            Node::Types(m) => Node::Types(ALL_TYPES & !m),
            other => Node::Not(Box::new(other)),
        },
        Node::Memo(slot, inner) => memoized(slot, simplify(*inner)),
        other => other,
    }
}

/// The event types on which `node` may be true, and those on which it is surely true.
pub fn type_bounds(node: &Node) -> (TypeMask, TypeMask) {
    match node {
        Node::Const(true) => (ALL_TYPES, ALL_TYPES),
        Node::Const(false) => (0, 0),
        Node::Types(m) => (*m, *m),
        Node::Not(inner) => {
            let (may, must) = type_bounds(inner);
            (ALL_TYPES & !must, ALL_TYPES & !may)
        }
        Node::All(nodes) => nodes.iter().fold((ALL_TYPES, ALL_TYPES), |(may, must), n| {
            let (m, s) = type_bounds(n);
            (may & m, must & s)
        }),
        Node::Any(nodes) => nodes.iter().fold((0, 0), |(may, must), n| {
            let (m, s) = type_bounds(n);
            (may | m, must | s)
        }),
        Node::Str(f, _) => (presence(FieldRef::Str(*f)), 0),
        Node::Ip(f, _) | Node::IpEq(f, _, _) | Node::IpText(f, _) => {
            (presence(FieldRef::Ip(*f)), 0)
        }
        Node::List(f, _) => (presence(FieldRef::List(*f)), 0),
        Node::StrPair(a, b, _) => (text_presence(*a) & text_presence(*b), 0),
        Node::Num(a, _, b) => (num_presence(a) & num_presence(b), 0),
        Node::NumIn(a, _) => (num_presence(a), 0),
        Node::Memo(_, inner) | Node::PerProcess(_, inner) => type_bounds(inner),
    }
}

enum FieldRef {
    Str(StrField),
    Ip(IpField),
    Int(fields::IntField),
    List(fields::ListField),
}

fn presence(field: FieldRef) -> TypeMask {
    fields::FIELDS
        .iter()
        .filter(|(_, f, _)| match (&field, f) {
            (FieldRef::Str(a), Field::Str(b)) => a == b,
            (FieldRef::Ip(a), Field::Ip(b)) => a == b,
            (FieldRef::Int(a), Field::Int(b)) => a == b,
            (FieldRef::List(a), Field::List(b)) => a == b,
            _ => false,
        })
        .fold(0, |m, (_, _, mask)| m | mask)
}

fn text_presence(field: TextField) -> TypeMask {
    match field {
        TextField::Str(f) => presence(FieldRef::Str(f)),
        TextField::Ip(f) => presence(FieldRef::Ip(f)),
    }
}

fn num_presence(expr: &NumExpr) -> TypeMask {
    match expr {
        NumExpr::Field(f) => presence(FieldRef::Int(*f)),
        NumExpr::Risk | NumExpr::Const(_) => ALL_TYPES,
        NumExpr::BitAnd(inner, _) => num_presence(inner),
    }
}
