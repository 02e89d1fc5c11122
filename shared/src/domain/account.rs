//! Who someone is: e-mail addresses, passwords and the policy they must meet, roles.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An e-mail address, compared and stored case-insensitively (one account per address per
/// installation). Parsing is deliberately plain — `local@domain.tld`, no comments or quoted
/// local parts — because the address's only use is to receive our mail.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = |why| ParseError::new("e-mail address", why);
        let s = s.trim();
        if s.len() > 254 {
            return Err(bad("is longer than 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("has no '@'"))?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad("has an invalid part before '@'"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(bad("has an invalid part before '@'"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !domain_ok {
            return Err(bad("has an invalid domain"));
        }
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(l, _)| l)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// A password that meets the policy: 10–128 characters, at least 5 distinct, not built on the
/// account's e-mail address, not one of the passwords every attacker tries first. Its `Debug`
/// never prints it.
#[derive(Clone)]
pub struct Password(String);

/// The passwords tried first in every credential-stuffing list (lower-cased).
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "qwertyuiop",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou123",
    "qwerty1234",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "abcdefghij",
    "letmein123",
    "welcome123",
    "changeme123",
    "administrator",
    "0123456789",
    "9876543210",
];

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

impl Password {
    /// An account's password: the policy, and not containing the account's address.
    pub fn parse(candidate: &str, email: &Email) -> Result<Self, ParseError> {
        let password = Self::parse_shared(candidate)?;
        let lower = candidate.to_lowercase();
        let local = email.local_part();
        if lower.contains(email.as_str()) || (local.len() >= 4 && lower.contains(local)) {
            return Err(ParseError::new(
                "password",
                "must not contain your e-mail address",
            ));
        }
        Ok(password)
    }

    /// A password shared with several people (a share link's): the same length, variety and
    /// common-password rules as an account's.
    pub fn parse_shared(candidate: &str) -> Result<Self, ParseError> {
        let bad = |why| ParseError::new("password", why);
        let chars: Vec<char> = candidate.chars().collect();
        if chars.len() < MIN_PASSWORD_CHARS {
            return Err(bad("must be at least 10 characters"));
        }
        if chars.len() > MAX_PASSWORD_CHARS {
            return Err(bad("must be at most 128 characters"));
        }
        let mut distinct = chars.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 5 {
            return Err(bad("must use at least 5 different characters"));
        }
        let lower = candidate.to_lowercase();
        if COMMON.contains(&lower.as_str()) {
            return Err(bad("is too common"));
        }
        Ok(Self(candidate.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// What a user may do in their organization besides what their teams give.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    #[default]
    User,
    /// Manages every dataset of the organization.
    DatasetManager,
    /// Manages everything in the organization.
    Admin,
}

/// A member's role in one team.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    #[default]
    Member,
    /// Manages the team's members, activates and invites people into it.
    Manager,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn emails_are_case_insensitive() {
        assert_eq!(
            email(" Ada.Lovelace@Example.ORG "),
            email("ada.lovelace@example.org")
        );
        assert_eq!(email("ADA@x.io").as_str(), "ada@x.io");
        assert!(Email::parse("o'brien+lab@uni-heidelberg.de").is_ok());
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "ada@@example.org",
            "ada@exa mple.org",
            "a da@example.org",
            ".ada@example.org",
            "ada.@example.org",
            "a..da@example.org",
            "ada@-example.org",
            "ada@example..org",
            "<ada@example.org>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn password_policy() {
        let e = email("marie.curie@radium.fr");
        assert!(Password::parse("correct horse battery", &e).is_ok());
        for (bad, why) in [
            ("short1!", "too short"),
            ("aaaaaaaaaaaa", "too few distinct"),
            ("abababababab", "too few distinct"),
            ("Password123", "common"),
            ("1q2w3e4r5t", "common"),
            ("marie.curie@radium.fr!", "contains the e-mail"),
            ("xXmarie.curieXx", "contains the local part"),
        ] {
            assert!(
                Password::parse(bad, &e).is_err(),
                "{bad:?} accepted ({why})"
            );
        }
        assert!(
            Password::parse(&"ab1!x".repeat(26), &e).is_err(),
            "longer than 128"
        );
        assert!(!format!("{:?}", Password::parse("correct horse battery", &e)).contains("horse"));
    }

    #[test]
    fn roles_order_by_power() {
        assert!(
            OrgRole::Admin > OrgRole::DatasetManager && OrgRole::DatasetManager > OrgRole::User
        );
        assert!(TeamRole::Manager > TeamRole::Member);
    }
}
