//! The command line as ZITADEL's own tools are invoked, shared by the
//! `zitadel-system-auth` command and the `key2jwt` example (which includes this
//! file with `#[path]`).
//!
//! Go's `flag` package takes an option with one dash (`-audience=URL`,
//! `-audience URL`); clap wants two. [`go_style`] turns `-name` into `--name`
//! where `name` is a long option of the command being parsed, so the seed's
//! `key2jwt -audience=https://custom-domain.com -key=system-user-1.pem
//! -issuer=system-user-1` parses as it does in Go. Everything else is left as it
//! is: short flags (`-h`), values (also those that start with a dash), and
//! everything after `--`.

use std::ffi::OsString;

use clap::Command;

/// Exit status: success, or the token is accepted, or the config loads.
pub const EXIT_OK: u8 = 0;
/// Exit status: the token is refused, or the config or a key is invalid.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: a usage error, or a file that cannot be read or written (clap's
/// own usage errors exit with 2 too).
pub const EXIT_USAGE: u8 = 2;

/// `args` (the program name first) with Go-style `-name` and `-name=value`
/// rewritten to `--name` and `--name=value` for every long option `name` of
/// `command` or of the subcommand the arguments select.
pub fn go_style(args: impl IntoIterator<Item = OsString>, command: &Command) -> Vec<OsString> {
    let mut command = command.clone();
    command.build();
    let mut current = &command;
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut value_follows = false;
    while let Some(arg) = args.next() {
        if std::mem::take(&mut value_follows) {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        if let Some(option) = text.strip_prefix("--") {
            value_follows = takes_separate_value(current, option);
            out.push(arg);
        } else if let Some(option) = text.strip_prefix('-').filter(|o| o.len() > 1) {
            if long_option(current, option).is_some() {
                value_follows = takes_separate_value(current, option);
                out.push(format!("-{text}").into());
            } else {
                out.push(arg);
            }
        } else {
            if let Some(subcommand) = current.find_subcommand(text) {
                current = subcommand;
            }
            out.push(arg);
        }
    }
    out
}

/// The long option `option` (`name` or `name=value`) of `command`.
fn long_option<'c>(command: &'c Command, option: &str) -> Option<&'c clap::Arg> {
    let name = option.split_once('=').map_or(option, |(name, _)| name);
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(name))
}

/// Whether `option` (without its dashes) is a long option whose value is the next
/// argument (`--name value`, not `--name=value`).
fn takes_separate_value(command: &Command, option: &str) -> bool {
    !option.contains('=')
        && long_option(command, option).is_some_and(|arg| arg.get_action().takes_values())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("tool")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(
                Command::new("mint")
                    .arg(clap::Arg::new("audience").long("audience"))
                    .arg(clap::Arg::new("key").long("key"))
                    .arg(clap::Arg::new("token").allow_hyphen_values(true)),
            )
    }

    fn rewritten(args: &[&str]) -> Vec<String> {
        go_style(args.iter().map(OsString::from), &command())
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_options_get_a_second_dash() {
        assert_eq!(
            rewritten(&[
                "tool",
                "-verbose",
                "mint",
                "-audience=https://x",
                "-key",
                "k.pem"
            ]),
            [
                "tool",
                "--verbose",
                "mint",
                "--audience=https://x",
                "--key",
                "k.pem"
            ]
        );
        // Values, short flags, unknown names, and everything after `--` stay.
        assert_eq!(
            rewritten(&[
                "tool",
                "mint",
                "--audience",
                "-key",
                "-h",
                "-x",
                "--",
                "-key"
            ]),
            [
                "tool",
                "mint",
                "--audience",
                "-key",
                "-h",
                "-x",
                "--",
                "-key"
            ]
        );
        // The help option clap adds is found too; a subcommand's options only apply
        // after it.
        assert_eq!(rewritten(&["tool", "-help"]), ["tool", "--help"]);
        assert_eq!(rewritten(&["tool", "-audience=x"]), ["tool", "-audience=x"]);
    }
}
