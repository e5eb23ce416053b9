//! Store ids, which must be usable as a path component of an OCI repository
//! name (they become part of image names).

/// Why `id` cannot be an OCI repository path component, or `None` when it
/// can. The rule is the distribution spec's:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn invalid_reason(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("it is empty".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Some(if c.is_ascii_uppercase() {
            format!("it has the uppercase letter {c:?}")
        } else {
            format!("it has the character {c:?}")
        });
    }
    let bytes = id.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Some("it must start and end with a letter or digit".into());
    }
    // Separators: one '.', one or two '_', or any number of '-'; never mixed.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &id[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Some(format!("the separator {sep:?} is not allowed"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::invalid_reason;

    #[test]
    fn oci_component_rule() {
        let cases = [
            ("us", true),
            ("fashion-brand-us", true),
            ("a.b", true),
            ("a_b", true),
            ("a__b", true),
            ("a---b", true),
            ("eu2", true),
            ("", false),
            ("Us", false),
            ("a b", false),
            ("-a", false),
            ("a-", false),
            ("a..b", false),
            ("a___b", false),
            ("a._b", false),
            ("a/b", false),
            ("ü", false),
        ];
        for (id, ok) in cases {
            assert_eq!(invalid_reason(id).is_none(), ok, "{id:?}");
        }
    }
}
