//! YAML errors as one line a user can act on: `file:line:column: what is wrong`, the same shape as
//! [`crate::toml_error`], so a user sees one kind of message whichever syntax a file is in.
//!
//! The YAML parser's message already names the key path where it has one
//! (`http.services.web.loadBalancer.servers[0].weight: invalid type: …`) and ends with the position
//! in words (`at line 7 column 21`). The position is moved to the front in the `file:line:column`
//! form that editors and terminals jump to; the words go, so the message does not say it twice.

use std::path::Path;

/// Describes a YAML error as `path:line:column: message`, on one line. Lines and columns are
/// 1-based and count characters, as in TOML errors.
pub fn describe(path: &Path, err: &yaml_serde::Error) -> String {
    let message = err.to_string();
    match err.location() {
        Some(at) => {
            let (line, column) = (at.line(), at.column());
            let message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
            format!("{}:{line}:{column}: {}", path.display(), one_line(&message))
        }
        None => format!("{}: {}", path.display(), one_line(&message)),
    }
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DynamicConfig;

    fn describe_text(text: &str) -> String {
        let err = DynamicConfig::from_yaml(text).unwrap_err();
        describe(Path::new("r.yaml"), &err)
    }

    #[test]
    fn a_type_error_names_position_and_key_path_once() {
        let line = describe_text(
            "http:\n  services:\n    s:\n      loadBalancer:\n        servers:\n          - url: http://a\n            weight: abc\n",
        );
        assert_eq!(
            line,
            "r.yaml:7:21: http.services.s.loadBalancer.servers[0].weight: invalid type: string \"abc\", expected u32"
        );
    }

    #[test]
    fn a_syntax_error_keeps_the_parser_context() {
        let line = describe_text("http:\n  routers:\n    r:\n     rule: x\n      service: s\n");
        assert_eq!(line, "r.yaml:5:14: mapping values are not allowed in this context");
        let line = describe_text("http:\n\trouters: {}\n");
        assert!(
            line.starts_with("r.yaml:2:1: found character that cannot start any token"),
            "{line}"
        );
        assert!(line.ends_with(", while scanning for the next token"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let line = describe_text("http:\n  routers:\n    r: {rule: \"Host(`é.example`)\", service: s, priority: high}\n");
        // `high` starts at character 58; a byte count would say 59.
        assert!(line.starts_with("r.yaml:3:58: http.routers.r.priority: invalid type"), "{line}");
    }
}
