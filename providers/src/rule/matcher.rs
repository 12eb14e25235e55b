//! Matcher names, arity and argument validation: everything about one ``Name(`args`)`` call.

use std::net::IpAddr;

use super::host::parse_host_pattern;
use super::{Matcher, Pattern, RuleError};

/// The matchers of Traefik v3 HTTP rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Host,
    HostRegexp,
    Path,
    PathPrefix,
    PathRegexp,
    Method,
    Header,
    HeaderRegexp,
    Query,
    QueryRegexp,
    ClientIP,
}

const ALL: [Kind; 11] = [
    Kind::Host,
    Kind::HostRegexp,
    Kind::Path,
    Kind::PathPrefix,
    Kind::PathRegexp,
    Kind::Method,
    Kind::Header,
    Kind::HeaderRegexp,
    Kind::Query,
    Kind::QueryRegexp,
    Kind::ClientIP,
];

/// A matcher argument and the column of its opening quote.
pub(crate) struct Arg {
    pub value: String,
    pub column: usize,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Host => "Host",
            Kind::HostRegexp => "HostRegexp",
            Kind::Path => "Path",
            Kind::PathPrefix => "PathPrefix",
            Kind::PathRegexp => "PathRegexp",
            Kind::Method => "Method",
            Kind::Header => "Header",
            Kind::HeaderRegexp => "HeaderRegexp",
            Kind::Query => "Query",
            Kind::QueryRegexp => "QueryRegexp",
            Kind::ClientIP => "ClientIP",
        }
    }

    /// Looks a matcher name up, or explains why it is not one.
    pub(crate) fn from_name(name: &str, column: usize) -> Result<Kind, RuleError> {
        if let Some(kind) = ALL.iter().copied().find(|k| k.name() == name) {
            return Ok(kind);
        }
        Err(RuleError::new(column, unknown_name_message(name)))
    }

    /// The shape of the arguments, for messages.
    fn signature(self) -> &'static str {
        match self {
            Kind::Host => "Host(`example.com`)",
            Kind::HostRegexp => "HostRegexp(`regexp`)",
            Kind::Path => "Path(`/path`)",
            Kind::PathPrefix => "PathPrefix(`/prefix`)",
            Kind::PathRegexp => "PathRegexp(`regexp`)",
            Kind::Method => "Method(`GET`)",
            Kind::Header => "Header(`name`, `value`)",
            Kind::HeaderRegexp => "HeaderRegexp(`name`, `regexp`)",
            Kind::Query => "Query(`name`, `value`) or Query(`name`)",
            Kind::QueryRegexp => "QueryRegexp(`name`, `regexp`)",
            Kind::ClientIP => "ClientIP(`10.0.0.0/8`)",
        }
    }

    fn arity(self) -> (usize, usize) {
        match self {
            Kind::Header | Kind::HeaderRegexp | Kind::QueryRegexp => (2, 2),
            Kind::Query => (1, 2),
            _ => (1, 1),
        }
    }

    /// Checks arity and arguments and builds the matcher. `open` is the column of `(`.
    pub(crate) fn build(self, args: Vec<Arg>, open: usize) -> Result<Matcher, RuleError> {
        self.check_arity(&args, open)?;
        let name = self.name();
        let mut args = args.into_iter();
        let mut next = || args.next().expect("arity was checked before arguments are read");
        Ok(match self {
            Kind::Host => {
                let arg = next();
                Matcher::Host(parse_host_pattern(&arg.value).map_err(|m| arg.error(m))?)
            }
            Kind::HostRegexp => Matcher::HostRegexp(regex_pattern(name, next())?),
            Kind::PathRegexp => Matcher::PathRegexp(regex_pattern(name, next())?),
            Kind::Path => Matcher::Path(path_arg(name, next())?),
            Kind::PathPrefix => Matcher::PathPrefix(path_arg(name, next())?),
            Kind::Method => Matcher::Method(method_arg(next())?),
            Kind::Header => Matcher::Header(header_name_arg(name, next())?, next().value),
            Kind::HeaderRegexp => Matcher::HeaderRegexp(header_name_arg(name, next())?, regex_arg(name, next())?),
            Kind::Query => {
                let key = next();
                let value = args.next().map(|a| a.value);
                Matcher::Query(query_key_arg(name, key)?, value)
            }
            Kind::QueryRegexp => Matcher::QueryRegexp(query_key_arg(name, next())?, regex_arg(name, next())?),
            Kind::ClientIP => Matcher::ClientIP(client_ip_arg(next())?),
        })
    }

    fn check_arity(self, args: &[Arg], open: usize) -> Result<(), RuleError> {
        let (min, max) = self.arity();
        let name = self.name();
        if args.is_empty() {
            return Err(RuleError::new(
                open + 1,
                format!("{name} needs arguments, found none; write {}", self.signature()),
            ));
        }
        if args.len() < min {
            return Err(RuleError::new(
                args[0].column,
                format!("{name} takes {min} arguments, found {}; write {}", args.len(), self.signature()),
            ));
        }
        let v2_query = self == Kind::Query && args.len() > 1 && args.iter().all(|a| a.value.contains('='));
        if args.len() <= max && !v2_query {
            return Ok(());
        }
        let extra = if v2_query { args[0].column } else { args[max].column };
        let message = match self {
            // Traefik v2 accepted several values and matched any of them.
            Kind::Host | Kind::HostRegexp | Kind::Path | Kind::PathPrefix | Kind::PathRegexp | Kind::Method | Kind::ClientIP => {
                format!(
                    "{name} takes a single value in Traefik v3; instead of the v2 form {}, write {}",
                    render_call(name, args.iter().map(|a| a.value.as_str())),
                    args.iter()
                        .map(|a| render_call(name, [a.value.as_str()]))
                        .collect::<Vec<_>>()
                        .join(" || ")
                )
            }
            Kind::Query if v2_query => format!(
                "Query takes a name and an optional value in Traefik v3; instead of the v2 form \
                 {}, write {}",
                render_call(name, args.iter().map(|a| a.value.as_str())),
                args.iter()
                    .map(|a| {
                        let (k, v) = a.value.split_once('=').unwrap_or((&a.value, ""));
                        render_call(name, [k, v])
                    })
                    .collect::<Vec<_>>()
                    .join(" && ")
            ),
            _ => format!(
                "{name} takes {} argument{}, found {}; write {}",
                if min == max { min.to_string() } else { format!("{min} or {max}") },
                if max == 1 { "" } else { "s" },
                args.len(),
                self.signature()
            ),
        };
        Err(RuleError::new(extra, message))
    }
}

