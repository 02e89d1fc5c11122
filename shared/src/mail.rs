//! Outgoing e-mail: a small port with two adapters — Amazon SES (v1 `SendEmail`, text and
//! HTML parts) and a local outbox (JSON lines in a file, and in memory for tests).

use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use serde::{Deserialize, Serialize};

use crate::domain::Email;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the mail service refused or failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug + 'static {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

#[derive(Debug)]
pub struct SesMailer {
    client: aws_sdk_ses::Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: aws_sdk_ses::Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
        }
    }
}

fn content(text: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Backend(e.into()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = Message::builder()
            .subject(content(&mail.subject)?)
            .body(
                Body::builder()
                    .text(content(&mail.text)?)
                    .html(content(&mail.html)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .source(&self.from)
            .destination(
                Destination::builder()
                    .to_addresses(mail.to.as_str())
                    .build(),
            )
            .message(message)
            .send()
            .await
            .map_err(|e| MailError::Backend(e.into()))?;
        Ok(())
    }
}

/// Keeps every mail in memory and, with a path, appends it as a JSON line to that file.
#[derive(Debug, Default)]
pub struct OutboxMailer {
    path: Option<PathBuf>,
    sent: Mutex<Vec<Mail>>,
}

impl OutboxMailer {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            sent: Mutex::new(Vec::new()),
        }
    }

    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        if let Some(path) = &self.path {
            use std::io::Write;
            let line = serde_json::to_string(mail).map_err(|e| MailError::Backend(e.into()))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| MailError::Backend(e.into()))?;
            writeln!(f, "{line}").map_err(|e| MailError::Backend(e.into()))?;
        }
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(mail.clone());
        }
        Ok(())
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outbox_keeps_and_appends_mail() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("outbox.jsonl");
        let outbox = OutboxMailer::new(Some(path.clone()));
        let mail = Mail {
            to: Email::parse("ada@example.org").unwrap_or_else(|e| panic!("{e}")),
            subject: "Hi".into(),
            text: "t".into(),
            html: "<p>t</p>".into(),
        };
        outbox.send(&mail).await.unwrap_or_else(|e| panic!("{e}"));
        outbox.send(&mail).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outbox.sent(), vec![mail.clone(), mail.clone()]);
        let lines = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(lines.lines().count(), 2);
        let back: Mail = serde_json::from_str(lines.lines().next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, mail);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
