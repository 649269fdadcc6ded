//! Go `text/template` for commit messages: the subset Flux documents and users write, with Go's
//! error messages for what is missing.
//!
//! Why not a crate: the one Rust implementation (gtmpl) keys maps by strings only, and Flux's
//! documented template ranges over `.Changed.Objects`, whose keys are structs
//! (`{{ range $resource, $changes := .Changed.Objects }}{{ $resource.Kind }}`).
//!
//! Supported: text with `{{ }}` actions and `{{-`/`-}}` trimming, comments, fields (`.A.B`,
//! `$x.A`), variables (`$x := …`, `$x = …`), pipelines (`a | b`), parentheses, string, number,
//! bool and nil literals, `if`/`else if`/`else`, `range` (lists and maps, with one or two
//! variables, `else`, `break`, `continue`), `with`/`else`, `end`. Functions: Go's built-ins
//! (`and or not len index print printf println eq ne lt le gt ge`) and Sprig's common string and
//! list functions (`upper lower title trim trimPrefix trimSuffix trimAll replace contains
//! hasPrefix hasSuffix repeat substr trunc quote squote cat indent nindent join split splitList
//! list first last uniq sortAlpha default empty toString`). Anything else is refused when the
//! template is parsed: `function "x" not defined`.

use std::fmt::Write as _;

/// A value the template sees.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    /// Entries in key order (Go visits sorted keys).
    Map(Vec<(Value, Value)>),
    /// A Go struct: its type name (for errors), fields, and how `{{ . }}` prints it.
    Object {
        type_name: String,
        fields: Vec<(String, Value)>,
        display: String,
    },
}

impl Value {
    /// A struct value.
    pub fn object(type_name: &str, fields: Vec<(&str, Value)>, display: impl Into<String>) -> Self {
        Value::Object {
            type_name: type_name.into(),
            fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            display: display.into(),
        }
    }

    /// A map, sorted by key as Go ranges over it.
    pub fn map(mut entries: Vec<(Value, Value)>) -> Self {
        entries.sort_by_key(|a| a.0.sort_key());
        Value::Map(entries)
    }

    fn sort_key(&self) -> String {
        self.to_string()
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Object { .. } => true,
        }
    }

    fn type_name(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Str(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::Map(_) => "map".into(),
            Value::Object { type_name, .. } => type_name.clone(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("<no value>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("map[")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
            Value::Object { display, .. } => f.write_str(display),
        }
    }
}

/// A template that does not parse or fails to execute, with Go's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    Range {
        key: Option<String>,
        value: Option<String>,
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With(Pipeline, Vec<Node>, Vec<Node>),
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// `$x :=` (true) or `$x =` (false).
    declare: Option<(String, bool)>,
    commands: Vec<Vec<Operand>>,
    line: usize,
    text: String,
}

#[derive(Debug, Clone)]
enum Operand {
    /// `.A.B` (empty path: `.`).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Func(String),
    Literal(Value),
    Sub(Box<Pipeline>),
}

/// Deepest nesting of blocks and parentheses a template may have.
const MAX_DEPTH: usize = 100;
/// Largest message a template may render (a commit message, not a document).
const MAX_OUTPUT: usize = 1 << 20;

const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "upper",
    "lower",
    "title",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "trimAll",
    "replace",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "repeat",
    "substr",
    "trunc",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "join",
    "split",
    "splitList",
    "list",
    "first",
    "last",
    "uniq",
    "sortAlpha",
    "default",
    "empty",
    "toString",
];

// ---------------------------------------------------------------------------------------------
// Parsing

/// A piece of the source: text, or an action's inside with its line.
enum Piece {
    Text(String),
    Action(String, usize),
}

