//! FlatZinc for the reason stage: a reader for the subset `minizinc -c -G linear` emits, a
//! checker that judges a full assignment against it (every variable's domain, every
//! constraint, the objective), and the LP file (CPLEX format) Debian's `cbc` solves.
//!
//! A solver's answer is never trusted as is: whichever program produced values, [`FlatZinc::check`]
//! recomputes every constraint with exact integer arithmetic (`i128`), so a MIP solver's
//! floating-point tolerances cannot slip a wrong repair through. Optimality is the one claim
//! that cannot be checked cheaply; it is reported as the solver's.
//!
//! The subset: `int`/`bool` parameters, arrays and sets of them; `var` declarations with
//! `int`, range, set or `bool` domains, optionally assigned a constant or another variable;
//! `var` arrays; the constraints `int_lin_le`, `int_lin_eq`, `int_lin_ne`, `int_le`, `int_lt`,
//! `int_eq`, `int_ne` (and `bool_eq`, which the compiler emits as `bool_eq(false,true)` for a
//! model it found inconsistent); `solve satisfy|minimize|maximize`. Anything else is an error naming it,
//! never skipped.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

/// A FlatZinc expression (parameters, arguments, annotations).
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Int(i64),
    Bool(bool),
    Float(f64),
    Str(String),
    Ident(String),
    /// `a[i]`
    Access(String, i64),
    Range(i64, i64),
    Set(Vec<i64>),
    Array(Vec<Expr>),
    Call(String, Vec<Expr>),
}

/// What values a variable may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Domain {
    Int,
    Bool,
    Range { lo: i64, hi: i64 },
    Set { values: Vec<i64> },
}

impl Domain {
    pub fn contains(&self, v: i64) -> bool {
        match self {
            Domain::Int => true,
            Domain::Bool => v == 0 || v == 1,
            Domain::Range { lo, hi } => *lo <= v && v <= *hi,
            Domain::Set { values } => values.binary_search(&v).is_ok(),
        }
    }

    /// Inclusive bounds, if finite.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        match self {
            Domain::Int => None,
            Domain::Bool => Some((0, 1)),
            Domain::Range { lo, hi } => Some((*lo, *hi)),
            Domain::Set { values } => Some((*values.first()?, *values.last()?)),
        }
    }
}

/// A decision variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub domain: Domain,
    /// `= 5` or `= OTHER`: a fixed value or an alias.
    pub value: Option<Operand>,
    /// `::output_var`.
    pub output: bool,
}

/// A variable reference or a constant, as constraint arguments hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Var(usize),
    Const(i64),
}

/// An array of variables (or constants) with `::output_array` dimensions if it is output.
#[derive(Clone, Debug, PartialEq)]
pub struct VarArray {
    pub name: String,
    pub elements: Vec<Operand>,
    pub output_dims: Option<Vec<(i64, i64)>>,
}

/// One linear constraint `sum(coefs[i] * vars[i]) REL rhs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub terms: Vec<(i64, Operand)>,
    pub rel: Rel,
    pub rhs: i64,
    /// The builtin it came from and its 1-based position among the constraints.
    pub builtin: &'static str,
    pub index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rel {
    Le,
    Eq,
    Ne,
}

impl Rel {
    fn holds(self, lhs: i128, rhs: i128) -> bool {
        match self {
            Rel::Le => lhs <= rhs,
            Rel::Eq => lhs == rhs,
            Rel::Ne => lhs != rhs,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Rel::Le => "<=",
            Rel::Eq => "=",
            Rel::Ne => "!=",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    Satisfy,
    Minimize(Operand),
    Maximize(Operand),
}

/// A parsed linear FlatZinc model.
#[derive(Clone, Debug)]
pub struct FlatZinc {
    pub vars: Vec<Var>,
    pub arrays: Vec<VarArray>,
    pub constraints: Vec<Linear>,
    pub goal: Goal,
}

/// A parse or model error, with the line it was found on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("FlatZinc line {line}: {why}")]
pub struct FznError {
    pub line: usize,
    pub why: String,
}

/// Why an assignment is not a solution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// A variable name, or `constraint #N (builtin)`.
    pub what: String,
    pub why: String,
}

/// What [`FlatZinc::check`] established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FznCheck {
    pub variables: usize,
    pub constraints: usize,
    /// The objective's value under the assignment (`None` for satisfaction problems).
    pub objective: Option<i64>,
    /// Empty when the assignment is a solution.
    pub failures: Vec<Failure>,
}

impl FznCheck {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing and parsing.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

const PUNCTS: [&str; 12] = ["::", "..", "[", "]", "(", ")", "{", "}", ",", ":", ";", "="];

impl<'a> Lexer<'a> {
    fn err(&self, why: impl Into<String>) -> FznError {
        FznError {
            line: self.line,
            why: why.into(),
        }
    }

