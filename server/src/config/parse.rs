//! Parsers for individual values: URLs, `--initial-cluster`, numbers, log level, and
//! auto-compaction settings. Each returns a [`ConfigError`] naming the flag and the value.

use std::time::Duration;

use url::Url;

use super::{AutoCompaction, ClusterState, ConfigError};

/// Whether a URL list is used for binding a socket (then its hosts must be IP addresses or
/// `localhost`, as etcd requires).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlUse {
    Bind,
    Advertise,
}

/// Parse a comma-separated URL list. An empty (or all-blank) string is an empty list.
pub(super) fn url_list(flag: &'static str, raw: &str, usage: UrlUse) -> Result<Vec<Url>, ConfigError> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    raw.split(',').map(|item| url(flag, item.trim(), usage)).collect()
}

/// Like [`url_list`], but the list must not be empty.
pub(super) fn non_empty_url_list(flag: &'static str, raw: &str, usage: UrlUse) -> Result<Vec<Url>, ConfigError> {
    let urls = url_list(flag, raw, usage)?;
    if urls.is_empty() {
        return Err(ConfigError::NoUrls { flag });
    }
    Ok(urls)
}

/// Parse and check one `scheme://host:port` URL.
pub(super) fn url(flag: &'static str, raw: &str, usage: UrlUse) -> Result<Url, ConfigError> {
    let malformed = |reason: &str| ConfigError::MalformedUrl { flag, value: raw.to_owned(), reason: reason.to_owned() };
    if raw.is_empty() {
        return Err(malformed("empty URL"));
    }
    let parsed = Url::parse(raw).map_err(|e| malformed(&format!("{e} (expected scheme://host:port)")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(ConfigError::UrlScheme { flag, url: raw.to_owned(), scheme: parsed.scheme().to_owned() });
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::UrlHasPath { flag, url: raw.to_owned() });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(malformed("user info is not allowed"));
    }
    let Some(host) = parsed.host() else {
        return Err(malformed("missing host"));
    };
    // The url crate hides a port equal to the scheme's default, so look at the text itself:
    // like etcd, every URL must spell out host:port.
    if !has_explicit_port(raw) {
        return Err(malformed("URL address does not have the form \"host:port\""));
    }
    if usage == UrlUse::Bind {
        if let url::Host::Domain(domain) = host {
            if !domain.eq_ignore_ascii_case("localhost") {
                return Err(ConfigError::BindUrlNotIp { flag, url: raw.to_owned() });
            }
        }
    }
    Ok(parsed)
}

/// Whether the authority part of `raw` (already known to parse as a URL) ends in `:<digits>`.
fn has_explicit_port(raw: &str) -> bool {
    let Some(start) = raw.find("://") else {
        return false;
    };
    let rest = &raw[start + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// A URL as etcd prints it: `scheme://host:port`, without the trailing slash the url crate adds.
pub fn url_string(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Join URLs with commas, etcd style.
pub(super) fn join_urls<'a>(urls: impl IntoIterator<Item = &'a Url>) -> String {
    urls.into_iter().map(url_string).collect::<Vec<_>>().join(",")
}

/// Parse `name=url,name=url,...`, keeping the given order.
pub(super) fn initial_cluster(raw: &str) -> Result<Vec<(String, Url)>, ConfigError> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut members: Vec<(String, Url)> = Vec::new();
    for entry in raw.split(',') {
        let entry = entry.trim();
        let (name, peer_url) = entry
            .split_once('=')
            .map(|(n, u)| (n.trim(), u.trim()))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| ConfigError::ClusterEntry { entry: entry.to_owned() })?;
        let peer_url = url("--initial-cluster", peer_url, UrlUse::Advertise)?;
        if members.iter().any(|(_, u)| *u == peer_url) {
            return Err(ConfigError::DuplicatePeerUrl { url: url_string(&peer_url) });
        }
        members.push((name.to_owned(), peer_url));
    }
    Ok(members)
}

pub(super) fn cluster_state(raw: &str) -> Result<ClusterState, ConfigError> {
    match raw {
        "new" => Ok(ClusterState::New),
        "existing" => Ok(ClusterState::Existing),
        _ => Err(ConfigError::InvalidValue {
            flag: "--initial-cluster-state",
            value: raw.to_owned(),
            expected: "\"new\" or \"existing\"".to_owned(),
        }),
    }
}