fn split_pieces(name: &str, src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        line += rest[..start].matches('\n').count();
        let inner_start = if trim_left { &after[1..] } else { after };
        let (inner, consumed) = if inner_start.trim_start().starts_with("/*") {
            let end = inner_start
                .find("*/")
                .ok_or_else(|| TemplateError(format!("template: {name}:{line}: unclosed comment")))?;
            let close = inner_start[end + 2..]
                .find("}}")
                .ok_or_else(|| TemplateError(format!("template: {name}:{line}: unclosed action")))?;
            (None, end + 2 + close)
        } else {
            let close = find_close(inner_start)
                .ok_or_else(|| TemplateError(format!("template: {name}:{line}: unclosed action")))?;
            (Some(&inner_start[..close]), close)
        };
        let body = &inner_start[..consumed];
        trim_next = body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-");
        if let Some(inner) = inner {
            let inner = if trim_next {
                &inner[..inner.len() - 1]
            } else {
                inner
            };
            pieces.push(Piece::Action(inner.trim().to_string(), line));
        }
        line += body.matches('\n').count();
        rest = &inner_start[consumed + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
    Ok(pieces)
}

/// The end of an action: the first `}}` outside a string literal.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'`' {
                    quote = Some(b);
                } else if b == b'}' && bytes.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Literal(Value),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let path = |i: &mut usize| -> Vec<String> {
        let mut parts = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            let part: String = chars[start..*i].iter().collect();
            if !part.is_empty() {
                parts.push(part);
            }
        }
        parts
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                i += 2;
            }
            '=' => {
                tokens.push(Token::Assign);
                i += 1;
            }
            '.' => tokens.push(Token::Field(path(&mut i))),
            '$' => {
                i += 1;
                let name = format!("${}", word(&mut i));
                tokens.push(Token::Var(name, path(&mut i)));
            }
            '"' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated quoted string".into());
                }
                i += 1;
                let quoted: String = chars[start..i].iter().collect();
                let s: String =
                    serde_json::from_str(&quoted).map_err(|_| format!("invalid string {quoted}"))?;
                tokens.push(Token::Literal(Value::Str(s)));
            }
            '`' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated raw quoted string".into());
                }
                tokens.push(Token::Literal(Value::Str(chars[start..i].iter().collect())));
                i += 1;
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let n: String = chars[start..i].iter().collect();
                tokens.push(Token::Literal(Value::Int(
                    n.parse().map_err(|_| format!("bad number {n}"))?,
                )));
            }
            c if c.is_alphabetic() || c == '_' => {
                let w = word(&mut i);
                tokens.push(match w.as_str() {
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    "nil" => Token::Literal(Value::Nil),
                    _ => Token::Ident(w),
                });
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    name: &'a str,
    pieces: std::iter::Peekable<std::vec::IntoIter<Piece>>,
    depth: usize,
}

