//! The part of the Kusto Query Language that Azure Resource Graph queries in this emulator
//! may use: a table (`Resources`, `ResourceContainers`) followed by `where`, `project`,
//! `order by` / `sort by`, `take` / `limit` and `count`. Predicates compare a column path
//! (`type`, `properties.provisioningState`, `tags['team']`) with literals through `==`,
//! `!=`, `=~`, `!~`, `<`, `<=`, `>`, `>=`, `in`, `in~`, `!in`, `!in~`, `contains`, `has`,
//! `startswith`, `endswith` (and their `!` negations), `isempty()`, `isnotempty()`,
//! `isnull()`, `isnotnull()`, combined with `and`, `or`, `not()` and parentheses.
//!
//! Anything else is refused with the position of the first token not understood, so a
//! query never silently means something else here than in Azure.

use std::cmp::Ordering;

use serde_json::Value;

/// Why a query was refused: what, and at which character (0-based) of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// What is wrong.
    pub message: String,
    /// Character position of the offending token.
    pub position: usize,
    /// The offending token (empty at the end of the query).
    pub token: String,
}

/// The table a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `Resources`: every resource below resource groups.
    Resources,
    /// `ResourceContainers`: subscriptions and resource groups.
    ResourceContainers,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The table read.
    pub table: Table,
    /// Operators applied in order.
    pub ops: Vec<Op>,
}

/// One tabular operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `where <predicate>`.
    Where(Expr),
    /// `project a, b = c.d`: output column name and the path it reads.
    Project(Vec<(String, Path)>),
    /// `order by a asc, b desc` (KQL's default is descending).
    Order(Vec<(Path, bool)>),
    /// `take n` / `limit n`.
    Take(usize),
    /// `count`: one row with a `Count` column.
    Count,
}

/// A column path: a column followed by `.field`, `['field']` or `[index]` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(pub Vec<Step>);

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A column or field name.
    Field(String),
    /// An array index.
    Index(usize),
}

/// A predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// It does not hold.
    Not(Box<Expr>),
    /// `path <op> literal(s)`.
    Compare(Path, CmpOp, Vec<Value>),
    /// `isempty(path)` (true) / `isnotempty(path)` (false).
    Empty(Path, bool),
    /// `isnull(path)` (true) / `isnotnull(path)` (false).
    Null(Path, bool),
}

/// A comparison operator; `negated` flips the outcome (`!=`, `!~`, `!in`, `!contains` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmpOp {
    /// What is compared.
    pub kind: CmpKind,
    /// Compared case-insensitively.
    pub insensitive: bool,
    /// The outcome is negated.
    pub negated: bool,
}

/// What a comparison checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpKind {
    /// Equal.
    Eq,
    /// Less than / less or equal / greater than / greater or equal.
    Order(Ordering, bool),
    /// Equal to one of a list.
    In,
    /// Contains the literal.
    Contains,
    /// Contains the literal as a whole term.
    Has,
    /// Starts with the literal.
    StartsWith,
    /// Ends with the literal.
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Punct(&'static str),
}

const PUNCT: [&str; 16] = [
    "==", "!=", "=~", "!~", "<=", ">=", "|", "(", ")", ",", ".", "[", "]", "=", "<", ">",
];

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let verbatim = c == '@' && matches!(chars.get(i + 1), Some('\'' | '"'));
        if c == '\'' || c == '"' || verbatim {
            if verbatim {
                i += 1;
            }
            let quote = chars[i];
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(QueryError {
                        message: "a string literal is not closed".into(),
                        position: start,
                        token: chars[start..].iter().collect(),
                    });
                };
                i += 1;
                if ch == quote {
                    break;
                }
                if ch == '\\' && !verbatim {
                    let escaped = chars.get(i).copied().unwrap_or('\\');
                    i += 1;
                    s.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    s.push(ch);
                }
            }
            out.push((Tok::Str(s), start));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text.parse().map_err(|_| QueryError {
                message: format!("'{text}' is not a number"),
                position: start,
                token: text.clone(),
            })?;
            out.push((Tok::Num(n), start));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            // `in~`, `has_cs` style suffixes stay part of the operator word.
            if chars.get(i) == Some(&'~') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else if c == '!'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphabetic() && *n != '=' && *n != '~')
        {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if chars.get(i) == Some(&'~') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) else {
                return Err(QueryError {
                    message: format!("unexpected character '{c}'"),
                    position: start,
                    token: c.to_string(),
                });
            };
            i += p.chars().count();
            out.push((Tok::Punct(p), start));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
}

