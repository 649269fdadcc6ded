//! YAML in and out, the way kustomize does it.
//!
//! kustomize parses with go-yaml v3 (YAML 1.2 scalars), turns every object into JSON and prints
//! it with go-yaml v2 (`sigs.k8s.io/yaml.JSONToYAML`). The output therefore has keys in go-yaml's
//! "natural" order, numbers as JSON writes them, quoting that is safe for YAML 1.1 readers,
//! literal blocks for multi-line strings and plain or quoted strings folded after column 80.
//! [`to_yaml`] reproduces that printer over `serde_json::Value`, and [`go_json`] reproduces Go's
//! `encoding/json`, which the generator name hashes are computed from.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Number, Value};

/// Parses a multi-document YAML stream; empty documents are skipped, as kustomize does.
/// Plain scalars resolve as go-yaml v3 resolves them (kyaml reads resources with it): `0755` is
/// octal, `1_000` is 1000 and a date is a timestamp.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    Ok(parse_resource_documents(text)?
        .into_iter()
        .map(|d| d.value)
        .collect())
}

/// A parsed document and where it holds empty values (`key:` with nothing after it).
///
/// kyaml tells an empty value from a written `null`: a strategic merge drops the first and keeps
/// the second. JSON has one null, so the empty ones are remembered by path.
pub struct Document {
    pub value: Value,
    pub empty_nulls: Vec<Vec<String>>,
}

/// [`parse_documents`], keeping where the empty values are.
pub fn parse_resource_documents(text: &str) -> Result<Vec<Document>, String> {
    let documents = build(text, Resolution::GoYamlV3)?;
    Ok(documents.into_iter().filter(|d| !d.value.is_null()).collect())
}

/// Parses a YAML stream with YAML 1.1 scalars, as go-yaml v2 (`sigs.k8s.io/yaml`) reads it:
/// kustomize reads kustomization files and JSON patches this way, so an unquoted `yes`, `on`
/// or `y` is a boolean there and `010` is octal.
pub fn parse_documents_yaml11(text: &str) -> Result<Vec<Value>, String> {
    let documents = build(text, Resolution::GoYamlV2)?;
    Ok(documents
        .into_iter()
        .map(|d| d.value)
        .filter(|d| !d.is_null())
        .collect())
}

/// Which Go YAML library's rules turn plain scalars into values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resolution {
    GoYamlV2,
    GoYamlV3,
}

