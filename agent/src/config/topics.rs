//! MQTT topic templates: `{device_id}`, `{sink}` and `{handler_id}` are filled in when a
//! message is queued, so the stored record carries its final topic.

use std::collections::BTreeMap;

use outpost_pdk::Message;

use super::Config;

/// The topic templates of the MQTT sinks.
#[derive(Debug, Default)]
pub struct TopicTemplates {
    device_id: String,
    templates: BTreeMap<String, String>,
}

/// `{handler_id}` of messages that do not come from an ingest request.
const NO_HANDLER: &str = "none";

impl TopicTemplates {
    pub fn from_config(config: &Config) -> Self {
        TopicTemplates {
            device_id: config.agent.device_id.clone(),
            templates: config
                .sinks
                .iter()
                .filter_map(|(name, sink)| Some((name.clone(), sink.topic_template()?.to_owned())))
                .collect(),
        }
    }

    /// `template` filled in for a message to `sink` from a request of `handler_id` (or
    /// from no request).
    pub fn expand(&self, template: &str, sink: &str, handler_id: Option<&str>) -> String {
        template
            .replace("{device_id}", &self.device_id)
            .replace("{sink}", sink)
            .replace("{handler_id}", handler_id.unwrap_or(NO_HANDLER))
    }

    /// Gives every message for an MQTT sink that has no topic of its own the sink's
    /// expanded template.
    pub fn stamp(&self, messages: &mut [Message], handler_id: Option<&str>) {
        for m in messages.iter_mut().filter(|m| m.topic.is_none()) {
            if let Some(template) = self.templates.get(m.sink.as_str()) {
                m.topic = Some(self.expand(template, m.sink.as_str(), handler_id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_placeholders_and_keeps_plugin_topics() {
        let mut t = TopicTemplates {
            device_id: "cam-01".into(),
            ..Default::default()
        };
        t.templates
            .insert("cloud".into(), "o/{device_id}/{sink}/{handler_id}".into());
        let mut messages = vec![
            Message::text("cloud", "a"),
            Message::text("cloud", "b").topic("mine"),
            Message::text("store", "c"),
        ];
        t.stamp(&mut messages, Some("h1"));
        assert_eq!(messages[0].topic.as_deref(), Some("o/cam-01/cloud/h1"));
        assert_eq!(messages[1].topic.as_deref(), Some("mine"));
        assert_eq!(messages[2].topic, None);
        let mut timer = vec![Message::text("cloud", "d")];
        t.stamp(&mut timer, None);
        assert_eq!(timer[0].topic.as_deref(), Some("o/cam-01/cloud/none"));
    }
}
