//! The chain: SHA-256 links and HMAC-SHA256 seals (DESIGN.md "Chain format").
//!
//! `chain_hash[n] = SHA-256(chain_hash[n-1] ‖ entry[n])`, genesis 32 zero
//! bytes; `signature[n] = HMAC-SHA256(key, chain_hash[n])`;
//! `key_id = hex(SHA-256("trail-key-id" ‖ key))[..16]`.
//! Key bytes never leave this module except to be written to a key file.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash the first row links to.
pub const GENESIS: Hash = [0u8; 32];

/// The purpose label of retention cut seals (see [`HmacKey::cut_seal`]).
pub const CUT_PURPOSE: &str = "trail-cut";

fn cut_message(up_to_seq: u64, chain_hash: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(8 + chain_hash.len());
    msg.extend_from_slice(&up_to_seq.to_be_bytes());
    msg.extend_from_slice(chain_hash);
    msg
}

/// `SHA-256(prev ‖ entry)`.
pub fn link(prev: &Hash, entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(entry);
    h.finalize().into()
}

/// Identifies a key without revealing it: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 32-byte HMAC key. `Debug` never prints it.
#[derive(Clone)]
pub struct HmacKey {
    mac: Hmac<Sha256>,
    bytes: [u8; 32],
    id: KeyId,
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey {{ id: {}, key: [redacted] }}", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key must be 64 hexadecimal digits (32 bytes); got {0} characters")]
    Length(usize),
    #[error("a key must be 64 hexadecimal digits; found a character that is not one")]
    NotHex,
}

impl HmacKey {
    pub fn from_bytes(bytes: [u8; 32]) -> HmacKey {
        let mut h = Sha256::new();
        h.update(b"trail-key-id");
        h.update(bytes);
        let digest: Hash = h.finalize().into();
        let id = KeyId(hex::encode(&digest[..8]));
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("HMAC takes any key length");
        HmacKey { mac, bytes, id }
    }

    /// Parses 64 hex digits; surrounding whitespace (a trailing newline in a
    /// key file) is ignored. The error never echoes the input.
    pub fn from_hex(s: &str) -> Result<HmacKey, KeyError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(KeyError::Length(s.chars().count()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| KeyError::NotHex)?;
        Ok(HmacKey::from_bytes(bytes))
    }

    /// The key as a key file holds it: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn seal(&self, chain_hash: &Hash) -> Hash {
        let mut m = self.mac.clone();
        m.update(chain_hash);
        m.finalize().into_bytes().into()
    }

    /// HMAC of arbitrary bytes under a purpose label, for values the server
    /// issues and must recognise later (page cursors). Never a chain seal:
    /// the label keeps the two apart.
    pub fn tag(&self, purpose: &str, data: &[u8]) -> Hash {
        let mut m = self.mac.clone();
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// The seal of a retention cut at `up_to_seq` copying `chain_hash`:
    /// `HMAC(key, "trail-cut" ‖ 0x00 ‖ up_to_seq as 8 bytes big-endian ‖
    /// chain_hash)`. It binds the position, so a row's own seal (which
    /// covers only its hash) cannot be passed off as a cut anywhere else.
    pub fn cut_seal(&self, up_to_seq: u64, chain_hash: &[u8]) -> Hash {
        self.tag(CUT_PURPOSE, &cut_message(up_to_seq, chain_hash))
    }

    /// Constant-time check of a stored cut seal.
    pub fn check_cut(&self, up_to_seq: u64, chain_hash: &[u8], signature: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(CUT_PURPOSE.as_bytes());
        m.update(&[0]);
        m.update(&cut_message(up_to_seq, chain_hash));
        m.verify_slice(signature).is_ok()
    }

    /// Constant-time check of a stored signature.
    pub fn check(&self, chain_hash: &[u8], signature: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(chain_hash);
        m.verify_slice(signature).is_ok()
    }
}

/// The keys a verifier holds; the first is the one that signs new rows.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<HmacKey>,
}

impl Keyring {
    pub fn new(signing: HmacKey) -> Keyring {
        Keyring {
            keys: vec![signing],
        }
    }

    /// A keyring that can only verify (no key to sign with is known).
    pub fn empty() -> Keyring {
        Keyring { keys: Vec::new() }
    }

    pub fn add(&mut self, key: HmacKey) {
        if self.get(key.id().as_str()).is_none() {
            self.keys.push(key);
        }
    }

    pub fn signing(&self) -> Option<&HmacKey> {
        self.keys.first()
    }

    pub fn get(&self, key_id: &str) -> Option<&HmacKey> {
        self.keys.iter().find(|k| k.id.as_str() == key_id)
    }

    /// Every key, the signing one first.
    pub fn keys(&self) -> &[HmacKey] {
        &self.keys
    }
}

/// Parses `SEQ:HEX`, a chain head observed earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub chain_hash: Hash,
}

impl Anchor {
    pub fn parse(s: &str) -> Result<Anchor, String> {
        let (seq, hex_hash) = s
            .split_once(':')
            .ok_or_else(|| "must be SEQ:HEX, such as 42:9f86d0…(64 hex digits)".to_string())?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| format!("the part before ':' must be a sequence number (got {seq:?})"))?;
        if seq == 0 {
            return Err("the sequence number must be 1 or more".into());
        }
        let mut chain_hash = [0u8; 32];
        if hex_hash.len() != 64 || hex::decode_to_slice(hex_hash, &mut chain_hash).is_err() {
            return Err("the part after ':' must be a chain hash of 64 hex digits".into());
        }
        Ok(Anchor { seq, chain_hash })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, hex::encode(self.chain_hash))
    }
}