fn build(text: &str, resolution: Resolution) -> Result<Vec<Document>, String> {
    let mut builder = Builder {
        resolution,
        documents: Vec::new(),
        empty_nulls: Vec::new(),
        stack: Vec::new(),
        anchors: std::collections::HashMap::new(),
        aliased: 0,
        error: None,
        last_scalar: None,
    };
    // Events are pulled one at a time (yaml-rust2's `load` recurses once per nesting level, and
    // a deeply nested file would overflow the stack); the builder's own stack is bounded.
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    loop {
        let (event, _) = parser.next_token().map_err(|e| e.to_string())?;
        let end = event == yaml_rust2::parser::Event::StreamEnd;
        yaml_rust2::parser::EventReceiver::on_event(&mut builder, event);
        if let Some(error) = builder.error.take() {
            return Err(error);
        }
        if end {
            break;
        }
    }
    // A block scalar that ends the input without a line break has none in its value (go-yaml);
    // yaml-rust2 adds one.
    let last_line = text.rsplit('\n').next().unwrap_or_default().trim();
    if !text.ends_with('\n')
        && !last_line.is_empty()
        && !last_line.starts_with('#')
        && let Some((index, path)) = builder.last_scalar.take()
        && let Some(document) = builder.documents.get_mut(index)
        && let Some(Value::String(value)) =
            path.iter().try_fold(&mut document.value, |node, key| match node {
                Value::Object(map) => map.get_mut(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            })
        && value.ends_with('\n')
    {
        value.pop();
    }
    Ok(builder.documents)
}

enum Frame {
    Sequence(Vec<Value>, usize),
    /// The map, the key whose value comes next, the anchor.
    Mapping(Map<String, Value>, Option<String>, usize),
}

struct Builder {
    resolution: Resolution,
    documents: Vec<Document>,
    /// Empty values of the document being built.
    empty_nulls: Vec<Vec<String>>,
    stack: Vec<Frame>,
    /// Anchored values and their size in nodes.
    anchors: std::collections::HashMap<usize, (Value, usize)>,
    /// Nodes copied by aliases so far, bounded against alias bombs.
    aliased: usize,
    error: Option<String>,
    /// The last scalar value when it is a block scalar: its document and its path.
    last_scalar: Option<(usize, Vec<String>)>,
}

impl Builder {
    fn push_value(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            let size = node_count(&value);
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.documents.push(Document {
                value,
                empty_nulls: std::mem::take(&mut self.empty_nulls),
            }),
            Some(Frame::Sequence(items, _)) => items.push(value),
            Some(Frame::Mapping(map, key, _)) => match key.take() {
                None => {
                    let text = key_text(&value);
                    // go-yaml v3 refuses a key written twice; v2 keeps the last value.
                    if self.resolution == Resolution::GoYamlV3
                        && map.contains_key(&text)
                        && self.error.is_none()
                    {
                        self.error = Some(format!("mapping key \"{text}\" already defined"));
                    }
                    *key = Some(text);
                }
                Some(k) => {
                    map.insert(k, value);
                }
            },
        }
    }

    /// Whether the next value is a map key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping(_, None, _)))
    }

    /// The path of the value about to be pushed.
    fn current_path(&self) -> Vec<String> {
        self.stack
            .iter()
            .map(|frame| match frame {
                Frame::Sequence(items, _) => items.len().to_string(),
                Frame::Mapping(_, key, _) => key.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// Deeper documents are refused (no manifest comes near; go-yaml has a limit too).
const MAX_DEPTH: usize = 1000;
/// Nodes aliases may copy in one stream: a few aliases of aliases would otherwise make
/// billions of nodes out of a few hundred bytes.
const MAX_ALIASED_NODES: usize = 1_000_000;

/// YAML merge keys (`<<: *base`, `<<: [*a, *b]`), as go-yaml v3 decodes them: the merged
/// mappings' entries, earlier ones first, under the mapping's own.
fn merge_keys(map: &mut Map<String, Value>) {
    let Some(merged) = map.remove("<<") else {
        return;
    };
    let sources = match merged {
        Value::Object(source) => vec![source],
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(source) => Some(source),
                _ => None,
            })
            .collect(),
        other => {
            // Not a mapping: kept as the key it looks like.
            map.insert("<<".into(), other);
            return;
        }
    };
    for source in sources {
        for (key, value) in source {
            map.entry(key).or_insert(value);
        }
    }
}

fn node_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

/// Map keys become strings, as `sigs.k8s.io/yaml` converts them for JSON.
fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

impl yaml_rust2::parser::EventReceiver for Builder {
    fn on_event(&mut self, event: yaml_rust2::parser::Event) {
        use yaml_rust2::parser::Event;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.error = Some(format!("document nests deeper than {MAX_DEPTH} levels"));
            }
            // A node after a block scalar means the scalar does not end the input.
            Event::SequenceStart(anchor, _) => {
                self.last_scalar = None;
                self.stack.push(Frame::Sequence(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.last_scalar = None;
                self.stack.push(Frame::Mapping(Map::new(), None, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Sequence(items, anchor)) => self.push_value(Value::Array(items), anchor),
                Some(Frame::Mapping(mut map, _, anchor)) => {
                    if self.resolution == Resolution::GoYamlV3 {
                        merge_keys(&mut map);
                    }
                    self.push_value(Value::Object(map), anchor)
                }
                None => {}
            },
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == yaml_rust2::scanner::TScalarStyle::Plain;
                let is_key = self.expecting_key();
                if !is_key {
                    let block = matches!(
                        style,
                        yaml_rust2::scanner::TScalarStyle::Literal
                            | yaml_rust2::scanner::TScalarStyle::Folded
                    );
                    self.last_scalar = block.then(|| (self.documents.len(), self.current_path()));
                }
                let value = match tag {
                    Some(tag) if tag.suffix == "str" => Value::String(text),
                    // An explicit type on a quoted scalar (`!!int "3"`) is honoured.
                    Some(tag) if matches!(tag.suffix.as_str(), "int" | "float" | "bool" | "null") => {
                        match self.resolution {
                            Resolution::GoYamlV2 => resolve_yaml11(&text),
                            Resolution::GoYamlV3 => resolve_yaml_v3(&text),
                        }
                    }
                    // kyaml keeps keys as written.
                    _ if plain && is_key && self.resolution == Resolution::GoYamlV3 => Value::String(text),
                    _ if plain => {
                        if text.is_empty() && tag.is_none() && !is_key && !self.stack.is_empty() {
                            let path = self.current_path();
                            self.empty_nulls.push(path);
                        }
                        match self.resolution {
                            Resolution::GoYamlV2 => resolve_yaml11(&text),
                            Resolution::GoYamlV3 => resolve_yaml_v3(&text),
                        }
                    }
                    _ => Value::String(text),
                };
                self.push_value(value, anchor);
            }
            Event::Alias(id) => {
                self.last_scalar = None;
                match self.anchors.get(&id) {
                    Some((_, size)) if self.aliased + size > MAX_ALIASED_NODES => {
                        self.error = Some("document contains excessive aliasing".into());
                    }
                    Some((value, size)) => {
                        self.aliased += size;
                        let value = value.clone();
                        self.push_value(value, 0);
                    }
                    None => self.error = Some(format!("unknown anchor {id}")),
                }
            }
            _ => {}
        }
    }
}

/// go-yaml v3's resolution of a plain scalar, as kyaml turns it into JSON.
fn resolve_yaml_v3(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if !s.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '.') {
        return Value::String(s.to_string());
    }
    if let Some(timestamp) = timestamp_v3(s) {
        return Value::String(timestamp);
    }
    let plain = s.replace('_', "");
    if let Some(i) = parse_go_int(&plain) {
        return Value::from(i);
    }
    if FLOAT.is_match(&plain)
        && let Some(n) = plain.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

/// A plain scalar go-yaml v3 reads as a timestamp (`2001-12-14`, `2001-12-14T21:59:43.10Z`,
/// `2001-12-14 21:59:43`), written as Go's JSON writes a time: RFC 3339, UTC as `Z`.
fn timestamp_v3(s: &str) -> Option<String> {
    static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ ])([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,9}))?(Z|[-+][0-9]{2}:[0-9]{2})?)?$",
        )
        .expect("valid regex")
    });
    let captures = TIMESTAMP.captures(s)?;
    let number = |i: usize| {
        captures
            .get(i)
            .map_or(Some(0), |m| m.as_str().parse::<u32>().ok())
    };
    let (year, month, day) = (number(1)?, number(2)?, number(3)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    let (hour, minute, second) = (number(4)?, number(5)?, number(6)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // A space-separated time has no zone in Go's layout; `T` without a zone does not parse.
    let spaced = s.contains(' ');
    let zone = match (captures.get(4), captures.get(8).map(|m| m.as_str())) {
        (None, _) => "Z".to_string(),
        (Some(_), None) if spaced => "Z".to_string(),
        (Some(_), Some(_)) if spaced => return None,
        (Some(_), None) => return None,
        (Some(_), Some("Z" | "+00:00" | "-00:00")) => "Z".to_string(),
        (Some(_), Some(zone)) => zone.to_string(),
    };
    let fraction = captures
        .get(7)
        .map(|m| m.as_str().trim_end_matches('0'))
        .filter(|f| !f.is_empty())
        .map(|f| format!(".{f}"))
        .unwrap_or_default();
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
    ))
}

