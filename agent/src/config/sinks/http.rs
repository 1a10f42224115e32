//! `type = "http"` sinks: where to POST, over what (plain HTTP or verified TLS, directly
//! or through a proxy) and how the body is encoded.
//!
//! Everything is decided here, at parse time, from the file and the [`Env`] snapshot:
//! the proxy a sink uses (its `proxy` key, else `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`
//! minus `NO_PROXY`), so the transport gets typed, validated values and the process
//! environment is never read at run time.

use std::path::PathBuf;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Uri};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use rustls::pki_types::ServerName;
use serde::{Deserialize, Deserializer};

use super::super::de::{self, Ctx};
use super::super::env::Env;
use super::super::mqtt::TlsFiles;
use super::super::ConfigError;

/// Most messages in one batched POST (the delivery loop holds a batch in memory).
pub const HTTP_MAX_BATCH: usize = 1000;

/// `type = "http"`: POSTs to a URL.
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// `http://` or `https://`, without credentials.
    pub url: Uri,
    pub timeout: Duration,
    /// Extra headers on every request (e.g. an API key).
    pub headers: HeaderMap,
    /// Messages per POST. 1 (the default) posts each message as it is; more posts a
    /// JSON array of the messages (see the README), which receivers with a bulk
    /// endpoint take far faster.
    pub batch_max_messages: usize,
    /// Upper bound of a batched POST's body; a single larger message still goes alone.
    pub batch_max_bytes: usize,
    /// For `https://`: the CA bundle (default: the system roots) and the client
    /// certificate for mutual TLS. Always empty for `http://`.
    pub tls: TlsFiles,
    /// The name the server's certificate must carry, also sent as SNI (default: the
    /// URL's host): for receivers reached by IP address or through an alias.
    pub tls_server_name: Option<ServerName<'static>>,
    /// The forward proxy this sink goes through, if any.
    pub proxy: Option<HttpProxy>,
    /// How request bodies are encoded (`Content-Encoding`).
    pub compression: Compression,
}

/// `compression`: request bodies are sent compressed, with `Content-Encoding`, which
/// pays on metered links; the receiver must accept the encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    /// gzip (RFC 1952), level 6: understood by every HTTP stack.
    Gzip,
    /// Zstandard (RFC 8878), level 3: about gzip's ratio at a fraction of its CPU.
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` token, `None` for uncompressed bodies.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// A forward HTTP proxy: `https://` targets go through a `CONNECT` tunnel, `http://`
/// targets are sent to the proxy in absolute form.
#[derive(Clone)]
pub struct HttpProxy {
    /// `http://host:port/`, credentials removed: safe to show.
    pub uri: Uri,
    /// `Basic …` for `Proxy-Authorization`, from the URL's `user:password` (marked
    /// sensitive, never shown).
    pub auth: Option<HeaderValue>,
    /// Where the proxy came from: the `proxy` key or an environment variable.
    pub source: &'static str,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("uri", &self.uri)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .finish()
    }
}

impl std::fmt::Display for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (from {})", self.uri, self.source)
    }
}

/// The keys as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSinkSection {
    #[serde(deserialize_with = "http_url")]
    url: Uri,
    #[serde(
        default = "default_http_timeout",
        deserialize_with = "de::positive_millis"
    )]
    timeout_ms: Duration,
    #[serde(default, deserialize_with = "header_map")]
    headers: HeaderMap,
    #[serde(default = "one", deserialize_with = "batch_messages")]
    batch_max_messages: usize,
    #[serde(default = "default_batch_bytes", deserialize_with = "de::positive")]
    batch_max_bytes: usize,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default, deserialize_with = "server_name")]
    tls_server_name: Option<ServerName<'static>>,
    /// `""` turns the proxy environment variables off for this sink.
    #[serde(default)]
    proxy: Option<String>,
    #[serde(default)]
    compression: Compression,
}

/// Parses `[sinks.<name>]` of `type = "http"` (at config path `key`).
pub(super) fn parse(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    table: toml::Table,
) -> Result<HttpSinkConfig, ConfigError> {
    let s: HttpSinkSection = ctx.typed(key, toml::Value::Table(table))?;
    let https = s.url.scheme_str() == Some("https");
    for (name, set) in [
        ("ca_file", s.ca_file.is_some()),
        ("client_cert", s.client_cert.is_some()),
        ("client_key", s.client_key.is_some()),
        ("tls_server_name", s.tls_server_name.is_some()),
    ] {
        if set && !https {
            return Err(ctx.error(format!("{key}.{name}"), "only applies to an https:// url"));
        }
    }
    super::super::features::require_compression(ctx, &format!("{key}.compression"), s.compression)?;
    let proxy = resolve_proxy(env, &s.url, s.proxy.as_deref())
        .map_err(|message| ctx.error(format!("{key}.proxy"), message))?;
    Ok(HttpSinkConfig {
        url: s.url,
        timeout: s.timeout_ms,
        headers: s.headers,
        batch_max_messages: s.batch_max_messages,
        batch_max_bytes: s.batch_max_bytes,
        tls: TlsFiles {
            ca_file: s.ca_file,
            client_cert: s.client_cert,
            client_key: s.client_key,
        },
        tls_server_name: s.tls_server_name,
        proxy,
        compression: s.compression,
    })
}

