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
/// A node that is not an address (`unknown`, an obfuscated `_name`, or
/// garbage) is kept as `None`: an address the proxy did not give.
type Chain = Vec<Option<IpAddr>>;

fn forwarded_chain(req: &HttpRequest) -> (Chain, Option<String>, Option<String>) {
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
                    "for" => chain.push(parse_node(v)),
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
            chain.extend(v.split(',').map(parse_node));
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
/// a proxy sets to pass one on (`Forwarded`, every `X-Forwarded*`,
/// `X-Real-IP`, `X-Client-IP`…). Such a request is never a loopback client,
/// whichever of them a proxy happens to set.
fn has_proxy_headers(req: &HttpRequest) -> bool {
    req.headers().keys().any(|name| {
        let name = name.as_str(); // lowercase
        name == "forwarded"
            || name == "via"
            || name.starts_with("x-forwarded")
            || name.starts_with("x-envoy-")
            || matches!(
                name,
                "x-real-ip"
                    | "x-client-ip"
                    | "client-ip"
                    | "true-client-ip"
                    | "cf-connecting-ip"
                    | "fastly-client-ip"
                    | "x-cluster-client-ip"
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
        .filter(|h| is_host(h))
        .map(str::to_owned)
        // No usable Host: the address the client connected to.
        .unwrap_or_else(|| req.app_config().local_addr().to_string());
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
    // Walk from the nearest hop back: the first node not itself a trusted
    // proxy is the client. Everything before it could be forged by the client.
    // A node given as no address (`for=unknown`) leaves the client's address
    // unknown: never the proxy's own address recorded as the client's.
    if let Some(node) = chain
        .iter()
        .rev()
        .find(|n| !n.is_some_and(|ip| is_trusted(ip, trusted)))
        .or(chain.first())
    {
        client.ip = *node;
    }
    if let Some(p) = proto.filter(|p| p == "http" || p == "https") {
        client.scheme = p;
    }
    if let Some(h) = host.filter(|h| is_host(h)) {
        client.host = h;
    }
    client
}

/// A host name or an IPv4 address, or a bracketed IPv6 one, with an
/// optional port of 0–65535: nothing that could break out of a URL or a
/// `Link` header. Checked for the `Host` header as for forwarded hosts.
fn is_host(h: &str) -> bool {
    let (name, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, tail)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => {
                match tail.strip_prefix(':') {
                    Some(p) => ("v6", Some(p)),
                    None if tail.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => match h.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (h, None),
        },
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    name_ok && port_ok
}

#[cfg(test)]
mod host_tests {
    use super::is_host;

    #[test]
    fn hosts_that_fit_in_a_url_and_nothing_else() {
        for ok in [
            "audit.example.com",
            "a.com:443",
            "10.0.0.1:8080",
            "[::1]",
            "[2001:db8::1]:8443",
            "localhost",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil>.com",
            "a.com:99999",
            "a.com:",
            "a b",
            "a.com:80:80",
            "[::1",
            "[zz]:80",
            "[::1]x",
            "a/b",
            "a.com:+80",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}