/// go-yaml v2's resolution of a plain scalar.
fn resolve_yaml11(s: &str) -> Value {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    let plain = s.replace('_', "");
    if s.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') {
        if let Some(i) = parse_go_int(&plain) {
            return Value::from(i);
        }
        if FLOAT.is_match(&plain)
            && let Some(n) = plain.parse::<f64>().ok().and_then(Number::from_f64)
        {
            return Value::Number(n);
        }
    } else if s.starts_with('.')
        && is_go_float(s)
        && let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

/// `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Option<i64> {
    let (digits, radix, negative) = go_int_digits(s)?;
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Prints one document exactly as `sigs.k8s.io/yaml.JSONToYAML` (go-yaml v2) does.
pub fn to_yaml(value: &Value) -> String {
    // A stream starts as if after an indentation.
    let mut emitter = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
    };
    match value {
        Value::Object(map) if !map.is_empty() => emitter.mapping(map, 0),
        Value::Array(items) if !items.is_empty() => emitter.sequence(items, 0),
        other => emitter.value_after_indicator(other, 0),
    }
    emitter.out.push('\n');
    emitter.out
}

/// Go's `encoding/json.Marshal` of a generic value: sorted keys, HTML-safe escaping.
pub fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

fn write_go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_json_number(n)),
        Value::String(s) => write_go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(key, out);
                out.push(':');
                write_go_json(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as Go's `encoding/json` writes it.
fn go_json_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go uses %e here and trims the exponent to at least one digit ("1e-07" → "1e-7").
        let (digits, exp) = shortest_digits(f);
        let mantissa = mantissa(&digits);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}{mantissa}e{sign}{}", if f < 0.0 { "-" } else { "" }, exp.abs());
    }
    format_f(f)
}

