//! Where a sink finds its database password when the URL has none, as libpq
//! (and so `psql`) does: the `PGPASSWORD` variable, then the password file
//! (`PGPASSFILE`, else `~/.pgpass`).
//!
//! The password file holds lines `host:port:database:user:password`; `#`
//! starts a comment line, `*` in any of the first four fields matches
//! anything, and `\:` and `\\` stand for `:` and `\`. The first line that
//! matches wins. A connection over a Unix socket matches the host
//! `localhost`, and a URL without a port matches `5432`. As libpq does, a
//! file that others may read or write is ignored with a warning, and so is
//! anything that is not a regular file.

use std::path::{Path, PathBuf};

/// The variable holding the password itself.
pub const PASSWORD_ENV: &str = "PGPASSWORD";
/// The variable naming the password file.
pub const PASSFILE_ENV: &str = "PGPASSFILE";
/// The port a URL without one connects to.
const DEFAULT_PORT: u16 = 5432;

/// What a connection is to, as the password file matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The host name, or `None` for a Unix socket.
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub database: &'a str,
    pub user: &'a str,
}

/// Where a password came from, for the message that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Environment,
    File(PathBuf),
}

/// The password for `target` from the environment or the password file, and
/// where it came from; the warnings say why a password file was skipped.
pub fn lookup(target: &Target<'_>, warnings: &mut Vec<String>) -> Option<(String, Found)> {
    if let Some(password) = std::env::var_os(PASSWORD_ENV) {
        return Some((password.to_string_lossy().into_owned(), Found::Environment));
    }
    let path = passfile_path()?;
    let text = readable_passfile(&path, warnings)?;
    from_passfile(&text, target).map(|password| (password, Found::File(path)))
}

/// `PGPASSFILE`, else `.pgpass` in the home directory.
fn passfile_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(PASSFILE_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".pgpass"))
}

/// The file's text, or `None` (with a warning when it exists but is not
/// trusted or cannot be read).
fn readable_passfile(path: &Path, warnings: &mut Vec<String>) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warnings.push(format!(
            "password file {} is not a plain file; ignored",
            path.display()
        ));
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warnings.push(format!(
                "password file {} has group or world access; ignored (permissions should be u=rw, 0600, or less)",
                path.display()
            ));
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            warnings.push(format!(
                "password file {} cannot be read ({e}); ignored",
                path.display()
            ));
            None
        }
    }
}

/// The password of the first line of a password file that matches `target`.
pub fn from_passfile(text: &str, target: &Target<'_>) -> Option<String> {
    let host = target.host.unwrap_or("localhost");
    let port = target.port.unwrap_or(DEFAULT_PORT).to_string();
    let wanted = [host, port.as_str(), target.database, target.user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(fields)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// A line's five fields, unescaped, or `None` when it has fewer. Everything
/// after the fourth unescaped `:` is the password.
fn fields(line: &str) -> Option<Vec<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::with_capacity(5);
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(host: Option<&'a str>, port: Option<u16>) -> Target<'a> {
        Target {
            host,
            port,
            database: "serving",
            user: "tally",
        }
    }

    #[test]
    fn the_first_matching_line_wins_and_wildcards_match_anything() {
        let file = "# comment\n\
                    other:5432:serving:tally:wrong-host\n\
                    db.internal:5433:serving:tally:wrong-port\n\
                    db.internal:5432:serving:tally:right\n\
                    *:*:*:*:fallback\n";
        let t = target(Some("db.internal"), None);
        assert_eq!(from_passfile(file, &t).as_deref(), Some("right"));
        let t = target(Some("elsewhere"), Some(6000));
        assert_eq!(from_passfile(file, &t).as_deref(), Some("fallback"));
    }

    #[test]
    fn a_socket_matches_localhost_and_escapes_are_read() {
        let file = "localhost:5432:serving:tally:pa\\:ss\\\\word:with:colons\n";
        assert_eq!(
            from_passfile(file, &target(None, None)).as_deref(),
            Some("pa:ss\\word:with:colons")
        );
        assert_eq!(from_passfile(file, &target(None, Some(5433))), None);
    }

    #[test]
    fn short_lines_and_other_users_do_not_match() {
        let file = "localhost:5432:serving\nlocalhost:5432:serving:someone:x\n";
        assert_eq!(from_passfile(file, &target(None, None)), None);
    }
}