fn kw(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, QueryError> {
        let (token, position) = match self.toks.get(self.at) {
            Some((t, p)) => (
                match t {
                    Tok::Ident(s) | Tok::Str(s) => s.clone(),
                    Tok::Num(n) => n.to_string(),
                    Tok::Punct(p) => p.to_string(),
                },
                *p,
            ),
            None => (String::new(), self.end),
        };
        Err(QueryError {
            message: message.into(),
            position,
            token,
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        t
    }

    fn punct(&mut self, p: &'static str) -> Result<(), QueryError> {
        if self.peek() == Some(&Tok::Punct(p)) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(format!("expected '{p}'"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, QueryError> {
        match self.peek() {
            Some(Tok::Ident(s)) if !s.ends_with('~') && !s.starts_with('!') => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => self.fail(format!("expected {what}")),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        let table = match self.peek() {
            Some(Tok::Ident(t)) if t.eq_ignore_ascii_case("resources") => Table::Resources,
            Some(Tok::Ident(t)) if t.eq_ignore_ascii_case("resourcecontainers") => {
                Table::ResourceContainers
            }
            _ => {
                return self.fail(
                    "the query must start with a table: Resources or ResourceContainers (the tables this emulator serves)",
                );
            }
        };
        self.at += 1;
        let mut ops = Vec::new();
        while self.peek().is_some() {
            self.punct("|")?;
            ops.push(self.op()?);
        }
        Ok(Query { table, ops })
    }

    fn op(&mut self) -> Result<Op, QueryError> {
        let Some(Tok::Ident(word)) = self.peek().cloned() else {
            return self.fail("expected a tabular operator");
        };
        let word = word.to_ascii_lowercase();
        match word.as_str() {
            "where" => {
                self.at += 1;
                Ok(Op::Where(self.or()?))
            }
            "project" => {
                self.at += 1;
                let mut cols = Vec::new();
                loop {
                    let path = self.path()?;
                    let col = if self.peek() == Some(&Tok::Punct("=")) {
                        self.at += 1;
                        match path.0.as_slice() {
                            [Step::Field(name)] => (name.clone(), self.path()?),
                            _ => return self.fail("a projected column's name is one word"),
                        }
                    } else {
                        let name = match path.0.last() {
                            Some(Step::Field(f)) => f.clone(),
                            _ => return self.fail("name a projected array element: name = path"),
                        };
                        (name, path)
                    };
                    cols.push(col);
                    if self.peek() != Some(&Tok::Punct(",")) {
                        break;
                    }
                    self.at += 1;
                }
                Ok(Op::Project(cols))
            }
            "order" | "sort" => {
                self.at += 1;
                if !kw(self.peek(), "by") {
                    return self.fail("expected 'by'");
                }
                self.at += 1;
                let mut keys = Vec::new();
                loop {
                    let path = self.path()?;
                    let ascending = if kw(self.peek(), "asc") {
                        self.at += 1;
                        true
                    } else {
                        if kw(self.peek(), "desc") {
                            self.at += 1;
                        }
                        false
                    };
                    keys.push((path, ascending));
                    if self.peek() != Some(&Tok::Punct(",")) {
                        break;
                    }
                    self.at += 1;
                }
                Ok(Op::Order(keys))
            }
            "take" | "limit" => {
                self.at += 1;
                match self.next() {
                    Some(Tok::Num(n)) if n >= 0.0 && n.fract() == 0.0 => Ok(Op::Take(n as usize)),
                    _ => {
                        self.at -= 1;
                        self.fail("expected a row count")
                    }
                }
            }
            "count" => {
                self.at += 1;
                Ok(Op::Count)
            }
            _ => self.fail(format!(
                "the operator '{word}' is not served by this emulator (where, project, order by, sort by, take, limit and count are)"
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while kw(self.peek(), "or") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        while kw(self.peek(), "and") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.peek() == Some(&Tok::Punct("(")) {
            self.at += 1;
            let e = self.or()?;
            self.punct(")")?;
            return Ok(e);
        }
        if let Some(Tok::Ident(word)) = self.peek().cloned()
            && self.toks.get(self.at + 1).map(|(t, _)| t) == Some(&Tok::Punct("("))
        {
            let word = word.to_ascii_lowercase();
            let call = match word.as_str() {
                "not" => None,
                "isempty" | "isnotempty" | "isnull" | "isnotnull" => Some(word.clone()),
                _ => {
                    return self.fail(format!(
                        "the function '{word}' is not served by this emulator (not, isempty, isnotempty, isnull and isnotnull are)"
                    ));
                }
            };
            self.at += 2;
            let e = match call {
                None => Expr::Not(Box::new(self.or()?)),
                Some(f) => {
                    let path = self.path()?;
                    match f.as_str() {
                        "isempty" => Expr::Empty(path, true),
                        "isnotempty" => Expr::Empty(path, false),
                        "isnull" => Expr::Null(path, true),
                        _ => Expr::Null(path, false),
                    }
                }
            };
            self.punct(")")?;
            return Ok(e);
        }
        let path = self.path()?;
        let op = self.cmp_op()?;
        let values = if op.kind == CmpKind::In {
            self.punct("(")?;
            let mut values = vec![self.literal()?];
            while self.peek() == Some(&Tok::Punct(",")) {
                self.at += 1;
                values.push(self.literal()?);
            }
            self.punct(")")?;
            values
        } else {
            vec![self.literal()?]
        };
        Ok(Expr::Compare(path, op, values))
    }

    fn cmp_op(&mut self) -> Result<CmpOp, QueryError> {
        let op = |kind, insensitive, negated| CmpOp {
            kind,
            insensitive,
            negated,
        };
        let found = match self.peek() {
            Some(Tok::Punct(p)) => match *p {
                "==" => Some(op(CmpKind::Eq, false, false)),
                "!=" => Some(op(CmpKind::Eq, false, true)),
                "=~" => Some(op(CmpKind::Eq, true, false)),
                "!~" => Some(op(CmpKind::Eq, true, true)),
                "<" => Some(op(CmpKind::Order(Ordering::Less, false), false, false)),
                "<=" => Some(op(CmpKind::Order(Ordering::Less, true), false, false)),
                ">" => Some(op(CmpKind::Order(Ordering::Greater, false), false, false)),
                ">=" => Some(op(CmpKind::Order(Ordering::Greater, true), false, false)),
                _ => None,
            },
            Some(Tok::Ident(w)) => {
                let w = w.to_ascii_lowercase();
                let (negated, w) = match w.strip_prefix('!') {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, w),
                };
                match w.as_str() {
                    "in" => Some(op(CmpKind::In, false, negated)),
                    "in~" => Some(op(CmpKind::In, true, negated)),
                    "contains" => Some(op(CmpKind::Contains, true, negated)),
                    "has" => Some(op(CmpKind::Has, true, negated)),
                    "startswith" => Some(op(CmpKind::StartsWith, true, negated)),
                    "endswith" => Some(op(CmpKind::EndsWith, true, negated)),
                    _ => None,
                }
            }
            _ => None,
        };
        match found {
            Some(op) => {
                self.at += 1;
                Ok(op)
            }
            None => self.fail(
                "expected a comparison (==, !=, =~, !~, <, <=, >, >=, in, in~, contains, has, startswith, endswith)",
            ),
        }
    }

    fn literal(&mut self) -> Result<Value, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Value::from(s)),
            Some(Tok::Num(n)) => {
                Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => {
                self.at -= 1;
                self.fail("expected a literal (a quoted string, a number, true or false)")
            }
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let mut steps = vec![Step::Field(self.ident("a column name")?)];
        loop {
            match self.peek() {
                Some(Tok::Punct(".")) => {
                    self.at += 1;
                    steps.push(Step::Field(self.ident("a field name after '.'")?));
                }
                Some(Tok::Punct("[")) => {
                    self.at += 1;
                    match self.next() {
                        Some(Tok::Str(s)) => steps.push(Step::Field(s)),
                        Some(Tok::Num(n)) if n >= 0.0 && n.fract() == 0.0 => {
                            steps.push(Step::Index(n as usize));
                        }
                        _ => {
                            self.at -= 1;
                            return self.fail("expected a quoted field name or an index");
                        }
                    }
                    self.punct("]")?;
                }
                _ => return Ok(Path(steps)),
            }
        }
    }
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let toks = tokenize(text)?;
    let mut parser = Parser {
        toks,
        at: 0,
        end: text.chars().count(),
    };
    parser.query()
}

impl Path {
    /// The value at this path in `row` (column names compare case-sensitively, as in
    /// Kusto; fields inside dynamic values case-insensitively when no exact match exists).
    pub fn get<'a>(&self, row: &'a Value) -> Option<&'a Value> {
        let mut at = row;
        for step in &self.0 {
            at = match step {
                Step::Field(f) => {
                    let obj = at.as_object()?;
                    obj.get(f).or_else(|| {
                        obj.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(f))
                            .map(|(_, v)| v)
                    })?
                }
                Step::Index(i) => at.as_array()?.get(*i)?,
            };
        }
        Some(at)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn same(a: &Value, b: &Value, insensitive: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => match (text(a), text(b)) {
            (Some(x), Some(y)) if insensitive => x.eq_ignore_ascii_case(&y),
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn has_term(haystack: &str, term: &str) -> bool {
    let term = term.to_lowercase();
    haystack
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .any(|t| t == term)
}

impl Expr {
    /// Whether `row` satisfies the predicate.
    pub fn matches(&self, row: &Value) -> bool {
        match self {
            Self::And(a, b) => a.matches(row) && b.matches(row),
            Self::Or(a, b) => a.matches(row) || b.matches(row),
            Self::Not(e) => !e.matches(row),
            Self::Empty(p, empty) => {
                let is_empty = match p.get(row) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.is_empty(),
                    Some(_) => false,
                };
                is_empty == *empty
            }
            Self::Null(p, null) => matches!(p.get(row), None | Some(Value::Null)) == *null,
            Self::Compare(p, op, values) => {
                let value = p.get(row).unwrap_or(&Value::Null);
                let lit = &values[0];
                let hit = match op.kind {
                    CmpKind::Eq => same(value, lit, op.insensitive),
                    CmpKind::In => values.iter().any(|v| same(value, v, op.insensitive)),
                    CmpKind::Order(want, or_equal) => compare(value, lit)
                        .is_some_and(|o| o == want || (or_equal && o == Ordering::Equal)),
                    CmpKind::Contains | CmpKind::Has | CmpKind::StartsWith | CmpKind::EndsWith => {
                        match (text(value), text(lit)) {
                            (Some(v), Some(l)) => {
                                let (v, l) = (v.to_lowercase(), l.to_lowercase());
                                match op.kind {
                                    CmpKind::Contains => v.contains(&l),
                                    CmpKind::Has => has_term(&v, &l),
                                    CmpKind::StartsWith => v.starts_with(&l),
                                    _ => v.ends_with(&l),
                                }
                            }
                            _ => false,
                        }
                    }
                };
                hit != op.negated
            }
        }
    }
}

/// Orders two values as Kusto sorts them: numbers numerically, strings ordinally, nulls
/// first; `None` when they cannot be compared.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => Some(text(a)?.cmp(&text(b)?)),
    }
}

impl Expr {
    /// Whether every column the predicate reads is one of `columns`.
    pub fn reads_only(&self, columns: &[&str]) -> bool {
        match self {
            Self::And(a, b) | Self::Or(a, b) => a.reads_only(columns) && b.reads_only(columns),
            Self::Not(e) => e.reads_only(columns),
            Self::Compare(p, _, _) | Self::Empty(p, _) | Self::Null(p, _) => {
                matches!(p.0.first(), Some(Step::Field(f)) if columns.contains(&f.as_str()))
            }
        }
    }
}

impl Query {
    /// The `where` predicates before any other operator that read only `columns`: a row
    /// they refuse is not in the answer, whatever its other columns hold.
    pub fn leading_filters_on(&self, columns: &[&str]) -> Vec<&Expr> {
        self.ops
            .iter()
            .map_while(|op| match op {
                Op::Where(e) => Some(e),
                _ => None,
            })
            .filter(|e| e.reads_only(columns))
            .collect()
    }

    /// The output's columns in order, when the query chose them (`project`, `count`).
    pub fn columns(&self) -> Option<Vec<String>> {
        self.ops.iter().fold(None, |cols, op| match op {
            Op::Project(p) => Some(p.iter().map(|(name, _)| name.clone()).collect()),
            Op::Count => Some(vec!["Count".to_string()]),
            _ => cols,
        })
    }

    /// The rows of `table` the query selects, in order, each with the query's columns,
    /// and whether the output keeps each row's `id` (needed to page through it).
    pub fn run(&self, mut rows: Vec<Value>) -> (Vec<Value>, bool) {
        let mut keeps_id = true;
        for op in &self.ops {
            match op {
                Op::Where(e) => rows.retain(|r| e.matches(r)),
                Op::Order(keys) => rows.sort_by(|a, b| {
                    for (path, ascending) in keys {
                        let (x, y) = (
                            path.get(a).unwrap_or(&Value::Null),
                            path.get(b).unwrap_or(&Value::Null),
                        );
                        let o = compare(x, y).unwrap_or(Ordering::Equal);
                        let o = if *ascending { o } else { o.reverse() };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    Ordering::Equal
                }),
                Op::Take(n) => rows.truncate(*n),
                Op::Project(cols) => {
                    keeps_id = cols.iter().any(|(name, _)| name == "id");
                    rows = rows
                        .into_iter()
                        .map(|r| {
                            let mut out = serde_json::Map::new();
                            for (name, path) in cols {
                                out.insert(
                                    name.clone(),
                                    path.get(&r).cloned().unwrap_or(Value::Null),
                                );
                            }
                            Value::Object(out)
                        })
                        .collect();
                }
                Op::Count => {
                    keeps_id = false;
                    rows = vec![serde_json::json!({ "Count": rows.len() })];
                }
            }
        }
        (rows, keeps_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows() -> Vec<Value> {
        vec![
            json!({"id": "/a", "name": "vm1", "type": "microsoft.compute/virtualmachines", "resourceGroup": "rg1",
                   "tags": {"azlin.io/owner": "ns/one"}, "properties": {"provisioningState": "Succeeded", "n": 3}}),
            json!({"id": "/b", "name": "nic1", "type": "microsoft.network/networkinterfaces", "resourceGroup": "rg1",
                   "tags": null, "properties": {"provisioningState": "Updating", "n": 7}}),
            json!({"id": "/c", "name": "VM2", "type": "microsoft.compute/virtualmachines", "resourceGroup": "rg2",
                   "tags": {}, "properties": {"provisioningState": "Succeeded", "n": 5}}),
        ]
    }

    fn names(q: &str) -> Vec<String> {
        let (out, _) = parse(q).expect("parses").run(rows());
        out.iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn filters_orders_takes_and_projects() {
        assert_eq!(
            names(
                "Resources | where type =~ 'Microsoft.Compute/virtualMachines' | order by name asc"
            ),
            ["VM2", "vm1"]
        );
        assert_eq!(
            names("resources | where resourceGroup == 'rg1' and properties.n > 4"),
            ["nic1"]
        );
        assert_eq!(
            names(
                "Resources | where type in~ ('MICROSOFT.NETWORK/networkInterfaces', 'x') or name startswith 'vm2'"
            ),
            ["nic1", "VM2"]
        );
        assert_eq!(
            names("Resources | where tags['azlin.io/owner'] == \"ns/one\""),
            ["vm1"]
        );
        assert_eq!(
            names("Resources | where isempty(tags['azlin.io/owner'])"),
            ["nic1", "VM2"]
        );
        assert_eq!(
            names("Resources | where not(name has 'vm1') | sort by properties.n"),
            ["nic1", "VM2"]
        );
        assert_eq!(
            names("Resources | where name !in ('vm1') | take 1"),
            ["nic1"]
        );
        let (out, keeps_id) =
            parse("Resources | project name, state = properties.provisioningState")
                .unwrap()
                .run(rows());
        assert!(!keeps_id);
        assert_eq!(out[1], json!({"name": "nic1", "state": "Updating"}));
        let (out, _) = parse("Resources | where name == 'vm1' | count")
            .unwrap()
            .run(rows());
        assert_eq!(out, [json!({"Count": 1})]);
    }

    #[test]
    fn what_is_not_understood_is_refused_where_it_stands() {
        let e = parse("Resources | summarize count() by type").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (12, "summarize"));
        assert!(e.message.contains("not served"), "{}", e.message);
        let e = parse("Resources | where name = 'x'").unwrap_err();
        assert_eq!(e.position, 23);
        let e = parse("VirtualMachines").unwrap_err();
        assert_eq!(e.position, 0);
        assert!(parse("Resources | where name == 'unclosed").is_err());
        assert!(parse("Resources | where name == 'x' |").is_err());
    }
}