/// The shortest round-tripping decimal digits of `f` and its decimal exponent (d.ddd × 10^exp).
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    (mantissa.replace('.', ""), exp.parse().unwrap_or(0))
}

fn mantissa(digits: &str) -> String {
    if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_string()
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`.
fn format_f(f: f64) -> String {
    // Rust's Display for f64 is the shortest round-trip representation without exponent.
    let s = format!("{f}");
    if s == "-0" { "0".to_string() } else { s }
}

/// `strconv.FormatFloat(f, 'g', -1, 64)`, as go-yaml v2 prints floats: %e when the exponent is
/// below -4 or at least 6 (Go's precision for the shortest form), %f otherwise.
fn format_g(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let (digits, exp) = shortest_digits(f);
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        exp_form(sign, &digits, exp)
    } else {
        format!("{sign}{}", format_f(f.abs()))
    }
}

fn exp_form(sign: &str, digits: &str, exp: i32) -> String {
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{}e{esign}{:02}", mantissa(digits), exp.abs())
}

/// A number as go-yaml v2 prints it after reading it back from Go's JSON.
fn yaml_number(n: &Number) -> String {
    let json = go_json_number(n);
    if !json.contains(['.', 'e', 'E']) {
        return json;
    }
    match json.parse::<f64>() {
        Ok(f) => format_g(f),
        Err(_) => json,
    }
}

struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
}

const BEST_WIDTH: usize = 80;
const BEST_INDENT: usize = 2;

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn mapping(&mut self, map: &Map<String, Value>, indent: usize) {
        for key in sorted_keys(map) {
            self.write_indent(indent);
            self.scalar(key, indent + BEST_INDENT, true);
            self.write_indicator(":", false, false, false);
            match &map[key] {
                Value::Object(m) if !m.is_empty() => self.mapping(m, indent + BEST_INDENT),
                Value::Array(items) if !items.is_empty() => self.sequence(items, indent),
                other => self.value_after_indicator(other, indent + BEST_INDENT),
            }
        }
    }

    fn sequence(&mut self, items: &[Value], indent: usize) {
        for item in items {
            self.write_indent(indent);
            self.write_indicator("-", true, false, true);
            match item {
                Value::Object(m) if !m.is_empty() => self.mapping(m, indent + BEST_INDENT),
                Value::Array(inner) if !inner.is_empty() => self.sequence(inner, indent + BEST_INDENT),
                other => self.value_after_indicator(other, indent + BEST_INDENT),
            }
        }
    }

    /// A scalar or an empty collection; `indent` is where folded lines continue.
    fn value_after_indicator(&mut self, value: &Value, indent: usize) {
        match value {
            Value::Object(_) => {
                self.write_indicator("{", true, true, false);
                self.write_indicator("}", false, false, false);
            }
            Value::Array(_) => {
                self.write_indicator("[", true, true, false);
                self.write_indicator("]", false, false, false);
            }
            Value::Null => self.plain("null", indent, false),
            Value::Bool(b) => self.plain(if *b { "true" } else { "false" }, indent, false),
            Value::Number(n) => self.plain(&yaml_number(n), indent, false),
            Value::String(s) => self.scalar(s, indent, false),
        }
    }

    /// A string, quoted as go-yaml v2's `stringv` and the emitter's style selection decide.
    fn scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        let can_use_plain = resolves_to_string(s) && !is_base60_float(s);
        let mut style = if s.contains('\n') {
            Style::Literal
        } else if can_use_plain {
            Style::Plain
        } else {
            Style::DoubleQuoted
        };
        let analysis = analyze(s.as_bytes());
        if simple_key && analysis.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain && (!analysis.block_plain_allowed || (s.is_empty() && simple_key)) {
            style = Style::SingleQuoted;
        }
        if style == Style::SingleQuoted && !analysis.single_quoted_allowed {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal && (!analysis.block_allowed || simple_key) {
            style = Style::DoubleQuoted;
        }
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.plain(s, indent, allow_breaks),
            Style::SingleQuoted => self.single_quoted(s, indent, allow_breaks),
            Style::DoubleQuoted => self.double_quoted(s, indent, allow_breaks),
            Style::Literal => self.literal(s, indent),
        }
    }

    fn plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        // Most scalars have no space to fold at and no line break: written as they are.
        if !s.contains(|c: char| c == ' ' || is_break_char(c)) {
            self.out.push_str(s);
            self.column += s.chars().count();
            self.whitespace = false;
            self.indention = false;
            return;
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && chars.get(i + 1) != Some(&' ') {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break_char(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn single_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break_char(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn double_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let bytes = s.as_bytes();
        let chars: Vec<(usize, char)> = s.char_indices().collect();
        let mut spaces = false;
        for (n, &(i, c)) in chars.iter().enumerate() {
            if !is_printable(bytes, i) || c == '\u{feff}' || is_break_char(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    c => {
                        let v = c as u32;
                        let hex = if v <= 0xFF {
                            format!("x{v:02X}")
                        } else if v <= 0xFFFF {
                            format!("u{v:04X}")
                        } else {
                            format!("U{v:08X}")
                        };
                        for h in hex.chars() {
                            self.put(h);
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && n > 0 && n + 1 < chars.len() {
                    self.write_indent(indent);
                    if chars.get(n + 1).map(|&(_, c)| c) == Some(' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.write_indicator("|", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        if chars.first().is_some_and(|&c| c == ' ' || is_break_char(c)) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let chomp = match chars.len() {
            0 => Some('-'),
            len if !is_break_char(chars[len - 1]) => Some('-'),
            1 => Some('+'),
            len if is_break_char(chars[len - 2]) => Some('+'),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(&chomp.to_string(), false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in chars {
            if is_break_char(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn is_break_char(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml's `is_printable`, on the UTF-8 bytes.
fn is_printable(b: &[u8], i: usize) -> bool {
    let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
    let c = at(0);
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (c == 0xC2 && at(1) >= 0xA0)
        || (c > 0xC2 && c < 0xED)
        || (c == 0xED && at(1) < 0xA0)
        || c == 0xEE
        || (c == 0xEF
            && !(at(1) == 0xBB && at(2) == 0xBF)
            && !(at(1) == 0xBF && (at(2) == 0xBE || at(2) == 0xBF)))
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// libyaml's `yaml_emitter_analyze_scalar` (block context; flow-only flags are not needed).
fn analyze(value: &[u8]) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = value.starts_with(b"---") || value.starts_with(b"...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let s = String::from_utf8_lossy(value);
    let mut chars = s.char_indices().enumerate().peekable();
    while let Some((n, (i, c))) = chars.next() {
        let next = chars.peek().map(|&(_, (_, c))| c);
        let followed_by_whitespace = matches!(
            next,
            None | Some(' ')
                | Some('\t')
                | Some('\r')
                | Some('\n')
                | Some('\u{85}')
                | Some('\u{2028}')
                | Some('\u{2029}')
        );
        if n == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@'
                | '`' => {
                    block_indicators = true;
                }
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(value, i) {
            special = true;
        }
        let last = next.is_none();
        if c == ' ' {
            if n == 0 {
                leading_space = true;
            }
            if last {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break_char(c) {
            line_breaks = true;
            if n == 0 {
                leading_break = true;
            }
            if last {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t' | '\0') || is_break_char(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// go-yaml v2's `resolve("", s)` yields the string tag, i.e. `s` can be written unquoted.
fn resolves_to_string(s: &str) -> bool {
    const NON_STRINGS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no", "No", "NO",
        "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null", "Null", "NULL", ".nan", ".NaN",
        ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
    ];
    if NON_STRINGS.contains(&s) {
        return false;
    }
    match s.as_bytes()[0] {
        b'.' => !is_go_float(s),
        b'0'..=b'9' | b'+' | b'-' => {
            if is_timestamp(s) {
                return false;
            }
            let plain = s.replace('_', "");
            !(is_go_int(&plain) || FLOAT.is_match(&plain) || is_binary(&plain))
        }
        _ => true,
    }
}

static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").expect("valid regex")
});
static BASE60: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$").expect("valid regex"));
static GO_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").expect("valid regex")
});
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:([Tt])\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})|( )\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d{1,9})?)?$")
        .expect("valid regex")
});

