//! Query parameters: parsed strictly (malformed percent-encoding, names or
//! values that are not UTF-8, unknown or repeated names are errors),
//! with the seed systems' names accepted as aliases (`type` for `event`,
//! `start`/`end` for `since`/`until`), and opaque cursors.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::domain::{Filter, FilterInput, HmacKey, InputError};
use crate::store::query::{Order, PageRequest};

use super::error::ApiError;

/// Every parameter a list-like route understands.
pub const LIST_PARAMS: &[&str] = &[
    "event", "type", "level", "actor", "resource", "success", "since", "start", "until", "end",
    "order", "limit", "cursor", "offset",
];
pub const EXPORT_PARAMS: &[&str] = &[
    "format", "event", "type", "level", "actor", "resource", "success", "since", "start", "until",
    "end", "order",
];
pub const SUMMARY_PARAMS: &[&str] = &["period", "since", "start", "until", "end"];
pub const VERIFY_PARAMS: &[&str] = &["from", "to", "anchor"];

/// Routes that take no parameter refuse any (the health probes and
/// `/metrics` excepted: a monitor's cache-busting `?t=…` must never mark a
/// healthy server down).
pub fn none(req: &actix_web::HttpRequest) -> Result<(), ApiError> {
    Params::parse(req.query_string(), &[]).map(drop)
}

pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs = decode_query(query)?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                let takes = if allowed.is_empty() {
                    "no parameters".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad_param(
                    k,
                    format!("unknown parameter; this route takes {takes}"),
                ));
            }
            if pairs[..i].iter().any(|(other, _)| other == k) {
                return Err(ApiError::bad_param(k, "given more than once"));
            }
        }
        Ok(Params { pairs })
    }

    /// [`Params::parse`] for a seed system's route (`/api/audit…`,
    /// `/v1/audit…`): there, as in the old tools, a parameter sent empty
    /// (`?event=&level=&limit=50`, what a form sends for its blank fields)
    /// is as if not sent. On trail's own routes an empty value is refused.
    pub fn parse_seed(query: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut p = Params::parse(query, allowed)?;
        p.pairs.retain(|(_, v)| !v.is_empty());
        Ok(p)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A value under its name or its alias; both at once is an error.
    pub fn get_either(&self, name: &str, alias: &str) -> Result<Option<&str>, ApiError> {
        match (self.get(name), self.get(alias)) {
            (Some(_), Some(_)) => Err(ApiError::bad_param(
                alias,
                format!("{alias} and {name} mean the same; give one"),
            )),
            (a, b) => Ok(a.or(b)),
        }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn filter(&self) -> Result<Filter, ApiError> {
        let input = FilterInput {
            event: self.get_either("event", "type")?,
            level: self.get("level"),
            actor: self.get("actor"),
            resource: self.get("resource"),
            success: self.get("success"),
            since: self.get_either("since", "start")?,
            until: self.get_either("until", "end")?,
        };
        Filter::parse(&input).map_err(|e| self.filter_error(e))
    }

    /// A filter error, naming each parameter as the client wrote it: a
    /// client of the old tools that sent `start` hears about `start`.
    pub fn filter_error(&self, mut e: InputError) -> ApiError {
        let used = |name: &'static str, alias: &'static str| {
            if self.get(name).is_none() && self.get(alias).is_some() {
                alias
            } else {
                name
            }
        };
        let (since, until) = (used("since", "start"), used("until", "end"));
        for fe in &mut e.errors {
            let name = match fe.field.as_str() {
                "event" => used("event", "type"),
                "since" => since,
                "until" => until,
                _ => continue,
            };
            if fe.field == "until" && since != "since" {
                fe.message = fe
                    .message
                    .replace("before since", &format!("before {since}"));
            }
            fe.field = name.to_owned();
        }
        ApiError::bad_params(e)
    }

    pub fn order(&self) -> Result<Order, ApiError> {
        self.get("order").map_or(Ok(Order::Desc), |s| {
            Order::parse(s).map_err(|m| ApiError::bad_param("order", m))
        })
    }

    pub fn uint(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(s) = self.get(name) else {
            return Ok(None);
        };
        match s.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_param(
                name,
                format!("must be an integer from {min} to {max} (got {:?})", clip(s)),
            )),
        }
    }
}

