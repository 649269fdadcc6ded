//! postBuild variable substitution with the semantics of Flux's envsubst: `${var}`,
//! `${var:=default}` (and `:-`, `=`, `-`), `$${var}` to escape, `$var` left alone, and strict
//! mode failing on undefined variables.

use std::collections::BTreeMap;

/// Substitutes the variables in `input`. With `strict`, an undefined variable without a default
/// is an error naming it.
pub fn substitute(input: &str, vars: &BTreeMap<String, String>, strict: bool) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${var}` is the literal `${var}`.
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = after;
            continue;
        };
        let expression = &body[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let name = &expression[..name_end];
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            out.push('$');
            rest = after;
            continue;
        }
        let operator = &expression[name_end..];
        let value = vars.get(name);
        let replaced = if let Some(default) = operator
            .strip_prefix(":=")
            .or_else(|| operator.strip_prefix(":-"))
        {
            value
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        } else if let Some(default) = operator.strip_prefix('=').or_else(|| operator.strip_prefix('-')) {
            value.cloned().unwrap_or_else(|| default.to_string())
        } else if operator.is_empty() {
            match value {
                Some(v) => v.clone(),
                None if strict => return Err(format!("variable not set (strict mode): \"{name}\"")),
                None => String::new(),
            }
        } else {
            return Err(format!("unsupported substitution '${{{expression}}}'"));
        };
        out.push_str(&replaced);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("cluster".into(), "prod".into()), ("empty".into(), String::new())])
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let out = substitute(
            "a: ${cluster}-${region:=eu} ${empty:=x} $${kept} $plain ${empty}",
            &vars(),
            true,
        )
        .unwrap();
        assert_eq!(out, "a: prod-eu x ${kept} $plain ");
    }

    #[test]
    fn strict_mode_names_the_missing_variable() {
        let err = substitute("${missing}", &vars(), true).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        assert_eq!(substitute("${missing}", &vars(), false).unwrap(), "");
    }
}
