//! Text for people: counts with the noun in the number they call for.

/// `n` and the noun in its number: `count(1, "effect", "effects")` is `1 effect`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "effect", "effects"), "1 effect");
        assert_eq!(count(0, "effect", "effects"), "0 effects");
        assert_eq!(count(2, "touch", "touches"), "2 touches");
    }
}
