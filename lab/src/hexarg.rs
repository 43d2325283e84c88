//! Parsing of the hex and number arguments that lab engineers paste from card-programming
//! tools, Wireshark and logs: clear errors for wrong lengths and non-hex input.

/// Why a command-line value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A character that is not a hex digit.
    #[error("{what}: {ch:?} at position {pos} is not a hex digit")]
    NotHex {
        /// Which argument.
        what: &'static str,
        /// The offending character.
        ch: char,
        /// Its position (0-based, after removing an optional 0x prefix and separators).
        pos: usize,
    },
    /// Odd number of hex digits.
    #[error("{what}: odd number of hex digits ({digits} digits)")]
    OddLength {
        /// Which argument.
        what: &'static str,
        /// Digits given.
        digits: usize,
    },
    /// Wrong number of octets.
    #[error("{what}: expected {expected} octets ({} hex digits), got {got} octets", expected * 2)]
    Length {
        /// Which argument.
        what: &'static str,
        /// Octets required.
        expected: usize,
        /// Octets given.
        got: usize,
    },
    /// Not a number.
    #[error("{what}: {value:?} is not a decimal or 0x-prefixed hex number")]
    Number {
        /// Which argument.
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// Base64 that does not decode.
    #[error("{what}: neither hex nor base64: {reason}")]
    Base64 {
        /// Which argument.
        what: &'static str,
        /// Decoder message.
        reason: String,
    },
}

/// Hex digits to octets. Accepts an optional `0x` prefix and `:`, `-` or space separators
/// (as Wireshark and card tools print them).
pub fn parse_hex(what: &'static str, s: &str) -> Result<Vec<u8>, ArgError> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: Vec<char> = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | ' '))
        .collect();
    let mut out = Vec::with_capacity(digits.len() / 2);
    for (pos, ch) in digits.iter().enumerate() {
        if !ch.is_ascii_hexdigit() {
            return Err(ArgError::NotHex { what, ch: *ch, pos });
        }
    }
    if digits.len() % 2 != 0 {
        return Err(ArgError::OddLength {
            what,
            digits: digits.len(),
        });
    }
    for pair in digits.chunks(2) {
        // Both are hex digits: checked above.
        let hi = pair[0].to_digit(16).unwrap_or(0);
        let lo = pair[1].to_digit(16).unwrap_or(0);
        out.push((hi * 16 + lo) as u8);
    }
    Ok(out)
}

/// Exactly `N` octets of hex.
pub fn parse_hex_n<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], ArgError> {
    let v = parse_hex(what, s)?;
    v.as_slice().try_into().map_err(|_| ArgError::Length {
        what,
        expected: N,
        got: v.len(),
    })
}

/// A number in decimal or with a 0x prefix in hex.
pub fn parse_number(what: &'static str, s: &str) -> Result<u64, ArgError> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| ArgError::Number {
        what,
        value: s.to_string(),
    })
}

/// Lowercase hex of octets.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_spellings() {
        assert_eq!(parse_hex_n::<2>("amf", "0x8000").unwrap(), [0x80, 0]);
        assert_eq!(parse_hex_n::<2>("amf", "80:00").unwrap(), [0x80, 0]);
        assert_eq!(parse_hex_n::<2>("amf", "B9b9").unwrap(), [0xb9, 0xb9]);
        assert_eq!(parse_number("sqn", "0x20").unwrap(), 32);
        assert_eq!(parse_number("sqn", "32").unwrap(), 32);
    }

    #[test]
    fn errors_name_the_argument_and_the_problem() {
        let e = parse_hex_n::<16>("K", "465b5ce8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "K: expected 16 octets (32 hex digits), got 4 octets"
        );
        let e = parse_hex_n::<16>("K", "46zb").unwrap_err();
        assert_eq!(e.to_string(), "K: 'z' at position 2 is not a hex digit");
        let e = parse_hex("K", "465").unwrap_err();
        assert_eq!(e.to_string(), "K: odd number of hex digits (3 digits)");
        assert!(parse_number("SQN", "12a").is_err());
    }
}
