//! The framed forms of the ABI (see [the ABI](crate::abi)): JSON for the small parts,
//! and the bulky JSON values — events in, message bodies out — behind their lengths.
//!
//! Events are forwarded as the raw JSON the agent already validated at ingest, and a
//! message body is JSON the plugin just serialised. In plain JSON a reader must scan
//! every such value only to find where it ends (the guest its input, the agent the
//! output); framed, it takes each by its length.
//!
//! `sending_event` input, for plugins that ask in `describe`
//! ([`PluginInfo::framed_input`](crate::PluginInfo)):
//!
//! ```text
//! 0x00                        never the first byte of JSON
//! u32 LE  header length H
//! H bytes the SendingEvent as JSON, with "events": []
//! per event: u32 LE length L, then L bytes of the event's JSON
//! ```
//!
//! [`Output`] of any export, recognised by its first byte:
//!
//! ```text
//! 0x00
//! u32 LE  header length H
//! H bytes the Output as JSON, every JSON body written as null
//! per JSON body, in message order: u32 LE length L, then L bytes of the body's JSON
//! ```

use serde::de::value::{Error as ValueError, MapDeserializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::OnceLock;

use crate::{Body, Error, Event, Output, Result, SendingEvent};

/// The first byte of framed input.
pub const MARK: u8 = 0;

/// Encodes `event` framed (the agent's side).
pub fn encode_sending(event: &SendingEvent) -> Vec<u8> {
    let header = SendingEvent {
        handler_id: event.handler_id.clone(),
        account_id: event.account_id.clone(),
        request_id: event.request_id.clone(),
        event_create_time: event.event_create_time.clone(),
        event_end_time: event.event_end_time.clone(),
        events: Vec::new(),
    };
    let events: usize = event.events.iter().map(|e| 4 + e.raw().len()).sum();
    let mut out = Vec::with_capacity(256 + events);
    out.extend_from_slice(&[MARK, 0, 0, 0, 0]);
    // Strings and an empty list always serialise.
    let _ = serde_json::to_writer(&mut out, &header);
    let header_len = (out.len() - 5) as u32;
    out[1..5].copy_from_slice(&header_len.to_le_bytes());
    for e in &event.events {
        out.extend_from_slice(&(e.raw().len() as u32).to_le_bytes());
        out.extend_from_slice(e.raw().as_bytes());
    }
    out
}

/// Decodes `sending_event` input, framed or plain JSON (the plugin's side).
pub fn decode_sending(input: &[u8]) -> Result<SendingEvent> {
    let Some((&MARK, mut rest)) = input.split_first() else {
        return serde_json::from_slice(input).map_err(|e| Error::msg(format!("bad input: {e}")));
    };
    let header = take(&mut rest)?;
    let mut event: SendingEvent =
        serde_json::from_slice(header).map_err(|e| Error::msg(format!("bad input header: {e}")))?;
    while !rest.is_empty() {
        let raw = String::from_utf8(take(&mut rest)?.to_vec())
            .map_err(|_| Error::msg("bad input: an event is not UTF-8"))?;
        event.events.push(Event(trusted_raw(raw)?));
    }
    Ok(event)
}

/// Encodes `output` framed (the plugin's side).
pub fn encode_output(mut output: Output) -> Result<Vec<u8>> {
    let mut bodies = Vec::new();
    for message in &mut output.messages {
        if let Body::Json(raw) = &mut message.body {
            bodies.push(std::mem::replace(
                raw,
                serde_json::value::to_raw_value(&())?,
            ));
        }
    }
    let size: usize = bodies.iter().map(|b| 4 + b.get().len()).sum();
    let mut out = Vec::with_capacity(256 + size);
    out.extend_from_slice(&[MARK, 0, 0, 0, 0]);
    serde_json::to_writer(&mut out, &output)?;
    let header_len = (out.len() - 5) as u32;
    out[1..5].copy_from_slice(&header_len.to_le_bytes());
    for body in &bodies {
        out.extend_from_slice(&(body.get().len() as u32).to_le_bytes());
        out.extend_from_slice(body.get().as_bytes());
    }
    Ok(out)
}

/// Decodes an [`Output`], framed or plain JSON (the agent's side). A framed JSON body is
/// checked to be UTF-8, not parsed: the plugin made it, as it makes text bodies.
pub fn decode_output(bytes: &[u8]) -> std::result::Result<Output, serde_json::Error> {
    use serde::de::Error as _;
    let invalid = |e: Error| serde_json::Error::custom(e.message());
    let Some((&MARK, mut rest)) = bytes.split_first() else {
        return serde_json::from_slice(bytes);
    };
    let mut output: Output = serde_json::from_slice(take(&mut rest).map_err(invalid)?)?;
    for message in &mut output.messages {
        if let Body::Json(raw) = &mut message.body {
            let frame = take(&mut rest).map_err(invalid)?;
            let json = std::str::from_utf8(frame).map_err(serde_json::Error::custom)?;
            *raw = trusted_raw(json.to_owned()).map_err(invalid)?;
        }
    }
    if !rest.is_empty() {
        return Err(serde_json::Error::custom(
            "bytes after the last framed body",
        ));
    }
    Ok(output)
}

/// The next length-prefixed piece of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8]> {
    let truncated = || Error::msg("bad input: framed input is truncated");
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
    let len = u32::from_le_bytes(*len) as usize;
    let piece = tail.get(..len).ok_or_else(truncated)?;
    *rest = &tail[len..];
    Ok(piece)
}

