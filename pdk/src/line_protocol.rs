//! InfluxDB line protocol, the format most custom monitoring systems ingest.

use std::fmt::Write;

use crate::{FieldValue, Point};

/// Appends `point` as one line (with trailing `\n`) to `out`.
///
/// Escaping follows the InfluxDB spec: commas and spaces in the measurement; commas,
/// equals signs and spaces in tag keys, tag values and field keys; quotes and
/// backslashes in string fields. A point without fields is skipped (the protocol
/// cannot express it).
pub fn write_point(out: &mut String, point: &Point) {
    if point.fields.is_empty() {
        return;
    }
    escape(out, &point.series, &[',', ' ']);
    for (key, value) in &point.tags {
        out.push(',');
        escape(out, key, &[',', '=', ' ']);
        out.push('=');
        escape(out, value, &[',', '=', ' ']);
    }
    for (i, (key, value)) in point.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape(out, key, &[',', '=', ' ']);
        out.push('=');
        match value {
            FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            FieldValue::Int(i) => {
                let _ = write!(out, "{i}i");
            }
            FieldValue::Float(f) => {
                let _ = write!(out, "{f}");
            }
            FieldValue::Str(s) => {
                out.push('"');
                escape(out, s, &['"', '\\']);
                out.push('"');
            }
        }
    }
    let _ = writeln!(out, " {}", point.time);
}

/// All `points` as line protocol, one line each.
pub fn to_line_protocol(points: &[Point]) -> String {
    let mut out = String::with_capacity(points.len() * 96);
    for point in points {
        write_point(&mut out, point);
    }
    out
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_types() {
        let p = Point::new("requests", 1_700_000_000_000_000_000)
            .tag("route", "POST:/v1/events")
            .tag("service", "out post")
            .field("execution_time", 0.25)
            .field("request_id", "a\"b")
            .field("status_ok", true)
            .field("n", 3i64);
        assert_eq!(
            to_line_protocol(&[p]),
            "requests,route=POST:/v1/events,service=out\\ post \
             execution_time=0.25,n=3i,request_id=\"a\\\"b\",status_ok=true 1700000000000000000\n"
        );
    }

    #[test]
    fn point_without_fields_is_skipped() {
        assert_eq!(to_line_protocol(&[Point::new("empty", 1)]), "");
    }
}