/// Splits `query` on `&` (empty segments skipped) into names and values
/// (split at the first `=`; none: an empty value) and decodes each strictly:
/// `+` is a space, `%` must be followed by two hex digits, and the decoded
/// bytes must be UTF-8. Lenient decoders turn `%ff` into U+FFFD and take
/// `%zz` literally, so a filter would silently match something other than
/// what the client sent; here either is a 400 naming the parameter.
fn decode_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let name = decode_component(raw_name).map_err(|why| ApiError::BadRequest {
            detail: format!("a query parameter name ({:?}) {why}", clip(raw_name)),
            errors: vec![],
        })?;
        let value = decode_component(raw_value).map_err(|why| ApiError::bad_param(&name, why))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One name or value of `application/x-www-form-urlencoded`, decoded; the
/// error says what is wrong with it.
fn decode_component(raw: &str) -> Result<String, &'static str> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err("is not valid percent-encoding: each % must be followed by two hex digits (write a literal % as %25)");
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "is not valid UTF-8 once percent-decoded")
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A validated list request.
pub struct ListQuery {
    pub filter: Filter,
    pub page: PageRequest,
}

pub fn list_query(
    p: &Params,
    key: &HmacKey,
    default_limit: usize,
    max_limit: usize,
    max_offset: usize,
) -> Result<ListQuery, ApiError> {
    let filter = p.filter()?;
    let order = p.order()?;
    let limit = p
        .uint("limit", 1, max_limit as u64)?
        .map_or(default_limit, |n| n as usize);
    let offset = p.uint("offset", 0, max_offset as u64)?.unwrap_or(0) as usize;
    let after = match p.get("cursor") {
        None => None,
        Some(c) => {
            if offset > 0 {
                return Err(ApiError::bad_param(
                    "offset",
                    "cannot be combined with cursor; the cursor already says where to go on",
                ));
            }
            Some(Cursor::decode(c, order, &filter, key)?)
        }
    };
    Ok(ListQuery {
        filter,
        page: PageRequest {
            order,
            after,
            limit,
            offset,
        },
    })
}

/// An opaque position: `seq` of the last event served, bound to the order
/// and the filters it was issued for, and tagged with an HMAC under the
/// server's key so that a client cannot forge or edit one.
pub struct Cursor;

impl Cursor {
    fn fingerprint(order: Order, filter: &Filter) -> String {
        let mut h = Sha256::new();
        h.update(order.as_str());
        h.update(filter.describe().to_string());
        hex::encode(&h.finalize()[..8])
    }

    fn tag(key: &HmacKey, body: &str) -> String {
        hex::encode(&key.tag("trail-cursor", body.as_bytes())[..12])
    }

    pub fn encode(seq: u64, order: Order, filter: &Filter, key: &HmacKey) -> String {
        let body = format!("c1.{seq}.{}", Self::fingerprint(order, filter));
        let raw = format!("{body}.{}", Self::tag(key, &body));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(s: &str, order: Order, filter: &Filter, key: &HmacKey) -> Result<u64, ApiError> {
        let bad = || {
            ApiError::bad_param(
                "cursor",
                "is not a cursor this server issued; start again without it",
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (body, tag) = raw.rsplit_once('.').ok_or_else(bad)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            Self::tag(key, body).as_bytes(),
            tag.as_bytes(),
        )) {
            return Err(bad());
        }
        let mut parts = body.split('.');
        let (Some("c1"), Some(seq), Some(fp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if fp != Self::fingerprint(order, filter) {
            return Err(ApiError::bad_param(
                "cursor",
                "was issued for other filters or another order; keep them unchanged while paging",
            ));
        }
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::decode_component;

    #[test]
    fn components_decode_strictly() {
        assert_eq!(decode_component("J%C3%BCrgen+M").as_deref(), Ok("Jürgen M"));
        assert_eq!(decode_component("a%2Bb%25").as_deref(), Ok("a+b%"));
        assert_eq!(decode_component("").as_deref(), Ok(""));
        for bad in ["%zz", "%4", "a%", "%%41", "%g0"] {
            assert!(
                decode_component(bad)
                    .unwrap_err()
                    .contains("two hex digits"),
                "{bad}"
            );
        }
        for bad in ["%ff", "%C3", "%C3%28", "%ED%A0%80"] {
            assert!(
                decode_component(bad).unwrap_err().contains("UTF-8"),
                "{bad}"
            );
        }
    }
}
