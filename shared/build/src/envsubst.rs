//! Flux's postBuild substitution language (fluxcd/pkg/envsubst, a fork of drone/envsubst): the
//! forms, their quirks and their errors as Flux v2.9 evaluates them, checked against the Go
//! implementation's results (the table test below).
//!
//! - `${v}`; defaults `${v:=d}`, `${v=d}`, `${v:-d}`, `${v:+d}`, `${v:?d}` (all alike: the value
//!   when non-empty, else the default, which may mix text and nested `${…}`);
//! - `${#v}` (length in bytes), `${v:pos}`, `${v:pos:len}` (byte offsets);
//! - `${v/a/b}`, `${v//a/b}`, `${v/#a/b}`, `${v/%a/b}` (literal strings);
//! - `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}` (glob patterns; `*` and `?` match `/` too);
//! - `${v^}`, `${v^^}`, `${v,}`, `${v,,}`;
//! - `$$` is a literal `$`; `$v` is left alone; anything else after `${` that does not parse
//!   fails the whole text, as in Flux.
//!
//! In strict mode (Flux's default `StrictPostBuildSubstitutions`) an unset variable is an error
//! except in the default forms. One deliberate difference: a negative substring length is an
//! error here where Go's slice panics.

use std::collections::BTreeMap;

/// A node of a parsed argument: text, or a nested expression.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Expr(Box<Expr>),
}

