//! Who is asking: the client address, scheme and host, believing
//! `Forwarded` / `X-Forwarded-*` only from the trusted proxies.

use std::net::IpAddr;

use actix_web::HttpRequest;

use crate::config::{Cidr, ProxyHeaders};

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

/// One hop of the forwarding chain: the address a proxy received the
/// request from (`None` when it gave none: `unknown`, an obfuscated `_name`,
/// garbage), and the scheme and host that proxy was addressed with, when it
/// said.
#[derive(Debug, Default, Clone)]
struct Hop {
    /// The hop names where it came from (`for=`, an `X-Forwarded-For` item).
    named: bool,
    from: Option<IpAddr>,
    proto: Option<String>,
    host: Option<String>,
}

/// The items of every `name` header, in order (a list may be split over
/// several header lines).
fn list_items<'a>(req: &'a HttpRequest, name: &str) -> Vec<&'a str> {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// The forwarding chain, oldest (the client) first. With `Forwarded`, each
/// element is a hop with its own `proto` and `host`; an element without
/// `for=` names no address (as `for=unknown`), so the walk never passes a
/// trusted proxy's element to reach what the client wrote before it. With
/// `X-Forwarded-*`, the `-Proto`, `-Host` and `-Port` lists are lined up with
/// `X-Forwarded-For` from the right: the items proxies appended last (the
/// trusted ones) sit beside the hops they describe, and extra items on the
/// left, which a client could have sent, are dropped.
fn forwarded_chain(req: &HttpRequest) -> Vec<Hop> {
    let forwarded = list_items(req, "forwarded");
    forwarded
        .iter()
        .map(|element| {
            let mut hop = Hop {
                named: true,
                ..Hop::default()
            };
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.from = parse_node(v),
                    "proto" => hop.proto = Some(v.to_ascii_lowercase()),
                    "host" => hop.host = Some(v.to_owned()),
                    _ => {}
                }
            }
            hop
        })
        .collect()
}

/// The `X-Forwarded-*` chain (see [`forwarded_chain`]); empty when the
/// request has none of them.
fn x_forwarded_chain(req: &HttpRequest) -> Vec<Hop> {
    let any = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h));
    if !any {
        return Vec::new();
    }
    let mut chain: Vec<Hop> = list_items(req, "x-forwarded-for")
        .into_iter()
        .map(|v| Hop {
            named: true,
            from: parse_node(v),
            ..Hop::default()
        })
        .collect();
    if chain.is_empty() {
        // Scheme and host without addresses: they describe the client's hop.
        chain.push(Hop::default());
    }
    // Items beside hops, lined up from the right (the nearest hop last).
    let from_right = |name: &str| -> Vec<Option<String>> {
        let items = list_items(req, name);
        let mut out = vec![None; chain.len()];
        for (slot, v) in out.iter_mut().rev().zip(items.iter().rev()) {
            *slot = Some((*v).to_owned()).filter(|v| !v.is_empty());
        }
        out
    };
    let protos = from_right("x-forwarded-proto");
    let hosts = from_right("x-forwarded-host");
    let ports = from_right("x-forwarded-port");
    for (((hop, proto), host), port) in chain.iter_mut().zip(protos).zip(hosts).zip(ports) {
        hop.proto = proto.map(|p| p.to_ascii_lowercase());
        hop.host = match (host, port) {
            (Some(h), Some(p)) => Some(with_port(&h, &p, hop.proto.as_deref())),
            (h, _) => h,
        };
    }
    chain
}

/// `host` with `port` added, unless it names one already or the port is
/// the scheme's default; an invalid port is ignored (the host is then
/// checked as usual).
fn with_port(host: &str, port: &str, proto: Option<&str>) -> String {
    let has_port = match host.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host.contains(':'),
    };
    let default = match proto {
        Some("https") => "443",
        _ => "80",
    };
    let valid = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok();
    if has_port || port == default || !valid {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
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

pub fn resolve(req: &HttpRequest, trusted: &[Cidr], family: ProxyHeaders) -> Client {
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
    if !peer.is_some_and(|p| is_trusted(p, trusted)) {
        return client;
    }
    // Only the family the proxies write: they pass the other on as the
    // client sent it.
    let chain = match family {
        ProxyHeaders::Forwarded => forwarded_chain(req),
        ProxyHeaders::XForwarded => x_forwarded_chain(req),
    };
    let Some(seen) = walk(&chain, trusted) else {
        return client;
    };
    if let Some(ip) = seen.ip {
        client.ip = ip;
    }
    if let Some(p) = seen.scheme {
        client.scheme = p;
    }
    if let Some(h) = seen.host {
        client.host = h;
    }
    client
}

/// What a forwarding chain says of the client: its address (`Some(None)`:
/// the proxy gave none; `None`: the chain names no hop), scheme and host.
struct Seen {
    ip: Option<Option<IpAddr>>,
    scheme: Option<String>,
    host: Option<String>,
}

fn walk(chain: &[Hop], trusted: &[Cidr]) -> Option<Seen> {
    if chain.is_empty() {
        return None;
    }
    // Walk from the nearest hop back: the first node not itself a trusted
    // proxy is the client. Everything before it could be forged by the client.
    // A node given as no address (`for=unknown`) leaves the client's address
    // unknown: never the proxy's own address recorded as the client's.
    let at = chain
        .iter()
        .rposition(|h| h.named && !h.from.is_some_and(|ip| is_trusted(ip, trusted)))
        .or_else(|| chain.iter().position(|h| h.named));
    let ip = at.map(|at| chain[at].from);
    // No hop names an address (scheme and host alone): the nearest hop's.
    let at = at.unwrap_or(chain.len() - 1);
    // The scheme and host the client used are those the outermost trusted
    // proxy was addressed with: the hop where the client was found, or the
    // nearest hop after it that says (proxies nearer to trail name the
    // internal host they were sent to).
    let said = |get: fn(&Hop) -> Option<&String>| chain.iter().skip(at).find_map(get).cloned();
    Some(Seen {
        ip,
        scheme: said(|h| h.proto.as_ref()).filter(|p| p == "http" || p == "https"),
        host: said(|h| h.host.as_ref()).filter(|h| is_host(h)),
    })
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
