//! AWS-shaped unique ids (`AIPA...`, `AROA...`) derived from a seed: the sidecar's
//! IMDS instance-profile id and the emulator's role id, each the same for the
//! same role so that it does not change between credential generations.

/// The prefix, then 17 characters of AWS's base-32 alphabet taken from the
/// SHA-256 of `seed`.
pub(crate) fn stable_id(prefix: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let tail: String = digest
        .as_ref()
        .iter()
        .take(17)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_should_be_stable_and_aws_shaped() {
        let a = stable_id("AROA", "arn:aws:iam::111122223333:role/x");
        assert_eq!(a, stable_id("AROA", "arn:aws:iam::111122223333:role/x"));
        assert_ne!(a, stable_id("AROA", "arn:aws:iam::111122223333:role/y"));
        assert_eq!(a.len(), 21);
        assert!(a[4..]
            .bytes()
            .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".contains(&b)));
    }
}
