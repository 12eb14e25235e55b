//! Where a key path (`http.routers.web.rule`) is written in a dynamic file's text, so a problem the
//! merge found in the parsed model is reported at the line and column the user has to edit.
//!
//! The model drover merges keeps no positions (it is shared by every provider, most of which have
//! no text), so positions are found afterwards in the file's text: TOML through `toml_edit`'s
//! spanned document (tables, dotted keys, arrays of tables, inline tables), YAML by following
//! block-mapping indentation. When only a prefix of the path is found (a missing key, a YAML flow
//! mapping), the deepest key found is the answer: the router's or service's own line is still
//! the right place to look.

use drover_providers::file::translate::Syntax;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A mapping key; matched exactly first, then ignoring ASCII case (as the model's aliases).
    Key(String),
    /// A list element.
    Index(usize),
}

/// Parses `loadBalancer.servers[1].url` into steps.
pub fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Step::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Step::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Step::Key(rest.to_string()));
        }
    }
    out
}

/// Where a path was found: byte offsets into the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The deepest key (or list element) of the path that the text has.
    pub key: usize,
    /// The start of that key's value, when it is written on the key's line (or is a TOML value).
    pub value: Option<usize>,
    /// True when the whole path was found.
    pub complete: bool,
}

/// Finds `path` in `text`, written in `syntax`. `None` when not even its first step is there (or
/// the TOML does not parse). To look up several paths, parse once with [`Document`].
pub fn find(text: &str, syntax: Syntax, path: &[Step]) -> Option<Found> {
    Document::parse(text, syntax).find(path)
}

/// A file's text parsed once for many look-ups (a file with a thousand broken routers is parsed
/// once, not a thousand times).
pub enum Document<'a> {
    /// A TOML document with spans (`None`: it does not parse).
    Toml(Option<toml_edit::ImDocument<&'a str>>),
    /// A YAML file's block entries.
    Yaml(Vec<Entry<'a>>),
}

impl<'a> Document<'a> {
    /// Parses `text` for look-ups.
    pub fn parse(text: &'a str, syntax: Syntax) -> Self {
        match syntax {
            Syntax::Toml => Document::Toml(toml_edit::ImDocument::parse(text).ok()),
            Syntax::Yaml => Document::Yaml(entries(text)),
        }
    }

    /// Where `path` is: see [`find`].
    pub fn find(&self, path: &[Step]) -> Option<Found> {
        match self {
            Document::Toml(doc) => toml(doc.as_ref()?, path),
            Document::Yaml(entries) => yaml(entries, path),
        }
    }
}

enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(&self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Table(t) => Some(*t as &dyn toml_edit::TableLike),
            Node::Item(i) => i.as_table_like(),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    fn span(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn is_value(&self) -> bool {
        matches!(self, Node::Value(_) | Node::Item(toml_edit::Item::Value(_)))
    }

    fn key(&self, key: &str) -> Option<(Option<usize>, Node<'a>)> {
        let table = self.table_like()?;
        let name = if table.contains_key(key) {
            key.to_string()
        } else {
            table.iter().map(|(k, _)| k).find(|k| k.eq_ignore_ascii_case(key))?.to_string()
        };
        let (k, item) = table.get_key_value(&name)?;
        Some((k.span().map(|s| s.start), Node::Item(item)))
    }

    fn index(&self, i: usize) -> Option<Node<'a>> {
        let array = match self {
            Node::Item(item) => {
                if let Some(tables) = item.as_array_of_tables() {
                    return tables.get(i).map(Node::Table);
                }
                item.as_array()?
            }
            Node::Value(v) => v.as_array()?,
            Node::Table(_) => return None,
        };
        array.get(i).map(Node::Value)
    }
}

fn toml(doc: &toml_edit::ImDocument<&str>, path: &[Step]) -> Option<Found> {
    let mut node = Node::Table(doc.as_table());
    let mut found: Option<Found> = None;
    let mut complete = true;
    for step in path {
        let hit = match step {
            Step::Key(k) => node.key(k),
            Step::Index(i) => node.index(*i).map(|next| (None, next)),
        };
        let Some((key, next)) = hit else {
            complete = false;
            break;
        };
        let span = next.span().map(|s| s.start);
        if let Some(at) = key.or(span).or(found.map(|f| f.key)) {
            found = Some(Found {
                key: at,
                value: if next.is_value() { span } else { None },
                complete: false,
            });
        }
        node = next;
    }
    found.map(|f| Found { complete, ..f })
}

/// One YAML entry of a block: a key or a list dash, with its indentation and byte offset.
pub struct Entry<'a> {
    indent: usize,
    offset: usize,
    dash: bool,
    content: &'a str,
}

fn entries(text: &str) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let start = offset;
        offset += raw.len();
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        let mut content = trimmed;
        while content == "-" || content.starts_with("- ") {
            out.push(Entry {
                indent,
                offset: start + indent,
                dash: true,
                content,
            });
            let after = content[1..].trim_start_matches(' ');
            indent += content.len() - after.len();
            content = after;
        }
        if !content.is_empty() {
            out.push(Entry {
                indent,
                offset: start + indent,
                dash: false,
                content,
            });
        }
    }
    out
}

/// The key of a `key: value` entry and the byte offset of its value within `content`.
fn key_of(content: &str) -> Option<(&str, Option<usize>)> {
    let (key, rest_at) = if let Some(quote) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = content[1..].find(quote)? + 1;
        (&content[1..close], close + 1)
    } else {
        let colon = content.match_indices(':').map(|(i, _)| i).find(|i| {
            let after = &content[i + 1..];
            after.is_empty() || after.starts_with(' ')
        })?;
        (content[..colon].trim_end(), colon)
    };
    let rest = content[rest_at..].strip_prefix(':')?;
    let value = rest.trim_start_matches(' ');
    let value_at = (!value.is_empty() && !value.starts_with('#')).then(|| content.len() - value.len());
    Some((key, value_at))
}