/// How a list of nodes ended: at the end of the template, `{{end}}` or `{{else …}}`.
enum Closing {
    Eof,
    EndAction,
    Else(String, usize),
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!("template: {}:{line}: {message}", self.name))
    }

    fn pipeline(&self, text: &str, line: usize) -> Result<Pipeline, TemplateError> {
        let tokens = lex(text).map_err(|e| self.error(line, e))?;
        let mut tokens = &tokens[..];
        let mut declare = None;
        if let [
            Token::Var(name, path),
            op @ (Token::Declare | Token::Assign),
            rest @ ..,
        ] = tokens
            && path.is_empty()
        {
            declare = Some((name.clone(), *op == Token::Declare));
            tokens = rest;
        }
        let (pipeline, used) = self.commands(tokens, line, text, 0)?;
        if used != tokens.len() {
            return Err(self.error(line, format!("unexpected {:?} in operand", tokens[used])));
        }
        Ok(Pipeline { declare, ..pipeline })
    }

    /// Parses commands up to a `)` or the end; returns the pipeline and the tokens used.
    fn commands(
        &self,
        tokens: &[Token],
        line: usize,
        text: &str,
        depth: usize,
    ) -> Result<(Pipeline, usize), TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.error(line, "too many nested parentheses"));
        }
        let mut commands = vec![Vec::new()];
        let mut i = 0;
        while i < tokens.len() {
            let operand = match &tokens[i] {
                Token::RParen => break,
                Token::Pipe => {
                    if commands.last().is_some_and(Vec::is_empty) {
                        return Err(self.error(line, "missing command"));
                    }
                    commands.push(Vec::new());
                    i += 1;
                    continue;
                }
                Token::Field(path) => Operand::Field(path.clone()),
                Token::Var(name, path) => Operand::Var(name.clone(), path.clone()),
                Token::Literal(v) => Operand::Literal(v.clone()),
                Token::Ident(name) => {
                    if !FUNCTIONS.contains(&name.as_str()) {
                        return Err(self.error(line, format!("function \"{name}\" not defined")));
                    }
                    Operand::Func(name.clone())
                }
                Token::LParen => {
                    let (sub, used) = self.commands(&tokens[i + 1..], line, text, depth + 1)?;
                    if tokens.get(i + 1 + used) != Some(&Token::RParen) {
                        return Err(self.error(line, "unclosed left paren"));
                    }
                    i += used + 1;
                    Operand::Sub(Box::new(sub))
                }
                other => return Err(self.error(line, format!("unexpected {other:?} in operand"))),
            };
            if let Some(current) = commands.last_mut() {
                current.push(operand);
            }
            i += 1;
        }
        if commands.iter().any(Vec::is_empty) {
            return Err(self.error(line, "missing value for command"));
        }
        Ok((
            Pipeline {
                declare: None,
                commands,
                line,
                text: text.to_string(),
            },
            i,
        ))
    }

    fn nodes(&mut self) -> Result<(Vec<Node>, Closing), TemplateError> {
        self.depth += 1;
        let result = self.nodes_at_depth();
        self.depth -= 1;
        result
    }

    fn nodes_at_depth(&mut self) -> Result<(Vec<Node>, Closing), TemplateError> {
        if self.depth > MAX_DEPTH {
            return Err(TemplateError(format!(
                "template: {}: blocks nested deeper than {MAX_DEPTH}",
                self.name
            )));
        }
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (action, line) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action(a, line) => (a, line),
            };
            let (keyword, rest) = match action.split_once(|c: char| c.is_whitespace()) {
                Some((k, r)) => (k.to_string(), r.trim().to_string()),
                None => (action.clone(), String::new()),
            };
            match keyword.as_str() {
                "end" => return Ok((nodes, Closing::EndAction)),
                "else" => return Ok((nodes, Closing::Else(rest, line))),
                "break" => nodes.push(Node::Break),
                "continue" => nodes.push(Node::Continue),
                "if" => nodes.push(self.if_chain(&rest, line)?),
                "with" => {
                    let pipeline = self.pipeline(&rest, line)?;
                    let (body, end) = self.nodes()?;
                    let otherwise = self.else_branch(end, line)?;
                    nodes.push(Node::With(pipeline, body, otherwise));
                }
                "range" => {
                    let (key, value, expr) = range_vars(&rest);
                    let pipeline = self.pipeline(&expr, line)?;
                    let (body, end) = self.nodes()?;
                    let otherwise = self.else_branch(end, line)?;
                    nodes.push(Node::Range {
                        key,
                        value,
                        pipeline,
                        body,
                        otherwise,
                    });
                }
                "define" | "template" | "block" => {
                    return Err(self.error(
                        line,
                        format!("'{keyword}' is not supported in commit message templates"),
                    ));
                }
                _ => nodes.push(Node::Output(self.pipeline(&action, line)?)),
            }
        }
        Ok((nodes, Closing::Eof))
    }

    fn if_chain(&mut self, condition: &str, line: usize) -> Result<Node, TemplateError> {
        let mut branches = vec![];
        let mut pipeline = self.pipeline(condition, line)?;
        loop {
            let (body, end) = self.nodes()?;
            branches.push((pipeline, body));
            match end {
                Closing::EndAction => return Ok(Node::If(branches, Vec::new())),
                Closing::Eof => return Err(self.error(line, "unexpected EOF")),
                Closing::Else(rest, else_line) => {
                    if let Some(cond) = rest.strip_prefix("if ") {
                        pipeline = self.pipeline(cond.trim(), else_line)?;
                        continue;
                    }
                    let (otherwise, end) = self.nodes()?;
                    if !matches!(end, Closing::EndAction) {
                        return Err(self.error(line, "expected end"));
                    }
                    return Ok(Node::If(branches, otherwise));
                }
            }
        }
    }

    fn else_branch(&mut self, end: Closing, line: usize) -> Result<Vec<Node>, TemplateError> {
        match end {
            Closing::EndAction => Ok(Vec::new()),
            Closing::Eof => Err(self.error(line, "unexpected EOF")),
            Closing::Else(rest, else_line) => {
                if !rest.is_empty() {
                    return Err(self.error(else_line, format!("unexpected \"{rest}\" in else")));
                }
                let (otherwise, end) = self.nodes()?;
                match end {
                    Closing::EndAction => Ok(otherwise),
                    _ => Err(self.error(line, "expected end")),
                }
            }
        }
    }
}

