//! The body of a delivery, rendered when the notice is queued and stored as the exact bytes
//! sent (and signed) at every attempt.
//!
//! - `json`: `{"event","text","data","delivery","created_at"}`, in that order: the topic, the
//!   line for people, the facts (the request object), the delivery's id (also the
//!   `X-Porthole-Delivery` header) and when it was queued (ms since the epoch).
//! - `slack`: a Slack incoming webhook's `{"text": …}`, the line for people with `&`, `<` and
//!   `>` escaped as Slack asks, so that a reason cannot ping `<!channel>` or make a link.

use serde::Serialize;

use super::Notice;
use crate::gateway::config::WebhookFormat;

/// The JSON format's body, field for field.
#[derive(Serialize)]
struct JsonBody<'a> {
    event: &'a str,
    text: &'a str,
    data: &'a serde_json::Value,
    delivery: &'a str,
    created_at: i64,
}

/// The Slack format's body.
#[derive(Serialize)]
struct SlackBody<'a> {
    text: &'a str,
}

/// The body of delivery `id` of `notice` in `format`, queued at `created_at` (ms).
pub fn body(
    format: WebhookFormat,
    notice: &Notice,
    id: &str,
    created_at: i64,
) -> Result<String, serde_json::Error> {
    match format {
        WebhookFormat::Json => serde_json::to_string(&JsonBody {
            event: notice.topic.as_str(),
            text: &notice.text,
            data: &notice.data,
            delivery: id,
            created_at,
        }),
        WebhookFormat::Slack => serde_json::to_string(&SlackBody {
            text: &slack_escape(&notice.text),
        }),
    }
}

/// `text` with the three characters Slack's markup reserves escaped (`&amp;`, `&lt;`, `&gt;`).
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::notify::Topic;

    fn notice() -> Notice {
        Notice {
            topic: Topic::Decision,
            text: "bob approved alice's request for i-0abc: INC-42 <!channel> & \"disk\"".into(),
            data: serde_json::json!({"id": "r-1", "state": "approved", "approvals": [{"user": "bob"}]}),
        }
    }

    #[test]
    fn the_json_body_is_the_notice_with_its_delivery() {
        let text = body(WebhookFormat::Json, &notice(), "d-1", 1_765_000_000_000).unwrap();
        assert_eq!(
            text,
            r#"{"event":"decision","text":"bob approved alice's request for i-0abc: INC-42 <!channel> & \"disk\"","data":{"approvals":[{"user":"bob"}],"id":"r-1","state":"approved"},"delivery":"d-1","created_at":1765000000000}"#
        );
    }

    #[test]
    fn the_slack_body_is_the_line_escaped() {
        let text = body(WebhookFormat::Slack, &notice(), "d-1", 1).unwrap();
        assert_eq!(
            text,
            r#"{"text":"bob approved alice's request for i-0abc: INC-42 &lt;!channel&gt; &amp; \"disk\""}"#
        );
        assert_eq!(slack_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(slack_escape("plain"), "plain");
    }
}
