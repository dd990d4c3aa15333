//! Sizes on the command line: `1G`, `512M`, `10GiB`, `4096`, `1.5T`.
//! Suffixes are binary (K = 1024), as qemu-img and truncate(1) read them.

/// Parses a size; returns a message naming what was wrong.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        u => {
            return Err(format!(
                "unknown size unit {u:?} in {s:?}: use K, M, G, T or P (powers of 1024)"
            ))
        }
    };
    let bad =
        || format!("invalid size {s:?}: expected a number with an optional unit, like 1G or 512M");
    if num.is_empty() {
        return Err(bad());
    }
    let mult = 1u64 << shift;
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("size {s:?} is too large"));
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let v = f * mult as f64;
    if !(v.is_finite() && v >= 0.0 && v < 2f64.powi(63)) || v.fract() != 0.0 {
        return Err(format!("size {s:?} is not a whole number of bytes"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("12X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("99999999999P")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("0.3K").is_err());
    }
}