/// `$k, $v := expr` / `$v := expr` / `expr`.
fn range_vars(text: &str) -> (Option<String>, Option<String>, String) {
    let Some((vars, expr)) = text.split_once(":=") else {
        return (None, None, text.to_string());
    };
    let vars: Vec<&str> = vars.split(',').map(str::trim).collect();
    match vars.as_slice() {
        [v] if v.starts_with('$') => (None, Some(v.to_string()), expr.trim().to_string()),
        [k, v] if k.starts_with('$') && v.starts_with('$') => {
            (Some(k.to_string()), Some(v.to_string()), expr.trim().to_string())
        }
        _ => (None, None, text.to_string()),
    }
}

impl Template {
    /// Parses `src`; `name` appears in errors (Flux names it `commit message`).
    pub fn parse(name: &str, src: &str) -> Result<Self, TemplateError> {
        let pieces = split_pieces(name, src)?;
        let mut parser = Parser {
            name,
            pieces: pieces.into_iter().peekable(),
            depth: 0,
        };
        let (nodes, end) = parser.nodes()?;
        match end {
            Closing::Eof => Ok(Self {
                name: name.to_string(),
                nodes,
            }),
            Closing::EndAction => Err(TemplateError(format!("template: {name}: unexpected {{{{end}}}}"))),
            Closing::Else(_, line) => Err(TemplateError(format!(
                "template: {name}:{line}: unexpected {{{{else}}}}"
            ))),
        }
    }