    fn next(&mut self) -> Result<Option<(Tok, usize)>, FznError> {
        // Whitespace and `%` comments.
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'%' => {
                    while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let line = self.line;
        let Some(&c) = self.src.get(self.pos) else {
            return Ok(None);
        };
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            while self
                .src
                .get(self.pos)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                self.pos += 1;
            }
            let s = std::str::from_utf8(&self.src[start..self.pos]).map_err(|e| self.err(e.to_string()))?;
            return Ok(Some((Tok::Ident(s.to_string()), line)));
        }
        if c.is_ascii_digit() || (c == b'-' && self.src.get(self.pos + 1).is_some_and(u8::is_ascii_digit)) {
            let start = self.pos;
            self.pos += 1;
            while self.src.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            // A float has `.digit` or an exponent; `1..5` is a range.
            let is_float = (self.src.get(self.pos) == Some(&b'.')
                && self.src.get(self.pos + 1).is_some_and(u8::is_ascii_digit))
                || matches!(self.src.get(self.pos), Some(b'e' | b'E'));
            if is_float {
                self.pos += 1;
                while self
                    .src
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'e' | b'E' | b'-' | b'+' | b'.'))
                {
                    self.pos += 1;
                }
                let s = std::str::from_utf8(&self.src[start..self.pos]).map_err(|e| self.err(e.to_string()))?;
                let v = s.parse().map_err(|_| self.err(format!("bad float {s}")))?;
                return Ok(Some((Tok::Float(v), line)));
            }
            let s = std::str::from_utf8(&self.src[start..self.pos]).map_err(|e| self.err(e.to_string()))?;
            let v = s
                .parse()
                .map_err(|_| self.err(format!("integer {s} does not fit 64 bits")))?;
            return Ok(Some((Tok::Int(v), line)));
        }
        if c == b'"' {
            let start = self.pos + 1;
            self.pos += 1;
            while self.src.get(self.pos).is_some_and(|c| *c != b'"') {
                if self.src[self.pos] == b'\\' {
                    self.pos += 1;
                }
                self.pos += 1;
            }
            if self.pos >= self.src.len() {
                return Err(self.err("unterminated string"));
            }
            let s = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
            self.pos += 1;
            return Ok(Some((Tok::Str(s), line)));
        }
        for p in PUNCTS {
            if self.src[self.pos..].starts_with(p.as_bytes()) {
                self.pos += p.len();
                return Ok(Some((Tok::Punct(p), line)));
            }
        }
        Err(self.err(format!("unexpected character {:?}", c as char)))
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map(|t| t.1).unwrap_or(1)
    }
    fn err(&self, why: impl Into<String>) -> FznError {
        FznError {
            line: self.line(),
            why: why.into(),
        }
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(q)) if q == s)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), FznError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{p}`, found {:?}", self.peek())))
        }
    }
    fn ident(&mut self) -> Result<String, FznError> {
        match self.bump() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(self.err(format!("expected a name, found {other:?}"))),
        }
    }
    fn int(&mut self) -> Result<i64, FznError> {
        match self.bump() {
            Some(Tok::Int(v)) => Ok(v),
            other => Err(self.err(format!("expected an integer, found {other:?}"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, FznError> {
        let e = match self.bump() {
            Some(Tok::Int(a)) => {
                if self.eat("..") {
                    Expr::Range(a, self.int()?)
                } else {
                    Expr::Int(a)
                }
            }
            Some(Tok::Float(f)) => Expr::Float(f),
            Some(Tok::Str(s)) => Expr::Str(s),
            Some(Tok::Ident(s)) if s == "true" => Expr::Bool(true),
            Some(Tok::Ident(s)) if s == "false" => Expr::Bool(false),
            Some(Tok::Ident(s)) => {
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.eat(")") {
                                break;
                            }
                            self.expect(",")?;
                        }
                    }
                    Expr::Call(s, args)
                } else if self.eat("[") {
                    let i = self.int()?;
                    self.expect("]")?;
                    Expr::Access(s, i)
                } else {
                    Expr::Ident(s)
                }
            }
            Some(Tok::Punct("[")) => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Expr::Array(items)
            }
            Some(Tok::Punct("{")) => {
                let mut items = Vec::new();
                if !self.eat("}") {
                    loop {
                        items.push(self.int()?);
                        if self.eat("}") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                items.sort_unstable();
                items.dedup();
                Expr::Set(items)
            }
            other => return Err(self.err(format!("expected an expression, found {other:?}"))),
        };
        Ok(e)
    }

    /// `:: ann :: ann ...`
    fn annotations(&mut self) -> Result<Vec<Expr>, FznError> {
        let mut anns = Vec::new();
        while self.eat("::") {
            anns.push(self.expr()?);
        }
        Ok(anns)
    }

    /// A type: `int`, `bool`, `float`, `1..5`, `{1,3}`, `set of int`, `set of 1..3`, with `var`
    /// noted. Returns (is_var, domain or None for set/float types).
    fn ty(&mut self) -> Result<(bool, Option<Domain>, &'static str), FznError> {
        let is_var = self.is_ident("var");
        if is_var || self.is_ident("par") {
            self.pos += 1;
        }
        if self.is_ident("set") {
            self.pos += 1;
            if !self.is_ident("of") {
                return Err(self.err("expected `of`"));
            }
            self.pos += 1;
            self.expr()?; // the element type (int or a range)
            return Ok((is_var, None, "set"));
        }
        match self.bump() {
            Some(Tok::Ident(s)) if s == "int" => Ok((is_var, Some(Domain::Int), "int")),
            Some(Tok::Ident(s)) if s == "bool" => Ok((is_var, Some(Domain::Bool), "bool")),
            Some(Tok::Ident(s)) if s == "float" => Ok((is_var, None, "float")),
            Some(Tok::Int(lo)) => {
                self.expect("..")?;
                let hi = self.int()?;
                Ok((is_var, Some(Domain::Range { lo, hi }), "int"))
            }
            Some(Tok::Float(_)) => {
                self.expect("..")?;
                self.bump();
                Ok((is_var, None, "float"))
            }
            Some(Tok::Punct("{")) => {
                self.pos -= 1;
                match self.expr()? {
                    Expr::Set(values) => Ok((is_var, Some(Domain::Set { values }), "int")),
                    _ => Err(self.err("bad set domain")),
                }
            }
            other => Err(self.err(format!("expected a type, found {other:?}"))),
        }
    }
}

/// Parameters and names seen so far, while building the model.
#[derive(Default)]
struct Scope {
    pars: HashMap<String, Expr>,
    vars: HashMap<String, usize>,
    var_arrays: HashMap<String, usize>,
}

impl Scope {
    /// An expression as an operand: a variable, an integer or a bool constant.
    fn operand(&self, e: &Expr, arrays: &[VarArray]) -> Result<Operand, String> {
        match e {
            Expr::Int(v) => Ok(Operand::Const(*v)),
            Expr::Bool(b) => Ok(Operand::Const(*b as i64)),
            Expr::Ident(name) => {
                if let Some(&i) = self.vars.get(name) {
                    return Ok(Operand::Var(i));
                }
                match self.pars.get(name) {
                    Some(Expr::Int(v)) => Ok(Operand::Const(*v)),
                    Some(Expr::Bool(b)) => Ok(Operand::Const(*b as i64)),
                    _ => Err(format!("`{name}` is not a variable or an integer")),
                }
            }
            Expr::Access(name, i) => {
                let items = self.array(&Expr::Ident(name.clone()), arrays)?;
                usize::try_from(*i - 1)
                    .ok()
                    .and_then(|k| items.get(k).copied())
                    .ok_or_else(|| format!("{name}[{i}] is out of range"))
            }
            other => Err(format!("expected a variable or an integer, found {other:?}")),
        }
    }

    /// An expression as an array of operands.
    fn array(&self, e: &Expr, arrays: &[VarArray]) -> Result<Vec<Operand>, String> {
        match e {
            Expr::Array(items) => items.iter().map(|x| self.operand(x, arrays)).collect(),
            Expr::Ident(name) => {
                if let Some(&k) = self.var_arrays.get(name) {
                    return Ok(arrays[k].elements.clone());
                }
                match self.pars.get(name) {
                    Some(Expr::Array(items)) => items.iter().map(|x| self.operand(x, arrays)).collect(),
                    _ => Err(format!("`{name}` is not an array")),
                }
            }
            other => Err(format!("expected an array, found {other:?}")),
        }
    }

    fn constants(&self, e: &Expr, arrays: &[VarArray]) -> Result<Vec<i64>, String> {
        self.array(e, arrays)?
            .into_iter()
            .map(|o| match o {
                Operand::Const(v) => Ok(v),
                Operand::Var(_) => Err("expected constant coefficients".to_string()),
            })
            .collect()
    }
}

impl FlatZinc {
    pub fn parse(text: &str) -> Result<FlatZinc, FznError> {
        let mut lexer = Lexer {
            src: text.as_bytes(),
            pos: 0,
            line: 1,
        };
        let mut toks = Vec::new();
        while let Some(t) = lexer.next()? {
            toks.push(t);
        }
        let mut p = Parser { toks, pos: 0 };
        let mut scope = Scope::default();
        let mut model = FlatZinc {
            vars: Vec::new(),
            arrays: Vec::new(),
            constraints: Vec::new(),
            goal: Goal::Satisfy,
        };
        let mut solved = false;
        while p.peek().is_some() {
            let line = p.line();
            let at = |why: String| FznError { line, why };
            if p.is_ident("predicate") {
                // A solver-specific predicate declaration: skip to its `;`.
                while !p.eat(";") {
                    if p.bump().is_none() {
                        return Err(p.err("unterminated predicate"));
                    }
                }
            } else if p.is_ident("constraint") {
                p.pos += 1;
                let name = p.ident()?;
                let Expr::Call(_, args) = ({
                    p.pos -= 1;
                    p.expr()?
                }) else {
                    return Err(at(format!("constraint {name} has no arguments")));
                };
                p.annotations()?;
                p.expect(";")?;
                let index = model.constraints.len() + 1;
                let linear = model.linear(&scope, &name, &args, index).map_err(at)?;
                model.constraints.push(linear);
            } else if p.is_ident("solve") {
                p.pos += 1;
                p.annotations()?;
                let kind = p.ident()?;
                model.goal = match kind.as_str() {
                    "satisfy" => Goal::Satisfy,
                    "minimize" | "maximize" => {
                        let e = p.expr()?;
                        let o = scope.operand(&e, &model.arrays).map_err(at)?;
                        if kind == "minimize" {
                            Goal::Minimize(o)
                        } else {
                            Goal::Maximize(o)
                        }
                    }
                    other => return Err(at(format!("unknown solve kind {other}"))),
                };
                p.expect(";")?;
                solved = true;
            } else if p.is_ident("array") {
                p.pos += 1;
                p.expect("[")?;
                p.expr()?; // the index set, 1..n
                p.expect("]")?;
                if !p.is_ident("of") {
                    return Err(p.err("expected `of`"));
                }
                p.pos += 1;
                let (is_var, domain, kind) = p.ty()?;
                p.expect(":")?;
                let name = p.ident()?;
                let anns = p.annotations()?;
                p.expect("=")?;
                let value = p.expr()?;
                p.expect(";")?;
                if is_var {
                    if kind != "int" && kind != "bool" {
                        return Err(at(format!(
                            "array {name} of var {kind} is not supported (linear int models only)"
                        )));
                    }
                    let elements = scope.array(&value, &model.arrays).map_err(at)?;
                    let output_dims = anns.iter().find_map(|a| match a {
                        Expr::Call(n, args) if n == "output_array" => match args.first() {
                            Some(Expr::Array(dims)) => Some(
                                dims.iter()
                                    .filter_map(|d| match d {
                                        Expr::Range(a, b) => Some((*a, *b)),
                                        _ => None,
                                    })
                                    .collect(),
                            ),
                            _ => None,
                        },
                        _ => None,
                    });
                    let _ = domain;
                    scope.var_arrays.insert(name.clone(), model.arrays.len());
                    model.arrays.push(VarArray {
                        name,
                        elements,
                        output_dims,
                    });
                } else {
                    scope.pars.insert(name, value);
                }
            } else {
                let (is_var, domain, kind) = p.ty()?;
                p.expect(":")?;
                let name = p.ident()?;
                let anns = p.annotations()?;
                let value = if p.eat("=") { Some(p.expr()?) } else { None };
                p.expect(";")?;
                if !is_var {
                    let value = value.ok_or_else(|| at(format!("parameter {name} has no value")))?;
                    scope.pars.insert(name, value);
                    continue;
                }
                let domain = match domain {
                    Some(d) => d,
                    None => {
                        return Err(at(format!(
                            "var {name}: type var {kind} is not supported (linear int models only)"
                        )))
                    }
                };
                let value = value
                    .map(|v| scope.operand(&v, &model.arrays))
                    .transpose()
                    .map_err(at)?;
                let output = anns.iter().any(|a| matches!(a, Expr::Ident(n) if n == "output_var"));
                scope.vars.insert(name.clone(), model.vars.len());
                model.vars.push(Var {
                    name,
                    domain,
                    value,
                    output,
                });
            }
        }
        if !solved {
            return Err(p.err("no solve item"));
        }
        Ok(model)
    }

    fn linear(&self, scope: &Scope, name: &str, args: &[Expr], index: usize) -> Result<Linear, String> {
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} arguments, has {}", args.len()))
            }
        };
        let (builtin, rel): (&'static str, Rel) = match name {
            "int_lin_le" => ("int_lin_le", Rel::Le),
            "int_lin_eq" => ("int_lin_eq", Rel::Eq),
            "int_lin_ne" => ("int_lin_ne", Rel::Ne),
            "int_le" => ("int_le", Rel::Le),
            "int_lt" => ("int_lt", Rel::Le),
            "int_eq" => ("int_eq", Rel::Eq),
            "int_ne" => ("int_ne", Rel::Ne),
            // What the compiler emits for a model it found inconsistent: `bool_eq(false,true)`.
            "bool_eq" => ("bool_eq", Rel::Eq),
            other => {
                return Err(format!(
                    "constraint {other} is not a linear builtin (compile with `minizinc -c -G linear`)"
                ))
            }
        };
        if builtin.starts_with("int_lin") {
            arity(3)?;
            let coefs = scope.constants(&args[0], &self.arrays)?;
            let vars = scope.array(&args[1], &self.arrays)?;
            if coefs.len() != vars.len() {
                return Err(format!(
                    "{name}: {} coefficients for {} variables",
                    coefs.len(),
                    vars.len()
                ));
            }
            let rhs = match scope.operand(&args[2], &self.arrays)? {
                Operand::Const(v) => v,
                Operand::Var(_) => return Err(format!("{name}: the right-hand side must be a constant")),
            };
            Ok(Linear {
                terms: coefs.into_iter().zip(vars).collect(),
                rel,
                rhs,
                builtin,
                index,
            })
        } else {
            arity(2)?;
            let a = scope.operand(&args[0], &self.arrays)?;
            let b = scope.operand(&args[1], &self.arrays)?;
            // a - b REL 0 (int_lt: a - b <= -1).
            Ok(Linear {
                terms: vec![(1, a), (-1, b)],
                rel,
                rhs: if builtin == "int_lt" { -1 } else { 0 },
                builtin,
                index,
            })
        }
    }

    pub fn var_index(&self, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| v.name == name)
    }

    /// The variable an alias chain ends at, or the constant it is fixed to.
    pub fn resolve(&self, o: Operand) -> Operand {
        let mut o = o;
        for _ in 0..=self.vars.len() {
            match o {
                Operand::Var(i) => match self.vars[i].value {
                    Some(next) => o = next,
                    None => return o,
                },
                Operand::Const(_) => return o,
            }
        }
        o
    }

    /// Variables that are free: neither fixed nor an alias. A solver assigns exactly these.
    pub fn free_vars(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.vars.len()).filter(|&i| self.vars[i].value.is_none())
    }

    /// Completes values for the free variables (indexed like `vars`, `None` elsewhere) into a
    /// full assignment through aliases and constants.
    pub fn complete(&self, free: &[Option<i64>]) -> Vec<Option<i64>> {
        (0..self.vars.len())
            .map(|i| match self.resolve(Operand::Var(i)) {
                Operand::Const(v) => Some(v),
                Operand::Var(j) => free.get(j).copied().flatten(),
            })
            .collect()
    }

    fn value(&self, assignment: &[Option<i64>], o: Operand) -> Option<i64> {
        match o {
            Operand::Const(v) => Some(v),
            Operand::Var(i) => assignment.get(i).copied().flatten(),
        }
    }

    /// Checks a full assignment (one value per variable, aliases and fixed ones included):
    /// every domain, every constraint, exactly, and computes the objective.
    pub fn check(&self, assignment: &[Option<i64>]) -> FznCheck {
        let mut failures = Vec::new();
        let mut fail = |what: String, why: String| {
            // Enough to diagnose; a broken answer can fail everywhere.
            if failures.len() < 20 {
                failures.push(Failure { what, why });
            }
        };
        for (i, v) in self.vars.iter().enumerate() {
            match assignment.get(i).copied().flatten() {
                None => fail(v.name.clone(), "has no value".into()),
                Some(x) => {
                    if !v.domain.contains(x) {
                        fail(v.name.clone(), format!("value {x} outside its domain {:?}", v.domain));
                    }
                    if let Some(target) = v.value {
                        if self.value(assignment, target) != Some(x) {
                            fail(v.name.clone(), format!("value {x} differs from what it is defined as"));
                        }
                    }
                }
            }
        }
        for c in &self.constraints {
            let mut lhs: i128 = 0;
            let mut missing = false;
            for &(k, o) in &c.terms {
                match self.value(assignment, o) {
                    Some(x) => lhs += k as i128 * x as i128,
                    None => missing = true,
                }
            }
            if missing {
                fail(
                    format!("constraint #{} ({})", c.index, c.builtin),
                    "refers to a variable without a value".into(),
                );
            } else if !c.rel.holds(lhs, c.rhs as i128) {
                fail(
                    format!("constraint #{} ({})", c.index, c.builtin),
                    format!("{lhs} {} {} does not hold", c.rel.symbol(), c.rhs),
                );
            }
        }
        let objective = match self.goal {
            Goal::Satisfy => None,
            Goal::Minimize(o) | Goal::Maximize(o) => self.value(assignment, o),
        };
        FznCheck {
            variables: self.vars.len(),
            constraints: self.constraints.len(),
            objective,
            failures,
        }
    }

    /// The CPLEX LP file for `cbc`: column `x{i}` is free variable `i`, row `c{k}` constraint
    /// `k`. Constants move to the right-hand side; `int_lin_ne`/`int_ne` cannot be written (an
    /// error). Every column is integer.
    pub fn to_lp(&self) -> Result<String, String> {
        let mut out = String::with_capacity(64 * (self.vars.len() + self.constraints.len()));
        let col = |o: Operand| -> Result<Option<usize>, i64> {
            match self.resolve(o) {
                Operand::Var(i) => Ok(Some(i)),
                Operand::Const(v) => Err(v),
            }
        };
        let term = |out: &mut String, k: i64, i: usize, first: bool| {
            if k < 0 {
                let _ = write!(out, " - {} x{i}", k.unsigned_abs());
            } else if first {
                let _ = write!(out, " {k} x{i}");
            } else {
                let _ = write!(out, " + {k} x{i}");
            }
        };
        let (sense, objective) = match self.goal {
            Goal::Satisfy => ("Minimize", None),
            Goal::Minimize(o) => ("Minimize", Some(o)),
            Goal::Maximize(o) => ("Maximize", Some(o)),
        };
        out.push_str(sense);
        out.push_str("\n obj:");
        match objective.map(col) {
            Some(Ok(Some(i))) => term(&mut out, 1, i, true),
            // A constant objective or satisfaction: any feasible point is optimal.
            _ => out.push_str(" 0 x0"),
        }
        out.push_str("\nSubject To\n");
        let mut rows = 0usize;
        for c in &self.constraints {
            if c.rel == Rel::Ne {
                return Err(format!(
                    "constraint #{} ({}) is a disequality; an LP cannot state it",
                    c.index, c.builtin
                ));
            }
            let mut coefs: Vec<(usize, i128)> = Vec::with_capacity(c.terms.len());
            let mut rhs = c.rhs as i128;
            for &(k, o) in &c.terms {
                match col(o) {
                    Ok(Some(i)) => coefs.push((i, k as i128)),
                    Ok(None) => {}
                    Err(v) => rhs -= k as i128 * v as i128,
                }
            }
            coefs.sort_unstable_by_key(|t| t.0);
            coefs.dedup_by(|b, a| {
                if a.0 == b.0 {
                    a.1 += b.1;
                    true
                } else {
                    false
                }
            });
            coefs.retain(|t| t.1 != 0);
            let fits = |v: i128| i64::try_from(v).ok().filter(|v| v.unsigned_abs() < (1 << 53));
            if coefs.is_empty() {
                // All constant: it holds or the model is infeasible; keep it visible to cbc.
                let ok = c.rel.holds(0, rhs);
                if !ok {
                    let _ = writeln!(out, " c{}: 0 x0 >= 1", c.index);
                    rows += 1;
                }
                continue;
            }
            let rhs =
                fits(rhs).ok_or_else(|| format!("constraint #{}: right-hand side too large for an LP", c.index))?;
            let _ = write!(out, " c{}:", c.index);
            for (n, &(i, k)) in coefs.iter().enumerate() {
                let k = fits(k).ok_or_else(|| format!("constraint #{}: coefficient too large", c.index))?;
                term(&mut out, k, i, n == 0);
            }
            let _ = writeln!(out, " {} {rhs}", if c.rel == Rel::Le { "<=" } else { "=" });
            rows += 1;
        }
        if rows == 0 {
            // cbc wants at least one row.
            out.push_str(" c0: 0 x0 >= 0\n");
        }
        out.push_str("Bounds\n");
        let mut has_x0 = false;
        for i in self.free_vars() {
            has_x0 |= i == 0;
            match self.vars[i].domain.bounds() {
                Some((lo, hi)) => {
                    let _ = writeln!(out, " {lo} <= x{i} <= {hi}");
                }
                None => {
                    let _ = writeln!(out, " x{i} free");
                }
            }
        }
        if !has_x0 {
            // x0 is named above as a placeholder; pin it when it is not a free variable.
            out.push_str(" x0 = 0\n");
        }
        out.push_str("General\n");
        for i in self.free_vars() {
            let _ = writeln!(out, " x{i}");
        }
        out.push_str("End\n");
        Ok(out)
    }

    /// The FlatZinc solution text (`name = value;` for output variables and arrays) that
    /// `minizinc --ozn-file` turns into the model's output.
    pub fn solution_text(&self, assignment: &[Option<i64>]) -> String {
        let show = |i: usize| -> String {
            let v = assignment.get(i).copied().flatten().unwrap_or(0);
            if self.vars[i].domain == Domain::Bool {
                (v != 0).to_string()
            } else {
                v.to_string()
            }
        };
        let mut out = String::new();
        for (i, v) in self.vars.iter().enumerate() {
            if v.output {
                let _ = writeln!(out, "{} = {};", v.name, show(i));
            }
        }
        for a in &self.arrays {
            let Some(dims) = &a.output_dims else { continue };
            let items: Vec<String> = a
                .elements
                .iter()
                .map(|o| match o {
                    Operand::Var(i) => show(*i),
                    Operand::Const(v) => v.to_string(),
                })
                .collect();
            let dims_text: Vec<String> = dims.iter().map(|(a, b)| format!("{a}..{b}")).collect();
            let _ = writeln!(
                out,
                "{} = array{}d({}, [{}]);",
                a.name,
                dims.len(),
                dims_text.join(", "),
                items.join(", ")
            );
        }
        out
    }

    /// The same model with every variable marked `::output_var`, for FlatZinc solvers that
    /// print only output variables: a full assignment is what [`FlatZinc::check`] needs.
    pub fn expose_all(text: &str) -> String {
        let mut out = String::with_capacity(text.len() + text.len() / 8);
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with("var ") && !t.contains("output_var") {
                if let Some(colon) = t.find(':') {
                    // `var D: NAME[ :: anns][ = v];` -> insert after NAME.
                    let rest = &t[colon + 1..];
                    let name_len = rest
                        .trim_start()
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.trim_start().len());
                    let name_start = colon + 1 + (rest.len() - rest.trim_start().len());
                    let insert = name_start + name_len;
                    out.push_str(&t[..insert]);
                    out.push_str(" ::output_var");
                    out.push_str(&t[insert..]);
                    out.push('\n');
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Parses FlatZinc solution output (`name = value;` lines, `array1d(..., [...])` values) into
/// values by variable or array name; stops at the first `----------`.
pub fn parse_solution(text: &str) -> Result<HashMap<String, Vec<i64>>, FznError> {
    let mut out = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("----------") {
            break;
        }
        if line.is_empty() || line.starts_with('%') || line.starts_with("=====") {
            continue;
        }
        let err = |why: String| FznError { line: n + 1, why };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| err(format!("not an assignment: {line}")))?;
        let value = value.trim().trim_end_matches(';').trim();
        let parse_one = |s: &str| -> Result<i64, FznError> {
            match s.trim() {
                "true" => Ok(1),
                "false" => Ok(0),
                s => s.parse().map_err(|_| err(format!("not an integer: {s}"))),
            }
        };
        let values = if let Some(open) = value.find('[') {
            let close = value.rfind(']').ok_or_else(|| err("unterminated array".into()))?;
            value[open + 1..close]
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(parse_one)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![parse_one(value)?]
        };
        out.insert(name.trim().to_string(), values);
    }
    Ok(out)
}

/// What `cbc` concluded, from its solution file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CbcStatus {
    /// cbc proved the incumbent optimal.
    Optimal,
    /// A feasible incumbent, not proven optimal (stopped on a limit).
    Feasible,
    Infeasible,
    /// No integer solution.
    Unknown(String),
}

/// Reads a cbc solution file written with `printingOptions all`: the status line, then one
/// line per row and per column (`index name value reduced-cost`, rows first). Returns values
/// for the columns named `x{i}`, rounded to integers, indexed by variable.
pub fn parse_cbc_solution(text: &str, n_vars: usize) -> Result<(CbcStatus, Vec<Option<i64>>), String> {
    let mut lines = text.lines();
    let status_line = lines.next().ok_or("empty cbc solution file")?.trim();
    let status = if status_line.starts_with("Optimal") {
        CbcStatus::Optimal
    } else if status_line.contains("nfeasible") {
        CbcStatus::Infeasible
    } else if status_line.starts_with("Stopped") && !status_line.contains("no integer solution") {
        CbcStatus::Feasible
    } else {
        CbcStatus::Unknown(status_line.to_string())
    };
    let mut values = vec![None; n_vars];
    for line in lines {
        let mut fields = line.split_whitespace().filter(|f| *f != "**");
        let (Some(_), Some(name), Some(value)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(i) = name.strip_prefix('x').and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        let v: f64 = value.parse().map_err(|_| format!("cbc value {value:?} of {name}"))?;
        if i < n_vars && v.is_finite() && v.abs() < 9.0e15 {
            values[i] = Some(v.round() as i64);
        }
    }
    Ok((status, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
% a comment
predicate my_pred(var int: x);
array [1..2] of int: X_INTRODUCED_6_ = [-1,-1];
array [1..2] of int: X_INTRODUCED_7_ = [-1,1];
int: K = 3;
var 0..10: X_INTRODUCED_0_;
var 0..10: X_INTRODUCED_1_ ::var_is_introduced :: is_defined_var;
var {0,2,4,6,8,10}: X_INTRODUCED_2_;
var 0..30: obj:: is_defined_var;
var bool: B :: var_is_introduced :: is_defined_var;
var 0..10: ALIAS = X_INTRODUCED_0_;
var 0..10: FIXED = 4;
array [1..3] of var int: x:: output_array([1..3]) = [X_INTRODUCED_0_,X_INTRODUCED_1_,X_INTRODUCED_2_];
constraint int_lin_le(X_INTRODUCED_6_,[X_INTRODUCED_0_,X_INTRODUCED_1_],-7);
constraint int_lin_le(X_INTRODUCED_7_,[X_INTRODUCED_2_,X_INTRODUCED_0_],0);
constraint int_lin_eq([1,1,1,-1],[X_INTRODUCED_0_,X_INTRODUCED_1_,x[3],obj],0):: defines_var(obj);
constraint int_le(FIXED, K);
solve :: int_search(x,input_order,indomain_min,complete) minimize obj;
"#;

    #[test]
    fn parses_the_linear_subset_with_aliases_constants_and_annotations() {
        let m = FlatZinc::parse(SMALL).unwrap();
        assert_eq!(m.vars.len(), 7);
        assert_eq!(m.constraints.len(), 4);
        assert_eq!(m.arrays[0].output_dims, Some(vec![(1, 3)]));
        assert_eq!(
            m.vars[2].domain,
            Domain::Set {
                values: vec![0, 2, 4, 6, 8, 10]
            }
        );
        assert_eq!(m.vars[4].domain, Domain::Bool);
        assert_eq!(m.resolve(Operand::Var(5)), Operand::Var(0));
        assert_eq!(m.resolve(Operand::Var(6)), Operand::Const(4));
        // `x[3]` resolves through the array; `K` through the parameter.
        assert_eq!(m.constraints[2].terms[2].1, Operand::Var(2));
        assert_eq!(
            m.constraints[3].terms,
            vec![(1, Operand::Var(6)), (-1, Operand::Const(3))]
        );
        assert_eq!(m.goal, Goal::Minimize(Operand::Var(3)));
        assert_eq!(m.free_vars().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn checker_accepts_a_solution_and_names_each_broken_constraint_and_domain() {
        let mut m = FlatZinc::parse(SMALL).unwrap();
        // FIXED = 4 > K = 3 would be infeasible: relax that one constraint for this test.
        m.constraints[3].rhs = 1;
        let good = m.complete(&[Some(0), Some(7), Some(0), Some(7), Some(0)]);
        let r = m.check(&good);
        assert!(r.ok(), "{:?}", r.failures);
        assert_eq!(r.objective, Some(7));
        assert_eq!((r.variables, r.constraints), (7, 4));

        // The sum no longer matches obj; x1 + x0 < 7; 3 is not in the even domain.
        let bad = m.complete(&[Some(0), Some(6), Some(3), Some(7), Some(2)]);
        let r = m.check(&bad);
        let whats: Vec<&str> = r.failures.iter().map(|f| f.what.as_str()).collect();
        assert!(whats.contains(&"X_INTRODUCED_2_"), "{whats:?}");
        assert!(whats.contains(&"B"), "{whats:?}");
        assert!(whats.contains(&"constraint #1 (int_lin_le)"), "{whats:?}");
        assert!(whats.contains(&"constraint #3 (int_lin_eq)"), "{whats:?}");
        assert!(!whats.contains(&"constraint #2 (int_lin_le)"), "{whats:?}");

        // A missing value is a failure, not a pass.
        let r = m.check(&m.complete(&[Some(0), None, Some(0), Some(7), Some(0)]));
        assert!(!r.ok());
        // The unrelaxed model: FIXED <= K fails whatever the free variables are.
        let m = FlatZinc::parse(SMALL).unwrap();
        let r = m.check(&good);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert_eq!(r.failures[0].what, "constraint #4 (int_le)");
    }

    #[test]
    fn exact_arithmetic_catches_what_a_float_tolerance_would_pass() {
        // 2^40 * b <= 2^40 - 1 with b = 1: violated by 1 in 1.1e12, invisible at 1e-9 relative.
        let text = "var 0..1: b;\nconstraint int_lin_le([1099511627776],[b],1099511627775);\nsolve satisfy;\n";
        let m = FlatZinc::parse(text).unwrap();
        assert!(!m.check(&[Some(1)]).ok());
        assert!(m.check(&[Some(0)]).ok());
    }

    #[test]
    fn lp_moves_constants_to_the_rhs_and_merges_repeated_columns() {
        let text = "var 0..5: a;\nvar int: b;\nvar 0..5: c = 3;\n\
                    constraint int_lin_le([2,3,1,-1],[a,c,b,a],10);\nsolve maximize a;\n";
        let m = FlatZinc::parse(text).unwrap();
        let lp = m.to_lp().unwrap();
        assert!(lp.starts_with("Maximize\n obj: 1 x0\n"), "{lp}");
        assert!(lp.contains(" c1: 1 x0 + 1 x1 <= 1\n"), "{lp}");
        assert!(lp.contains(" 0 <= x0 <= 5\n x1 free\n"), "{lp}");
        assert!(!lp.contains("x2"), "fixed variables are not columns: {lp}");
        let ne = "var 0..5: a;\nconstraint int_ne(a, 3);\nsolve satisfy;\n";
        assert!(FlatZinc::parse(ne).unwrap().to_lp().is_err());
    }

    #[test]
    fn non_linear_builtins_and_garbage_are_errors_with_lines() {
        let text = "var 0..5: a;\nvar 0..5: b;\nconstraint int_times(a,b,a);\nsolve satisfy;\n";
        let e = FlatZinc::parse(text).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.why.contains("int_times"), "{e}");
        for bad in [
            "var 0..5: a",
            "var 0..5: a;\nconstraint int_lin_le([1,2],[a],3);\nsolve satisfy;",
            "var 0..5: a;\n",
            "var 0..5: a;\nconstraint int_lin_le([1],[zz],3);\nsolve satisfy;",
            "var float: f;\nsolve satisfy;",
            "var 0..99999999999999999999: a;",
            "\"open",
        ] {
            assert!(FlatZinc::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn solution_text_and_cbc_files_round_trip() {
        let m = FlatZinc::parse(SMALL).unwrap();
        let a = m.complete(&[Some(0), Some(7), Some(0), Some(7), Some(1)]);
        assert_eq!(m.solution_text(&a), "x = array1d(1..3, [0, 7, 0]);\n");
        let parsed = parse_solution("x = array1d(1..3, [0, 7, 0]);\nb = true;\n----------\nz = 1;\n").unwrap();
        assert_eq!(parsed["x"], vec![0, 7, 0]);
        assert_eq!(parsed["b"], vec![1]);
        assert!(!parsed.contains_key("z"));

        let sol = "Optimal - objective value 7.00000000\n      0 c1   -7   0\n**    1 c2   3   0\n      0 x3   7   1\n      1 x0   1e-09   0\n      2 x1   6.9999999999   0\n";
        let (status, values) = parse_cbc_solution(sol, 5).unwrap();
        assert_eq!(status, CbcStatus::Optimal);
        assert_eq!(values, vec![Some(0), Some(7), None, Some(7), None]);
        let (status, _) = parse_cbc_solution("Infeasible - objective value 0\n", 1).unwrap();
        assert_eq!(status, CbcStatus::Infeasible);
        let (status, _) = parse_cbc_solution("Stopped on time - objective value 12\n", 1).unwrap();
        assert_eq!(status, CbcStatus::Feasible);
        let (status, _) = parse_cbc_solution(
            "Stopped on time (no integer solution - continuous used) - objective value 1\n",
            1,
        )
        .unwrap();
        assert!(matches!(status, CbcStatus::Unknown(_)));
    }

    #[test]
    fn expose_all_marks_every_variable_for_output() {
        let text = "var 0..10: a;\nvar 0..1: b :: var_is_introduced = a;\nvar 0..2: c:: output_var;\n";
        let out = FlatZinc::expose_all(text);
        assert_eq!(
            out,
            "var 0..10: a ::output_var;\nvar 0..1: b ::output_var :: var_is_introduced = a;\nvar 0..2: c:: output_var;\n"
        );
        let m = FlatZinc::parse(&format!("{out}solve satisfy;\n")).unwrap();
        assert!(m.vars.iter().all(|v| v.output));
    }
}