impl Arg {
    pub(crate) fn error(&self, message: impl Into<String>) -> RuleError {
        RuleError::new(self.column, message)
    }
}

/// Renders ``Name(`a`, `b`)`` for messages.
pub(crate) fn render_call<'a>(name: &str, args: impl IntoIterator<Item = &'a str>) -> String {
    let args: Vec<String> = args.into_iter().map(super::display::quote).collect();
    format!("{name}({})", args.join(", "))
}

pub(crate) fn regex_arg(name: &str, arg: Arg) -> Result<String, RuleError> {
    regex_pattern(name, arg).map(|p| p.as_str().to_owned())
}

/// A regular-expression argument, compiled (see [`Pattern`]).
pub(crate) fn regex_pattern(name: &str, arg: Arg) -> Result<Pattern, RuleError> {
    if let Some(placeholder) = v2_placeholder(&arg.value) {
        return Err(arg.error(format!(
            "`{placeholder}` looks like a Traefik v2 named placeholder, which v3 regular \
             expressions do not support; write the bare expression (for `{{name:re}}`, just `re`)"
        )));
    }
    let error = |err: &regex::Error| format!("invalid regular expression in {name}: {}", regex_reason(err));
    match Pattern::new(arg.value.clone()) {
        Ok(pattern) => Ok(pattern),
        Err(err) => Err(arg.error(error(&err))),
    }
}

/// The one-line reason out of the regex crate's multi-line diagnostic.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or("unknown error"))
        .to_owned()
}

