//! POSIX shell quoting.

/// Quotes `value` as one POSIX `sh` word that expands to exactly `value`.
///
/// Words made only of characters that are never special to the shell (and
/// cannot turn a word into an assignment, like `=`) are
/// returned unchanged; anything else is wrapped in single quotes, with each
/// embedded `'` written as `'\''`. Works for any string, including empty
/// strings, newlines and non-ASCII text. NUL bytes cannot be passed to a
/// process at all, so callers must reject them beforehand.
pub fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,+@".contains(&b));
    if plain {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(ch);
        }
    }
    quoted.push('\'');
    quoted
}

/// Joins an argument vector into one command line, quoting each word.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Strings that break naive quoting.
    const NASTY: &[&str] = &[
        "",
        " ",
        "plain",
        "/home/azureuser",
        "it's",
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        "$(touch /tmp/azlin-pwned)",
        "`id`",
        "${HOME}",
        "$HOME",
        "a;b",
        "a&&b",
        "a|b",
        "a\nb",
        "\n",
        "\t tab",
        "*",
        "?",
        "[a]",
        "~",
        "~root",
        "-n",
        "--",
        "#comment",
        "a#b",
        "!",
        "{a,b}",
        "<in",
        ">out",
        "(sub)",
        "äöü ✓",
        "x'\"$`\\!*?[]{}();&|<>~# \t\n",
    ];

    /// Runs `printf '%s' <quoted>` through a real `sh` and returns the output.
    fn sh_roundtrip(value: &str) -> String {
        let script = format!("printf '%s' {}", shell_quote(value));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "sh failed for {value:?}: {script}");
        String::from_utf8(out.stdout).expect("utf8")
    }

    #[test]
    fn nasty_strings_round_trip_through_sh() {
        for value in NASTY {
            assert_eq!(&sh_roundtrip(value), value, "quoting {value:?}");
        }
    }

    #[test]
    fn generated_strings_round_trip_through_sh() {
        // Deterministic pseudo-random strings over an alphabet rich in shell
        // metacharacters; one sh process checks all of them at once.
        let alphabet: Vec<char> = "ab'\"\\$`!*?[]{}();&|<>~# \t\n-=%äx".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values = Vec::new();
        for _ in 0..300 {
            let len = (next() % 12) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            values.push(s);
        }
        let script = values
            .iter()
            .map(|v| format!("printf '%s\\0' {}", shell_quote(v)))
            .collect::<Vec<_>>()
            .join("\n");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run sh");
        assert!(out.status.success());
        let got: Vec<String> = String::from_utf8(out.stdout)
            .expect("utf8")
            .split('\0')
            .map(str::to_owned)
            .collect();
        assert_eq!(got.len(), values.len() + 1);
        for (value, echoed) in values.iter().zip(&got) {
            assert_eq!(echoed, value);
        }
    }

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(shell_quote("/home/azureuser"), "/home/azureuser");
        assert_eq!(
            shell_quote("acct.file.core.windows.net:/acct/share"),
            "acct.file.core.windows.net:/acct/share"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn join_keeps_word_boundaries() {
        let argv = ["printf", "%s|", "a b", "", "c'd"];
        let out = Command::new("sh")
            .arg("-c")
            .arg(shell_join(&argv))
            .output()
            .expect("run sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b||c'd|");
    }
}
