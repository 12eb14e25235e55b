//! TOML errors as one line a user can act on: `file:line:column: what is wrong`.

use std::path::Path;

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Describes a TOML error as `path:line:column: message`, on one line.
pub fn describe(path: &Path, text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{}:{line}:{column}: {message}", path.display())
        }
        None => format!("{}: {message}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        let text = "[a]\nx = \n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let line = describe(Path::new("r.toml"), text, &err);
        assert!(line.starts_with("r.toml:2:"), "{line}");
        assert!(!line.contains('\n'));
    }
}