#[derive(Debug, Clone)]
struct Expr {
    name: String,
    op: Op,
    args: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Plain,
    Length,
    Default,
    Substring,
    ReplaceFirst,
    ReplaceAll,
    ReplacePrefix,
    ReplaceSuffix,
    TrimShortestPrefix,
    TrimLongestPrefix,
    TrimShortestSuffix,
    TrimLongestSuffix,
    UpperFirst,
    Upper,
    LowerFirst,
    Lower,
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

const BAD: &str = "bad substitution";
const UNCLOSED: &str = "missing closing brace";

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn text(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.src[from..self.pos]).into_owned()
    }

    /// An expression; `${` already consumed.
    fn expr(&mut self) -> Result<Expr, String> {
        let length = self.eat("#");
        let start = self.pos;
        while let Some(c) = std::str::from_utf8(&self.src[self.pos..])
            .ok()
            .and_then(|s| s.chars().next())
        {
            if c.is_alphanumeric() || c == '_' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        let name = self.text(start);
        if name.is_empty() {
            return Err(if length {
                BAD.into()
            } else {
                "unable to parse variable name".into()
            });
        }
        if length {
            return if self.eat("}") {
                Ok(Expr {
                    name,
                    op: Op::Length,
                    args: Vec::new(),
                })
            } else {
                Err(BAD.into())
            };
        }
        let expr = |op, args| {
            Ok(Expr {
                name: name.clone(),
                op,
                args,
            })
        };
        if self.eat("}") {
            return expr(Op::Plain, Vec::new());
        }
        if self.eat(":=") || self.eat(":-") || self.eat(":+") || self.eat(":?") || self.eat("=") {
            let arg = self.mixed()?;
            return expr(Op::Default, vec![arg]);
        }
        if self.eat(":") {
            let pos = self.param(b":}", false)?;
            let mut args = vec![pos];
            if self.eat(":") {
                args.push(self.param(b"}", false)?);
            }
            if args.iter().any(Vec::is_empty) {
                return Err("unable to parse substitution within function".into());
            }
            return if self.eat("}") {
                expr(Op::Substring, args)
            } else {
                Err(BAD.into())
            };
        }
        if self.eat("/") {
            let op = if self.eat("/") {
                Op::ReplaceAll
            } else if self.eat("#") {
                Op::ReplacePrefix
            } else if self.eat("%") {
                Op::ReplaceSuffix
            } else {
                Op::ReplaceFirst
            };
            let pattern = self.param(b"/}", true)?;
            if pattern.is_empty() || !self.eat("/") {
                return Err(BAD.into());
            }
            let replacement = self.param(b"}", true)?;
            if !self.eat("}") {
                return Err(BAD.into());
            }
            return expr(op, vec![pattern, replacement]);
        }
        for (token, long, short) in [
            ("#", Op::TrimLongestPrefix, Op::TrimShortestPrefix),
            ("%", Op::TrimLongestSuffix, Op::TrimShortestSuffix),
        ] {
            if self.eat(token) {
                let op = if self.eat(token) { long } else { short };
                let pattern = self.param(b"}", false)?;
                return if self.eat("}") {
                    expr(op, vec![pattern])
                } else {
                    Err(BAD.into())
                };
            }
        }
        for (token, all, first) in [("^", Op::Upper, Op::UpperFirst), (",", Op::Lower, Op::LowerFirst)] {
            if self.eat(token) {
                let op = if self.eat(token) { all } else { first };
                return if self.eat("}") {
                    expr(op, Vec::new())
                } else {
                    Err(BAD.into())
                };
            }
        }
        Err(UNCLOSED.into())
    }

    /// One argument node: a nested expression when it starts with `${`, else text up to one of
    /// `ends` (with `\/`, `\\` and `$$` escapes where `escapes`). A nested expression followed by
    /// more text is refused, as Flux refuses it.
    fn param(&mut self, ends: &[u8], escapes: bool) -> Result<Vec<Node>, String> {
        if self.eat("${") {
            let nested = self.expr()?;
            return match self.peek() {
                Some(c) if ends.contains(&c) => Ok(vec![Node::Expr(Box::new(nested))]),
                _ => Err(BAD.into()),
            };
        }
        let mut text = Vec::new();
        while let Some(c) = self.peek() {
            if ends.contains(&c) {
                break;
            }
            if escapes
                && (self.src[self.pos..].starts_with(b"\\/") || self.src[self.pos..].starts_with(b"\\\\"))
            {
                text.push(self.src[self.pos + 1]);
                self.pos += 2;
                continue;
            }
            if escapes && self.src[self.pos..].starts_with(b"$$") {
                text.push(b'$');
                self.pos += 2;
                continue;
            }
            if self.src[self.pos..].starts_with(b"${") {
                return Err(BAD.into());
            }
            text.push(c);
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Err(UNCLOSED.into());
        }
        Ok(if text.is_empty() {
            Vec::new()
        } else {
            vec![Node::Text(String::from_utf8_lossy(&text).into_owned())]
        })
    }

    /// A default's argument: text and nested expressions up to the first `}`, no escapes.
    fn mixed(&mut self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        let mut start = self.pos;
        loop {
            match self.peek() {
                None => return Err(UNCLOSED.into()),
                Some(b'}') => {
                    if self.pos > start {
                        nodes.push(Node::Text(self.text(start)));
                    }
                    self.pos += 1;
                    return Ok(nodes);
                }
                Some(b'$') if self.src[self.pos..].starts_with(b"${") => {
                    if self.pos > start {
                        nodes.push(Node::Text(self.text(start)));
                    }
                    self.pos += 2;
                    nodes.push(Node::Expr(Box::new(self.expr()?)));
                    start = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// Substitutes `vars` in `input`; the error is Flux's message.
pub fn eval(input: &str, vars: &BTreeMap<String, String>, strict: bool) -> Result<String, String> {
    let src = input.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i..].starts_with(b"$$") {
            out.push(b'$');
            i += 2;
        } else if src[i..].starts_with(b"${") {
            let mut parser = Parser { src, pos: i + 2 };
            let expr = parser.expr()?;
            out.extend_from_slice(evaluate(&expr, vars, strict)?.as_bytes());
            i = parser.pos;
        } else {
            out.push(src[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn evaluate(expr: &Expr, vars: &BTreeMap<String, String>, strict: bool) -> Result<String, String> {
    // Arguments first, eagerly (a nested unset variable fails even when unused), as Flux.
    let mut args = Vec::with_capacity(expr.args.len());
    for arg in &expr.args {
        let mut value = String::new();
        for node in arg {
            match node {
                Node::Text(t) => value.push_str(t),
                Node::Expr(nested) => value.push_str(&evaluate(nested, vars, strict)?),
            }
        }
        args.push(value);
    }
    let value = match vars.get(&expr.name) {
        Some(v) => v.clone(),
        None if strict && expr.op != Op::Default => {
            return Err(format!("variable not set (strict mode): \"{}\"", expr.name));
        }
        None => String::new(),
    };
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    Ok(match expr.op {
        Op::Plain => value,
        Op::Length => value.len().to_string(),
        Op::Default if value.is_empty() => args.concat(),
        Op::Default => value,
        Op::Substring => substring(&value, arg(0), args.get(1).map(String::as_str))?,
        Op::ReplaceFirst => value.replacen(arg(0), arg(1), 1),
        Op::ReplaceAll => value.replace(arg(0), arg(1)),
        // An empty replacement leaves the value as it is (Go's `len(args) != 2`).
        Op::ReplacePrefix if arg(1).is_empty() => value,
        Op::ReplaceSuffix if arg(1).is_empty() => value,
        Op::ReplacePrefix => match value.strip_prefix(arg(0)) {
            Some(rest) => format!("{}{rest}", arg(1)),
            None => value,
        },
        Op::ReplaceSuffix => match value.strip_suffix(arg(0)) {
            Some(rest) => format!("{rest}{}", arg(1)),
            None => value,
        },
        Op::TrimShortestPrefix => trim_prefix(&value, arg(0), false),
        Op::TrimLongestPrefix => trim_prefix(&value, arg(0), true),
        Op::TrimShortestSuffix | Op::TrimLongestSuffix => {
            // Go reverses the text and the pattern and trims a prefix.
            let reversed: String = value.chars().rev().collect();
            let pattern: String = arg(0).chars().rev().collect();
            trim_prefix(&reversed, &pattern, expr.op == Op::TrimLongestSuffix)
                .chars()
                .rev()
                .collect()
        }
        Op::Upper => value.to_uppercase(),
        Op::Lower => value.to_lowercase(),
        Op::UpperFirst | Op::LowerFirst => {
            let mut chars = value.chars();
            match chars.next() {
                Some(first) if expr.op == Op::UpperFirst => first.to_uppercase().chain(chars).collect(),
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => value,
            }
        }
    })
}

/// `${v:pos[:len]}` on bytes: an unparsable number gives the whole value, a negative position
/// counts from the end (clamped at 0), past the end gives "".
fn substring(value: &str, pos: &str, len: Option<&str>) -> Result<String, String> {
    let bytes = value.as_bytes();
    let n = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let Ok(mut pos) = pos.parse::<i64>() else {
        return Ok(value.to_string());
    };
    if pos < 0 {
        pos = (n + pos).max(0);
    }
    let from = |p: i64| String::from_utf8_lossy(&bytes[usize::try_from(p).unwrap_or(0)..]).into_owned();
    let Some(len) = len else {
        return Ok(if pos < n { from(pos) } else { String::new() });
    };
    let Ok(len) = len.parse::<i64>() else {
        return Ok(value.to_string());
    };
    if len < 0 {
        return Err(format!("substring length {len} is negative"));
    }
    if pos + len >= n {
        return Ok(if pos < n { from(pos) } else { String::new() });
    }
    let (a, b) = (
        usize::try_from(pos).unwrap_or(0),
        usize::try_from(pos + len).unwrap_or(0),
    );
    Ok(String::from_utf8_lossy(&bytes[a..b]).into_owned())
}

/// Removes the shortest (or longest) non-empty prefix of `value` the glob matches.
fn trim_prefix(value: &str, pattern: &str, longest: bool) -> String {
    let ends: Vec<usize> = value.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
    let matching = |end: &&usize| glob(pattern.as_bytes(), &value.as_bytes()[..**end]);
    let found = if longest {
        ends.iter().rev().find(matching)
    } else {
        ends.iter().find(matching)
    };
    match found {
        Some(end) => value[*end..].to_string(),
        None => value.to_string(),
    }
}

/// Go's `path.Match` as Flux's fork has it: `*` and `?` match any byte, `/` included; `[…]`
/// classes (`^` negates, ranges) and `\` escapes. A malformed pattern matches nothing.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => (0..=text.len()).any(|i| glob(&pattern[1..], &text[i..])),
        Some(b'?') => !text.is_empty() && glob(&pattern[1..], &text[1..]),
        Some(b'[') => {
            let Some((&c, rest)) = text.split_first() else {
                return false;
            };
            let mut i = 1;
            let negate = pattern.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&p) = pattern.get(i) else {
                    return false;
                };
                if p == b']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (lo, next) = if p == b'\\' {
                    match pattern.get(i + 1) {
                        Some(&e) => (e, i + 2),
                        None => return false,
                    }
                } else {
                    (p, i + 1)
                };
                let (hi, next) = if pattern.get(next) == Some(&b'-')
                    && pattern.get(next + 1).is_some_and(|&e| e != b']')
                {
                    (pattern[next + 1], next + 2)
                } else {
                    (lo, next)
                };
                matched |= lo <= c && c <= hi;
                i = next;
            }
            matched != negate && glob(&pattern[i..], rest)
        }
        Some(b'\\') => match pattern.get(1) {
            Some(&e) => text.first() == Some(&e) && glob(&pattern[2..], &text[1..]),
            None => false,
        },
        Some(&p) => text.first() == Some(&p) && glob(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [
            ("v", "hello"),
            ("p", "ab/cd.tar.gz"),
            ("u8", "héllo"),
            ("empty", ""),
            ("b", "B"),
            ("n", "-2"),
            ("two", "2"),
            ("pat", "l"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Results of the Go implementation (fluxcd/pkg/envsubst v1.7.0), strict mode.
    #[test]
    fn forms_evaluate_as_flux_does() {
        let cases = [
            ("${v}", "hello"),
            ("${unset:=d} ${empty:=d} ${v:=d}", "d d hello"),
            ("${unset=d} ${empty:-d} ${v:+alt} ${empty:?msg}", "d d hello msg"),
            ("${a:=x${b}y} ${a:-${c:-${b}}}", "xBy B"),
            ("${a:-{x}} ${a:-a}b}", "{x} ab}"),
            ("${#v} ${#u8} ${#empty}", "5 6 0"),
            (
                "${v:1} ${v:9} ${v:1:99} ${v:9:1} ${v:1:0} ${v:1:2}",
                "ello  ello   el",
            ),
            ("${v:abc} ${v:${n}} ${v:${two}:${two}}", "hello lo ll"),
            (
                "${v/l/L} ${v//l/L} ${v/#he/HE} ${v/%lo/LO} ${v/l*/X}",
                "heLlo heLLo HEllo helLO hello",
            ),
            ("${v/#h/} ${v/%o/} ${v/l/}", "hello hello helo"),
            ("${p//\\//_} ${p//./$$}", "ab_cd.tar.gz ab/cd$tar$gz"),
            ("${v/${pat}/${b}}", "heBlo"),
            (
                "${p#*/} ${p##*.} ${p%.*} ${p%%.*}",
                "cd.tar.gz gz ab/cd.tar ab/cd",
            ),
            ("${v#*} ${v%*} ${v##*} ${v%%*}", "ello hell  "),
            ("${v#[a-h]} ${v%[a-o]} ${v#\\h}", "ello hello ello"),
            ("${v^} ${v^^} ${b,} ${b,,} ${empty^}", "Hello HELLO b b "),
            ("$${v} $$v $v a$$$${v} $", "${v} $v $v a$${v} $"),
        ];
        for (input, want) in cases {
            assert_eq!(eval(input, &vars(), true).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn errors_are_flux_errors() {
        let cases = [
            ("${missing}", "variable not set (strict mode): \"missing\""),
            ("${#missing}", "variable not set (strict mode): \"missing\""),
            ("${v:-${missing}}", "variable not set (strict mode): \"missing\""),
            ("${v-d}", "missing closing brace"),
            ("${v.x}", "missing closing brace"),
            ("${v", "missing closing brace"),
            ("${}", "unable to parse variable name"),
            ("${ v }", "unable to parse variable name"),
            ("${#}", "bad substitution"),
            ("${v^x}", "bad substitution"),
            ("${v/a}", "bad substitution"),
            ("${v//}", "bad substitution"),
            ("${v/x${pat}/L}", "bad substitution"),
            ("${v:}", "unable to parse substitution within function"),
        ];
        for (input, want) in cases {
            assert_eq!(eval(input, &vars(), true), Err(want.to_string()), "{input}");
        }
        assert_eq!(
            eval("${missing} ${#missing}", &vars(), false).as_deref(),
            Ok(" 0")
        );
    }
}
