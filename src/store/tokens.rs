//! API tokens: only hashes are stored. A secret is shown once, at creation.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::event::format_timestamp;
use crate::domain::Hash;

use super::error::{Result, StoreError};

/// What a token may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> std::result::Result<Scope, String> {
        match s.trim() {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: use ingest, read or admin"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    #[serde(skip)]
    pub secret_hash: Hash,
}

impl TokenInfo {
    pub fn allows(&self, needed: Scope) -> bool {
        self.revoked_at.is_none()
            && self
                .scopes
                .iter()
                .any(|s| *s == needed || *s == Scope::Admin)
    }
}

/// The hash stored for a secret.
pub fn hash_secret(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Rules for secrets chosen by operators (bootstrap tokens).
pub fn check_secret(s: &str) -> std::result::Result<(), String> {
    if s.len() < 24 {
        return Err("a token must be at least 24 characters".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token may hold only visible ASCII characters".into());
    }
    Ok(())
}

pub fn check_name(s: &str) -> std::result::Result<(), String> {
    // `.` and `..` are path segments a client normalises away: such a token
    // could not be revoked with DELETE /v1/tokens/NAME.
    if s == "." || s == ".." {
        return Err(format!(
            "a token name cannot be {s:?} (it would not survive in a URL path)"
        ));
    }
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!(
            "a token name must be 1 to 64 of letters, digits, _ . - (got {s:?})"
        ));
    }
    Ok(())
}

/// A fresh secret: `trail_` and 43 characters of base64url (256 bits).
pub fn generate_secret() -> String {
    use base64::Engine as _;
    format!(
        "trail_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let scopes: String = r.get(1)?;
    Ok(TokenInfo {
        name: r.get(0)?,
        scopes: scopes
            .split(',')
            .filter_map(|s| Scope::parse(s).ok())
            .collect(),
        created_at: r.get(2)?,
        revoked_at: r.get(3)?,
        secret_hash: r.get::<_, Vec<u8>>(4)?.try_into().unwrap_or([0; 32]),
    })
}

/// Stores a token; refuses a name already used (even by a revoked token).
pub fn create(conn: &Connection, name: &str, scopes: &[Scope], secret: &str) -> Result<TokenInfo> {
    check_name(name)
        .map_err(|m| StoreError::Input(crate::domain::InputError::single("name", m)))?;
    if scopes.is_empty() {
        return Err(StoreError::Input(crate::domain::InputError::single(
            "scope",
            "give at least one scope",
        )));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let list = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let now = format_timestamp(chrono::Utc::now());
    let hash = hash_secret(secret);
    match conn.execute(
        "INSERT INTO api_tokens (name, secret_hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, &hash[..], list, now],
    ) {
        Ok(_) => Ok(TokenInfo {
            name: name.to_owned(),
            scopes,
            created_at: now,
            revoked_at: None,
            secret_hash: hash,
        }),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Input(crate::domain::InputError::single(
                "name",
                format!("a token named {name:?} (or with the same secret) already exists"),
            )))
        }
        Err(e) => Err(StoreError::sqlite("storing a token")(e)),
    }
}

pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>> {
    let mut st = conn
        .prepare_cached("SELECT name, scopes, created_at, revoked_at, secret_hash FROM api_tokens ORDER BY name")
        .map_err(StoreError::sqlite("listing tokens"))?;
    let rows = st
        .query_map([], from_row)
        .and_then(|r| r.collect())
        .map_err(StoreError::sqlite("listing tokens"))?;
    Ok(rows)
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<TokenInfo>> {
    conn.prepare_cached(
        "SELECT name, scopes, created_at, revoked_at, secret_hash FROM api_tokens WHERE name = ?1",
    )
    .and_then(|mut s| s.query_row([name], from_row).optional())
    .map_err(StoreError::sqlite("reading a token"))
}

/// Marks a token revoked; `false` if there is no such active token.
pub fn revoke(conn: &Connection, name: &str) -> Result<bool> {
    let now = format_timestamp(chrono::Utc::now());
    conn.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now],
    )
    .map(|n| n > 0)
    .map_err(StoreError::sqlite("revoking a token"))
}

/// Who changes a token, as the audit event records it: the actor, and for
/// a change made over HTTP the client's address and the request id.
#[derive(Debug, Clone, Default)]
pub struct By {
    pub actor: String,
    pub source_ip: Option<std::net::IpAddr>,
    pub request_id: Option<String>,
}

impl By {
    /// A change made outside any request (`cli`, `bootstrap`).
    pub fn named(actor: &str) -> By {
        By {
            actor: actor.to_owned(),
            ..By::default()
        }
    }
}

fn token_event(kind: &str, name: &str, scopes: &[Scope], by: &By) -> crate::domain::NewEvent {
    use crate::domain::{EventType, NewEvent};
    let mut details = serde_json::Map::new();
    details.insert("token".into(), name.into());
    if !scopes.is_empty() {
        details.insert(
            "scopes".into(),
            scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().into(),
        );
    }
    let ev = NewEvent::builder(EventType::parse(kind).expect("valid type")).with_success(true);
    let ev = ev
        .with_actor(&by.actor)
        .unwrap_or_else(|_| NewEvent::builder(EventType::parse(kind).expect("valid type")));
    let mut ev = ev.with_details(details).expect("small details");
    ev.fill_from_request(by.source_ip, by.request_id.as_deref());
    ev
}

/// Creates a token and appends `auth.token.create` to the chain, through
/// the writer (so it works beside a running server).
pub fn create_audited(
    writer: &super::Writer,
    name: &str,
    scopes: &[Scope],
    secret: &str,
    by: By,
) -> Result<TokenInfo> {
    let (name, scopes, secret) = (name.to_owned(), scopes.to_vec(), secret.to_owned());
    writer.exec(move |ctx| {
        let info = create(ctx.conn, &name, &scopes, &secret)?;
        ctx.append(vec![token_event(
            "auth.token.create",
            &name,
            &info.scopes,
            &by,
        )])?;
        Ok(info)
    })?
}

/// Revokes a token and appends `auth.token.revoke`; `false` if there was no
/// such active token (and nothing is appended).
pub fn revoke_audited(writer: &super::Writer, name: &str, by: By) -> Result<bool> {
    let name = name.to_owned();
    writer.exec(move |ctx| {
        if !revoke(ctx.conn, &name)? {
            return Ok(false);
        }
        ctx.append(vec![token_event("auth.token.revoke", &name, &[], &by)])?;
        Ok(true)
    })?
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn token_names_survive_in_a_url_path() {
        for ok in ["app", "svc-cli", "a.b_c", "...", ".x", "x."] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [".", "..", "", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_name(".."),
            Err("a token name cannot be \"..\" (it would not survive in a URL path)".into())
        );
    }
}
