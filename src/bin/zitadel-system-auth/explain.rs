//! `explain`: every check on a token, with what was expected and what the token
//! has, and `verify`'s verdict last ([`SystemAuth::explain`]).
//!
//! The token comes from the argument or from standard input, as it is pasted:
//! `TOKEN`, `Bearer TOKEN`, `Authorization: Bearer TOKEN`, or a curl option
//! `-H 'Authorization: Bearer TOKEN'`. The scheme is read the way the layer reads
//! it (`Bearer` in any case); where ZITADEL would refuse it (`bearer`, since it
//! splits the header on `"Bearer "`), the first line says so.

use std::{
    io::{IsTerminal as _, Read as _},
    path::PathBuf,
    time::{Duration, UNIX_EPOCH},
};

use zitadel_system_auth::{
    ConfigError, SystemAuth,
    explain::{Check, Outcome},
};

use crate::{
    args::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE},
    format::rfc3339,
};

/// Run every check on a token and give the verdict of `verify`.
///
/// Prints one line per check (PASS, FAIL or SKIP) with what was expected and what
/// the token has, goes on after a failure so that every problem shows at once,
/// says what ZITADEL would do where it decides otherwise, and prints the verdict
/// last. Claim values are shown; the signature and key material never are. Exit
/// status 0 when the token is accepted, 1 when it is refused or the config does
/// not load, 2 on a usage error or a file that cannot be read.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// ZITADEL's runtime config file, as for `check`.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Let ZITADEL's environment variables override the file, as ZITADEL does.
    #[arg(long)]
    pub env: bool,
    /// The audience tokens must carry, instead of the one built from
    /// ExternalDomain, ExternalPort and ExternalSecure (the builder's `.audience`).
    #[arg(long, value_name = "URL")]
    pub audience: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Judge the token as if the clock read this time (seconds since 1970): to
    /// explain a refusal logged earlier, give the time of its log line.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
    /// The token: `TOKEN`, `Bearer TOKEN`, `Authorization: Bearer TOKEN` or
    /// `-H 'Authorization: Bearer TOKEN'`; read from standard input when absent.
    #[arg(value_name = "TOKEN", allow_hyphen_values = true, num_args = 0..)]
    pub token: Vec<String>,
}

/// The most read from standard input: far more than any token (the layer's cap is
/// 8 KiB by default), so a longer one is still explained as too long.
const MAX_INPUT: u64 = 1024 * 1024;

/// Explains the token `args` gives; the exit status.
pub fn run(args: &ExplainArgs) -> u8 {
    let input = if args.token.is_empty() {
        let mut stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("reading the token from standard input (paste it, then Ctrl-D)");
        }
        let mut text = String::new();
        if let Err(error) = (&mut stdin).take(MAX_INPUT).read_to_string(&mut text) {
            eprintln!("error: cannot read the token from standard input: {error}");
            return EXIT_USAGE;
        }
        text
    } else {
        args.token.join(" ")
    };
    let pasted = Pasted::read(&input);
    if pasted.token.is_empty() {
        eprintln!(
            "error: no token given (pass it as an argument or on standard input: TOKEN, \
             Bearer TOKEN or Authorization: Bearer TOKEN)"
        );
        return EXIT_USAGE;
    }

    let mut builder = SystemAuth::builder()
        .config_file(&args.config)
        .env_overrides(args.env)
        .watch(false)
        .token_cache(false);
    if let Some(audience) = &args.audience {
        builder = builder.audience(audience);
    }
    if let Some(now) = args.now {
        builder = builder.clock(move || UNIX_EPOCH + Duration::from_secs(now));
    }
    let auth = match builder.build() {
        Ok(auth) => auth,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!(
                "(`zitadel-system-auth check --config {}` shows every problem of the config)",
                args.config.display()
            );
            return match error {
                ConfigError::Io { .. } => EXIT_USAGE,
                _ => EXIT_REFUSED,
            };
        }
    };

    let mut explanation = auth.explain(&pasted.token);
    if let Some(scheme) = pasted.scheme_check() {
        explanation.checks.insert(0, scheme);
    }
    if args.json {
        match serde_json::to_string_pretty(&explanation) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("error: cannot write the explanation as JSON: {error}");
                return EXIT_USAGE;
            }
        }
    } else {
        let at = crate::format::now_secs(args.now);
        println!(
            "token checked at {} against {} (audience {})",
            rfc3339(at),
            args.config.display(),
            auth.audiences().join(" or ")
        );
        println!("{explanation}");
    }
    if explanation.accepted() {
        EXIT_OK
    } else {
        EXIT_REFUSED
    }
}

