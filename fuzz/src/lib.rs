//! Helpers shared by the fuzz targets in `fuzz_targets/`.

/// A configuration document built from a fuzz input: with the low bit of `sel` clear the
/// input alone; otherwise `example` with one line (chosen by the other bits of `sel`)
/// replaced by the input. The splice keeps every other key valid, so single bad values reach
/// the semantic checks behind the TOML parser instead of stopping at the first syntax error.
pub fn config_text(example: &str, sel: u8, input: &str) -> String {
    if sel & 1 == 0 {
        return input.to_owned();
    }
    let lines: Vec<&str> = example.lines().collect();
    let at = usize::from(sel >> 1) % lines.len().max(1);
    let mut out = String::with_capacity(example.len() + input.len());
    for (i, line) in lines.iter().enumerate() {
        out.push_str(if i == at { input } else { line });
        out.push('\n');
    }
    out
}