/// serde_json's private name for a raw value in its deserialisation protocol.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// `json` as a raw value without parsing it again: the agent validated it at ingest.
///
/// Uses the protocol by which serde_json's `Box<RawValue>` deserialises from any
/// deserializer (a one-entry map under its private token). Should a serde_json release
/// change that (checked once, on a probe), this validates with `RawValue::from_string`
/// instead: slower, never wrong.
pub fn trusted_raw(json: String) -> Result<Box<RawValue>> {
    static PROTOCOL_WORKS: OnceLock<bool> = OnceLock::new();
    let works = *PROTOCOL_WORKS
        .get_or_init(|| unchecked_raw("[0]".to_owned()).is_ok_and(|raw| raw.get() == "[0]"));
    let raw = if works {
        unchecked_raw(json)
    } else {
        RawValue::from_string(json).map_err(Error::from)
    };
    raw.map_err(|e| Error::msg(format!("bad input: an event: {e}")))
}

fn unchecked_raw(json: String) -> Result<Box<RawValue>> {
    let map = MapDeserializer::<_, ValueError>::new(std::iter::once((RAW_VALUE_TOKEN, json)));
    Box::<RawValue>::deserialize(map).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> SendingEvent {
        let raw = |s: &str| Event(RawValue::from_string(s.to_owned()).unwrap());
        SendingEvent {
            handler_id: "h".into(),
            account_id: "a\u{e9}\"q".into(),
            request_id: "r-1".into(),
            event_create_time: "t0".into(),
            event_end_time: "t1".into(),
            events: vec![
                raw(r#"{"b": 1, "a": [1.5, "x\u00e9"]}"#),
                raw("{}"),
                raw("\"é\""),
            ],
        }
    }

    #[test]
    fn framed_input_round_trips_events_verbatim() {
        let e = event();
        let framed = encode_sending(&e);
        assert_eq!(framed[0], MARK);
        let back = decode_sending(&framed).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        let json = serde_json::to_vec(&e).unwrap();
        let plain = decode_sending(&json).unwrap();
        assert_eq!(serde_json::to_vec(&plain).unwrap(), json);
    }

    #[test]
    fn framed_output_round_trips_bodies_verbatim() {
        let json = RawValue::from_string(r#"{"a": [1, "é"]}"#.to_owned()).unwrap();
        let output = Output {
            messages: vec![
                crate::Message::text("t", "plain \"text\""),
                crate::Message::json("s", &json).unwrap().topic("x"),
                crate::Message::json("s", &()).unwrap(),
            ],
            points: vec![crate::Point::new("p", 1).field("f", 2i64)],
        };
        let plain = serde_json::to_string(&output).unwrap();
        let framed = encode_output(output).unwrap();
        assert_eq!(framed[0], MARK);
        let back = decode_output(&framed).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), plain);
        let back = decode_output(plain.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), plain);
        for cut in [2, framed.len() - 1] {
            assert!(decode_output(&framed[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = framed.clone();
        extra.push(b' ');
        assert!(decode_output(&extra).is_err());
    }

    #[test]
    fn the_unchecked_path_is_taken_and_truncation_is_an_error() {
        // Not JSON, so only the unchecked path accepts it: proves it is in use.
        assert_eq!(trusted_raw("not json".into()).unwrap().get(), "not json");
        let framed = encode_sending(&event());
        for cut in [1, 3, 7, framed.len() - 1] {
            assert!(decode_sending(&framed[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_sending(b"").is_err());
    }
}