    /// Renders the template with `data` as `.`.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        let mut exec = Exec {
            name: &self.name,
            vars: vec![("$".to_string(), data.clone())],
            out: String::new(),
        };
        exec.nodes(&self.nodes, data)?;
        Ok(exec.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

struct Exec<'a> {
    name: &'a str,
    vars: Vec<(String, Value)>,
    out: String,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

impl Exec<'_> {
    fn error(&self, p: &Pipeline, message: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!(
            "template: {name}:{line}: executing \"{name}\" at <{text}>: {message}",
            name = self.name,
            line = p.line,
            text = p.text
        ))
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        let scope = self.vars.len();
        let flow = self.nodes_inner(nodes, dot);
        self.vars.truncate(scope);
        flow
    }

    fn nodes_inner(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            if self.out.len() > MAX_OUTPUT {
                return Err(TemplateError(format!(
                    "template: {}: the message is larger than {MAX_OUTPUT} bytes",
                    self.name
                )));
            }
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Output(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.declare.is_none() {
                        let _ = write!(self.out, "{v}");
                    }
                }
                Node::If(branches, otherwise) => {
                    let mut taken = None;
                    for (cond, body) in branches {
                        if self.pipeline(cond, dot)?.truthy() {
                            taken = Some(body);
                            break;
                        }
                    }
                    let flow = self.nodes(taken.unwrap_or(otherwise), dot)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(p, body, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    let flow = if v.truthy() {
                        self.nodes(body, &v)?
                    } else {
                        self.nodes(otherwise, dot)?
                    };
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    key,
                    value,
                    pipeline,
                    body,
                    otherwise,
                } => {
                    let v = self.pipeline(pipeline, dot)?;
                    let entries: Vec<(Value, Value)> = match v {
                        Value::List(items) => items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i64::try_from(i).unwrap_or(i64::MAX)), v))
                            .collect(),
                        Value::Map(entries) => entries,
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(self.error(pipeline, format!("range can't iterate over {other}")));
                        }
                    };
                    if entries.is_empty() {
                        self.nodes(otherwise, dot)?;
                        continue;
                    }
                    for (k, v) in entries {
                        let scope = self.vars.len();
                        match (key, value) {
                            (Some(k_name), Some(v_name)) => {
                                self.vars.push((k_name.clone(), k));
                                self.vars.push((v_name.clone(), v.clone()));
                            }
                            (None, Some(v_name)) => self.vars.push((v_name.clone(), v.clone())),
                            _ => {}
                        }
                        let flow = self.nodes(body, &v)?;
                        self.vars.truncate(scope);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for command in &p.commands {
            last = Some(self.command(p, command, dot, last)?);
        }
        let value = last.unwrap_or(Value::Nil);
        if let Some((name, declare)) = &p.declare {
            if *declare {
                self.vars.push((name.clone(), value.clone()));
            } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = value.clone();
            } else {
                return Err(self.error(p, format!("undefined variable: {name}")));
            }
        }
        Ok(value)
    }

    fn operand(&mut self, p: &Pipeline, operand: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match operand {
            Operand::Field(path) => self.walk(p, dot.clone(), path),
            Operand::Var(name, path) => {
                let base = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.error(p, format!("undefined variable: {name}")))?;
                self.walk(p, base, path)
            }
            Operand::Literal(v) => Ok(v.clone()),
            Operand::Sub(sub) => self.pipeline(sub, dot),
            Operand::Func(name) => call(name, Vec::new()).map_err(|e| self.error(p, e)),
        }
    }

    fn walk(&self, p: &Pipeline, mut value: Value, path: &[String]) -> Result<Value, TemplateError> {
        for field in path {
            value = match value {
                Value::Object {
                    type_name, fields, ..
                } => fields
                    .into_iter()
                    .find(|(k, _)| k == field)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        self.error(p, format!("can't evaluate field {field} in type {type_name}"))
                    })?,
                Value::Map(entries) => entries
                    .into_iter()
                    .find(|(k, _)| matches!(k, Value::Str(s) if s == field))
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Nil),
                Value::Nil => Value::Nil,
                other => {
                    return Err(self.error(
                        p,
                        format!("can't evaluate field {field} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(value)
    }

    fn command(
        &mut self,
        p: &Pipeline,
        command: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some((first, rest)) = command.split_first() else {
            return Ok(Value::Nil);
        };
        match first {
            Operand::Func(name) => {
                let mut args = Vec::with_capacity(rest.len() + 1);
                for operand in rest {
                    args.push(self.operand(p, operand, dot)?);
                }
                args.extend(piped);
                call(name, args).map_err(|e| self.error(p, format!("error calling {name}: {e}")))
            }
            _ if rest.is_empty() && piped.is_none() => self.operand(p, first, dot),
            _ => Err(self.error(p, "can't give argument to non-function")),
        }
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn int_arg(args: &[Value], i: usize) -> Result<i64, String> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Str(s)) => s.parse().map_err(|_| format!("expected a number, got {s:?}")),
        _ => Err("expected a number".into()),
    }
}

fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => match args.next() {
                Some(v) if verb == 'q' => out.push_str(&format!("{:?}", as_str(v))),
                Some(v) => out.push_str(&as_str(v)),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => out.push_str(&format!("%!{other}(unsupported)")),
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    let s = |i: usize| args.get(i).map(as_str).unwrap_or_default();
    let need = |n: usize| {
        if args.len() < n {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        } else {
            Ok(())
        }
    };
    // Sprig's string functions take the piped value last.
    let last = || args.last().map(as_str).unwrap_or_default();
    Ok(match name {
        "and" => args
            .iter()
            .find(|v| !v.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil),
        "or" => args
            .iter()
            .find(|v| v.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil),
        "not" => Value::Bool(!args.first().is_some_and(Value::truthy)),
        "len" => {
            need(1)?;
            let n = match &args[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            };
            Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
        }
        "index" => {
            need(1)?;
            let mut v = args[0].clone();
            for key in &args[1..] {
                v = match (v, key) {
                    (Value::List(l), Value::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (Value::Map(m), k) => m
                        .into_iter()
                        .find(|(mk, _)| mk == k)
                        .map(|(_, v)| v)
                        .unwrap_or(Value::Nil),
                    (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
                };
            }
            v
        }
        "print" => Value::Str(args.iter().map(as_str).collect::<Vec<_>>().concat()),
        "println" => Value::Str(format!(
            "{}\n",
            args.iter().map(as_str).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            need(1)?;
            Value::Str(printf(&s(0), &args[1..]))
        }
        "eq" => {
            need(2)?;
            Value::Bool(args[1..].iter().any(|b| *b == args[0]))
        }
        "ne" => {
            need(2)?;
            Value::Bool(args[0] != args[1])
        }
        "lt" | "le" | "gt" | "ge" => {
            need(2)?;
            let o = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "upper" => Value::Str(last().to_uppercase()),
        "lower" => Value::Str(last().to_lowercase()),
        "title" => Value::Str(
            last()
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "trim" => Value::Str(last().trim().to_string()),
        "trimPrefix" => {
            need(2)?;
            Value::Str(
                s(1).strip_prefix(s(0).as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| s(1)),
            )
        }
        "trimSuffix" => {
            need(2)?;
            Value::Str(
                s(1).strip_suffix(s(0).as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| s(1)),
            )
        }
        "trimAll" => {
            need(2)?;
            let cut: Vec<char> = s(0).chars().collect();
            Value::Str(s(1).trim_matches(cut.as_slice()).to_string())
        }
        "replace" => {
            need(3)?;
            Value::Str(s(2).replace(&s(0), &s(1)))
        }
        "contains" => {
            need(2)?;
            Value::Bool(s(1).contains(&s(0)))
        }
        "hasPrefix" => {
            need(2)?;
            Value::Bool(s(1).starts_with(&s(0)))
        }
        "hasSuffix" => {
            need(2)?;
            Value::Bool(s(1).ends_with(&s(0)))
        }
        "repeat" => {
            need(2)?;
            let count = usize::try_from(int_arg(&args, 0)?).unwrap_or(0);
            if count.saturating_mul(s(1).len()) > MAX_OUTPUT {
                return Err(format!("repeat would make more than {MAX_OUTPUT} bytes"));
            }
            Value::Str(s(1).repeat(count))
        }
        "substr" => {
            need(3)?;
            let text: Vec<char> = s(2).chars().collect();
            let len = i64::try_from(text.len()).unwrap_or(i64::MAX);
            let (start, end) = (int_arg(&args, 0)?, int_arg(&args, 1)?);
            let start = usize::try_from(start.clamp(0, len)).unwrap_or(0);
            let end = if end < 0 { len } else { end.min(len) };
            let end = usize::try_from(end).unwrap_or(0).max(start);
            Value::Str(text[start..end].iter().collect())
        }
        "trunc" => {
            need(2)?;
            let text: Vec<char> = s(1).chars().collect();
            let n = int_arg(&args, 0)?;
            let len = i64::try_from(text.len()).unwrap_or(i64::MAX);
            let out: String = if n >= 0 {
                text.iter().take(usize::try_from(n).unwrap_or(0)).collect()
            } else {
                text.iter()
                    .skip(usize::try_from((len + n).max(0)).unwrap_or(0))
                    .collect()
            };
            Value::Str(out)
        }
        "quote" => Value::Str(
            args.iter()
                .map(|a| format!("{:?}", as_str(a)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "squote" => Value::Str(
            args.iter()
                .map(|a| format!("'{}'", as_str(a)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "cat" => Value::Str(
            args.iter()
                .filter(|a| **a != Value::Nil)
                .map(as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "indent" | "nindent" => {
            need(2)?;
            let pad = usize::try_from(int_arg(&args, 0)?).unwrap_or(0);
            if pad > 1024 {
                return Err(format!("{name} of {pad} columns"));
            }
            let pad = " ".repeat(pad);
            let text = s(1)
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            Value::Str(if name == "nindent" {
                format!("\n{text}")
            } else {
                text
            })
        }
        "join" => {
            need(2)?;
            let items = match &args[1] {
                Value::List(l) => l.iter().map(as_str).collect::<Vec<_>>(),
                other => vec![as_str(other)],
            };
            Value::Str(items.join(&s(0)))
        }
        "split" | "splitList" => {
            need(2)?;
            let parts: Vec<Value> = s(1)
                .split(s(0).as_str())
                .map(|p| Value::Str(p.to_string()))
                .collect();
            if name == "splitList" {
                Value::List(parts)
            } else {
                Value::map(
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| (Value::Str(format!("_{i}")), p))
                        .collect(),
                )
            }
        }
        "list" => Value::List(args),
        "first" | "last" => match args.first() {
            Some(Value::List(l)) => (if name == "first" { l.first() } else { l.last() })
                .cloned()
                .unwrap_or(Value::Nil),
            _ => Value::Nil,
        },
        "uniq" => match args.first() {
            Some(Value::List(l)) => {
                let mut out: Vec<Value> = Vec::new();
                for v in l {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::List(out)
            }
            _ => Value::Nil,
        },
        "sortAlpha" => match args.first() {
            Some(Value::List(l)) => {
                let mut items: Vec<String> = l.iter().map(as_str).collect();
                items.sort();
                Value::List(items.into_iter().map(Value::Str).collect())
            }
            _ => Value::Nil,
        },
        "default" => {
            need(1)?;
            match args.get(1) {
                Some(v) if v.truthy() => v.clone(),
                _ => args[0].clone(),
            }
        }
        "empty" => Value::Bool(!args.first().is_some_and(Value::truthy)),
        "toString" => Value::Str(s(0)),
        other => return Err(format!("function \"{other}\" not defined")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data() -> Value {
        let id = |kind: &str, name: &str| {
            Value::object(
                "update.ObjectIdentifier",
                vec![
                    ("Kind", Value::Str(kind.into())),
                    ("Name", Value::Str(name.into())),
                    ("Namespace", Value::Str("apps".into())),
                    ("APIVersion", Value::Str("apps/v1".into())),
                ],
                format!("{kind}/{name}"),
            )
        };
        let change = |old: &str, new: &str| {
            Value::object(
                "update.Change",
                vec![
                    ("OldValue", Value::Str(old.into())),
                    ("NewValue", Value::Str(new.into())),
                    ("Setter", Value::Str("flux-system:app".into())),
                ],
                format!("{{{old} {new} flux-system:app}}"),
            )
        };
        let changes = Value::List(vec![change("app:1.0.0", "app:1.1.0")]);
        Value::object(
            "source.TemplateData",
            vec![
                (
                    "AutomationObject",
                    Value::object(
                        "types.NamespacedName",
                        vec![
                            ("Name", Value::Str("auto".into())),
                            ("Namespace", Value::Str("flux-system".into())),
                        ],
                        "flux-system/auto",
                    ),
                ),
                (
                    "Changed",
                    Value::object(
                        "update.Result",
                        vec![
                            (
                                "FileChanges",
                                Value::map(vec![(
                                    Value::Str("deploy.yaml".into()),
                                    Value::map(vec![(id("Deployment", "app"), changes.clone())]),
                                )]),
                            ),
                            ("Changes", changes.clone()),
                            ("Objects", Value::map(vec![(id("Deployment", "app"), changes)])),
                        ],
                        "{}",
                    ),
                ),
                (
                    "Values",
                    Value::map(vec![(Value::Str("env".into()), Value::Str("prod".into()))]),
                ),
            ],
            "{}",
        )
    }

    fn render(src: &str) -> Result<String, TemplateError> {
        Template::parse("commit message", src)?.execute(&data())
    }

    #[test]
    fn flux_documented_template_renders() {
        let src = r#"Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
"#;
        assert_eq!(
            render(src).unwrap(),
            "Automated image update\n\nAutomation name: flux-system/auto\n\nFiles:\n- deploy.yaml\nObjects:\n- Deployment app\n  Changes:\n    - app:1.0.0 -> app:1.1.0\n"
        );
    }

    #[test]
    fn functions_conditions_and_values() {
        assert_eq!(
            render(r#"[{{ .Values.env | upper }}] {{ if eq .Values.env "prod" }}ship{{ else }}test{{ end }} {{ len .Changed.Changes }} {{ printf "%s/%d" "a" 3 }}"#).unwrap(),
            "[PROD] ship 1 a/3"
        );
        assert_eq!(
            render(r#"{{ with .Values.missing }}x{{ else }}none{{ end }} {{ range .Changed.Changes }}{{ .NewValue | trimPrefix "app:" }}{{ end }}"#).unwrap(),
            "none 1.1.0"
        );
        assert_eq!(render("{{/* note */}}a{{ $x := 1 }}{{ $x }}").unwrap(), "a1");
    }

    #[test]
    fn errors_read_as_go_writes_them() {
        let e = render("{{ .Updated }}").unwrap_err().to_string();
        assert!(
            e.contains("can't evaluate field Updated in type source.TemplateData"),
            "{e}"
        );
        let e = render("{{ sha256sum .Values.env }}").unwrap_err().to_string();
        assert!(e.contains("function \"sha256sum\" not defined"), "{e}");
        assert!(render("{{ if true }}unclosed").is_err());
        assert!(render("{{ with 1 }}a{{ else if 2 }}b{{ end }}").is_err());
        let deep = render(&"{{ if 1 }}".repeat(500)).unwrap_err().to_string();
        assert!(deep.contains("nested deeper"), "{deep}");
        assert!(render(r#"{{ repeat 100000000 "ab" }}"#).is_err());
        assert!(render("{{ end }}").is_err());
    }
}
