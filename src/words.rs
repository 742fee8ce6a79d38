//! English for what hopline prints to people: counts with their noun in the right number.
//! Pure; nothing here is read by a program.

/// `1 connection`, `2 connections`, `0 requests`.
pub fn counted(count: u64, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(counted(1, "connection"), "1 connection");
        assert_eq!(counted(0, "request"), "0 requests");
        assert_eq!(counted(13, "handshake"), "13 handshakes");
    }
}