fn yaml(entries: &[Entry<'_>], path: &[Step]) -> Option<Found> {
    let mut next = 0;
    let mut parent: Option<usize> = None;
    let mut found: Option<Found> = None;
    let mut complete = true;
    for step in path {
        let inside = |e: &Entry<'_>| parent.is_none_or(|p| e.indent > p);
        let hit = match step {
            Step::Key(k) => {
                let mut block = None;
                let mut hit = None;
                for (j, e) in entries.iter().enumerate().skip(next) {
                    if !inside(e) {
                        break;
                    }
                    let indent = *block.get_or_insert(e.indent);
                    if e.dash || e.indent != indent {
                        continue;
                    }
                    if let Some((key, value)) = key_of(e.content) {
                        if key == k || key.eq_ignore_ascii_case(k) {
                            hit = Some((j, value.map(|v| e.offset + v)));
                            break;
                        }
                    }
                }
                hit
            }
            Step::Index(i) => {
                let mut block = None;
                let mut seen = 0;
                let mut hit = None;
                for (j, e) in entries.iter().enumerate().skip(next) {
                    // A list may sit at its key's own indentation (`servers:\n- url: …`).
                    let in_list = e.dash && parent.is_none_or(|p| e.indent >= p);
                    if !inside(e) && !in_list {
                        break;
                    }
                    if !e.dash || *block.get_or_insert(e.indent) != e.indent {
                        continue;
                    }
                    if seen == *i {
                        let rest = e.content[1..].trim_start_matches(' ');
                        let value = (!rest.is_empty()).then(|| e.offset + e.content.len() - rest.len());
                        hit = Some((j, value));
                        break;
                    }
                    seen += 1;
                }
                hit
            }
        };
        let Some((j, value)) = hit else {
            complete = false;
            break;
        };
        found = Some(Found {
            key: entries[j].offset,
            value,
            complete: false,
        });
        parent = Some(entries[j].indent);
        next = j + 1;
    }
    found.map(|f| Found { complete, ..f })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_providers::toml_error::line_column;

    /// (key line and column, value line and column, whole path found).
    type Place = ((usize, usize), Option<(usize, usize)>, bool);

    fn at(text: &str, syntax: Syntax, path: &str) -> Option<Place> {
        find(text, syntax, &steps(path)).map(|f| (line_column(text, f.key), f.value.map(|v| line_column(text, v)), f.complete))
    }

    #[test]
    fn paths_parse_with_indices() {
        assert_eq!(
            steps("http.services.s.loadBalancer.servers[1].url"),
            ["http", "services", "s", "loadBalancer", "servers"]
                .iter()
                .map(|k| Step::Key(k.to_string()))
                .chain([Step::Index(1), Step::Key("url".into())])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn toml_tables_arrays_of_tables_and_inline_tables() {
        let text = "[http.routers.r]\nrule = \"Path(`/`)\"\nservice = \"s\"\n\n[[http.services.s.loadBalancer.servers]]\nurl = \"http://a\"\n[[http.services.s.loadBalancer.servers]]\nurl = \"http:/b\"\n[http.services.t]\nloadBalancer = { servers = [{ url = \"x\" }] }\n";
        assert_eq!(
            at(text, Syntax::Toml, "http.routers.r.service"),
            Some(((3, 1), Some((3, 11)), true))
        );
        assert_eq!(at(text, Syntax::Toml, "http.routers.r.rule").map(|a| a.1), Some(Some((2, 8))));
        assert_eq!(
            at(text, Syntax::Toml, "http.services.s.loadBalancer.servers[1].url").map(|a| a.0),
            Some((8, 1))
        );
        assert_eq!(
            at(text, Syntax::Toml, "http.services.t.loadBalancer.servers[0].url").map(|a| a.0),
            Some((10, 31))
        );
        // A missing key: the deepest one found (the router's table header).
        let (line, _, complete) = at(text, Syntax::Toml, "http.routers.r.middlewares").expect("router found");
        assert_eq!((line.0, complete), (1, false));
        assert_eq!(at(text, Syntax::Toml, "tcp.routers"), None);
    }

    #[test]
    fn yaml_blocks_lists_and_case() {
        let text = "http:\n  routers:\n    r:\n      rule: Path(`/`)\n      service: s\n  services:\n    s:\n      loadbalancer:\n        servers:\n        - url: http://a\n        -   url: \"http:/b\"\n";
        assert_eq!(
            at(text, Syntax::Yaml, "http.routers.r.service"),
            Some(((5, 7), Some((5, 16)), true))
        );
        assert_eq!(at(text, Syntax::Yaml, "http.routers.r.rule").map(|a| a.1), Some(Some((4, 13))));
        assert_eq!(
            at(text, Syntax::Yaml, "http.services.s.loadBalancer.servers[1].url"),
            Some(((11, 13), Some((11, 18)), true))
        );
        let (line, _, complete) = at(text, Syntax::Yaml, "http.services.s.weighted").expect("service found");
        assert_eq!((line, complete), ((7, 5), false));
        // `rule` of a router is not found under another router.
        let two = "http:\n  routers:\n    a:\n      rule: x\n    b:\n      service: s\n";
        assert_eq!(
            at(two, Syntax::Yaml, "http.routers.b.rule").map(|a| (a.0, a.2)),
            Some(((5, 5), false))
        );
    }
}