pub(super) fn log_level(raw: &str) -> Result<String, ConfigError> {
    let level = raw.trim().to_ascii_lowercase();
    match level.as_str() {
        "debug" | "info" | "warn" | "error" => Ok(level),
        _ => Err(ConfigError::InvalidValue {
            flag: "--log-level",
            value: raw.to_owned(),
            expected: "one of debug, info, warn, error".to_owned(),
        }),
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it (etcd's boolean flags).
pub(super) fn boolean(flag: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ConfigError::InvalidValue { flag, value: raw.to_owned(), expected: "true or false".to_owned() }),
    }
}

/// A non-negative integer.
pub(super) fn number<N: std::str::FromStr>(flag: &'static str, raw: &str, what: &str) -> Result<N, ConfigError> {
    raw.trim().parse().map_err(|_| ConfigError::InvalidValue {
        flag,
        value: raw.to_owned(),
        expected: format!("a whole number of {what}"),
    })
}

/// A positive integer.
pub(super) fn positive<N: std::str::FromStr + PartialEq + Default>(
    flag: &'static str,
    raw: &str,
    what: &str,
) -> Result<N, ConfigError> {
    let n: N = number(flag, raw, what)?;
    if n == N::default() {
        return Err(ConfigError::InvalidValue {
            flag,
            value: raw.to_owned(),
            expected: format!("a number of {what} greater than 0"),
        });
    }
    Ok(n)
}

/// `--auto-compaction-mode` + `--auto-compaction-retention`, following etcd:
/// periodic takes a bare number of hours or a Go-style duration, revision takes a count,
/// and a zero retention turns compaction off.
pub(super) fn auto_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, ConfigError> {
    let value = retention.trim();
    let value = if value.is_empty() { "0" } else { value };
    let bad = |mode: &'static str, reason: &str| ConfigError::AutoCompactionRetention {
        mode,
        value: retention.to_owned(),
        reason: reason.to_owned(),
    };
    match mode.trim() {
        "periodic" => {
            let period = if value.bytes().all(|b| b.is_ascii_digit()) {
                let hours: u64 = value.parse().map_err(|_| bad("periodic", "number of hours is too large"))?;
                hours
                    .checked_mul(3600)
                    .map(Duration::from_secs)
                    .ok_or_else(|| bad("periodic", "number of hours is too large"))?
            } else {
                go_duration(value).map_err(|reason| {
                    bad("periodic", &format!("{reason} (expected e.g. \"1h\", \"30m\", \"5s\" or a number of hours)"))
                })?
            };
            Ok(if period.is_zero() { AutoCompaction::Off } else { AutoCompaction::Periodic(period) })
        }
        "revision" => {
            let revisions: u64 = value.parse().map_err(|_| bad("revision", "expected a whole number of revisions"))?;
            Ok(if revisions == 0 { AutoCompaction::Off } else { AutoCompaction::Revision(revisions) })
        }
        _ => Err(ConfigError::InvalidValue {
            flag: "--auto-compaction-mode",
            value: mode.to_owned(),
            expected: "\"periodic\" or \"revision\"".to_owned(),
        }),
    }
}

/// Parse a Go `time.ParseDuration` string ("1h30m", "1.5h", "300ms", "0"), negatives excluded.
pub(crate) fn go_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("h", 3600 * 1_000_000_000),
    ];
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err("duration must not be negative".to_owned());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("malformed duration".to_owned());
        }
        let unit_len =
            after.char_indices().find(|(_, c)| c.is_ascii_digit() || *c == '.').map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err("missing unit in duration".to_owned());
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit \"{unit}\" in duration"));
        };
        let too_large = || "duration is too large".to_owned();
        let whole: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| too_large())? };
        let mut nanos = whole.checked_mul(scale).ok_or_else(too_large)?;
        // Fractional digits beyond nanosecond precision do not matter; keep at most 18.
        let frac_part = &frac_part[..frac_part.len().min(18)];
        if !frac_part.is_empty() {
            let frac: u128 = frac_part.parse().map_err(|_| too_large())?;
            nanos += frac * scale / 10u128.pow(frac_part.len() as u32);
        }
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        rest = after;
    }
    u64::try_from(total).map(Duration::from_nanos).map_err(|_| "duration is too large".to_owned())
}
