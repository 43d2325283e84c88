//! The one CSV line splitter of the workspace: the HSS's SIM-card import and the
//! application server's phonebook both read spreadsheet exports.

/// Splits one CSV line at `delim` with RFC 4180 quoting (`"a, b"`, `""` for a quote inside
/// quotes); fields are trimmed. `None` when a quote is left open: the line (or the file's
/// line structure) is broken and must not be read as data.
pub fn split_line(line: &str, delim: char) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == delim && !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    out.push(cur.trim().to_string());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::split_line;

    #[test]
    fn quotes_delimiters_and_open_quotes() {
        assert_eq!(
            split_line(r#" 030 1 , "Doe, ""J"" Jr" ,x"#, ','),
            Some(vec!["030 1".into(), r#"Doe, "J" Jr"#.into(), "x".into()])
        );
        assert_eq!(
            split_line("a;b\t;c", ';'),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(split_line("", ','), Some(vec![String::new()]));
        assert_eq!(split_line(r#"a,"b"#, ','), None);
    }
}
