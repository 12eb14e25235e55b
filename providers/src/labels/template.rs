//! `defaultRule`: the rule given to an item that has no rule of its own, as a small template in
//! Traefik's notation (``Host(`{{ normalize .Name }}`)``).
//!
//! Supported: `{{ .Name }}`, `{{ .ContainerName }}`, `{{ index .Labels "key" }}`, each optionally
//! wrapped as `{{ normalize … }}`. Whatever is substituted can never inject rule syntax:
//! `normalize` keeps only ASCII letters and digits joined by `-`, and an unnormalised value that
//! holds anything but letters, digits, `.`, `-`, `_` makes the item an error instead of a rule.

use std::collections::BTreeMap;

/// What a template can refer to.
#[derive(Debug, Default, Clone)]
pub struct TemplateVars<'a> {
    /// The item's name (service name for Docker: `<service>_<project>` or the container name).
    pub name: &'a str,
    /// The container (or task, instance) name.
    pub container_name: &'a str,
    /// The item's labels.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var { var: Var, normalize: bool },
}

#[derive(Debug, Clone, PartialEq)]
enum Var {
    Name,
    ContainerName,
    Label(String),
}

/// A parsed `defaultRule` template.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultRule {
    parts: Vec<Part>,
    source: String,
}

impl Default for DefaultRule {
    fn default() -> Self {
        Self::parse("Host(`{{ normalize .Name }}`)").expect("the built-in default rule template is valid")
    }
}

/// Traefik's `normalize`: runs of ASCII letters and digits joined by `-`.
pub fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

impl DefaultRule {
    /// Parses a template; errors say what is not understood.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("defaultRule `{source}`: `{{{{` without `}}}}`"))?;
            let expr = after[..end].trim();
            let (normalize, inner) = match expr.strip_prefix("normalize ") {
                Some(inner) => (true, inner.trim()),
                None => (false, expr),
            };
            let var = match inner {
                ".Name" => Var::Name,
                ".ContainerName" => Var::ContainerName,
                other => match other.strip_prefix("index .Labels ") {
                    Some(key) => Var::Label(key.trim().trim_matches('"').to_string()),
                    None => {
                        return Err(format!(
                            "defaultRule `{source}`: `{{{{ {expr} }}}}` is not supported (use .Name, .ContainerName, index .Labels \"key\", optionally with normalize)"
                        ))
                    }
                },
            };
            parts.push(Part::Var { var, normalize });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self {
            parts,
            source: source.to_string(),
        })
    }

    /// The rule for `vars`, or why none can be made.
    pub fn render(&self, vars: &TemplateVars) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { var, normalize: norm } => {
                    let value = match var {
                        Var::Name => vars.name.to_string(),
                        Var::ContainerName => vars.container_name.to_string(),
                        Var::Label(key) => vars
                            .labels
                            .and_then(|l| l.get(key))
                            .cloned()
                            .ok_or_else(|| format!("defaultRule needs the label `{key}`, which is not set"))?,
                    };
                    let value = if *norm { normalize(&value) } else { value };
                    if value.is_empty() {
                        return Err(format!("defaultRule `{}` renders an empty value", self.source));
                    }
                    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
                        return Err(format!(
                            "defaultRule `{}`: the value `{value}` has characters that cannot go into a rule; use `normalize`",
                            self.source
                        ));
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_normalizes() {
        let vars = TemplateVars {
            name: "web_shop",
            container_name: "shop-web-1",
            labels: None,
        };
        assert_eq!(DefaultRule::default().render(&vars).unwrap(), "Host(`web-shop`)");
        let t = DefaultRule::parse("Host(`{{ .ContainerName }}.example.com`)").unwrap();
        assert_eq!(t.render(&vars).unwrap(), "Host(`shop-web-1.example.com`)");
    }

    #[test]
    fn names_cannot_inject_rule_syntax() {
        let vars = TemplateVars {
            name: "x`) || Host(`evil",
            container_name: "",
            labels: None,
        };
        assert_eq!(DefaultRule::default().render(&vars).unwrap(), "Host(`x-Host-evil`)");
        let raw = DefaultRule::parse("Host(`{{ .Name }}`)").unwrap();
        assert!(raw.render(&vars).unwrap_err().contains("cannot go into a rule"));
        assert!(DefaultRule::parse("Host(`{{ .Foo }}`)").is_err());
    }
}
