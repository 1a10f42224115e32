//! Ed25519 signatures of plugin packages (ring, already linked for TLS): the fleet
//! operator signs a package with `outpost fleet sign`, the agent installs it only if one
//! of `fleet.trusted_keys` verifies the signature over the package's bytes.
//!
//! Keys and signatures are hex text, so they fit in a TOML file, a shell variable or a
//! server's form: a public key is 64 hex digits, a signature 128, a private key the hex
//! of its PKCS#8 document.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// A public key that may sign packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses 64 hex digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Option<PublicKey> {
        let bytes = from_hex(text.trim())?;
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

/// A private signing key (the operator's, never on a device).
pub struct SigningKey(Ed25519KeyPair);

/// Why a signing key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a private key: expected the hex of a PKCS#8 ed25519 key (as `outpost fleet keygen` writes)")]
    Malformed,
    #[error("the system's random generator failed")]
    Random,
}

impl SigningKey {
    /// A new random key, and its PKCS#8 document (hex) to keep.
    pub fn generate() -> Result<(SigningKey, String), KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let key = Ed25519KeyPair::from_pkcs8(document.as_ref()).map_err(|_| KeyError::Malformed)?;
        Ok((SigningKey(key), to_hex(document.as_ref())))
    }

    /// Reads the hex PKCS#8 text `generate` returned.
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        let document = from_hex(text.trim()).ok_or(KeyError::Malformed)?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&document)
            .map(SigningKey)
            .map_err(|_| KeyError::Malformed)
    }

    pub fn public(&self) -> PublicKey {
        let mut key = [0; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(key)
    }

    /// The signature of `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

/// Hex (either case) to bytes; `None` for an odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let digit = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    digits
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_key_and_message() {
        let (key, document) = SigningKey::generate().unwrap();
        let again = SigningKey::parse(&document).unwrap();
        assert_eq!(key.public(), again.public());
        let public = PublicKey::parse(&format!(" {}\n", key.public().to_hex())).unwrap();
        let signature = key.sign(b"plugin bytes");
        assert!(public.verifies(b"plugin bytes", &signature));
        assert!(!public.verifies(b"plugin bytez", &signature));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!other.public().verifies(b"plugin bytes", &signature));
        assert!(!public.verifies(b"plugin bytes", &signature[1..]));
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])).unwrap(),
            [0, 1, 0xab, 0xff]
        );
        assert_eq!(from_hex("ABcd").unwrap(), [0xab, 0xcd]);
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
        assert!(PublicKey::parse("00").is_none());
        assert!(SigningKey::parse("nothex").is_err());
    }
}