fn is_base60_float(s: &str) -> bool {
    !s.is_empty() && BASE60.is_match(s)
}

fn is_go_float(s: &str) -> bool {
    GO_FLOAT.is_match(s)
}

fn is_binary(s: &str) -> bool {
    let digits = s.strip_prefix("-0b").or_else(|| s.strip_prefix("0b"));
    digits.is_some_and(|d| !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b == b'0' || b == b'1'))
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint` would succeed.
fn is_go_int(s: &str) -> bool {
    go_int_digits(s).is_some_and(|(digits, radix, _)| u64::from_str_radix(digits, radix).is_ok())
}

/// The digits, radix and sign of a Go integer literal (base prefix or leading-zero octal).
fn go_int_digits(s: &str) -> Option<(&str, u32, bool)> {
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = if let Some(d) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (d, 16)
    } else if let Some(d) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (d, 8)
    } else if let Some(d) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (d, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (&unsigned[1..], 8)
    } else {
        (unsigned, 10)
    };
    (!digits.is_empty() && !digits.starts_with(['+', '-'])).then_some((digits, radix, negative))
}

fn is_timestamp(s: &str) -> bool {
    let Some(c) = TIMESTAMP.captures(s) else {
        return false;
    };
    let num = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<u32>().ok()).unwrap_or(0);
    let (year, month, day) = (num(1), num(2), num(3));
    if !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

/// go-yaml v2's key order: numbers within keys compare numerically, letters before others.
fn sorted_keys(map: &Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| natural_cmp(a, b));
    keys
}

fn natural_cmp(a: &str, b: &str) -> Ordering {
    // Keys are almost always ASCII: compared as bytes, without collecting characters.
    if a.is_ascii() && b.is_ascii() {
        natural_cmp_of(a.as_bytes(), b.as_bytes())
    } else {
        let ar: Vec<char> = a.chars().collect();
        let br: Vec<char> = b.chars().collect();
        natural_cmp_of(&ar, &br)
    }
}

/// A character of a key, as go-yaml's key order looks at it.
trait KeyChar: Copy + Ord {
    fn is_letter(self) -> bool;
    fn digit(self) -> Option<i64>;
}

impl KeyChar for u8 {
    fn is_letter(self) -> bool {
        self.is_ascii_alphabetic()
    }
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| i64::from(self - b'0'))
    }
}

impl KeyChar for char {
    fn is_letter(self) -> bool {
        self.is_alphabetic()
    }
    fn digit(self) -> Option<i64> {
        self.is_ascii_digit().then(|| i64::from(self as u8 - b'0'))
    }
}

fn natural_cmp_of<C: KeyChar>(ar: &[C], br: &[C]) -> Ordering {
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_letter();
        let bl = br[i].is_letter();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i].digit() == Some(0) || br[i].digit() == Some(0) {
            let mut j = i;
            while j > 0 && ar[j - 1].digit().is_some() {
                j -= 1;
                if ar[j].digit() != Some(0) {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while let Some(d) = ar.get(ai).and_then(|c| c.digit()) {
            an = an.wrapping_mul(10).wrapping_add(d);
            ai += 1;
        }
        let mut bi = i;
        while let Some(d) = br.get(bi).and_then(|c| c.digit()) {
            bn = bn.wrapping_mul(10).wrapping_add(d);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting_follows_go_yaml_v2() {
        let doc = json!({"a": ["yes", "true", "", "a: b", "#x", " lead", "1", "1.5", "1e3", "0x1F", "2001-12-14", "1:20", "plain text", "-", "~", "y"]});
        assert_eq!(
            to_yaml(&doc),
            "a:\n- \"yes\"\n- \"true\"\n- \"\"\n- 'a: b'\n- '#x'\n- ' lead'\n- \"1\"\n- \"1.5\"\n- \"1e3\"\n- \"0x1F\"\n- \"2001-12-14\"\n- \"1:20\"\n- plain text\n- '-'\n- \"~\"\n- \"y\"\n"
        );
    }

    #[test]
    fn numbers_print_as_json_then_yaml() {
        let doc = json!({"a": 1.0, "b": 1.5, "c": 1234567.5, "d": 0.00001, "e": 1e21, "f": 16});
        assert_eq!(
            to_yaml(&doc),
            "a: 1\nb: 1.5\nc: 1.2345675e+06\nd: 1e-05\ne: 1e+21\nf: 16\n"
        );
    }

    #[test]
    fn keys_sort_naturally() {
        let doc = json!({"a10": 1, "a9": 2, "b": 3, "A": 4});
        assert_eq!(to_yaml(&doc), "A: 4\na9: 2\na10: 1\nb: 3\n");
    }

    #[test]
    fn go_json_escapes_html() {
        assert_eq!(
            go_json(&json!({"b": "<&>", "a": 1})),
            r#"{"a":1,"b":"\u003c\u0026\u003e"}"#
        );
    }
}