/// Finds a v2 `{name}` or `{name:re}` placeholder.
fn v2_placeholder(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let ident_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let ident = &after[..ident_len];
        let starts_with_letter = ident.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if starts_with_letter {
            match after[ident_len..].chars().next() {
                Some('}') => return Some(&rest[open..open + 1 + ident_len + 1]),
                Some(':') => {
                    let close = after.find('}').map_or(after.len(), |c| c + 1);
                    return Some(&rest[open..open + 1 + close]);
                }
                _ => {}
            }
        }
        rest = after;
    }
    None
}

fn path_arg(name: &str, arg: Arg) -> Result<String, RuleError> {
    if !arg.value.starts_with('/') {
        return Err(arg.error(format!(
            "{name} value must start with `/`, found {}",
            super::display::quote(&arg.value)
        )));
    }
    if let Some(placeholder) = v2_placeholder(&arg.value) {
        return Err(arg.error(format!(
            "`{placeholder}` is a Traefik v2 path placeholder; in v3 {name} matches plain text, \
             so use PathRegexp for variable segments"
        )));
    }
    Ok(arg.value)
}

/// RFC 9110 `tchar`: what method and header names are made of.
fn is_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn method_arg(arg: Arg) -> Result<String, RuleError> {
    if !is_token(&arg.value) {
        return Err(arg.error(format!("invalid HTTP method {}", super::display::quote(&arg.value))));
    }
    Ok(arg.value.to_ascii_uppercase())
}

fn header_name_arg(name: &str, arg: Arg) -> Result<String, RuleError> {
    if !is_token(&arg.value) {
        return Err(arg.error(format!("invalid header name {} in {name}", super::display::quote(&arg.value))));
    }
    Ok(arg.value.to_ascii_lowercase())
}

fn query_key_arg(name: &str, arg: Arg) -> Result<String, RuleError> {
    if arg.value.is_empty() {
        return Err(arg.error(format!("{name} needs a parameter name, found an empty string")));
    }
    if let Some((k, v)) = arg.value.split_once('=') {
        return Err(arg.error(format!(
            "a query parameter name cannot contain `=`; instead of the v2 form {}, write {}",
            render_call(name, [arg.value.as_str()]),
            render_call(name, [k, v])
        )));
    }
    Ok(arg.value)
}

pub(crate) fn client_ip_arg(arg: Arg) -> Result<ipnet::IpNet, RuleError> {
    let value = arg.value.trim();
    if let Ok(net) = value.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    Err(arg.error(format!(
        "ClientIP needs an IP address or CIDR range such as `10.0.0.0/8` or `2001:db8::/32`, \
         found {}",
        super::display::quote(&arg.value)
    )))
}

fn unknown_name_message(name: &str) -> String {
    let renamed = match name {
        "Headers" => Some("`Headers` was renamed `Header` in Traefik v3"),
        "HeadersRegexp" => Some("`HeadersRegexp` was renamed `HeaderRegexp` in Traefik v3"),
        "HostHeader" => Some("`HostHeader` was removed in Traefik v3; use `Host`"),
        "HostSNI" | "HostSNIRegexp" | "ALPN" => {
            return format!(
                "`{name}` is a TCP router matcher; HTTP rules use `Host`, `HostRegexp`, `Path` \
                 and the like"
            )
        }
        _ => None,
    };
    if let Some(message) = renamed {
        return message.to_owned();
    }
    let valid = ALL.map(Kind::name).join(", ");
    let closest = ALL
        .iter()
        .map(|k| (edit_distance(&name.to_ascii_lowercase(), &k.name().to_ascii_lowercase()), k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= (k.name().len() / 3).max(1));
    match closest {
        Some((_, kind)) => format!(
            "unknown matcher `{name}`; did you mean `{}`? (matcher names are case-sensitive)",
            kind.name()
        ),
        None => format!("unknown matcher `{name}`; valid matchers are {valid}"),
    }
}

/// Levenshtein distance, for "did you mean" hints on short names.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("pathprefx", "pathprefix"), 1);
        assert_eq!(edit_distance("host", "host"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn finds_v2_placeholders() {
        assert_eq!(v2_placeholder("/users/{id}"), Some("{id}"));
        assert_eq!(v2_placeholder("{sub:[a-z]+}.example.com"), Some("{sub:[a-z]+}"));
        assert_eq!(v2_placeholder("^/a{2,3}$"), None);
        assert_eq!(v2_placeholder("/{}"), None);
    }
}
