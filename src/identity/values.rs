//! Account input, parsed once at the edge. Each parser returns the message
//! shown to the person for that field.

/// An email address, trimmed. Compared case-insensitively (the database's
/// unique index is on `lower(email)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("email is required".into());
        }
        if email.chars().count() > 254 {
            return Err("email must be at most 254 characters".into());
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err("email must look like name@example.com".into());
        }
        Ok(Email(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters. Never logged (no `Display`, and
/// `Debug` is redacted).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Password, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!(
                "password must be at least {} characters",
                Self::MIN_CHARS
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!(
                "password must be at most {} characters",
                Self::MAX_CHARS
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The name shown to others: 1 to 50 characters after trimming, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<DisplayName, String> {
        // Checked as sent, like the document's `pattern` and `maxLength`;
        // kept trimmed.
        let name = raw.trim();
        if name.is_empty() {
            return Err("displayName is required".into());
        }
        if raw.chars().count() > 50 {
            return Err("displayName must be at most 50 characters".into());
        }
        if raw.chars().any(char::is_control) {
            return Err("displayName must not contain control characters".into());
        }
        Ok(DisplayName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_checked_for_shape() {
        assert_eq!(
            Email::parse("  harry@hogwarts.edu ").unwrap().as_str(),
            "harry@hogwarts.edu"
        );
        for bad in [
            "",
            "harry",
            "@hogwarts.edu",
            "harry@hogwarts",
            "harry@.edu",
            "ha rry@hogwarts.edu",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@hogwarts.edu", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_are_between_8_and_128_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("alohomora!").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse(" Hermione ").unwrap().as_str(),
            "Hermione"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"n".repeat(51)).is_err());
        assert!(DisplayName::parse("Bad\u{7}Name").is_err());
        assert!(
            DisplayName::parse("Hermione\u{85}").is_err(),
            "checked as sent"
        );
        assert!(DisplayName::parse(&format!(" {} ", "n".repeat(50))).is_err());
    }
}
