//! Secrets out of anything that is shown or kept: the user-info of a URL,
//! and the values of options that carry secrets, in a command line.
//!
//! One implementation, used by every message that names a URL and by the
//! command line an archive header and the audit log record: runbooks tee
//! their output into files, and an audit log is read by more people than
//! the ones who ran the command.

/// Strip the password from a URL before it is shown anywhere.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    // A password may hold '/', '#', '?' and '@' (a URL that does not parse
    // is shown here precisely because it was not encoded): everything
    // before the last '@' is taken for credentials. A '@' later in the
    // path at worst hides more than it must.
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let redacted = match userinfo.split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***"),
                _ => "***".to_string(),
            };
            format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
        }
        None => url.to_string(),
    }
}

/// Words that mark an option as carrying a secret (`--password`,
/// `--auth-token`, ...). The program's own options take no secret on the
/// command line; these catch any that a wrapper or a later version adds.
const SECRET_WORDS: [&str; 5] = ["password", "passphrase", "secret", "token", "auth"];

fn names_secret(option: &str) -> bool {
    let name = option.trim_start_matches('-').to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// A command line with its secrets removed: URL user-info redacted in every
/// argument, and the value of any option whose name says it is a secret
/// (`--password X`, `--password=X`) replaced by `***`. A flag that takes no
/// value (`--passphrase`, which asks for it) is left as it is, as long as
/// what follows it is another option.
pub fn redact_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        let arg = arg.as_ref();
        if hide_next && !arg.starts_with('-') {
            out.push("***".to_string());
            hide_next = false;
            continue;
        }
        hide_next = false;
        if arg.starts_with("--")
            && let Some((name, _)) = arg.split_once('=')
            && names_secret(name)
        {
            out.push(format!("{name}=***"));
            continue;
        }
        if arg.starts_with("--") && names_secret(arg) {
            hide_next = true;
        }
        out.push(redact_url(arg));
    }
    out
}

/// Arguments joined into one line a shell would read back the same way:
/// plain words as they are, the others in single quotes.
pub fn join_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-:+=,@%*".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("rediss://secret@h"), "rediss://***@h");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        // Passwords that were not URL-encoded: nothing of them shows.
        assert_eq!(
            redact_url("redis://:secret/part@127.0.0.1:6390"),
            "redis://:***@127.0.0.1:6390"
        );
        assert_eq!(
            redact_url("redis://:p@ss:w/rd#1%@host/0"),
            "redis://:***@host/0"
        );
        assert_eq!(redact_url("redis://u:a@b@h/1"), "redis://u:***@h/1");
    }

    #[test]
    fn command_lines_lose_their_secrets() {
        let args = redact_args([
            "archive",
            "copy",
            "--source",
            "redis://:hunter2@h:1/0",
            "--target=rediss://u:pw@t/1",
            "--password",
            "letmein",
            "--auth-token=abc",
            "--passphrase",
            "--yes",
        ]);
        let line = join_args(&args);
        for secret in ["hunter2", "pw@", "letmein", "abc"] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
        assert_eq!(
            line,
            "archive copy --source redis://:***@h:1/0 --target=rediss://u:***@t/1 \
             --password *** --auth-token=*** --passphrase --yes"
        );
        assert_eq!(
            join_args(&["a b".into(), "it's".into()]),
            "'a b' 'it'\\''s'"
        );
    }
}
