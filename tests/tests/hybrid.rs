//! The hybrid build: one plugin source, built as `.wasm` and linked natively, gives
//! byte-identical messages.

use outpost::config::{Config, Env};
use outpost::plugin::{HostContext, PluginHost, PluginKind, SendingInput};
use outpost_pdk::{Event, SendingEvent};

fn host(plugins_dir: &std::path::Path, data: &std::path::Path) -> PluginHost {
    host_of("event_sending_plugin_example", plugins_dir, data)
}

fn host_of(plugin: &str, plugins_dir: &std::path::Path, data: &std::path::Path) -> PluginHost {
    let text = format!(
        r#"
[agent]
data_dir = "{}"
[plugins]
dir = "{}"
active = ["{plugin}"]
[plugins.settings.{plugin}]
sink = "store"
[sinks.store]
type = "http"
url = "http://127.0.0.1:9/x"
"#,
        data.display(),
        plugins_dir.display()
    );
    let config = Config::parse(&data.join("outpost.toml"), &text, &Env::default()).unwrap();
    PluginHost::load(&config, HostContext::detached(&config)).unwrap()
}

#[test]
fn wasm_and_native_builds_give_byte_identical_messages() {
    let data = tempfile::tempdir().unwrap();
    let no_wasm = tempfile::tempdir().unwrap();
    let wasm = host(&outpost_tests::plugins_dir(), data.path());
    let native = host(no_wasm.path(), data.path());
    assert_eq!(wasm.plugins()[0].kind(), PluginKind::Wasm);
    assert_eq!(native.plugins()[0].kind(), PluginKind::Native);

    let event = SendingEvent {
        handler_id: "h-1".into(),
        account_id: "a-1".into(),
        request_id: "r-1".into(),
        event_create_time: "2026-11-28T00:00:00.000Z".into(),
        event_end_time: "2026-11-28T00:00:01.000Z".into(),
        events: vec![
            Event(
                serde_json::value::RawValue::from_string(
                    r#"{"b": 1, "a": [1.5, "x\u00e9"]}"#.into(),
                )
                .unwrap(),
            ),
            Event(serde_json::value::RawValue::from_string("{}".into()).unwrap()),
        ],
    };
    let input = SendingInput::new(event);
    let from_wasm = wasm.sending_event(&input, None).unwrap();
    let from_native = native.sending_event(&input, None).unwrap();
    assert_eq!(from_wasm.len(), 1);
    assert_eq!(from_native.len(), 1);
    assert_eq!(from_wasm[0].sink, from_native[0].sink);
    assert_eq!(from_wasm[0].payload(), from_native[0].payload());
    assert_eq!(
        from_wasm[0].effective_content_type(),
        from_native[0].effective_content_type()
    );
    let text = std::str::from_utf8(from_wasm[0].payload()).unwrap();
    assert!(text.contains(r#""Luna-Request-Id":"r-1""#), "{text}");
    assert!(
        text.contains(r#"{"b": 1, "a": [1.5, "x\u00e9"]}"#),
        "events kept verbatim: {text}"
    );
}

#[test]
fn source_messages_reach_a_wasm_plugins_on_message() {
    let data = tempfile::tempdir().unwrap();
    let host = host_of("faulty_plugin", &outpost_tests::plugins_dir(), data.path());
    assert!(host.plugins()[0].info().on_message);
    let message = outpost_pdk::SourceMessage {
        source: "broker".into(),
        topic: "sensors/door".into(),
        payload: "opened".into(),
    };
    let out = host.on_message(&host.plugins()[0], &message).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload(), b"opened");
    assert_eq!(out[0].topic.as_deref(), Some("sensors/door"));
}
