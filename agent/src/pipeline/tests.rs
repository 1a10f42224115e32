//! The pipeline step with real plugins and a real queue: a job no plugin takes is an
//! error, never a silent success with nothing queued.

use std::path::Path;

use outpost_pdk::Event;

use super::*;
use crate::config::{Config, Env};
use crate::plugin::HostContext;

fn pipeline(dir: &Path) -> Pipeline {
    let text = format!(
        "[agent]\ndata_dir = \"{}\"\n[plugins]\ndir = \"{}\"\nactive = [\"forward\", \"resource_monitor\"]\n\
         [plugins.settings.forward]\nsink = \"s\"\n[sinks.s]\ntype = \"file\"\npath = \"{}\"\n",
        dir.display(),
        dir.join("no-wasm").display(),
        dir.join("out.ndjson").display()
    );
    let config = Config::parse(&dir.join("o.toml"), &text, &Env::default()).unwrap();
    let plugins = PluginHost::load(&config, HostContext::detached(&config)).unwrap();
    let queue = Queue::open(dir, &config.queue, ["s"]).unwrap();
    Pipeline::new(
        Arc::new(plugins),
        Arc::new(queue),
        TopicTemplates::from_config(&config),
    )
}

fn event() -> SendingEvent {
    SendingEvent {
        handler_id: "h".into(),
        account_id: "a".into(),
        request_id: "r".into(),
        event_create_time: "t".into(),
        event_end_time: "t".into(),
        events: vec![Event(
            serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        )],
    }
}

#[tokio::test]
async fn a_job_for_a_plugin_that_does_not_take_it_is_refused_and_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let to = |plugin: &str| Job::Sending {
        event: event(),
        target: Target::Plugin(plugin.into()),
    };
    let e = p.run(to("resource_monitor")).await.unwrap_err();
    assert!(
        matches!(&e, PipelineError::NotRouted { plugin, callback: "sending_event" } if plugin == "resource_monitor"),
        "{e}"
    );
    let message = Job::SourceMessage {
        plugin: "forward".into(),
        message: SourceMessage::default(),
    };
    assert!(matches!(
        p.run(message).await,
        Err(PipelineError::NotRouted {
            callback: "on_message",
            ..
        })
    ));
    assert!(matches!(
        p.run(to("nobody")).await,
        Err(PipelineError::NotRouted { .. })
    ));
    assert_eq!(p.queue.stats().depth, 0);

    let done = p.run(to("forward")).await.unwrap();
    assert_eq!(
        done,
        Accepted {
            events: 1,
            messages: 1
        }
    );
    assert_eq!(p.queue.stats().depth, 1);
}
