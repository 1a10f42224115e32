//! What an event must be beyond valid JSON: an object, nested no deeper than the limit.
//! Receivers (a Python service, any parser with a recursion limit) fail on deeper
//! documents, and a message a receiver answers 5xx for would block its sink's FIFO.

use outpost_pdk::Event;

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventProblem {
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Checks one event (valid JSON, as parsed).
pub fn check_event(event: &Event, max_depth: usize) -> Result<(), EventProblem> {
    let raw = event.raw().as_bytes();
    if raw.first() != Some(&b'{') {
        return Err(EventProblem::NotAnObject);
    }
    if deeper_than(raw, max_depth) {
        return Err(EventProblem::TooDeep(max_depth));
    }
    Ok(())
}

/// Whether arrays and objects in `json` (valid JSON) nest deeper than `limit`. One pass,
/// no tree: string contents are skipped with `memchr`.
pub fn deeper_than(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => i = string_end(json, i + 1),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The index of the quote closing the string whose contents start at `from`.
fn string_end(json: &[u8], mut from: usize) -> usize {
    while let Some(at) = memchr::memchr2(b'"', b'\\', &json[from.min(json.len())..]) {
        let at = from + at;
        if json[at] == b'"' {
            return at;
        }
        from = at + 2; // an escape: skip the escaped character
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn objects_within_the_limit_pass() {
        assert_eq!(
            check_event(&event(r#"{"a": [1, {"b": "x]]]"}]}"#), 3),
            Ok(())
        );
        assert_eq!(check_event(&event(r#"{"a": "\"[[[[[[\\"}"#), 1), Ok(()));
    }

    #[test]
    fn non_objects_and_deep_nesting_are_refused() {
        for bad in ["[1]", "\"x\"", "null", "3"] {
            assert_eq!(
                check_event(&event(bad), 64),
                Err(EventProblem::NotAnObject),
                "{bad}"
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            check_event(&event(&deep), 64),
            Err(EventProblem::TooDeep(64))
        );
        assert_eq!(
            check_event(&event(r#"{"a":{"b":{}}}"#), 2),
            Err(EventProblem::TooDeep(2))
        );
    }
}
