//! The process environment as the config sees it, and `${VAR}` expansion.
//!
//! Parsing reads the environment only through an [`Env`] snapshot handed to it, so it
//! stays a pure function of its inputs (and testable); [`Env::capture`] takes the real
//! one at start-up. Any string value of the config may use `${VAR}` or
//! `${VAR:-default}` (`$$` is a literal `$`): secrets such as tokens then live in the
//! environment (a systemd `EnvironmentFile`), not in the file. Error messages show the
//! `${VAR}` text, never the expanded value.

use std::collections::HashMap;

use super::de::Ctx;
use super::ConfigError;

/// A snapshot of what the config may read from its surroundings.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    hostname: Option<String>,
}

impl Env {
    /// The process's environment variables and the host name.
    pub fn capture() -> Env {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            hostname,
        }
    }

    /// Given variables and no host name (tests, tools).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            hostname: None,
        }
    }

    /// A variable's value, if set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A non-empty variable's value.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// The first of `names` that is set and not empty, with its value (for variables
    /// with several spellings, such as `HTTPS_PROXY` and `https_proxy`).
    pub fn first_non_empty(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names
            .iter()
            .find_map(|name| Some((*name, self.non_empty(name)?)))
    }

    /// The machine's host name, if known.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
}

/// The expansions made, so that messages about a key can show `${VAR}` instead of the
/// value it stood for.
#[derive(Debug, Default)]
pub struct Expanded(Vec<(String, String)>);

/// Values shorter than this are not hidden in messages (they would garble them and
/// cannot be secrets worth the name).
const REDACT_MIN: usize = 4;

impl Expanded {
    /// `message` with every expanded value replaced by the text it was written as.
    pub fn redact(&self, _key: &str, mut message: String) -> String {
        for (original, value) in &self.0 {
            if value.len() >= REDACT_MIN && message.contains(value.as_str()) {
                message = message.replace(value.as_str(), original);
            }
        }
        message
    }
}

/// Expands `${…}` in every string of `value` (at config path `key`).
pub(super) fn expand(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    value: &mut toml::Value,
    expanded: &mut Expanded,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            let out = expand_str(s, env).map_err(|var| {
                ctx.error(key, format!("environment variable `{var}` is not set"))
            })?;
            if out != *s {
                expanded.0.push((std::mem::take(s), out.clone()));
            }
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(ctx, env, &format!("{key}[{i}]"), item, expanded)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                expand(ctx, env, &super::de::join(key, k), v, expanded)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with `${VAR}`, `${VAR:-default}` and `$$` expanded; `Err(VAR)` for a variable
/// that is not set and has no default.
fn expand_str(text: &str, env: &Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(end) = after.strip_prefix('{').and_then(|b| b.find('}')) {
            let inner = &after[1..=end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            match (env.var(name), default) {
                (Some(v), _) if !(v.is_empty() && default.is_some()) => out.push_str(v),
                (_, Some(default)) => out.push_str(default),
                (None, None) => return Err(name.to_owned()),
                (Some(_), None) => unreachable!("handled by the first arm"),
            }
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_defaults_and_dollars() {
        let env = Env::from_vars([("TOKEN", "s3cret"), ("EMPTY", "")]);
        let x = |t: &str| expand_str(t, &env);
        assert_eq!(x("Bearer ${TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(x("${NOPE:-fallback}/${TOKEN}").unwrap(), "fallback/s3cret");
        assert_eq!(
            x("${EMPTY:-d}").unwrap(),
            "d",
            "empty takes the default, as in sh"
        );
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("cost $$5, $HOME").unwrap(), "cost $5, $HOME");
        assert_eq!(x("${NOPE}").unwrap_err(), "NOPE");
        assert_eq!(x("${unterminated").unwrap(), "${unterminated");
    }

    #[test]
    fn messages_show_the_variable_not_the_secret() {
        let e = Expanded(vec![("${TOKEN}".into(), "s3cret-value".into())]);
        assert_eq!(
            e.redact("k", "`s3cret-value` is not valid".into()),
            "`${TOKEN}` is not valid"
        );
    }
}
