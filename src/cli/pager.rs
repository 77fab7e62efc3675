//! Long output on a terminal goes through a pager (`$PAGER`, else `less -FRX`), as `git log`
//! does; a pipe or `--no-pager` gets it straight. Quitting the pager early ends quietly.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// The terminal's height in lines (`LINES`, else the terminal's, else 40).
fn terminal_height() -> usize {
    if let Some(l) = std::env::var("LINES").ok().and_then(|l| l.parse().ok()) {
        return l;
    }
    terminal_size::terminal_size()
        .map(|(_, h)| usize::from(h.0))
        .unwrap_or(40)
}

/// Prints `text`, through the pager when `page` and it is taller than the terminal.
pub fn show(text: &str, page: bool) {
    if !page || text.lines().count() < terminal_height() {
        super::write_stdout(text);
        return;
    }
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less -FRX".into());
    let child = Command::new("sh")
        .args(["-c", &pager])
        .stdin(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        // No pager to run: print as if to a pipe.
        super::write_stdout(text);
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A pager quit before the end closes its input: that is the operator's choice.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = child.wait();
}