/// The environment variables naming the proxy for `scheme`, in the order they are
/// consulted (upper case first, as curl and most HTTP clients do; `ALL_PROXY` last).
fn proxy_vars(scheme: Option<&str>) -> &'static [&'static str] {
    match scheme {
        Some("https") => &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
        _ => &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
    }
}

/// The proxy for `url`: the `proxy` key if written (`""`: none), else the environment.
fn resolve_proxy(env: &Env, url: &Uri, written: Option<&str>) -> Result<Option<HttpProxy>, String> {
    match written {
        Some("") => Ok(None),
        Some(text) => proxy_for(url, text, None, "proxy"),
        None => {
            let Some((var, text)) = env.first_non_empty(proxy_vars(url.scheme_str())) else {
                return Ok(None);
            };
            let no_proxy = env
                .first_non_empty(&["NO_PROXY", "no_proxy"])
                .map(|(_, v)| v);
            proxy_for(url, text, no_proxy, var).map_err(|e| {
                format!("environment variable {var}: {e} (set `proxy = \"\"` to ignore it)")
            })
        }
    }
}

/// Validates proxy URL `text` for target `url`; `None` if `no_proxy` exempts the
/// target's host.
fn proxy_for(
    url: &Uri,
    text: &str,
    no_proxy: Option<&str>,
    source: &'static str,
) -> Result<Option<HttpProxy>, String> {
    let shown = without_credentials(text);
    let intercept = |no: &str| -> Option<Intercept> {
        Matcher::builder().all(text).no(no).build().intercept(url)
    };
    let Some(found) = intercept("") else {
        return Err(format!(
            "`{shown}` is not a proxy URL (http://[user:password@]host:port; \
             percent-encode `@`, `:` and `/` in the password)"
        ));
    };
    match found.uri().scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{shown}`: TLS to the proxy is not supported (use an http:// proxy; \
                 https:// targets still go through it encrypted, by CONNECT)"
            ))
        }
        Some(other) => return Err(format!("`{shown}`: {other} proxies are not supported")),
        None => return Err(format!("`{shown}` has no scheme")),
    }
    if found.uri().port().is_none() {
        return Err(format!("`{shown}` has no port (e.g. http://proxy:3128)"));
    }
    if no_proxy.is_some_and(|no| intercept(no).is_none()) {
        return Ok(None);
    }
    Ok(Some(HttpProxy {
        uri: found.uri().clone(),
        auth: found.basic_auth().cloned(),
        source,
    }))
}

/// `text` with the user and password of a URL replaced by `***`, for messages.
fn without_credentials(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..].find('/').map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_batch_bytes() -> usize {
    1 << 20
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    let shown = without_credentials(&text);
    let url = url::Url::parse(&text).map_err(|e| Error::custom(format!("`{shown}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::custom(format!(
            "scheme `{}` is not supported (use http:// or https://)",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(Error::custom(format!("`{shown}` has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::custom(format!(
            "`{shown}`: credentials in the URL are not sent; use headers = {{ Authorization = \"…\" }}"
        )));
    }
    url.as_str()
        .parse()
        .map_err(|e| Error::custom(format!("`{shown}`: {e}")))
}

fn server_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ServerName<'static>>, D::Error> {
    let text = String::deserialize(d)?;
    ServerName::try_from(text.clone())
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a DNS name or IP address")))
}

fn header_map<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderMap, D::Error> {
    use serde::de::Error;
    let mut map = HeaderMap::new();
    for (name, value) in std::collections::BTreeMap::<String, String>::deserialize(d)? {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::custom(format!("`{name}` is not a valid HTTP header name")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| Error::custom(format!("the value of `{name}` is not a valid header")))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn batch_messages<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        n @ 1..=HTTP_MAX_BATCH => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "must be between 1 and {HTTP_MAX_BATCH}"
        ))),
    }
}

fn one() -> usize {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_hidden() {
        assert_eq!(
            without_credentials("http://u:p@ss@proxy:3128/x"),
            "http://***@proxy:3128/x"
        );
        assert_eq!(without_credentials("u:p@proxy:3128"), "***@proxy:3128");
        assert_eq!(
            without_credentials("http://proxy:3128"),
            "http://proxy:3128"
        );
        assert_eq!(without_credentials("http://h/a@b"), "http://h/a@b");
    }
}