/// The token in what was pasted, and the scheme it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pasted {
    /// The token itself.
    pub token: String,
    /// The scheme as written (`Bearer`, `bearer`), when there was one.
    pub scheme: Option<String>,
}

impl Pasted {
    /// Reads `TOKEN`, `Bearer TOKEN`, `Authorization: Bearer TOKEN` or
    /// `-H 'Authorization: Bearer TOKEN'` (also `--header`, double quotes).
    pub fn read(input: &str) -> Pasted {
        let mut text = input.trim();
        for option in ["--header", "-H"] {
            if let Some(rest) = text.strip_prefix(option)
                && let Some(rest) = rest
                    .strip_prefix('=')
                    .or_else(|| rest.starts_with(char::is_whitespace).then_some(rest))
            {
                text = rest.trim();
                break;
            }
        }
        for quote in ['\'', '"'] {
            if let Some(inner) = text
                .strip_prefix(quote)
                .and_then(|rest| rest.strip_suffix(quote))
            {
                text = inner.trim();
                break;
            }
        }
        if text
            .get(..14)
            .is_some_and(|name| name.eq_ignore_ascii_case("authorization:"))
        {
            text = text[14..].trim_start();
        }
        let mut scheme = None;
        if let Some(word) = text.get(..6)
            && word.eq_ignore_ascii_case("bearer")
            && text[6..].starts_with([' ', '\t'])
        {
            scheme = Some(word.to_owned());
            text = text[6..].trim_start_matches([' ', '\t']);
        }
        Pasted {
            token: text.trim_end().to_owned(),
            scheme,
        }
    }

    /// The check on the scheme, when the input had one.
    fn scheme_check(&self) -> Option<Check> {
        let scheme = self.scheme.as_deref()?;
        Some(if scheme == "Bearer" {
            Check {
                check: "scheme",
                outcome: Outcome::Passed,
                detail: "Bearer".to_owned(),
                zitadel: None,
            }
        } else {
            Check {
                check: "scheme",
                outcome: Outcome::Passed,
                detail: format!("{scheme:?}: accepted in any case here (RFC 7235)"),
                zitadel: Some(
                    "ZITADEL refuses this scheme: it splits the header on \"Bearer \"; send `Bearer` as written"
                        .to_owned(),
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Pasted;

    #[test]
    fn pasted_forms() {
        let read = |input: &str| {
            let pasted = Pasted::read(input);
            (pasted.token, pasted.scheme)
        };
        let bearer = Some("Bearer".to_owned());
        assert_eq!(read(" a.b.c\n"), ("a.b.c".to_owned(), None));
        assert_eq!(read("Bearer a.b.c"), ("a.b.c".to_owned(), bearer.clone()));
        assert_eq!(
            read("Authorization: Bearer  a.b.c"),
            ("a.b.c".to_owned(), bearer.clone())
        );
        assert_eq!(
            read("-H 'Authorization: Bearer a.b.c'"),
            ("a.b.c".to_owned(), bearer.clone())
        );
        assert_eq!(
            read("--header=\"authorization:Bearer\ta.b.c\""),
            ("a.b.c".to_owned(), bearer)
        );
        assert_eq!(
            read("bearer a.b.c"),
            ("a.b.c".to_owned(), Some("bearer".to_owned()))
        );
        // Not a scheme: the whole text is the token.
        assert_eq!(read("Bearera.b.c"), ("Bearera.b.c".to_owned(), None));
        assert_eq!(read("Basic a.b.c"), ("Basic a.b.c".to_owned(), None));
        assert_eq!(read("-H"), ("-H".to_owned(), None));
    }
}
