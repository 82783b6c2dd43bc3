//! Who is asking: the client address, scheme and host, believing
//! `Forwarded` / `X-Forwarded-*` only from the trusted proxies.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::config::Cidr;

#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address: the peer, or the address a trusted proxy names.
    pub ip: Option<IpAddr>,
    /// `http` or `https`, as the client addressed us.
    pub scheme: String,
    /// The host the client addressed (for absolute URLs).
    pub host: String,
    /// The TCP peer is loopback and no proxy header is present.
    pub direct_loopback: bool,
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// Parses a `for=` value of RFC 7239 or an `X-Forwarded-For` item.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.parse()
        .ok()
        .or_else(|| s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

/// The forwarding chain, oldest (client) first, and the last proto/host seen.
fn forwarded_chain(req: &HttpRequest) -> (Vec<IpAddr>, Option<String>, Option<String>) {
    let mut chain = Vec::new();
    let (mut proto, mut host) = (None, None);
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("forwarded")
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => {
                        if let Some(ip) = parse_node(v) {
                            chain.push(ip);
                        }
                    }
                    "proto" => proto = Some(v.to_ascii_lowercase()),
                    "host" => host = Some(v.to_owned()),
                    _ => {}
                }
            }
        }
    } else {
        for v in req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
        {
            chain.extend(v.split(',').filter_map(parse_node));
        }
        proto = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_ascii_lowercase());
        host = req
            .headers()
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_owned());
    }
    (chain, proto, host)
}

/// Whether the request names a client other than its TCP peer: any header
/// a proxy sets to pass one on (`Forwarded`, every `X-Forwarded-*`,
/// `X-Real-IP`, `X-Client-IP`…). Such a request is never a loopback client,
/// whichever of them a proxy happens to set.
fn has_proxy_headers(req: &HttpRequest) -> bool {
    req.headers().keys().any(|name| {
        let name = name.as_str(); // lowercase
        name == "forwarded"
            || name == "via"
            || name.starts_with("x-forwarded-")
            || matches!(
                name,
                "x-real-ip"
                    | "x-client-ip"
                    | "true-client-ip"
                    | "cf-connecting-ip"
                    | "x-original-forwarded-for"
            )
    })
}

pub fn resolve(req: &HttpRequest, trusted: &[Cidr]) -> Client {
    let peer = req.peer_addr().map(|a| a.ip());
    let own_host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    let direct_loopback = peer.is_some_and(|p| p.is_loopback()) && !has_proxy_headers(req);
    let mut client = Client {
        ip: peer,
        scheme: "http".into(),
        host: own_host,
        direct_loopback,
    };
    let Some(peer_ip) = peer.filter(|p| is_trusted(*p, trusted)) else {
        return client;
    };
    let _ = peer_ip;
    let (chain, proto, host) = forwarded_chain(req);
    // Walk from the nearest hop back: the first address not itself a trusted
    // proxy is the client. Everything before it could be forged by the client.
    if let Some(ip) = chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip, trusted))
        .or(chain.first())
    {
        client.ip = Some(*ip);
    }
    if let Some(p) = proto.filter(|p| p == "http" || p == "https") {
        client.scheme = p;
    }
    // A host name, an IPv4 address or a bracketed IPv6 one, and a port:
    // nothing that could break out of a URL or a Link header.
    if let Some(h) = host.filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    }) {
        client.host = h;
    }
    client
}
