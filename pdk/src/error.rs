use std::fmt;

/// A plugin's error: a message for the agent's logs and `/v1/plugins`.
///
/// Like `anyhow::Error`, it converts from any `std::error::Error`, so `?` works on
/// serde, parsing and I/O results inside plugin code. It deliberately does not implement
/// `std::error::Error` itself (that would conflict with the blanket `From`).
pub struct Error(String);

/// Result type of plugin callbacks.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
