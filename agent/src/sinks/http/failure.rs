//! What an HTTP delivery's outcome means for the message: the answer's status, or the
//! reason there was no answer (connection, TLS, proxy), as a [`DeliveryError`].

use hyper::{StatusCode, Uri};

use super::connector::ConnectError;
use crate::config::Compression;
use crate::sinks::{DeliveryError, Failure};

/// 2xx is an acknowledgement; 408, 429 and 5xx mean "later"; any other answer means the
/// receiver will never take this message, except two that are about the sink's set-up,
/// not the message, and are retried until it is fixed: 407 (the proxy wants other
/// credentials) and 415 to a compressed body (the receiver does not take the encoding).
pub(super) fn classify(
    status: StatusCode,
    body: &[u8],
    compression: Compression,
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let mut excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let setup = match status {
        StatusCode::PROXY_AUTHENTICATION_REQUIRED => true,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => match compression.content_encoding() {
            Some(encoding) => {
                excerpt = format!(
                    "the receiver does not accept Content-Encoding {encoding} \
                     (set compression = \"none\"): {excerpt}"
                );
                true
            }
            None => false,
        },
        _ => false,
    };
    let reason = Failure::Status { status, excerpt };
    if setup
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(DeliveryError::Transient(reason))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}

/// Why a request to `target` got no answer. Always transient: a refused handshake, an
/// unknown certificate or an unreachable proxy is fixed on the other side (or in the
/// config) without the message changing, so it stays queued.
pub(super) fn no_answer(target: &Uri, e: &(dyn std::error::Error + 'static)) -> DeliveryError {
    let target = target.to_string();
    let failure = if let Some(tls) = find::<rustls::Error>(e) {
        Failure::Tls {
            target,
            message: tls.to_string(),
        }
    } else if let Some(ConnectError::Proxy { proxy, source }) = find::<ConnectError>(e) {
        Failure::Proxy {
            proxy: proxy.to_string(),
            message: error_chain(&**source),
        }
    } else {
        Failure::Connection {
            target,
            message: error_chain(e),
        }
    };
    DeliveryError::Transient(failure)
}

/// The first `T` in `e`'s chain of causes, looking inside `io::Error`s too (whose
/// `source()` skips the error they wrap, where TLS stacks put theirs).
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if let Some(found) = wrapped.and_then(find::<T>) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// `e` and its causes, `: `-separated.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // io::Error repeats the message of the error it wraps.
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(r: Result<(), DeliveryError>) -> bool {
        matches!(r, Err(DeliveryError::Transient(_)))
    }

    fn permanent(r: Result<(), DeliveryError>) -> bool {
        matches!(r, Err(DeliveryError::Permanent(_)))
    }

    #[test]
    fn classification() {
        let none = Compression::None;
        assert!(classify(StatusCode::CREATED, b"", none).is_ok());
        for s in [500, 502, 503, 408, 429, 407] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(transient(classify(s, b"", none)), "{s}");
        }
        for s in [400, 401, 404, 409, 413, 415, 301] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(permanent(classify(s, b"no", none)), "{s}");
        }
        let refused = classify(StatusCode::UNSUPPORTED_MEDIA_TYPE, b"", Compression::Zstd);
        let text = refused.as_ref().unwrap_err().to_string();
        assert!(
            transient(refused),
            "a 415 to a compressed body is a set-up problem"
        );
        assert!(text.contains("Content-Encoding zstd"), "{text}");
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let target: Uri = "https://127.0.0.1:1/in".parse().unwrap();
        let e = no_answer(&target, &io);
        assert!(matches!(e, DeliveryError::Transient(Failure::Tls { .. })));
        assert_eq!(
            e.to_string(),
            "https://127.0.0.1:1/in: TLS: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn proxy_errors_name_the_proxy() {
        let e = ConnectError::Proxy {
            proxy: "http://127.0.0.1:3128/".parse().unwrap(),
            source: "tunnel error: unsuccessful".into(),
        };
        let target: Uri = "https://h/".parse().unwrap();
        let text = no_answer(&target, &e).to_string();
        assert_eq!(
            text,
            "proxy http://127.0.0.1:3128/: tunnel error: unsuccessful"
        );
    }
}
